//! `Core`: the owner of the controller's state. It holds the staged, ready
//! and deployed configurations, the known, configured and ready agents,
//! the pending deployment and every client request waiting on agents; it
//! answers each client request exactly once, by its deadline at the
//! latest. Agents are reached through their [`AgentLink`]s; every
//! sub-request is an [`AgentCall`], answered exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::client_session::ClientRequest;
use super::hub::Hub;
use super::messages::{
    AgentCall, AgentConnId, AgentGone, AgentLink, AgentUp, Ask, CallError, CloseAgent, DialAgent,
    Publish,
};
use crate::api::events::{
    GetCrashesRequest, NodeDispatchRequest, Request, Response, RestartRequest,
};
use crate::api::types::{Configuration, Instance, Port, ReqId};
use crate::broker::records::{self, BrokerResult};
use crate::broker::Value;
use crate::controller::plan::{self, NodeAsk};
use crate::controller::requests::{response, Call, Stem};
use crate::controller::stage::{self, PortPolicy};
use crate::controller::store::{Save, Snapshot, Store};

mod claims;
mod deploy;
mod figures;
mod gather;
#[cfg(test)]
mod tests;

pub use figures::{CoreFigures, CoreMetrics, Deployments, Figures};

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
    id: AgentConnId,
    host: IpAddr,
    peer: Option<std::net::SocketAddr>,
    listen_port: Option<Port>,
    features: Vec<String>,
    link: AgentLink,
}

/// The one deployment in progress.
struct Deployment {
    reqid: ReqId,
    /// When it started, for its duration.
    started: std::time::Instant,
    /// Internal deployments (after a restart, an agent's return) answer
    /// nobody.
    internal: bool,
    config: Configuration,
    /// Agents asked and not yet answered; `None` until every configured
    /// agent is ready and the configuration has gone out.
    waiting: Option<BTreeSet<String>>,
    results: Vec<BrokerResult>,
    /// An agent refused the configuration before stopping anything: the
    /// deployed configuration stays the one that runs.
    refused: bool,
    /// The deadline's timer, cancelled when the last agent answers.
    deadline: Option<SpawnHandle>,
}

/// A client request gathering one answer per agent.
struct Gather {
    stem: Stem,
    /// The act its completion is logged as, in one sentence (a restart's
    /// "restarted"); reads are not logged.
    act: Option<&'static str>,
    waiting: BTreeSet<String>,
    /// Results of the controller's own, before the agents'.
    leading: Vec<BrokerResult>,
    results: Vec<BrokerResult>,
    /// The deadline's timer, cancelled when the last agent answers.
    deadline: Option<SpawnHandle>,
}

/// The controller's state.
pub struct Core {
    settings: CoreSettings,
    hub: Addr<Hub>,
    store: Addr<Store>,
    dial: Recipient<DialAgent>,
    staged: Option<Configuration>,
    ready: Option<Configuration>,
    deployed: Option<Configuration>,
    /// The deployment under way, persisted (see [`Snapshot::deploying`]).
    deploying: Option<Configuration>,
    known: BTreeMap<String, Known>,
    configured: BTreeMap<String, Instance>,
    welcomed: BTreeSet<String>,
    dialers: HashMap<String, SpawnHandle>,
    pending: Option<Deployment>,
    gathers: HashMap<ReqId, Gather>,
    /// Names claimed by a second live agent: the refusal, and when it was
    /// last made.
    claims: BTreeMap<String, (String, std::time::Instant)>,
    /// Newcomers waiting while the holder of their name is asked.
    contending: HashMap<String, AgentUp>,
    /// Where requests and deployments are counted, when metrics are on.
    metrics: Option<Arc<CoreMetrics>>,
    /// When each client request waiting for its answer arrived (with
    /// metrics on).
    arrivals: HashMap<ReqId, std::time::Instant>,
}

impl Core {
    pub fn new(
        settings: CoreSettings,
        hub: Addr<Hub>,
        store: Addr<Store>,
        snapshot: Snapshot,
        dial: Recipient<DialAgent>,
    ) -> Self {
        Core {
            settings,
            hub,
            store,
            dial,
            staged: snapshot.staged,
            ready: snapshot.ready,
            deployed: snapshot.deployed,
            deploying: snapshot.deploying,
            known: BTreeMap::new(),
            configured: BTreeMap::new(),
            welcomed: BTreeSet::new(),
            dialers: HashMap::new(),
            pending: None,
            gathers: HashMap::new(),
            claims: BTreeMap::new(),
            contending: HashMap::new(),
            metrics: None,
            arrivals: HashMap::new(),
        }
    }

    /// Counts requests and deployments in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<CoreMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    fn publish(&self, stem: Stem, reqid: &ReqId, arg: Value) {
        tracing::debug!("tx {stem}_response {reqid}");
        self.hub.do_send(Publish {
            message: response(stem, reqid, arg),
            from: None,
        });
    }

    fn answer(&mut self, stem: Stem, reqid: &ReqId, results: &[BrokerResult]) {
        self.answered(stem, reqid, results);
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
            deploying: self.deploying.clone(),
        }
    }

    /// Persists the state, then runs `then` (the answer) with the outcome
    /// (`Err`: why `controller.json` was not written), the core taking no
    /// other message meanwhile.
    fn persist_then(
        &mut self,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Result<(), String>, &mut Context<Self>) + 'static,
    ) {
        let save = self.store.send(Save(self.snapshot()));
        ctx.wait(save.into_actor(self).map(move |res, act, ctx| {
            let outcome = match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!(
                    "cannot write {}: {e}",
                    crate::controller::store::FILE
                )),
                Err(e) => Err(format!(
                    "cannot write {}: {e}",
                    crate::controller::store::FILE
                )),
            };
            if let Err(e) = &outcome {
                tracing::error!("{e}");
            }
            then(act, outcome, ctx);
        }));
    }

    fn sub_reqid() -> ReqId {
        ReqId(uuid::Uuid::new_v4().to_string())
    }

    /// Sends `ask` to `agent`; `done` gets the outcome exactly once.
    fn call(
        &mut self,
        agent: &str,
        ask: impl Into<Ask>,
        ctx: &mut Context<Self>,
        done: impl FnOnce(&mut Self, Result<Response, CallError>, &mut Context<Self>) + 'static,
    ) {
        let Some(k) = self.known.get(agent) else {
            return done(self, Err(CallError::Lost), ctx);
        };
        let fut = k.link.call.send(AgentCall {
            ask: ask.into(),
            timeout: self.settings.request_timeout,
        });
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let outcome = res.unwrap_or(Err(CallError::Lost));
            done(act, outcome, ctx);
        }));
    }

    // ---- client requests ----

    fn on_request(&mut self, reqid: ReqId, call: Call, ctx: &mut Context<Self>) {
        // A test_timeout without state is never answered.
        if !matches!(call, Call::TestTimeout { with_state: false }) {
            self.arrived(&reqid);
        }
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
                self.answered(Stem::GetInstances, &reqid, std::slice::from_ref(&r));
                self.publish(Stem::GetInstances, &reqid, r.to_value());
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
                self.answered(Stem::GetConfiguration, &reqid, std::slice::from_ref(&r));
                self.publish(Stem::GetConfiguration, &reqid, r.to_value());
            }
            Call::Deploy => self.deploy(reqid, false, ctx),
            Call::GetNodes => self.get_nodes(reqid, ctx),
            Call::Restart { nodes } => {
                let make = |reqid, nodes| Request::Restart(RestartRequest { reqid, nodes });
                self.ask_nodes(reqid, NodeAsk::Restart, &nodes, &make, ctx)
            }
            Call::GetIdValue { id, nodes } => {
                // The agents put it to their nodes over the node channel.
                let make = move |reqid, nodes| {
                    Request::NodeDispatch(NodeDispatchRequest {
                        reqid,
                        action: vec!["get_id_value".to_owned(), id.clone()],
                        nodes,
                    })
                };
                self.ask_nodes(reqid, NodeAsk::GetIdValue, &nodes, &make, ctx)
            }
            Call::GetNetStats { nodes } => {
                // As ZeekControl's netstats: the workers, unless named.
                let nodes = if nodes.is_empty() {
                    plan::workers(self.deployed.as_ref())
                } else {
                    nodes
                };
                let make = |reqid, nodes| {
                    Request::NodeDispatch(NodeDispatchRequest {
                        reqid,
                        action: vec![crate::agent::channel::NET_STATS.to_owned()],
                        nodes,
                    })
                };
                if nodes.is_empty() {
                    // No worker: nothing to ask, and nothing to say.
                    return self.answer(Stem::GetNetStats, &reqid, &[]);
                }
                self.ask_nodes(reqid, NodeAsk::NetStats, &nodes, &make, ctx)
            }
            Call::GetCrashes { nodes } => {
                let make = |reqid, nodes| Request::GetCrashes(GetCrashesRequest { reqid, nodes });
                self.ask_nodes(reqid, NodeAsk::Crashes, &nodes, &make, ctx)
            }
            Call::Check(config) => self.check(reqid, config, ctx),
            Call::TestTimeout { with_state } => {
                if with_state {
                    ctx.run_later(self.settings.request_timeout, move |act, _| {
                        let r = BrokerResult::failure(&reqid, "request timed out");
                        act.answered(Stem::TestTimeout, &reqid, std::slice::from_ref(&r));
                        act.publish(Stem::TestTimeout, &reqid, r.to_value());
                    });
                } else {
                    tracing::info!("test_timeout_request {reqid} without state: no answer");
                }
            }
        }
    }

    /// `Err`: the refusals of a configuration that cannot be staged, as
    /// staging answers them (the dry run too).
    fn stageable(&self, reqid: &ReqId, config: &Configuration) -> Result<(), Vec<BrokerResult>> {
        let problems = stage::problems(config, &self.settings.policy);
        if problems.is_empty() {
            return Ok(());
        }
        Err(problems
            .into_iter()
            .map(|p| BrokerResult::failure(reqid, p))
            .collect())
    }

    fn stage(&mut self, reqid: ReqId, config: Configuration, ctx: &mut Context<Self>) {
        if let Err(refusals) = self.stageable(&reqid, &config) {
            return self.answer(Stem::StageConfiguration, &reqid, &refusals);
        }
        let ready = stage::ready(&config, &self.known_hosts(), &self.settings.policy);
        let id = config.id.clone();
        tracing::info!(
            "configuration {id} staged: {} on {}",
            crate::logging::count(config.nodes.len(), "node"),
            crate::logging::count(config.instances.len(), "agent")
        );
        let before = (self.staged.replace(config), self.ready.replace(ready));
        self.persist_then(ctx, move |act, saved, _| {
            let r = match saved {
                Ok(()) => BrokerResult::ok(&reqid).with_data(Value::String(id)),
                Err(e) => {
                    // Not kept: what is staged stays what the file says.
                    (act.staged, act.ready) = before;
                    BrokerResult::failure(&reqid, format!("configuration not staged: {e}"))
                }
            };
            act.answer(Stem::StageConfiguration, &reqid, &[r]);
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
        // After a restart: the deployed configuration (or the one being
        // deployed when the controller stopped) goes out again as
        // its agents check in.
        if self.deployed.is_some() || self.deploying.is_some() {
            self.deploy(Self::sub_reqid(), true, ctx);
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
        if self.known.get(&msg.name).is_some_and(|k| k.id != msg.id) {
            return self.contest(msg, ctx);
        }
        self.admit(msg, ctx);
    }
}

impl Core {
    /// Takes `msg`'s agent as the one of its name (ending the connection
    /// it replaces) and welcomes it if it is configured.
    fn admit(&mut self, msg: AgentUp, ctx: &mut Context<Self>) {
        let known = Known {
            id: msg.id,
            host: msg.host,
            peer: msg.peer,
            listen_port: msg.listen_port,
            features: msg.features,
            link: msg.link,
        };
        tracing::debug!(agent = %msg.name, host = %known.host, features = ?known.features, "agent known");
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

    fn handle(&mut self, msg: AgentGone, ctx: &mut Context<Self>) {
        if self.known.get(&msg.name).is_some_and(|k| k.id == msg.id) {
            tracing::debug!(agent = %msg.name, "agent lost");
            self.known.remove(&msg.name);
            self.welcomed.remove(&msg.name);
            // A newcomer waiting for the name has it now.
            if let Some(next) = self.contending.remove(&msg.name) {
                self.admit(next, ctx);
            }
        } else if self
            .contending
            .get(&msg.name)
            .is_some_and(|c| c.id == msg.id)
        {
            self.contending.remove(&msg.name);
        }
    }
}
