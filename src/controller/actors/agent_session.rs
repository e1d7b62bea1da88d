//! `AgentSession`: one per agent connection, over the protocol toolkit's
//! controller side. It reports the agent's check-in and its loss to the
//! [`Core`](super::core::Core), sends heartbeats, and carries sub-requests:
//! each [`AgentCall`] is answered exactly once, with the agent's response,
//! a timeout, or the lost connection.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::messages::{AgentCall, AgentGone, AgentLink, AgentUp, CallError, CloseAgent};
use crate::api::events::Notification;
use crate::api::types::Port;
use crate::protocol::cbor::Frame;
use crate::protocol::connection::{Connection, Incoming};

/// One connected agent.
pub struct AgentSession {
    conn: Connection,
    id: u64,
    /// The address observed on the connection.
    host: IpAddr,
    /// Set when the controller dialled the agent.
    listen_port: Option<Port>,
    core: Recipient<AgentUp>,
    gone: Recipient<AgentGone>,
    heartbeat: Duration,
    last_heard: Instant,
    name: Option<String>,
}

impl AgentSession {
    pub fn new(
        conn: Connection,
        id: u64,
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
        }
    }

    fn on_incoming(&mut self, event: Incoming, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match event {
            Incoming::Notification(Notification::AgentHello(h)) => {
                let addr = ctx.address();
                tracing::info!(
                    agent = %h.instance,
                    host = %self.host,
                    "rx notify_agent_hello (announced host {}, API version {})",
                    h.host,
                    h.api_version
                );
                self.name = Some(h.instance.clone());
                self.core.do_send(AgentUp {
                    id: self.id,
                    name: h.instance,
                    api_version: h.api_version,
                    host: self.host,
                    listen_port: self.listen_port,
                    features: self.conn.agent().features.clone(),
                    link: AgentLink {
                        call: addr.clone().recipient(),
                        close: addr.recipient(),
                    },
                });
            }
            Incoming::Notification(n) => {
                tracing::info!(agent = ?self.name, "rx {n:?}");
            }
            Incoming::Error { code, message } => {
                tracing::warn!(agent = ?self.name, "agent sent error {}: {message}", code.as_str());
            }
            Incoming::Heartbeat => {}
        }
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
                    tracing::warn!(agent = ?act.name, "no frame for {limit:?}; dropping the agent");
                    ctx.stop();
                }
            });
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(name) = self.name.take() {
            tracing::info!(agent = %name, "agent connection closed");
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
        tracing::info!(agent = %name, "tx {} {}", msg.request.stem().request_name(), msg.request.reqid());
        let rx = self.conn.start_request(msg.request);
        let limit = msg.timeout;
        Box::pin(async move {
            let rx = rx.map_err(|_| CallError::Lost)?;
            match tokio::time::timeout(limit, rx).await {
                Ok(Ok(r)) => {
                    tracing::info!(agent = %name, "rx {} {}: {}", r.stem.response_name(), r.reqid, r.result.summary());
                    Ok(r)
                }
                Ok(Err(_)) => Err(CallError::Lost),
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
