//! The connection of `zeek-mgmt-client --controller`: a WebSocket client of
//! the controller's API that dials, subscribes and waits for the ack as
//! zeek-client does, then puts requests and waits for their responses.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::broker::message::{DataMessage, Event, CONTROLLER_TOPIC};
use crate::broker::Value;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to a controller's WebSocket API, subscribed and acked.
pub struct Session {
    ws: WebSocketStream<Box<dyn Io>>,
    addr: String,
    timeout: Duration,
}

/// How zeek-client dials: 10 tries, 1 s apart, each waiting 1 s for the
/// connection and then for the ack.
const TRIES: u32 = 10;
const TRY_WAIT: Duration = Duration::from_secs(1);

impl Session {
    /// Connects to `addr` (`HOST:PORT`), with TLS when `tls` is given.
    /// `timeout` bounds each answer (zeek-client: 20 s).
    pub async fn connect(
        addr: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Session, String> {
        let mut reached = false;
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(TRY_WAIT).await;
            }
            let Ok(Ok(ws)) = tokio::time::timeout(TRY_WAIT, open(addr, tls.clone())).await else {
                continue;
            };
            reached = true;
            let mut ws = ws;
            if ws
                .send(Message::text(format!("[\"{CONTROLLER_TOPIC}\"]")))
                .await
                .is_err()
            {
                continue;
            }
            match tokio::time::timeout(TRY_WAIT, first_text(&mut ws)).await {
                Ok(Some(text)) => {
                    return match ack_problem(&text) {
                        None => Ok(Session {
                            ws,
                            addr: addr.to_owned(),
                            timeout,
                        }),
                        Some(why) => Err(format!(
                            "protocol data error with controller {addr}: {why}, raw data: {text}"
                        )),
                    };
                }
                _ => continue,
            }
        }
        Err(if reached {
            format!("websocket connection to {addr} timed out in handshake")
        } else {
            format!("websocket connection to {addr} timed out in connect()")
        })
    }

    /// Publishes `<stem>_request(reqid, args...)` and returns the
    /// arguments after the reqid of its response.
    pub async fn ask(&mut self, stem: &str, args: Vec<Value>) -> Result<Vec<Value>, String> {
        let reqid = uuid::Uuid::new_v4().to_string();
        let mut all = vec![Value::string(&reqid)];
        all.extend(args);
        let m = DataMessage {
            topic: CONTROLLER_TOPIC.into(),
            value: Event {
                name: format!("Management::Controller::API::{stem}_request"),
                args: all,
            }
            .into_value(),
        };
        let lost = || {
            format!(
                "no response received: websocket connection to {} timed out",
                self.addr
            )
        };
        if self.ws.send(Message::text(m.to_json())).await.is_err() {
            return Err(lost());
        }
        let want = format!("Management::Controller::API::{stem}_response");
        let wait = async {
            loop {
                let text = match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => return None,
                };
                if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                    return Some(Err(format!(
                        "no response received: protocol data error with controller {}: cannot parse JSON data: {} -- {text}",
                        self.addr,
                        python_json_error(&e, &text)
                    )));
                }
                let Some(e) = DataMessage::parse(text.as_str())
                    .ok()
                    .and_then(|m| Event::from_value(&m.value))
                else {
                    continue;
                };
                if e.name == want && e.args.first().and_then(Value::as_str) == Some(&reqid) {
                    return Some(Ok(e.args.into_iter().skip(1).collect()));
                }
            }
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Some(answer)) => answer,
            _ => Err(lost()),
        }
    }

    /// Every event published to this client, as one JSON object per line
    /// in the form of the agent mode's `monitor`: `{"timestamp",
    /// "controller", "event", "args"}`, the event by its short name
    /// (`get_nodes_request`) and its arguments in Broker's JSON form; until
    /// the connection ends.
    pub async fn monitor(&mut self, mut line: impl FnMut(String)) {
        while let Some(item) = self.ws.next().await {
            let Ok(Message::Text(t)) = item else {
                if item.is_err() {
                    return;
                }
                continue;
            };
            let Ok(m) = DataMessage::parse(t.as_str()) else {
                continue;
            };
            let Some(e) = Event::from_value(&m.value) else {
                continue;
            };
            let args: Vec<Json> = e
                .args
                .iter()
                .map(|a| serde_json::from_str(&a.to_json()).unwrap_or(Json::Null))
                .collect();
            let event = e.name.rsplit("::").next().unwrap_or_default();
            line(
                json!({
                    "timestamp": crate::client::now_secs(),
                    "controller": self.addr,
                    "event": event,
                    "args": args,
                })
                .to_string(),
            );
        }
    }
}

/// What zeek-client finds wrong with the first frame it reads as the
/// controller's ack, in its words; `None` for an ack.
fn ack_problem(text: &str) -> Option<String> {
    let v: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(format!(
                "cannot parse JSON data for HandshakeAckMessage: {} -- {text}",
                python_json_error(&e, text)
            ))
        }
    };
    let Some(object) = v.as_object() else {
        return Some("invalid data layout for Broker MessageType: not an object".into());
    };
    if !object.contains_key("type") {
        return Some("invalid data layout for Broker MessageType: required keys missing".into());
    }
    ["endpoint", "version"]
        .into_iter()
        .find(|k| !object.contains_key(*k))
        .map(|k| {
            format!("invalid data layout for HandshakeAckMessage: required key \"{k}\" missing")
        })
}

/// Python's `json` module's words for what is wrong with `text` (the
/// `msg` of its `JSONDecodeError`), from serde_json's reading of it.
pub fn python_json_error(e: &serde_json::Error, text: &str) -> &'static str {
    let said = e.to_string();
    let last = text.trim_end().chars().last();
    if said.starts_with("trailing characters") {
        "Extra data"
    } else if said.starts_with("EOF while parsing a string") {
        "Unterminated string starting at"
    } else if said.starts_with("control character") {
        "Invalid control character at"
    } else if said.starts_with("invalid escape") {
        "Invalid \\escape"
    } else if said.starts_with("expected `:`") {
        "Expecting ':' delimiter"
    } else if said.starts_with("key must be a string") {
        "Expecting property name enclosed in double quotes"
    } else if said.starts_with("expected `,`") {
        "Expecting ',' delimiter"
    } else if said.starts_with("EOF while parsing an object") {
        match last {
            Some('{') | Some(',') => "Expecting property name enclosed in double quotes",
            Some(':') => "Expecting value",
            _ => "Expecting ',' delimiter",
        }
    } else if said.starts_with("EOF while parsing a list") {
        match last {
            Some('[') | Some(',') => "Expecting value",
            _ => "Expecting ',' delimiter",
        }
    } else {
        "Expecting value"
    }
}

async fn open(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<WebSocketStream<Box<dyn Io>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let host = addr
        .parse::<crate::protocol::HostPort>()
        .map(|hp| hp.host)
        .unwrap_or_else(|_| addr.to_owned());
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name =
                rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            Box::new(stream)
        }
    };
    let scheme = "ws";
    let url = format!("{scheme}://{addr}/v1/messages/json");
    tokio_tungstenite::client_async(url, io)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

async fn first_text(ws: &mut WebSocketStream<Box<dyn Io>>) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_worded_as_pythons_json_words_them() {
        // Each text with the `msg` Python 3.11's json.loads raises for it.
        for (text, python) in [
            ("not json", "Expecting value"),
            ("{} x", "Extra data"),
            ("\"abc", "Unterminated string starting at"),
            ("{\"a\" 1}", "Expecting ':' delimiter"),
            (
                "{1: 2}",
                "Expecting property name enclosed in double quotes",
            ),
            ("[1 2]", "Expecting ',' delimiter"),
            ("[1,", "Expecting value"),
            ("{\"a\": 1", "Expecting ',' delimiter"),
            ("\"\\x\"", "Invalid \\escape"),
            ("\"a\nb\"", "Invalid control character at"),
            ("", "Expecting value"),
            ("[", "Expecting value"),
            ("{", "Expecting property name enclosed in double quotes"),
            ("{\"a\":", "Expecting value"),
            ("tru", "Expecting value"),
            ("-", "Expecting value"),
            ("[1", "Expecting ',' delimiter"),
            (
                "{\"a\":1,",
                "Expecting property name enclosed in double quotes",
            ),
        ] {
            let e = serde_json::from_str::<serde::de::IgnoredAny>(text).expect_err(text);
            assert_eq!(python_json_error(&e, text), python, "{text:?}: {e}");
        }
    }

    #[test]
    fn a_first_frame_that_is_no_ack_is_named_as_zeek_client_names_it() {
        for (text, why) in [
            (
                "hello",
                Some("cannot parse JSON data for HandshakeAckMessage: Expecting value -- hello"),
            ),
            ("[1]", Some("invalid data layout for Broker MessageType: not an object")),
            (
                "{\"endpoint\": \"x\"}",
                Some("invalid data layout for Broker MessageType: required keys missing"),
            ),
            (
                "{\"type\": \"error\", \"code\": \"x\", \"context\": \"y\"}",
                Some("invalid data layout for HandshakeAckMessage: required key \"endpoint\" missing"),
            ),
            (
                "{\"type\": \"ack\", \"endpoint\": \"x\"}",
                Some("invalid data layout for HandshakeAckMessage: required key \"version\" missing"),
            ),
            ("{\"type\": \"ack\", \"endpoint\": \"x\", \"version\": \"8.2.2\"}", None),
        ] {
            assert_eq!(ack_problem(text).as_deref(), why, "{text}");
        }
    }
}
