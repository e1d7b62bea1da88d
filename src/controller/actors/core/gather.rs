//! Client requests answered by many agents (`get_nodes`, `restart`,
//! `get_id_value`, `check_configuration`): one sub-request per agent, the
//! answers gathered by the client's reqid until the last one or the
//! deadline.

use actix::prelude::*;

use super::{sorted, CallError, Core, Gather};
use crate::api::events::{CheckConfigurationRequest, GetNodesRequest, Request, Response};
use crate::api::types::{Configuration, ReqId};
use crate::broker::records::BrokerResult;
use crate::controller::answers;
use crate::controller::plan::{self, NodeAsk};
use crate::controller::requests::Stem;
use crate::controller::stage;

/// Reads one agent's outcome into the results it contributes.
type Reader = Box<dyn FnOnce(Result<Response, CallError>) -> Vec<BrokerResult>>;

impl Core {
    pub(super) fn get_nodes(&mut self, reqid: ReqId, ctx: &mut Context<Self>) {
        if self.known.is_empty() {
            let r = BrokerResult::failure(&reqid, "no instances connected");
            return self.answer(Stem::GetNodes, &reqid, &[r]);
        }
        let asks = self
            .known
            .keys()
            .map(|agent| {
                let subid = Self::sub_reqid();
                let request = Request::GetNodes(GetNodesRequest {
                    reqid: subid.clone(),
                });
                let read = Self::reader(subid, agent, answers::get_nodes);
                (agent.clone(), request, read)
            })
            .collect();
        let leading = self.claim_errors(&reqid);
        self.gather(reqid, (Stem::GetNodes, None), leading, asks, ctx);
    }

    /// `check_configuration` (ours): the configuration checked as staging
    /// checks it, made ready as a deployment would make it, and sent to
    /// every agent it names to check its nodes; nothing is kept.
    pub(super) fn check(&mut self, reqid: ReqId, config: Configuration, ctx: &mut Context<Self>) {
        const STEM: Stem = Stem::CheckConfiguration;
        if let Err(refusals) = self.stageable(&reqid, &config) {
            return self.answer(STEM, &reqid, &refusals);
        }
        let config = stage::ready(&config, &self.known_hosts(), &self.settings.policy);
        let reachable: Vec<(&str, bool)> = self
            .known
            .iter()
            .map(|(n, k)| (n.as_str(), k.features.iter().any(|f| f == STEM.name())))
            .collect();
        let (targets, mut leading) = check_targets(&reqid, &config, &reachable);
        if targets.is_empty() && leading.is_empty() {
            leading.push(BrokerResult::failure(
                &reqid,
                "the configuration names no instance to check",
            ));
        }
        let asks = targets
            .into_iter()
            .map(|agent| {
                let subid = Self::sub_reqid();
                let request = Request::CheckConfiguration(CheckConfigurationRequest {
                    reqid: subid.clone(),
                    config: config.clone(),
                });
                let read = Self::reader(subid, &agent, answers::set_configuration);
                (agent, request, read)
            })
            .collect();
        self.gather(reqid, (STEM, None), leading, asks, ctx);
    }

    /// Reads an agent's outcome with `read` (its response for the sub-request
    /// `subid`), or into the failure that says why there is none.
    fn reader(
        subid: ReqId,
        agent: &str,
        read: fn(&str, &crate::api::types::ApiResult) -> Vec<BrokerResult>,
    ) -> Reader {
        let name = agent.to_owned();
        Box::new(move |outcome| match outcome {
            Ok(resp) => read(&subid.0, &resp.result),
            Err(e) => vec![answers::agent_failed(&subid.0, &name, &e.of_agent(&name))],
        })
    }

    /// `restart` and `get_id_value`: a request about nodes, sent to every
    /// ready configured agent that announces its feature (`make` builds it
    /// from a sub-reqid and the valid names, empty for all), as
    /// [`plan::node_request`] decides.
    pub(super) fn ask_nodes(
        &mut self,
        reqid: ReqId,
        ask: NodeAsk,
        nodes: &[String],
        make: &dyn Fn(ReqId, Vec<String>) -> Request,
        ctx: &mut Context<Self>,
    ) {
        let agents: Vec<plan::Reachable> = self
            .configured
            .keys()
            .map(|a| plan::Reachable {
                name: a.clone(),
                ready: self.welcomed.contains(a) && self.known.contains_key(a),
                able: self
                    .known
                    .get(a)
                    .is_some_and(|k| k.features.iter().any(|f| f == ask.feature())),
            })
            .collect();
        let plan = match plan::node_request(
            ask,
            &reqid,
            nodes,
            self.deployed.as_ref(),
            !self.known.is_empty(),
            &agents,
        ) {
            Ok(plan) => plan,
            Err(answer) => return self.answer(ask.stem(), &reqid, &answer),
        };
        let asks = plan
            .asks
            .into_iter()
            .map(|(agent, concerned)| {
                let subid = Self::sub_reqid();
                let request = make(subid.clone(), plan.valid.clone());
                let (r, name) = (reqid.clone(), agent.clone());
                let read: Reader = Box::new(move |outcome| match outcome {
                    Ok(resp) => answers::per_node(&subid.0, &resp.result),
                    // It announced the feature, then did not know the event.
                    Err(CallError::Unsupported) => ask.unsupported(&r, &name, &concerned),
                    Err(e) => vec![answers::agent_failed(&subid.0, &name, &e.of_agent(&name))],
                });
                (agent, request, read)
            })
            .collect();
        self.gather(reqid, (ask.stem(), ask.act()), plan.leading, asks, ctx);
    }

    /// Sends each agent its request and answers the client once every
    /// agent's outcome is read into results (after `leading`), or at the
    /// deadline. With nobody to ask, it answers at once. `(stem, act)`:
    /// the request's stem, and the act its completion is logged as.
    fn gather(
        &mut self,
        reqid: ReqId,
        (stem, act): (Stem, Option<&'static str>),
        leading: Vec<BrokerResult>,
        asks: Vec<(String, Request, Reader)>,
        ctx: &mut Context<Self>,
    ) {
        if asks.is_empty() {
            return self.answer(stem, &reqid, &leading);
        }
        self.gathers.insert(
            reqid.clone(),
            Gather {
                stem,
                act,
                waiting: asks.iter().map(|(a, _, _)| a.clone()).collect(),
                leading,
                results: Vec::new(),
                deadline: None,
            },
        );
        self.deadline(&reqid, ctx);
        for (agent, request, read) in asks {
            let r = reqid.clone();
            self.call(&agent.clone(), request, ctx, move |act, outcome, ctx| {
                act.gathered(&r, &agent, read(outcome), ctx);
            });
        }
    }

    /// Answers the gather `reqid` with what it has at the deadline. The
    /// timer is cancelled when the gather completes first: the core's
    /// context polls every pending timer at each wake, so none may outlive
    /// its request.
    fn deadline(&mut self, reqid: &ReqId, ctx: &mut Context<Self>) {
        let owned = reqid.to_owned();
        let handle = ctx.run_later(self.settings.request_timeout, move |act, _| {
            let reqid = owned;
            if let Some(mut g) = act.gathers.remove(&reqid) {
                let waiting: Vec<&str> = g.waiting.iter().map(String::as_str).collect();
                tracing::warn!("{} timed out waiting for {}", g.stem, waiting.join(", "));
                let mut all = std::mem::take(&mut g.leading);
                all.append(&mut sorted(g.results));
                all.push(BrokerResult::failure(&reqid, "request timed out"));
                act.answer(g.stem, &reqid, &all);
            }
        });
        if let Some(g) = self.gathers.get_mut(reqid) {
            g.deadline = Some(handle);
        }
    }

    fn gathered(
        &mut self,
        reqid: &ReqId,
        agent: &str,
        mut results: Vec<BrokerResult>,
        ctx: &mut Context<Self>,
    ) {
        let Some(g) = self.gathers.get_mut(reqid) else {
            tracing::info!("late answer of agent {agent} to {reqid} dropped");
            return;
        };
        g.waiting.remove(agent);
        g.results.append(&mut results);
        if g.waiting.is_empty() {
            if let Some(mut g) = self.gathers.remove(reqid) {
                if let Some(h) = g.deadline.take() {
                    ctx.cancel_future(h);
                }
                let mut all = std::mem::take(&mut g.leading);
                all.append(&mut sorted(g.results));
                if let Some(act) = g.act {
                    let said = answers::sentence(&all, act);
                    if all.iter().all(|r| r.success) {
                        tracing::info!("{}: {said}", g.stem);
                    } else {
                        tracing::warn!("{}: {said}", g.stem);
                    }
                }
                self.answer(g.stem, reqid, &all);
            }
        }
    }
}

/// Whom a check goes to: each instance of `config` that is connected and
/// announces the check (`reachable`: name, whether it does), and for every
/// other instance the failure that says why it is not checked.
fn check_targets(
    reqid: &ReqId,
    config: &Configuration,
    reachable: &[(&str, bool)],
) -> (Vec<String>, Vec<BrokerResult>) {
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for i in &config.instances {
        let why = match reachable.iter().find(|(n, _)| *n == i.name) {
            Some((_, true)) => {
                targets.push(i.name.clone());
                continue;
            }
            Some((_, false)) => format!(
                "agent {} cannot check a configuration (it does not announce check_configuration)",
                i.name
            ),
            None => match i.listen_port {
                Some(p) => format!(
                    "agent {} is not connected: the controller dials it ({}:{}) once a configuration naming it is deployed",
                    i.name, i.host.0, p.number
                ),
                None => format!("agent {} is not connected", i.name),
            },
        };
        failures.push(BrokerResult::failure(reqid, why).from_instance(&i.name));
    }
    (targets, failures)
}

#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::api::types::{Addr, Instance};

    #[test]
    fn a_check_goes_to_every_connected_agent_that_can_and_says_why_not_for_the_rest() {
        let instance = |name: &str| Instance {
            name: name.into(),
            host: Addr([127, 0, 0, 1].into()),
            listen_port: None,
        };
        let config = Configuration {
            instances: vec![
                instance("agent-a"),
                instance("agent-b"),
                instance("agent-c"),
            ],
            ..Default::default()
        };
        let (targets, failures) = check_targets(
            &ReqId::from("r"),
            &config,
            &[("agent-a", true), ("agent-b", false), ("agent-x", true)],
        );
        assert_eq!(targets, ["agent-a"]);
        let errors: Vec<(Option<&str>, Option<&str>)> = failures
            .iter()
            .map(|f| (f.instance.as_deref(), f.error.as_deref()))
            .collect();
        assert_eq!(
            errors,
            [
                (
                    Some("agent-b"),
                    Some("agent agent-b cannot check a configuration (it does not announce check_configuration)")
                ),
                (Some("agent-c"), Some("agent agent-c is not connected")),
            ]
        );
    }
}
