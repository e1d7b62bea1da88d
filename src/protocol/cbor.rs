//! Bytes ⇄ frames (`hello`, `event`, `heartbeat`, `error`) and Zeek values:
//! the agent protocol's CBOR, here and in `cbor/` (the serializer), used
//! by the agent's peers and the protocol toolkit alike. (The agent's state
//! file is CBOR too, through `serde_cbor` in `agent/state.rs`.)

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_cbor::Value;

use crate::api::events::{
    self, with_requests, Notification, NotifyAgentHello, NotifyChange, NotifyError, NotifyLog,
    Request, Response, Stem, EVENT_PREFIX,
};
use crate::api::types::{
    Addr, ApiResult, Configuration, Node, NodeStatus, ReqId, ResultData, State,
};
use crate::protocol::codec::{self, FrameError};

mod hello;
mod ser;

pub use hello::Hello;

use ser::{Sink, Verbatim};

/// The protocol-level error codes of `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadFrame,
    BadHello,
    VersionMismatch,
    TooLarge,
    UnknownTopic,
    UnknownEvent,
    BadArgs,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad-frame",
            ErrorCode::BadHello => "bad-hello",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::UnknownTopic => "unknown-topic",
            ErrorCode::UnknownEvent => "unknown-event",
            ErrorCode::BadArgs => "bad-args",
        }
    }

    /// Every code.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::BadFrame,
        ErrorCode::BadHello,
        ErrorCode::VersionMismatch,
        ErrorCode::TooLarge,
        ErrorCode::UnknownTopic,
        ErrorCode::UnknownEvent,
        ErrorCode::BadArgs,
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Only these three end the connection.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::BadHello | ErrorCode::VersionMismatch | ErrorCode::TooLarge
        )
    }
}

/// The payload of an `event` frame, by direction.
#[derive(Debug, Clone)]
pub enum EventBody {
    Request(Request),
    Response(Response),
    Notification(Notification),
}

/// One frame of the protocol.
#[derive(Debug, Clone)]
pub enum Frame {
    Hello(Hello),
    Event { topic: String, body: EventBody },
    Heartbeat,
    Error { code: ErrorCode, message: String },
}

/// Why a frame could not be decoded, with the error code to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        DecodeError {
            code,
            message: message.into(),
        }
    }

    fn bad_frame(message: impl Into<String>) -> Self {
        DecodeError::new(ErrorCode::BadFrame, message)
    }

    /// The protocol error code for this failure.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

/// Encoding failed; only possible for values that CBOR cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode: {0}")]
pub struct EncodeError(String);

#[cfg(test)]
fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

#[cfg(test)]
fn map_of(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (text(k), v)).collect())
}

#[cfg(test)]
fn to_value<T: Serialize>(v: &T) -> Result<Value, EncodeError> {
    serde_cbor::value::to_value(v).map_err(|e| EncodeError(e.to_string()))
}

fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_cbor::value::from_value(v).map_err(|e| e.to_string())
}

/// The map of an outgoing frame, serialized straight to CBOR (no
/// intermediate value tree): keys in this order, absent ones left out.
#[derive(Serialize)]
struct Out<'a, A: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<A>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

impl<'a, A: Serialize> Out<'a, A> {
    fn of(kind: &'static str) -> Self {
        Out {
            kind,
            topic: None,
            name: None,
            args: None,
            code: None,
            message: None,
        }
    }
}

#[derive(Serialize)]
struct HelloOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u64,
    endpoint: &'a str,
    role: &'a str,
    heartbeat: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    features: &'a [String],
}

impl From<FrameError> for EncodeError {
    fn from(e: FrameError) -> Self {
        EncodeError(e.to_string())
    }
}

fn to_writer<T: Serialize + ?Sized>(v: &T, out: &mut impl Sink) -> Result<(), EncodeError> {
    ser::to_sink(v, out).map_err(|e| EncodeError(e.to_string()))
}

fn to_bytes(
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    write(&mut out)?;
    Ok(out)
}

fn event<A: Serialize>(
    topic: &str,
    name: &'static str,
    args: A,
    out: &mut impl Sink,
) -> Result<(), EncodeError> {
    to_writer(
        &Out {
            topic: Some(topic),
            name: Some(name),
            args: Some(args),
            ..Out::of("event")
        },
        out,
    )
}

/// Encodes one frame into its CBOR bytes (without the length prefix).
pub fn encode(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    to_bytes(|out| write_frame(frame, out))
}

/// Encodes an `event` frame on `topic` (without building a `Frame`).
pub fn encode_event(topic: &str, body: &EventBody) -> Result<Vec<u8>, EncodeError> {
    to_bytes(|out| write_event(topic, body, out))
}

/// Appends one frame, framed (length prefix and CBOR), to `dst`.
pub fn put_frame(dst: &mut BytesMut, frame: &Frame) -> Result<(), EncodeError> {
    codec::put_frame(dst, |d| write_frame(frame, d))
}

/// Appends an `event` frame on `topic`, framed, to `dst`.
pub fn put_event(dst: &mut BytesMut, topic: &str, body: &EventBody) -> Result<(), EncodeError> {
    codec::put_frame(dst, |d| write_event(topic, body, d))
}

fn write_frame(frame: &Frame, out: &mut impl Sink) -> Result<(), EncodeError> {
    match frame {
        Frame::Hello(h) => to_writer(
            &HelloOut {
                kind: "hello",
                version: h.version,
                endpoint: &h.endpoint,
                role: &h.role,
                heartbeat: h.heartbeat,
                features: &h.features,
            },
            out,
        ),
        Frame::Heartbeat => to_writer(&Out::<()>::of("heartbeat"), out),
        Frame::Error { code, message } => to_writer(
            &Out::<()> {
                code: Some(code.as_str()),
                message: Some(message),
                ..Out::of("error")
            },
            out,
        ),
        Frame::Event { topic, body } => write_event(topic, body, out),
    }
}

fn write_event(topic: &str, body: &EventBody, out: &mut impl Sink) -> Result<(), EncodeError> {
    match body {
        EventBody::Request(r) => write_request(topic, r, out),
        EventBody::Response(r) => match &r.result.data {
            Some(ResultData::NodeStatuses(list)) => with_encoded_list(list, |list| {
                let result = ResultOut::of(&r.result, Verbatim(list));
                event(topic, r.stem.response_name(), (&r.reqid.0, &result), out)
            }),
            _ => event(topic, r.stem.response_name(), (&r.reqid.0, &r.result), out),
        },
        EventBody::Notification(n) => match n {
            Notification::AgentHello(h) => {
                event(topic, n.name(), (&h.instance, &h.host, h.api_version), out)
            }
            Notification::Change(c) => {
                event(topic, n.name(), (&c.instance, &c.node, &c.old, &c.new), out)
            }
            Notification::Error(NotifyError {
                instance,
                msg,
                node,
            })
            | Notification::Log(NotifyLog {
                instance,
                msg,
                node,
            }) => event(topic, n.name(), (instance, msg, node), out),
        },
    }
}

/// An `ApiResult` whose `data` is already encoded: the same keys, in the
/// same order, left out under the same conditions.
#[derive(Serialize)]
struct ResultOut<'a> {
    reqid: &'a ReqId,
    instance: &'a str,
    success: bool,
    data: Verbatim<'a>,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
}

impl<'a> ResultOut<'a> {
    fn of(r: &'a ApiResult, data: Verbatim<'a>) -> Self {
        ResultOut {
            reqid: &r.reqid,
            instance: &r.instance,
            success: r.success,
            data,
            error: &r.error,
            node: r.node.as_deref(),
        }
    }
}

thread_local! {
    /// The node list this thread encoded last, and its encoding: a
    /// controller polling `get_nodes` gets the same table until a node
    /// changes or the next background sample comes in, and then costs a
    /// comparison and a copy instead of an encoding.
    static LAST_LIST: RefCell<Option<(Vec<NodeStatus>, Vec<u8>)>> = const { RefCell::new(None) };
}

/// Calls `write` with the encoding of `list`, made again only when `list`
/// differs from the last one.
fn with_encoded_list(
    list: &[NodeStatus],
    write: impl FnOnce(&[u8]) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    LAST_LIST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((cached, bytes)) if cached.as_slice() == list => write(bytes),
            _ => {
                let mut bytes = Vec::with_capacity(64 * list.len());
                to_writer(list, &mut bytes)?;
                let written = write(&bytes);
                *last = Some((list.to_vec(), bytes));
                written
            }
        }
    })
}

/// The keys of an incoming frame that decide what it is; the rest (hello's
/// fields, unknown keys) is skipped here.
/// Text is borrowed from the frame where only looked at.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    topic: Option<String>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    args: Option<Vec<Value>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    message: Option<String>,
}

/// Decodes one frame's bytes. Fails with the code to answer the peer.
pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let head: Head<'_> = serde_cbor::from_slice(bytes).map_err(|e| {
        let shape = match serde_cbor::from_slice::<Value>(bytes) {
            Err(_) => "not one well-formed CBOR data item",
            Ok(Value::Map(_)) => "not a valid frame",
            Ok(_) => "frame is not a CBOR map",
        };
        DecodeError::bad_frame(format!("{shape}: {e}"))
    })?;
    match &*head.kind {
        "hello" => serde_cbor::from_slice::<Hello>(bytes)
            .map(Frame::Hello)
            .map_err(|e| DecodeError::new(ErrorCode::BadHello, format!("invalid hello: {e}"))),
        "heartbeat" => Ok(Frame::Heartbeat),
        "error" => {
            let code = head
                .code
                .ok_or_else(|| DecodeError::bad_frame("frame has no \"code\" key"))?;
            let code = ErrorCode::parse(&code)
                .ok_or_else(|| DecodeError::bad_frame(format!("unknown error code {code:?}")))?;
            Ok(Frame::Error {
                code,
                message: head.message.unwrap_or_default(),
            })
        }
        "event" => {
            let missing = |k: &str| DecodeError::bad_frame(format!("event has no {k:?} key"));
            let topic = head.topic.ok_or_else(|| missing("topic"))?;
            let name = head.name.ok_or_else(|| missing("name"))?;
            let args = head.args.ok_or_else(|| missing("args"))?;
            let body = decode_event(&name, args)?;
            Ok(Frame::Event { topic, body })
        }
        other => Err(DecodeError::bad_frame(format!(
            "unknown frame type {other:?}"
        ))),
    }
}

fn decode_event(name: &str, args: Vec<Value>) -> Result<EventBody, DecodeError> {
    let unknown = || DecodeError::new(ErrorCode::UnknownEvent, format!("unknown event {name:?}"));
    let bare = name.strip_prefix(EVENT_PREFIX).ok_or_else(unknown)?;
    if let Some(stem) = bare.strip_suffix("_request").and_then(stem_of) {
        return decode_request(stem, args).map(EventBody::Request);
    }
    if let Some(stem) = bare.strip_suffix("_response").and_then(stem_of) {
        return decode_response(stem, args).map(EventBody::Response);
    }
    let notification = match bare {
        "notify_agent_hello" => {
            let [instance, host, version] = fixed_args::<3>(name, args)?;
            Notification::AgentHello(NotifyAgentHello {
                instance: arg(name, 0, instance)?,
                host: arg::<Addr>(name, 1, host)?,
                api_version: arg(name, 2, version)?,
            })
        }
        "notify_change" => {
            let [instance, node, old, new] = fixed_args::<4>(name, args)?;
            Notification::Change(NotifyChange {
                instance: arg(name, 0, instance)?,
                node: arg::<Node>(name, 1, node)?,
                old: arg::<State>(name, 2, old)?,
                new: arg::<State>(name, 3, new)?,
            })
        }
        "notify_error" | "notify_log" => {
            let mut it = args.into_iter();
            let instance = arg(name, 0, it.next().unwrap_or(Value::Null))?;
            let msg = arg(name, 1, it.next().unwrap_or(Value::Null))?;
            let node = match it.next() {
                Some(v) => arg(name, 2, v)?,
                None => String::new(),
            };
            if bare == "notify_error" {
                Notification::Error(NotifyError {
                    instance,
                    msg,
                    node,
                })
            } else {
                Notification::Log(NotifyLog {
                    instance,
                    msg,
                    node,
                })
            }
        }
        _ => return Err(unknown()),
    };
    Ok(EventBody::Notification(notification))
}

fn stem_of(s: &str) -> Option<Stem> {
    Stem::ALL.into_iter().find(|stem| stem.as_str() == s)
}

fn bad_args(name: &str, msg: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(ErrorCode::BadArgs, format!("{name}: {msg}"))
}

fn fixed_args<const N: usize>(name: &str, args: Vec<Value>) -> Result<[Value; N], DecodeError> {
    let got = args.len();
    <[Value; N]>::try_from(args)
        .map_err(|_| bad_args(name, format!("expected {N} arguments, got {got}")))
}

fn arg<T: DeserializeOwned>(name: &str, index: usize, v: Value) -> Result<T, DecodeError> {
    from_value(v).map_err(|e| bad_args(name, format!("argument {}: {e}", index + 1)))
}

macro_rules! declare_request_codec {
    ($(
        $(#[$doc:meta])*
        $stem:ident($snake:ident) $req:ident { $($field:ident: $ty:ty = $what:literal $($record:ident)?),* } -> $resp:ident;
    )*) => {
        /// A request's arguments: a text reqid (without one there is nothing
        /// to answer: `bad-args`), then the request's own, each decoded as
        /// its type; a request whose other arguments do not fit becomes
        /// `Request::Invalid`, answered with its response event.
        fn decode_request(stem: Stem, args: Vec<Value>) -> Result<Request, DecodeError> {
            let name = stem.request_name();
            let got = args.len();
            let mut it = args.into_iter();
            let reqid = match it.next() {
                Some(Value::Text(t)) => ReqId(t),
                Some(_) => return Err(bad_args(name, "argument 1 (reqid) is not text")),
                None => return Err(bad_args(name, "missing argument 1 (reqid)")),
            };
            let invalid = |error: String| Request::Invalid { stem, reqid: reqid.clone(), error };
            Ok(match stem {
                $(Stem::$stem => {
                    let expected = 1 $(+ { let _ = stringify!($field); 1 })*;
                    if got != expected {
                        return Ok(invalid(format!(
                            "invalid arguments: expected {expected} arguments, got {got}"
                        )));
                    }
                    #[allow(unused_mut)] // a request without arguments of its own
                    let mut position = 1;
                    $(
                        position += 1;
                        let Some(value) = it.next() else {
                            return Ok(invalid(format!("invalid {}: missing argument {position}", $what)));
                        };
                        // serde would take a record from an array too.
                        let record = !stringify!($($record)?).is_empty();
                        if record && !matches!(value, Value::Map(_)) {
                            return Ok(invalid(format!(
                                "invalid {}: argument {position} must be a {} record (a map)",
                                $what,
                                stringify!($ty)
                            )));
                        }
                        let $field = match from_value::<$ty>(value) {
                            Ok(v) => v,
                            Err(e) => return Ok(invalid(format!("invalid {}: {e}", $what))),
                        };
                    )*
                    let _ = position;
                    Request::$stem(events::$req { reqid, $($field,)* })
                })*
            })
        }

        /// A request event: the reqid, then the request's own arguments.
        // A request without arguments of its own leaves its binding unused.
        #[allow(unused_variables)]
        fn write_request(topic: &str, r: &Request, out: &mut impl Sink) -> Result<(), EncodeError> {
            let name = r.stem().request_name();
            let reqid = r.reqid().0.as_str();
            match r {
                $(Request::$stem(r) => event(topic, name, (reqid, $(&r.$field,)*), out),)*
                Request::Invalid { .. } => event(topic, name, (reqid,), out),
            }
        }
    };
}

with_requests!(declare_request_codec);

fn decode_response(stem: Stem, args: Vec<Value>) -> Result<Response, DecodeError> {
    let name = stem.response_name();
    let [reqid, result] = fixed_args::<2>(name, args)?;
    Ok(Response {
        stem,
        reqid: arg::<ReqId>(name, 0, reqid)?,
        result: arg::<ApiResult>(name, 1, result)?,
    })
}

/// Encodes a configuration for the state directory.
pub fn encode_configuration(config: &Configuration) -> Result<Vec<u8>, EncodeError> {
    to_bytes(|out| to_writer(config, out))
}

/// Decodes a configuration from the state directory.
pub fn decode_configuration(bytes: &[u8]) -> Result<Configuration, String> {
    serde_cbor::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
