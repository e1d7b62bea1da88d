//! `node_dispatch_request`: a command put to local nodes over their node
//! channels, all at once, answered when each node has its result.

use actix::prelude::*;
use futures_util::future::join_all;

use super::NodeSupervisor;
use crate::agent::channel::actor::{NodeCommand, NodeCommandError};
use crate::agent::channel::Join;
use crate::api::events::{NodeDispatchRequest, NodeDispatchResponse};
use crate::api::types::{ApiResult, ResultData, State};

impl Handler<NodeDispatchRequest> for NodeSupervisor {
    type Result = ResponseFuture<NodeDispatchResponse>;

    fn handle(&mut self, req: NodeDispatchRequest, _: &mut Context<Self>) -> Self::Result {
        let NodeDispatchRequest {
            reqid,
            action,
            nodes,
        } = req;
        let instance = self.cfg.name.clone();
        // Never beyond the readiness deadline, below the request timeout.
        let timeout = self
            .cfg
            .channel_command_timeout
            .min(self.cfg.request_timeout.mul_f64(0.9));
        // The slots come sorted by name; names not run here are ignored.
        let asks: Vec<_> = self
            .slots
            .values()
            .filter(|s| nodes.is_empty() || nodes.contains(&s.node.name))
            .map(|s| {
                let name = s.node.name.clone();
                // A node that has not joined cannot answer through its
                // cluster backend: a timeout says why.
                let not_joined = match &s.join {
                    Some(Join::NotJoined(why)) => Some(why.clone()),
                    _ => None,
                };
                let ask = match (&s.proc, s.node.state) {
                    (Some((_, addr)), State::Running) => Some(addr.send(NodeCommand {
                        action: action.clone(),
                        timeout,
                    })),
                    _ => None,
                };
                (name, ask, not_joined)
            })
            .collect();
        Box::pin(async move {
            let answers = join_all(asks.into_iter().map(|(name, ask, not_joined)| async move {
                let outcome = match ask {
                    None => Err(format!("cluster node {name} not in running state")),
                    Some(ask) => match ask.await {
                        Ok(Ok(a)) if a.success => Ok(a.data),
                        Ok(Ok(a)) if a.error.is_empty() => {
                            Err(format!("cluster node {name} failed without a reason"))
                        }
                        Ok(Ok(a)) => Err(a.error),
                        Ok(Err(NodeCommandError::NoChannel)) => {
                            Err(format!("cluster node {name} has no node channel"))
                        }
                        Ok(Err(NodeCommandError::TimedOut)) => Err(match not_joined {
                            Some(why) => format!("request timed out: {why}"),
                            None => "request timed out".to_owned(),
                        }),
                        Ok(Err(NodeCommandError::Closed)) | Err(_) => {
                            Err(format!("cluster node {name} closed its node channel"))
                        }
                    },
                };
                (name, outcome)
            }))
            .await;
            let mut result = ApiResult::ok(reqid.clone(), &instance);
            let per_node: Vec<ApiResult> = answers
                .into_iter()
                .map(|(name, outcome)| {
                    let mut r = match outcome {
                        Ok(data) => {
                            let mut r = ApiResult::ok(reqid.clone(), &instance);
                            r.data = Some(ResultData::Text(data));
                            r
                        }
                        Err(error) => {
                            result.success = false;
                            ApiResult::failure(reqid.clone(), &instance, error)
                        }
                    };
                    r.node = Some(name);
                    r
                })
                .collect();
            // A failure never goes without words: which nodes, and why.
            let failed: Vec<String> = per_node
                .iter()
                .filter(|r| !r.success)
                .map(|r| format!("{}: {}", r.node.as_deref().unwrap_or(""), r.error))
                .collect();
            if !failed.is_empty() {
                result.error = format!(
                    "{} of {} nodes failed: {}",
                    failed.len(),
                    per_node.len(),
                    failed.join("; ")
                );
            }
            result.data = Some(ResultData::Results(per_node));
            NodeDispatchResponse { reqid, result }
        })
    }
}
