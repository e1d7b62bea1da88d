//! `LocalAgent`: the controller's view of an agent embedded in its own
//! process (`--local-agent`). It attaches to the agent as an in-process
//! peer (no socket: requests go through the agent's request tracker,
//! responses and notifications come back as messages), checks it in with
//! the [`Core`](super::core::Core) like an agent over TCP, and answers each
//! [`AgentCall`] exactly once: with the agent's response, or a timeout.

use std::collections::HashMap;
use std::net::IpAddr;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::messages::{
    AgentCall, AgentConnId, AgentGone, AgentLink, AgentUp, CallError, CloseAgent,
};
use crate::agent::actors::messages::Outbound;
use crate::agent::{AgentHandle, LocalPeer, FEATURES};
use crate::api::events::{Response, API_VERSION};

pub struct LocalAgent {
    agent: AgentHandle,
    peer: Option<LocalPeer>,
    id: AgentConnId,
    core: Recipient<AgentUp>,
    gone: Recipient<AgentGone>,
    /// Calls waiting for their responses, by reqid.
    waiting: HashMap<String, oneshot::Sender<Response>>,
}

impl LocalAgent {
    pub fn new(
        agent: AgentHandle,
        id: AgentConnId,
        core: Recipient<AgentUp>,
        gone: Recipient<AgentGone>,
    ) -> Self {
        LocalAgent {
            agent,
            peer: None,
            id,
            core,
            gone,
            waiting: HashMap::new(),
        }
    }
}

impl Actor for LocalAgent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.peer = Some(self.agent.attach(me.clone().recipient()));
        let name = self.agent.name().to_owned();
        tracing::info!(agent = %name, "local agent checked in");
        self.core.do_send(AgentUp {
            id: self.id,
            name,
            api_version: API_VERSION,
            host: IpAddr::from([127, 0, 0, 1]),
            peer: None,
            listen_port: None,
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            link: AgentLink {
                call: me.clone().recipient(),
                close: me.recipient(),
            },
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(peer) = self.peer.take() {
            peer.detach();
        }
        self.gone.do_send(AgentGone {
            id: self.id,
            name: self.agent.name().to_owned(),
        });
    }
}

impl Handler<AgentCall> for LocalAgent {
    type Result = ResponseFuture<Result<Response, CallError>>;

    fn handle(&mut self, msg: AgentCall, _: &mut Context<Self>) -> Self::Result {
        let Some(peer) = &self.peer else {
            return Box::pin(async { Err(CallError::Lost) });
        };
        self.waiting.retain(|_, tx| !tx.is_closed());
        let (tx, rx) = oneshot::channel();
        let reqid = msg.ask.reqid().0.clone();
        tracing::debug!(agent = %self.agent.name(), "tx {} {reqid}", msg.ask.stem().request_name());
        self.waiting.insert(reqid, tx);
        peer.request(msg.ask.into_request());
        let limit = msg.timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, rx).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(_)) => Err(CallError::Lost),
                Err(_) => Err(CallError::TimedOut),
            }
        })
    }
}

impl Handler<Outbound> for LocalAgent {
    type Result = ();

    fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
        match msg {
            Outbound::Response(r) => {
                tracing::debug!(agent = %self.agent.name(), "rx {} {}: {}", r.stem.response_name(), r.reqid, r.result.summary());
                if let Some(tx) = self.waiting.remove(&r.reqid.0) {
                    let _ = tx.send(r);
                }
            }
            Outbound::Notification(n) => {
                // The agent's own log says it already.
                tracing::debug!(agent = %self.agent.name(), "{n}");
            }
        }
    }
}

impl Handler<CloseAgent> for LocalAgent {
    type Result = ();

    fn handle(&mut self, _: CloseAgent, ctx: &mut Context<Self>) {
        // An agent of the same name connected over TCP and took its place.
        tracing::warn!(agent = %self.agent.name(), "another agent of this name took the local agent's place");
        ctx.stop();
    }
}
