//! One live agent per name. A second connection claiming a name that is
//! in use is either the same agent coming back (its old connection dead,
//! not yet noticed) or another agent given the same name by mistake. The
//! connection that holds the name is asked `get_nodes`: if it answers, the
//! newcomer is refused and the refusal is reported; if not, the newcomer
//! replaces it.

use std::net::SocketAddr;

use crate::api::types::ReqId;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{AgentCall, AgentUp, CloseAgent, Core};
use crate::api::events::{GetNodesRequest, Request};
use crate::broker::records::BrokerResult;

/// How long a refusal stays in the answers after the newcomer last tried.
const REPORTED_FOR: Duration = Duration::from_secs(30);

/// The refusal of a second agent claiming `name`, naming both.
pub(super) fn refusal(
    name: &str,
    holder: Option<SocketAddr>,
    newcomer: Option<SocketAddr>,
) -> String {
    let at = |a: Option<SocketAddr>| a.map_or_else(|| "this process".to_owned(), |a| a.to_string());
    format!(
        "two running agents are named {name}: the one at {} is connected and answers, so the one at {} was refused; give each agent its own name (--name)",
        at(holder),
        at(newcomer)
    )
}

impl Core {
    /// `msg` claims a name held by another connection: ask the holder.
    pub(super) fn contest(&mut self, msg: AgentUp, ctx: &mut Context<Self>) {
        let Some(holder) = self.known.get(&msg.name) else {
            return self.admit(msg, ctx);
        };
        let (holder_id, holder_peer) = (holder.id, holder.peer);
        let name = msg.name.clone();
        // A newer claim replaces an older one still waiting.
        if let Some(older) = self.contending.insert(name.clone(), msg) {
            older.link.close.do_send(CloseAgent);
        }
        let probe = holder.link.call.send(AgentCall {
            ask: Request::GetNodes(GetNodesRequest {
                reqid: Self::sub_reqid(),
            })
            .into(),
            timeout: self.settings.request_timeout.min(Duration::from_secs(3)),
        });
        ctx.spawn(probe.into_actor(self).map(move |res, act, ctx| {
            // Settled meanwhile (the holder went, or a newer claim came).
            let Some(msg) = act.contending.remove(&name) else {
                return;
            };
            let alive = matches!(res, Ok(Ok(_)));
            let holds = act.known.get(&name).is_some_and(|k| k.id == holder_id);
            if !(alive && holds) {
                tracing::info!(agent = %msg.name, "agent {} reconnected", msg.name);
                return act.admit(msg, ctx);
            }
            let why = refusal(&msg.name, holder_peer, msg.peer);
            tracing::warn!(agent = %msg.name, "{why}");
            act.claims.insert(msg.name.clone(), (why, Instant::now()));
            msg.link.close.do_send(CloseAgent);
        }));
    }

    /// The refusals still worth reporting, as failures of `reqid`.
    pub(super) fn claim_errors(&mut self, reqid: &ReqId) -> Vec<BrokerResult> {
        self.claims.retain(|_, (_, at)| at.elapsed() < REPORTED_FOR);
        self.claims
            .values()
            .map(|(why, _)| BrokerResult::failure(reqid, why))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_both_agents_and_the_fix() {
        let a = Some(SocketAddr::from(([198, 18, 0, 2], 40000)));
        let b = Some(SocketAddr::from(([198, 18, 0, 3], 40001)));
        assert_eq!(
            refusal("agent-a", a, b),
            "two running agents are named agent-a: the one at 198.18.0.2:40000 is connected and answers, so the one at 198.18.0.3:40001 was refused; give each agent its own name (--name)"
        );
    }
}
