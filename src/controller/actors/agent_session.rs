//! `AgentSession`: one per agent connection, over the protocol toolkit's
//! controller side. It reports the agent's check-in and its loss to the
//! [`Core`](super::core::Core), sends heartbeats, and carries sub-requests:
//! each [`AgentCall`] is answered exactly once, with the agent's response,
//! a timeout, or the lost connection.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::messages::{
    AgentCall, AgentConnId, AgentGone, AgentLink, AgentUp, CallError, CloseAgent,
};
use crate::api::events::{Notification, Stem};
use crate::api::types::Port;
use crate::protocol::cbor::{ErrorCode, Frame};
use crate::protocol::to_agent::{Connection, Incoming};

/// One connected agent.
pub struct AgentSession {
    conn: Connection,
    id: AgentConnId,
    /// The address observed on the connection.
    host: IpAddr,
    /// Set when the controller dialled the agent.
    listen_port: Option<Port>,
    core: Recipient<AgentUp>,
    gone: Recipient<AgentGone>,
    heartbeat: Duration,
    last_heard: Instant,
    name: Option<String>,
    /// Requests the agent answered `unknown-event` to: later ones fail at
    /// once.
    unknown: std::collections::HashSet<Stem>,
    /// Calls in flight by kind, each with the means to fail it early.
    aborts: Vec<(Stem, tokio::sync::oneshot::Sender<()>)>,
}

impl AgentSession {
    pub fn new(
        conn: Connection,
        id: AgentConnId,
        listen_port: Option<Port>,
        core: Recipient<AgentUp>,
        gone: Recipient<AgentGone>,
        heartbeat: Duration,
    ) -> Self {
        let host = conn
            .remote_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        AgentSession {
            conn,
            id,
            host,
            listen_port,
            core,
            gone,
            heartbeat,
            last_heard: Instant::now(),
            name: None,
            unknown: std::collections::HashSet::new(),
            aborts: Vec::new(),
        }
    }

    fn on_incoming(&mut self, event: Incoming, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match event {
            Incoming::Notification(Notification::AgentHello(h)) => {
                let addr = ctx.address();
                tracing::info!(
                    agent = %h.instance,
                    "agent {} checked in from {} (API version {}; it says its host is {})",
                    h.instance,
                    self.host,
                    h.api_version,
                    h.host
                );
                self.name = Some(h.instance.clone());
                self.core.do_send(AgentUp {
                    id: self.id,
                    name: h.instance,
                    api_version: h.api_version,
                    host: self.host,
                    peer: self.conn.remote_addr(),
                    listen_port: self.listen_port,
                    features: self.conn.agent().features.clone(),
                    link: AgentLink {
                        call: addr.clone().recipient(),
                        close: addr.recipient(),
                    },
                });
            }
            Incoming::Notification(n) => {
                let agent = self.name.as_deref().unwrap_or("?");
                tracing::info!(agent = %agent, "{n}");
            }
            Incoming::Error { code, message } => {
                tracing::warn!(
                    agent = self.name.as_deref().unwrap_or("?"),
                    "agent sent error {}: {message}",
                    code.as_str()
                );
                if code == ErrorCode::UnknownEvent {
                    self.unknown_event(&message);
                }
            }
            Incoming::Heartbeat => {}
        }
    }
}

impl AgentSession {
    /// The agent did not know an event it was sent: the extension requests
    /// it names (every one, when it names none) are marked missing, and
    /// their calls in flight fail as unsupported.
    fn unknown_event(&mut self, message: &str) {
        let missing = refused_extensions(message);
        self.unknown.extend(missing.iter().copied());
        let (fail, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.aborts)
            .into_iter()
            .partition(|(stem, _)| missing.contains(stem));
        self.aborts = keep;
        for (_, abort) in fail {
            let _ = abort.send(());
        }
    }
}

/// The requests beyond Zeek's agent API that the controller sends only to
/// agents announcing them.
const EXTENSIONS: &[Stem] = &[Stem::Restart, Stem::CheckConfiguration];

/// Which extension requests an agent's `unknown-event` error refers to:
/// those whose event it names (`... restart_request`), or all of them when
/// it names none (the error frame carries no reqid to tell).
fn refused_extensions(message: &str) -> Vec<Stem> {
    let named: Vec<Stem> = EXTENSIONS
        .iter()
        .copied()
        .filter(|s| message.contains(&format!("{}_request", s.as_str())))
        .collect();
    if named.is_empty() {
        EXTENSIONS.to_vec()
    } else {
        named
    }
}

impl Actor for AgentSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let rx = self.conn.take_events();
        ctx.add_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (e, rx))
        }));
        if !self.heartbeat.is_zero() {
            ctx.run_interval(self.heartbeat, |act, ctx| {
                if act.conn.send_frame(&Frame::Heartbeat).is_err() {
                    ctx.stop();
                }
            });
        }
        let theirs = self.conn.agent().heartbeat;
        if theirs > 0 {
            let limit = Duration::from_secs(theirs * 3);
            ctx.run_interval(Duration::from_secs(theirs), move |act, ctx| {
                if act.last_heard.elapsed() > limit {
                    tracing::warn!(
                        agent = act.name.as_deref().unwrap_or("?"),
                        "no frame for {limit:?}; dropping the agent"
                    );
                    ctx.stop();
                }
            });
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(name) = self.name.take() {
            tracing::info!(agent = %name, "agent {name} disconnected");
            self.gone.do_send(AgentGone { id: self.id, name });
        }
    }
}

impl StreamHandler<Incoming> for AgentSession {
    fn handle(&mut self, event: Incoming, ctx: &mut Context<Self>) {
        self.on_incoming(event, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<AgentCall> for AgentSession {
    type Result = ResponseFuture<Result<crate::api::events::Response, CallError>>;

    fn handle(&mut self, msg: AgentCall, _: &mut Context<Self>) -> Self::Result {
        let name = self.name.clone().unwrap_or_default();
        let stem = msg.ask.stem();
        if self.unknown.contains(&stem) {
            return Box::pin(async { Err(CallError::Unsupported) });
        }
        let (abort, aborted) = tokio::sync::oneshot::channel();
        self.aborts.retain(|(_, a)| !a.is_closed());
        if EXTENSIONS.contains(&stem) {
            self.aborts.push((stem, abort));
        }
        tracing::debug!(agent = %name, "tx {} {}", stem.request_name(), msg.ask.reqid());
        let rx = self.conn.start_request(msg.ask.into_request());
        let limit = msg.timeout;
        Box::pin(async move {
            let rx = rx.map_err(|_| CallError::Lost)?;
            let answer = async {
                tokio::select! {
                    r = rx => Some(r),
                    Ok(()) = aborted => None,
                }
            };
            match tokio::time::timeout(limit, answer).await {
                Ok(None) => Err(CallError::Unsupported),
                Ok(Some(Ok(r))) => {
                    tracing::debug!(agent = %name, "rx {} {}: {}", r.stem.response_name(), r.reqid, r.result.summary());
                    Ok(r)
                }
                Ok(Some(Err(_))) => Err(CallError::Lost),
                Err(_) => Err(CallError::TimedOut),
            }
        })
    }
}

impl Handler<CloseAgent> for AgentSession {
    type Result = ();

    fn handle(&mut self, _: CloseAgent, ctx: &mut Context<Self>) {
        // Replaced by a newer connection: say nothing of the name, which
        // now belongs to the newer one.
        self.name = None;
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::api::events::{NotifyAgentHello, Request, RestartRequest};
    use crate::api::types::Addr as ZeekAddr;
    use crate::protocol::cbor::{self, EventBody, Hello};
    use crate::protocol::to_agent::PeerOptions;
    use crate::testing::{eventually, Probe};

    async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
        let len = s.read_u32().await.expect("length");
        let mut buf = vec![0; len as usize];
        s.read_exact(&mut buf).await.expect("frame");
        buf
    }

    async fn write(s: &mut TcpStream, frame: &Frame) {
        let mut buf = BytesMut::new();
        cbor::put_frame(&mut buf, frame).expect("encode");
        s.write_all(&buf).await.expect("write");
    }

    /// An agent that announces `restart` and then answers it
    /// `unknown-event`, as an agent of another make might.
    async fn fake_agent(listener: TcpListener) {
        let (mut s, _) = listener.accept().await.expect("accept");
        let _controller_hello = read_frame(&mut s).await;
        write(
            &mut s,
            &Frame::Hello(Hello::new("agent-x", "agent", 0).with_features(&["restart"])),
        )
        .await;
        let hello = Notification::AgentHello(NotifyAgentHello {
            instance: "agent-x".into(),
            host: ZeekAddr([127, 0, 0, 1].into()),
            api_version: 1,
        });
        write(
            &mut s,
            &Frame::Event {
                topic: "zeek/management/agent/agent-x".into(),
                body: EventBody::Notification(hello),
            },
        )
        .await;
        let _restart = read_frame(&mut s).await;
        write(
            &mut s,
            &Frame::Error {
                code: ErrorCode::UnknownEvent,
                message: "unknown event Management::Agent::API::restart_request".into(),
            },
        )
        .await;
        // Stay connected.
        let _ = read_frame(&mut s).await;
    }

    fn restart() -> AgentCall {
        AgentCall {
            ask: Request::Restart(RestartRequest {
                reqid: "r".into(),
                nodes: vec![],
            })
            .into(),
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn an_unknown_event_error_is_read_for_the_requests_it_names() {
        assert_eq!(
            refused_extensions("unknown event Management::Agent::API::restart_request"),
            [Stem::Restart]
        );
        assert_eq!(
            refused_extensions("unknown event Management::Agent::API::check_configuration_request"),
            [Stem::CheckConfiguration]
        );
        assert_eq!(refused_extensions("unknown event"), EXTENSIONS);
    }

    #[actix_rt::test]
    async fn a_request_the_agent_does_not_know_fails_as_unsupported_now_and_later() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        actix_rt::spawn(fake_agent(listener));
        let conn = Connection::connect(addr, PeerOptions::default())
            .await
            .expect("connect");
        let (up, seen_up) = Probe::<AgentUp>::start();
        let (gone, _) = Probe::<AgentGone>::start();
        let session =
            AgentSession::new(conn, AgentConnId(1), None, up, gone, Duration::ZERO).start();
        eventually("seen_up.len() == 1", Duration::from_secs(5), || {
            seen_up.len() == 1
        })
        .await;
        assert_eq!(seen_up.all()[0].features, ["restart"]);
        let first = session.send(restart()).await.expect("answered");
        assert_eq!(first.err(), Some(CallError::Unsupported));
        let again = session.send(restart()).await.expect("answered");
        assert_eq!(again.err(), Some(CallError::Unsupported));
    }
}
