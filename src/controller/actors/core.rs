//! `Core`: the owner of the controller's state. It holds the staged, ready
//! and deployed configurations, the known, configured and ready agents,
//! the pending deployment and every client request waiting on agents; it
//! answers each client request exactly once, by its deadline at the
//! latest. Agents are reached through their [`AgentLink`]s; every
//! sub-request is an [`AgentCall`], answered exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use actix::prelude::*;

use super::client_session::ClientRequest;
use super::hub::Hub;
use super::messages::{AgentCall, AgentGone, AgentLink, AgentUp, CallError, CloseAgent, Publish};
use crate::api::events::{
    AgentStandbyRequest, AgentWelcomeRequest, GetNodesRequest, Request, Response,
    SetConfigurationRequest,
};
use crate::api::types::{Configuration, Instance, Port, ReqId};
use crate::broker::records::{self, BrokerResult};
use crate::broker::Value;
use crate::controller::answers;
use crate::controller::requests::{response, Call};
use crate::controller::stage::{self, PortPolicy};
use crate::controller::store::{Save, Snapshot, Store};

/// What the core needs to know of its settings.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub request_timeout: Duration,
    pub policy: PortPolicy,
    /// Between dials of an agent that listens.
    pub dial_interval: Duration,
}

/// A connected agent that checked in.
struct Known {
    id: u64,
    host: IpAddr,
    listen_port: Option<Port>,
    features: Vec<String>,
    link: AgentLink,
}

/// The one deployment in progress.
struct Deployment {
    reqid: String,
    /// Internal deployments (after a restart, an agent's return) answer
    /// nobody.
    internal: bool,
    config: Configuration,
    /// Agents asked and not yet answered; `None` until every configured
    /// agent is ready and the configuration has gone out.
    waiting: Option<BTreeSet<String>>,
    results: Vec<BrokerResult>,
}

/// A client request gathering one answer per agent.
struct Gather {
    stem: &'static str,
    waiting: BTreeSet<String>,
    /// Results of the controller's own, before the agents'.
    leading: Vec<BrokerResult>,
    results: Vec<BrokerResult>,
}

/// Starts a dial of an agent that listens; the core hands it the
/// instance's name, address and port.
pub type Dial = Box<dyn Fn(String, String, Port) + Send>;

/// The controller's state.
pub struct Core {
    settings: CoreSettings,
    hub: Addr<Hub>,
    store: Addr<Store>,
    dial: Dial,
    staged: Option<Configuration>,
    ready: Option<Configuration>,
    deployed: Option<Configuration>,
    known: BTreeMap<String, Known>,
    configured: BTreeMap<String, Instance>,
    welcomed: BTreeSet<String>,
    dialers: HashMap<String, SpawnHandle>,
    pending: Option<Deployment>,
    gathers: HashMap<String, Gather>,
}

impl Core {
    pub fn new(
        settings: CoreSettings,
        hub: Addr<Hub>,
        store: Addr<Store>,
        snapshot: Snapshot,
        dial: Dial,
    ) -> Self {
        Core {
            settings,
            hub,
            store,
            dial,
            staged: snapshot.staged,
            ready: snapshot.ready,
            deployed: snapshot.deployed,
            known: BTreeMap::new(),
            configured: BTreeMap::new(),
            welcomed: BTreeSet::new(),
            dialers: HashMap::new(),
            pending: None,
            gathers: HashMap::new(),
        }
    }

    fn publish(&self, stem: &str, reqid: &str, arg: Value) {
        tracing::info!("tx {stem}_response {reqid}");
        self.hub.do_send(Publish {
            message: response(stem, reqid, arg),
            from: None,
        });
    }

    fn answer(&self, stem: &str, reqid: &str, results: &[BrokerResult]) {
        self.publish(stem, reqid, records::results(results));
    }

    fn known_hosts(&self) -> BTreeMap<String, IpAddr> {
        self.known
            .iter()
            .map(|(n, k)| (n.clone(), k.host))
            .collect()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: 1,
            staged: self.staged.clone(),
            ready: self.ready.clone(),
            deployed: self.deployed.clone(),
        }
    }

    /// Persists the state, then runs `then` (the answer), the core taking
    /// no other message meanwhile.
    fn persist_then(&mut self, ctx: &mut Context<Self>, then: impl FnOnce(&mut Self) + 'static) {
        let save = self.store.send(Save(self.snapshot()));
        ctx.wait(save.into_actor(self).map(move |res, act, _| {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("cannot persist the configurations: {e}"),
                Err(e) => tracing::error!("cannot persist the configurations: {e}"),
            }
            then(act);
        }));
    }

    fn sub_reqid() -> ReqId {
        ReqId(uuid::Uuid::new_v4().to_string())
    }

    /// Sends `request` to `agent`; `done` gets the outcome exactly once.
    fn call(
        &mut self,
        agent: &str,
        request: Request,
        ctx: &mut Context<Self>,
        done: impl FnOnce(&mut Self, Result<Response, CallError>, &mut Context<Self>) + 'static,
    ) {
        let Some(k) = self.known.get(agent) else {
            return done(self, Err(CallError::Lost), ctx);
        };
        let fut = k.link.call.send(AgentCall {
            request,
            timeout: self.settings.request_timeout,
        });
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let outcome = res.unwrap_or(Err(CallError::Lost));
            done(act, outcome, ctx);
        }));
    }

    fn call_error(agent: &str, e: CallError) -> String {
        match e {
            CallError::Lost => format!("lost connection to agent {agent}"),
            CallError::TimedOut => "request timed out".to_owned(),
        }
    }

    // ---- client requests ----

    fn on_request(&mut self, reqid: String, call: Call, ctx: &mut Context<Self>) {
        match call {
            Call::GetInstances => {
                let list: Vec<Value> = self
                    .known
                    .iter()
                    .map(|(name, k)| {
                        records::instance(&Instance {
                            name: name.clone(),
                            host: crate::api::types::Addr(k.host),
                            listen_port: k.listen_port,
                        })
                    })
                    .collect();
                let r = BrokerResult::ok(&reqid).with_data(Value::Vector(list));
                self.publish("get_instances", &reqid, r.to_value());
            }
            Call::Stage(config) => self.stage(reqid, config, ctx),
            Call::GetConfiguration { deployed } => {
                let (c, what) = if deployed {
                    (&self.deployed, "deployed")
                } else {
                    (&self.staged, "staged")
                };
                let r = match c {
                    Some(c) => BrokerResult::ok(&reqid).with_data(records::configuration(c)),
                    None => {
                        BrokerResult::failure(&reqid, format!("no {what} configuration available"))
                    }
                };
                self.publish("get_configuration", &reqid, r.to_value());
            }
            Call::Deploy => self.deploy(reqid, false, ctx),
            Call::GetNodes => self.get_nodes(reqid, ctx),
            Call::Restart { nodes } => {
                self.unsupported(reqid, "restart", &nodes, "no instances connected", ctx)
            }
            Call::GetIdValue { nodes, .. } => {
                self.unsupported(reqid, "get_id_value", &nodes, "no cluster deployed", ctx)
            }
            Call::TestTimeout { with_state } => {
                if with_state {
                    ctx.run_later(self.settings.request_timeout, move |act, _| {
                        let r = BrokerResult::failure(&reqid, "request timed out");
                        act.publish("test_timeout", &reqid, r.to_value());
                    });
                } else {
                    tracing::info!("test_timeout_request {reqid} without state: no answer");
                }
            }
        }
    }

    fn stage(&mut self, reqid: String, config: Configuration, ctx: &mut Context<Self>) {
        let problems = stage::problems(&config, &self.settings.policy);
        if !problems.is_empty() {
            let results: Vec<BrokerResult> = problems
                .into_iter()
                .map(|p| BrokerResult::failure(&reqid, p))
                .collect();
            return self.answer("stage_configuration", &reqid, &results);
        }
        let ready = stage::ready(&config, &self.known_hosts(), &self.settings.policy);
        let id = config.id.clone();
        self.staged = Some(config);
        self.ready = Some(ready);
        self.persist_then(ctx, move |act| {
            let r = BrokerResult::ok(&reqid).with_data(Value::String(id));
            act.answer("stage_configuration", &reqid, &[r]);
        });
    }

    fn get_nodes(&mut self, reqid: String, ctx: &mut Context<Self>) {
        if self.known.is_empty() {
            let r = BrokerResult::failure(&reqid, "no instances connected");
            return self.answer("get_nodes", &reqid, &[r]);
        }
        let agents: Vec<String> = self.known.keys().cloned().collect();
        self.gathers.insert(
            reqid.clone(),
            Gather {
                stem: "get_nodes",
                waiting: agents.iter().cloned().collect(),
                leading: Vec::new(),
                results: Vec::new(),
            },
        );
        self.deadline(&reqid, ctx);
        for agent in agents {
            let subid = Self::sub_reqid();
            let request = Request::GetNodes(GetNodesRequest {
                reqid: subid.clone(),
            });
            let r = reqid.clone();
            self.call(&agent.clone(), request, ctx, move |act, outcome, _| {
                let result = match outcome {
                    Ok(resp) => answers::get_nodes(&subid.0, &resp.result),
                    Err(e) => answers::agent_failed(&subid.0, &agent, &Self::call_error(&agent, e)),
                };
                act.gathered(&r, &agent, vec![result]);
            });
        }
    }

    /// `restart` and `get_id_value`, which need agent features this
    /// controller's agents do not announce yet: every node concerned gets
    /// "not supported".
    fn unsupported(
        &mut self,
        reqid: String,
        stem: &'static str,
        nodes: &[String],
        nothing: &str,
        _ctx: &mut Context<Self>,
    ) {
        let empty = if stem == "restart" {
            self.known.is_empty()
        } else {
            self.configured.is_empty() && self.deployed.is_none()
        };
        if empty {
            return self.answer(stem, &reqid, &[BrokerResult::failure(&reqid, nothing)]);
        }
        let Some(deployed) = &self.deployed else {
            let r = if stem == "restart" {
                vec![BrokerResult::failure(
                    &reqid,
                    "no active cluster deployment",
                )]
            } else {
                nodes
                    .iter()
                    .map(|n| BrokerResult::failure(&reqid, "unknown cluster node").for_node(n))
                    .collect()
            };
            return self.answer(stem, &reqid, &r);
        };
        let mut out = Vec::new();
        let names: BTreeSet<&str> = deployed.nodes.iter().map(|n| n.name.as_str()).collect();
        for n in nodes.iter().filter(|n| !names.contains(n.as_str())) {
            out.push(BrokerResult::failure(&reqid, "unknown cluster node").for_node(n));
        }
        let valid: Vec<&crate::api::types::Node> = deployed
            .nodes
            .iter()
            .filter(|n| nodes.is_empty() || nodes.contains(&n.name))
            .collect();
        if !nodes.is_empty() && valid.is_empty() {
            return self.answer(stem, &reqid, &out);
        }
        let ready: Vec<&String> = self
            .configured
            .keys()
            .filter(|a| self.welcomed.contains(*a))
            .collect();
        if ready.is_empty() {
            out.push(BrokerResult::failure(&reqid, "request timed out"));
            return self.answer(stem, &reqid, &out);
        }
        for agent in ready {
            for n in valid.iter().filter(|n| &n.instance == agent) {
                let error = format!("{stem} is not supported by agent {agent}");
                let r = BrokerResult::failure(&reqid, error).for_node(&n.name);
                out.push(if stem == "restart" {
                    r
                } else {
                    r.from_instance(agent)
                });
            }
        }
        self.answer(stem, &reqid, &out);
    }

    fn deadline(&mut self, reqid: &str, ctx: &mut Context<Self>) {
        let reqid = reqid.to_owned();
        ctx.run_later(self.settings.request_timeout, move |act, _| {
            if let Some(mut g) = act.gathers.remove(&reqid) {
                tracing::info!("{}_request {reqid} timed out", g.stem);
                let mut all = std::mem::take(&mut g.leading);
                all.append(&mut sorted(g.results));
                all.push(BrokerResult::failure(&reqid, "request timed out"));
                act.answer(g.stem, &reqid, &all);
            }
        });
    }

    fn gathered(&mut self, reqid: &str, agent: &str, mut results: Vec<BrokerResult>) {
        let Some(g) = self.gathers.get_mut(reqid) else {
            tracing::info!("late answer of agent {agent} to {reqid} dropped");
            return;
        };
        g.waiting.remove(agent);
        g.results.append(&mut results);
        if g.waiting.is_empty() {
            if let Some(mut g) = self.gathers.remove(reqid) {
                let mut all = std::mem::take(&mut g.leading);
                all.append(&mut sorted(g.results));
                self.answer(g.stem, reqid, &all);
            }
        }
    }

    // ---- deployments ----

    fn deploy(&mut self, reqid: String, internal: bool, ctx: &mut Context<Self>) {
        let source = if internal {
            &self.deployed
        } else {
            &self.ready
        };
        let Some(config) = source.clone() else {
            if !internal {
                let r = BrokerResult::failure(&reqid, "no configuration available to deploy");
                self.answer("deploy", &reqid, &[r]);
            }
            return;
        };
        if let Some(p) = &self.pending {
            if !internal {
                let r = BrokerResult::failure(
                    &reqid,
                    format!("earlier deployment {} still pending", p.reqid),
                );
                self.answer("deploy", &reqid, &[r]);
            }
            return;
        }
        let mut config = config;
        stage::resolve_hosts(&mut config, &self.known_hosts());
        self.reconcile(&config, ctx);
        if config.instances.is_empty() {
            let id = config.id.clone();
            self.deployed = Some(config);
            if !internal {
                self.persist_then(ctx, move |act| {
                    let r = BrokerResult::ok(&reqid).with_data(Value::String(id));
                    act.answer("deploy", &reqid, &[r]);
                });
            }
            return;
        }
        tracing::info!(
            internal,
            "deployment {reqid} of configuration {} pending",
            config.id
        );
        self.pending = Some(Deployment {
            reqid: reqid.clone(),
            internal,
            config,
            waiting: None,
            results: Vec::new(),
        });
        ctx.run_later(self.settings.request_timeout, move |act, _| {
            if act.pending.as_ref().is_some_and(|p| p.reqid == reqid) {
                if let Some(mut p) = act.pending.take() {
                    tracing::warn!("deployment {reqid} timed out");
                    if !p.internal {
                        let mut all = sorted(std::mem::take(&mut p.results));
                        all.push(BrokerResult::failure(&reqid, "request timed out"));
                        act.answer("deploy", &reqid, &all);
                    }
                }
            }
        });
        self.send_when_all_ready(ctx);
    }

    /// Makes the configured instances those of `config`: stands by the
    /// dropped, dials and welcomes the new.
    fn reconcile(&mut self, config: &Configuration, ctx: &mut Context<Self>) {
        let wanted: BTreeMap<String, Instance> = config
            .instances
            .iter()
            .map(|i| (i.name.clone(), i.clone()))
            .collect();
        let dropped: Vec<String> = self
            .configured
            .iter()
            .filter(|(name, old)| match wanted.get(*name) {
                None => true,
                Some(new) => {
                    (new.host != old.host && !new.host.0.is_unspecified())
                        || new.listen_port != old.listen_port
                }
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in dropped {
            self.configured.remove(&name);
            self.welcomed.remove(&name);
            if let Some(h) = self.dialers.remove(&name) {
                ctx.cancel_future(h);
            }
            if self.known.contains_key(&name) && !wanted.contains_key(&name) {
                self.standby(&name, ctx);
            }
        }
        for (name, inst) in wanted {
            if self.configured.contains_key(&name) {
                continue;
            }
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
        (self.dial)(name.clone(), addr.clone(), port);
        let handle = ctx.run_interval(self.settings.dial_interval, move |act, _| {
            if !act.known.contains_key(&name) {
                (act.dial)(name.clone(), addr.clone(), port);
            }
        });
        self.dialers.insert(inst.name.clone(), handle);
    }

    fn welcome(&mut self, agent: &str, ctx: &mut Context<Self>) {
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
                self.deploy(Self::sub_reqid().0, true, ctx);
            }
            return;
        };
        if p.waiting.is_some() {
            return;
        }
        let agents: Vec<String> = self.configured.keys().cloned().collect();
        p.waiting = Some(agents.iter().cloned().collect());
        let reqid = p.reqid.clone();
        let config = p.config.clone();
        for agent in agents {
            let subid = Self::sub_reqid();
            let request = Request::SetConfiguration(SetConfigurationRequest {
                reqid: subid.clone(),
                config: config.clone(),
            });
            let r = reqid.clone();
            self.call(&agent.clone(), request, ctx, move |act, outcome, ctx| {
                let results = match outcome {
                    Ok(resp) => answers::set_configuration(&subid.0, &resp.result),
                    Err(e) => vec![answers::agent_failed(
                        &subid.0,
                        &agent,
                        &Self::call_error(&agent, e),
                    )],
                };
                act.deployed_to(&r, &agent, results, ctx);
            });
        }
    }

    fn deployed_to(
        &mut self,
        reqid: &str,
        agent: &str,
        mut results: Vec<BrokerResult>,
        ctx: &mut Context<Self>,
    ) {
        let Some(p) = self.pending.as_mut().filter(|p| p.reqid == reqid) else {
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
        let Some(p) = self.pending.take() else {
            return;
        };
        let id = p.config.id.clone();
        tracing::info!("deployment {reqid} of configuration {id} complete");
        self.deployed = Some(p.config);
        let reqid = reqid.to_owned();
        let mut all = sorted(p.results);
        all.push(BrokerResult::ok(&reqid).with_data(Value::String(id)));
        let internal = p.internal;
        self.persist_then(ctx, move |act| {
            if !internal {
                act.answer("deploy", &reqid, &all);
            }
        });
    }
}

/// Results sorted by instance, then node (unset last).
fn sorted(mut results: Vec<BrokerResult>) -> Vec<BrokerResult> {
    results.sort_by(|a, b| {
        let key = |r: &BrokerResult| {
            (
                r.instance.is_none(),
                r.instance.clone(),
                r.node.is_none(),
                r.node.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    results
}

impl Actor for Core {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // After a restart: the deployed configuration goes out again as
        // its agents check in.
        if self.deployed.is_some() {
            self.deploy(Self::sub_reqid().0, true, ctx);
        }
    }
}

impl Handler<ClientRequest> for Core {
    type Result = ();

    fn handle(&mut self, msg: ClientRequest, ctx: &mut Context<Self>) {
        self.on_request(msg.reqid, msg.call, ctx);
    }
}

impl Handler<AgentUp> for Core {
    type Result = ();

    fn handle(&mut self, msg: AgentUp, ctx: &mut Context<Self>) {
        if msg.api_version != crate::api::events::API_VERSION {
            tracing::warn!(
                agent = %msg.name,
                "agent speaks API version {}, not {}; ignored",
                msg.api_version,
                crate::api::events::API_VERSION
            );
            self.known.remove(&msg.name);
            self.welcomed.remove(&msg.name);
            return;
        }
        let known = Known {
            id: msg.id,
            host: msg.host,
            listen_port: msg.listen_port,
            features: msg.features,
            link: msg.link,
        };
        tracing::info!(agent = %msg.name, host = %known.host, features = ?known.features, "agent known");
        if let Some(old) = self.known.insert(msg.name.clone(), known) {
            if old.id != msg.id {
                old.link.close.do_send(CloseAgent);
            }
        }
        self.welcomed.remove(&msg.name);
        if self.configured.contains_key(&msg.name) {
            self.welcome(&msg.name, ctx);
        }
    }
}

impl Handler<AgentGone> for Core {
    type Result = ();

    fn handle(&mut self, msg: AgentGone, _: &mut Context<Self>) {
        if self.known.get(&msg.name).is_some_and(|k| k.id == msg.id) {
            tracing::info!(agent = %msg.name, "agent lost");
            self.known.remove(&msg.name);
            self.welcomed.remove(&msg.name);
        }
    }
}
