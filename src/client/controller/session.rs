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
                    let v: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                    if v.get("type").is_some() && v.get("endpoint").is_some() {
                        return Ok(Session {
                            ws,
                            addr: addr.to_owned(),
                            timeout,
                        });
                    }
                    return Err(format!(
                        "protocol data error with controller {addr}: invalid data layout for HandshakeAckMessage: required key \"endpoint\" missing, raw data: {text}"
                    ));
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
                let Some(e) = DataMessage::parse(text.as_str())
                    .ok()
                    .and_then(|m| Event::from_value(&m.value))
                else {
                    continue;
                };
                if e.name == want && e.args.first().and_then(Value::as_str) == Some(&reqid) {
                    return Some(e.args.into_iter().skip(1).collect());
                }
            }
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Some(args)) => Ok(args),
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
