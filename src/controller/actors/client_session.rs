//! `ClientSession`: one per WebSocket client (zeek-client). It takes the
//! subscriptions, sends the ack, reads data messages, answers what it
//! cannot use with Zeek's error frames, hands requests to the
//! [`Core`](super::core::Core), relays other messages through the
//! [`Hub`], and writes what the hub sends it.

use actix::prelude::*;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::hub::{Hub, Join, Leave};
use super::messages::{ClientId, Publish, SendText};
use crate::api::types::ReqId;
use crate::broker::message::{
    ack, parse_subscriptions, DataMessage, ErrorFrame, Event, CONTROLLER_TOPIC,
};
use crate::controller::requests::{self, Incoming};

/// A client request for the core: its reqid and what it asks.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientRequest {
    pub reqid: ReqId,
    pub call: requests::Call,
}

/// A client's byte stream: TCP, or TLS over TCP.
pub trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> ClientIo for T {}

/// A client's WebSocket.
pub type ClientSocket = WebSocketStream<Box<dyn ClientIo>>;

/// What the upgrade request said that the session must act on.
#[derive(Debug, Clone, Default)]
pub struct Upgrade {
    /// The path was not `/v1/messages/json`.
    pub wrong_path: bool,
    /// `X-Application-Name` was present and not acceptable.
    pub bad_application_name: bool,
}

/// Whether an `X-Application-Name` is acceptable (Zeek's rule).
pub fn application_name_ok(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_-.=:*@".contains(c))
}

/// One client.
pub struct ClientSession {
    id: ClientId,
    endpoint: String,
    upgrade: Upgrade,
    stream: Option<SplitStream<ClientSocket>>,
    out: mpsc::UnboundedSender<Message>,
    acked: bool,
    hub: Addr<Hub>,
    core: Recipient<ClientRequest>,
    /// One of the listener's places, given back when the session ends.
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Ping interval (zero: no pings); a client silent for three of them
    /// is dropped.
    ping: std::time::Duration,
    last_heard: std::time::Instant,
}

impl ClientSession {
    /// The same session, pinging every `interval` (as Zeek does, every 5
    /// s) and dropping the client after three intervals of silence.
    pub fn pinging(mut self, interval: std::time::Duration) -> Self {
        self.ping = interval;
        self
    }

    /// The same session, holding one of the listener's places for its life.
    pub fn holding(mut self, place: tokio::sync::OwnedSemaphorePermit) -> Self {
        self._place = Some(place);
        self
    }

    /// A session over an upgraded connection; `endpoint` goes into the ack.
    pub fn new(
        ws: ClientSocket,
        id: ClientId,
        endpoint: String,
        upgrade: Upgrade,
        hub: Addr<Hub>,
        core: Recipient<ClientRequest>,
    ) -> Self {
        let (mut sink, stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<Message>();
        // The writer: ends when the session drops its sender or the socket
        // fails.
        actix_rt::spawn(async move {
            while let Some(m) = rx.recv().await {
                let close = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        ClientSession {
            id,
            endpoint,
            upgrade,
            stream: Some(stream),
            out,
            acked: false,
            hub,
            core,
            _place: None,
            ping: std::time::Duration::ZERO,
            last_heard: std::time::Instant::now(),
        }
    }

    fn send(&self, text: String) {
        let _ = self.out.send(Message::text(text));
    }

    fn refuse(&self, frame: ErrorFrame) {
        tracing::info!(
            client = self.id.0,
            "client refused: {}: {}",
            frame.code,
            frame.context
        );
        self.send(frame.to_json());
    }

    fn close_with(&self, frame: ErrorFrame, ctx: &mut Context<Self>) {
        self.refuse(frame.clone());
        let _ = self.out.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: frame.context.into(),
        })));
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        if !self.acked {
            match parse_subscriptions(text) {
                Ok(subscriptions) => {
                    self.acked = true;
                    self.send(ack(&self.endpoint, "8.2.2"));
                    tracing::debug!(client = self.id.0, "acked, subscriptions {subscriptions:?}");
                    self.hub.do_send(Join {
                        id: self.id,
                        subscriptions,
                        out: ctx.address().recipient(),
                    });
                }
                Err(frame) => self.refuse(frame),
            }
            return;
        }
        let message = match DataMessage::parse(text) {
            Ok(m) => m,
            Err(frame) => return self.refuse(frame),
        };
        if !message.topic.starts_with(CONTROLLER_TOPIC) {
            self.hub.do_send(Publish {
                message,
                from: Some(self.id),
            });
            return;
        }
        let read = Event::from_value(&message.value)
            .ok_or_else(|| "not an event".to_owned())
            .and_then(|e| requests::read(&e));
        match read {
            Ok(incoming) => {
                if let Incoming::Request(reqid, call) = incoming {
                    tracing::debug!(client = self.id.0, "rx {}_request {reqid}", call.stem());
                    self.core.do_send(ClientRequest { reqid, call });
                }
                self.hub.do_send(Publish {
                    message,
                    from: Some(self.id),
                });
            }
            Err(why) => {
                tracing::info!(client = self.id.0, "unusable event: {why}");
                self.refuse(ErrorFrame::NOT_AN_EVENT);
            }
        }
    }
}

impl Actor for ClientSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.upgrade.wrong_path {
            return self.close_with(ErrorFrame::INVALID_URI, ctx);
        }
        if self.upgrade.bad_application_name {
            return self.close_with(ErrorFrame::INVALID_APPLICATION_NAME, ctx);
        }
        if let Some(stream) = self.stream.take() {
            ctx.add_stream(stream);
        }
        if !self.ping.is_zero() {
            let limit = self.ping * 3;
            ctx.run_interval(self.ping, move |act, ctx| {
                if act.last_heard.elapsed() > limit {
                    tracing::info!(
                        client = act.id.0,
                        "no answer to pings for {limit:?}; dropped"
                    );
                    ctx.stop();
                    return;
                }
                let _ = act.out.send(Message::Ping("zeek-mgmt-controller".into()));
            });
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        tracing::debug!(client = self.id.0, "client gone");
        // Also for a client never acked: the hub trims after departures.
        self.hub.do_send(Leave(self.id));
    }
}

type WsItem = Result<Message, tokio_tungstenite::tungstenite::Error>;

impl StreamHandler<WsItem> for ClientSession {
    fn handle(&mut self, item: WsItem, ctx: &mut Context<Self>) {
        self.last_heard = std::time::Instant::now();
        match item {
            Ok(Message::Text(t)) => self.on_text(t.as_str(), ctx),
            Ok(Message::Binary(b)) => match std::str::from_utf8(&b) {
                Ok(t) => self.on_text(t, ctx),
                Err(_) => self.refuse(ErrorFrame::BAD_JSON),
            },
            Err(tokio_tungstenite::tungstenite::Error::Capacity(e)) => {
                // Refused at the frame's header, before its bytes are read.
                tracing::warn!(client = self.id.0, "client closed: {e}");
                let _ = self.out.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                })));
                ctx.stop();
            }
            Ok(Message::Close(_)) | Err(_) => ctx.stop(),
            // tungstenite answers pings itself.
            Ok(_) => {}
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SendText> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: SendText, _: &mut Context<Self>) {
        self.send(msg.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_names_follow_zeeks_rule() {
        assert!(application_name_ok("zeek-client/1.5.0"));
        assert!(application_name_ok("a_b.c=d:e*f@g"));
        assert!(!application_name_ok("has space"));
        assert!(!application_name_ok("ünï"));
    }
}
