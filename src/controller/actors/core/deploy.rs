//! Deployments: the configured instances made those of the configuration
//! (standby, dial, welcome), the "all ready" gate, `set_configuration` to
//! every agent, and the answer once all answered or at the deadline.

use actix::prelude::*;

use super::{sorted, Core, Deployment};
use crate::api::events::{AgentStandbyRequest, AgentWelcomeRequest, Request};
use crate::api::types::{Configuration, Instance, Port, ReqId};
use crate::broker::records::BrokerResult;
use crate::broker::Value;
use crate::controller::actors::messages::{Ask, DialAgent};
use crate::controller::answers;
use crate::controller::plan;
use crate::controller::requests::Stem;
use crate::controller::stage;

impl Core {
    pub(super) fn deploy(&mut self, reqid: ReqId, internal: bool, ctx: &mut Context<Self>) {
        let source = if internal {
            self.deploying.as_ref().or(self.deployed.as_ref())
        } else {
            self.ready.as_ref()
        };
        let Some(config) = source.cloned() else {
            if !internal {
                let r = BrokerResult::failure(&reqid, "no configuration available to deploy");
                self.answer(Stem::Deploy, &reqid, &[r]);
            }
            return;
        };
        if let Some(p) = &self.pending {
            if !internal {
                let r = BrokerResult::failure(
                    &reqid,
                    format!("earlier deployment {} still pending", p.reqid),
                );
                self.answer(Stem::Deploy, &reqid, &[r]);
            }
            return;
        }
        let mut config = config;
        stage::resolve_hosts(&mut config, &self.known_hosts());
        self.reconcile(&config, ctx);
        if config.instances.is_empty() {
            let id = config.id.clone();
            self.deployed = Some(config);
            self.deploying = None;
            if !internal {
                self.persist_then(ctx, move |act, saved, _| {
                    let mut all = vec![BrokerResult::ok(&reqid).with_data(Value::String(id))];
                    if let Err(e) = saved {
                        all.insert(0, Self::unrecorded(&reqid, &e));
                    }
                    act.answer(Stem::Deploy, &reqid, &all);
                });
            }
            return;
        }
        let agents: Vec<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();
        let why = if internal { "again " } else { "" };
        tracing::info!(
            "deploying configuration {} {why}to {}: {}",
            config.id,
            crate::logging::count(agents.len(), "agent"),
            agents.join(", ")
        );
        let record = (!internal).then(|| config.clone());
        self.pending = Some(Deployment {
            reqid: reqid.clone(),
            started: std::time::Instant::now(),
            internal,
            config,
            waiting: None,
            results: Vec::new(),
            refused: false,
            deadline: None,
        });
        let handle = ctx.run_later(self.settings.request_timeout, move |act, ctx| {
            if act.pending.as_ref().is_some_and(|p| p.reqid == reqid) {
                if let Some(mut p) = act.pending.take() {
                    let silent: Vec<String> = match &p.waiting {
                        Some(w) => w
                            .iter()
                            .map(|a| format!("agent {a} did not answer the configuration"))
                            .collect(),
                        None => act.not_ready(),
                    };
                    tracing::warn!(
                        "deployment of configuration {} timed out: {}",
                        p.config.id,
                        silent.join("; ")
                    );
                    act.deployment_ended("timed_out", p.started);
                    if !p.internal {
                        // The operator is told it failed: a restarted
                        // controller does not finish it.
                        act.deploying = None;
                        let mut all = sorted(std::mem::take(&mut p.results));
                        all.extend(silent.iter().map(|s| BrokerResult::failure(&reqid, s)));
                        all.push(BrokerResult::failure(&reqid, "request timed out"));
                        act.persist_then(ctx, move |act, _, _| {
                            act.answer(Stem::Deploy, &reqid, &all)
                        });
                    }
                }
            }
        });
        if let Some(p) = &mut self.pending {
            p.deadline = Some(handle);
        }
        match record {
            // On disk before any agent has it: a controller stopped from
            // here on finishes this deployment when it starts again.
            Some(config) => {
                self.deploying = Some(config);
                self.persist_then(ctx, |act, _, ctx| act.send_when_all_ready(ctx));
            }
            None => self.send_when_all_ready(ctx),
        }
    }

    /// Makes the configured instances those of `config`
    /// ([`plan::reconcile`]): stands by the dropped, dials and welcomes the
    /// new.
    fn reconcile(&mut self, config: &Configuration, ctx: &mut Context<Self>) {
        let change = plan::reconcile(&self.configured, config);
        for name in &change.dropped {
            self.configured.remove(name);
            self.welcomed.remove(name);
            if let Some(h) = self.dialers.remove(name) {
                ctx.cancel_future(h);
            }
        }
        for name in &change.standby {
            if self.known.contains_key(name) {
                self.standby(name, ctx);
            }
        }
        for inst in change.added {
            let name = inst.name.clone();
            self.configured.insert(name.clone(), inst.clone());
            if let Some(port) = inst.listen_port {
                self.start_dialing(&name, &inst, port, ctx);
            }
            if self.known.contains_key(&name) {
                self.welcome(&name, ctx);
            }
        }
    }

    fn start_dialing(&mut self, name: &str, inst: &Instance, port: Port, ctx: &mut Context<Self>) {
        let host = if inst.host.0.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            inst.host.0.to_string()
        };
        let addr = crate::protocol::HostPort {
            host,
            port: port.number,
        }
        .to_string();
        let name = name.to_owned();
        let dial = DialAgent { name, addr, port };
        self.dial.do_send(dial.clone());
        let handle = ctx.run_interval(self.settings.dial_interval, move |act, _| {
            if !act.known.contains_key(&dial.name) {
                act.dial.do_send(dial.clone());
            }
        });
        self.dialers.insert(inst.name.clone(), handle);
    }

    pub(super) fn welcome(&mut self, agent: &str, ctx: &mut Context<Self>) {
        let request = Request::AgentWelcome(AgentWelcomeRequest {
            reqid: Self::sub_reqid(),
        });
        let name = agent.to_owned();
        self.call(agent, request, ctx, move |act, outcome, ctx| {
            let ok = matches!(&outcome, Ok(r) if r.result.success);
            if ok && act.configured.contains_key(&name) {
                act.welcomed.insert(name);
                act.send_when_all_ready(ctx);
            } else if act.known.contains_key(&name) {
                act.standby(&name, ctx);
            }
        });
    }

    /// The configured agents a deployment still waits for, each with why:
    /// not connected (with the address the controller dials, or none to
    /// dial), or connected and not yet welcomed.
    fn not_ready(&self) -> Vec<String> {
        self.configured
            .iter()
            .filter(|(name, _)| !self.welcomed.contains(*name))
            .map(|(name, inst)| match (self.known.contains_key(name), inst.listen_port) {
                (true, _) => format!("agent {name} is connected but was not welcomed"),
                (false, Some(p)) => format!(
                    "agent {name} is not connected (the controller dials {}:{} and got no hello)",
                    inst.host.0, p.number
                ),
                (false, None) => format!(
                    "agent {name} is not connected, and has no address to dial: it must dial the controller, or [instances] must give its address"
                ),
            })
            .collect()
    }

    fn standby(&mut self, agent: &str, ctx: &mut Context<Self>) {
        let request = Request::AgentStandby(AgentStandbyRequest {
            reqid: Self::sub_reqid(),
        });
        self.call(agent, request, ctx, |_, _, _| {});
    }

    /// The "all ready" step: once every configured agent is ready, the
    /// pending deployment goes out; with nothing pending, the deployed
    /// configuration goes out again (an agent came back, or the controller
    /// restarted).
    fn send_when_all_ready(&mut self, ctx: &mut Context<Self>) {
        let all_ready = !self.configured.is_empty()
            && self.configured.keys().all(|a| self.welcomed.contains(a));
        if !all_ready {
            return;
        }
        let Some(p) = &mut self.pending else {
            if self.deployed.is_some() {
                self.deploy(Self::sub_reqid(), true, ctx);
            }
            return;
        };
        if p.waiting.is_some() {
            return;
        }
        let agents: Vec<String> = self.configured.keys().cloned().collect();
        p.waiting = Some(agents.iter().cloned().collect());
        let reqid = p.reqid.clone();
        let config = std::sync::Arc::new(p.config.clone());
        for agent in agents {
            let subid = Self::sub_reqid();
            let request = Ask::SetConfiguration {
                reqid: subid.clone(),
                config: config.clone(),
            };
            let r = reqid.clone();
            self.call(&agent.clone(), request, ctx, move |act, outcome, ctx| {
                let refused = matches!(&outcome, Ok(resp) if resp.result.refused);
                if refused {
                    if let Some(p) = act.pending.as_mut().filter(|p| p.reqid == r) {
                        p.refused = true;
                    }
                }
                let results = match outcome {
                    Ok(resp) => answers::set_configuration(&subid.0, &resp.result),
                    Err(e) => vec![answers::agent_failed(&subid.0, &agent, &e.of_agent(&agent))],
                };
                act.deployed_to(&r, &agent, results, ctx);
            });
        }
    }

    fn deployed_to(
        &mut self,
        reqid: &ReqId,
        agent: &str,
        mut results: Vec<BrokerResult>,
        ctx: &mut Context<Self>,
    ) {
        let Some(p) = self.pending.as_mut().filter(|p| p.reqid == *reqid) else {
            tracing::info!("late answer of agent {agent} to deployment {reqid} dropped");
            return;
        };
        p.results.append(&mut results);
        let Some(waiting) = p.waiting.as_mut() else {
            return;
        };
        waiting.remove(agent);
        if !waiting.is_empty() {
            return;
        }
        let Some(mut p) = self.pending.take() else {
            return;
        };
        if let Some(h) = p.deadline.take() {
            ctx.cancel_future(h);
        }
        // The configuration went out encoded once per agent: hand the
        // memory back once the buffers are gone.
        ctx.run_later(std::time::Duration::from_millis(100), |_, _| {
            crate::memory::release_free_memory()
        });
        let id = p.config.id.clone();
        self.deploying = None;
        let result = if p.refused {
            "refused"
        } else if p.results.iter().all(|r| r.success) {
            "success"
        } else {
            "failure"
        };
        self.deployment_ended(result, p.started);
        if p.refused {
            // Nothing changed where it was refused: what runs there is
            // still the deployed configuration.
            tracing::warn!(
                "configuration {id} refused, nothing changed; the deployed configuration stays: {}",
                answers::sentence(&p.results, "checked")
            );
        } else {
            let said = answers::sentence(&p.results, "running");
            let agents = crate::logging::count(p.config.instances.len(), "agent");
            if p.results.iter().all(|r| r.success) {
                tracing::info!("deployed configuration {id} to {agents}: {said}");
            } else {
                tracing::warn!("deployed configuration {id} to {agents}: {said}");
            }
            self.deployed = Some(p.config);
        }
        let reqid = reqid.to_owned();
        let mut all = self.claim_errors(&reqid);
        all.append(&mut sorted(p.results));
        all.push(BrokerResult::ok(&reqid).with_data(Value::String(id)));
        let internal = p.internal;
        self.persist_then(ctx, move |act, saved, _| {
            if let Err(e) = saved {
                let at = all.len() - 1;
                all.insert(at, Self::unrecorded(&reqid, &e));
            }
            if !internal {
                act.answer(Stem::Deploy, &reqid, &all);
            }
        });
    }

    /// The failure of a deployment that runs but could not be recorded.
    fn unrecorded(reqid: &ReqId, why: &str) -> BrokerResult {
        BrokerResult::failure(
            reqid,
            format!("deployed, but not recorded ({why}): a restarted controller would not know it"),
        )
    }
}
