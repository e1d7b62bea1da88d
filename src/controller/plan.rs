//! What the controller decides, as plain functions of its state: whom a
//! request about nodes goes to and what is answered for the rest, and which
//! instances a deployment drops and adds. The `Core` carries them out.

use std::collections::BTreeMap;

use crate::api::types::{Configuration, Instance, ReqId};
use crate::broker::records::BrokerResult;
use crate::controller::requests::Stem;

/// A client request about nodes, answered by the agents that run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAsk {
    Restart,
    GetIdValue,
    /// Packet counters (ours), over the node channel as `get_id_value`.
    NetStats,
    /// The crash records the agents keep (ours).
    Crashes,
}

impl NodeAsk {
    /// The stem of the client's events.
    pub fn stem(self) -> Stem {
        match self {
            NodeAsk::Restart => Stem::Restart,
            NodeAsk::GetIdValue => Stem::GetIdValue,
            NodeAsk::NetStats => Stem::GetNetStats,
            NodeAsk::Crashes => Stem::GetCrashes,
        }
    }

    /// The act its completion is logged as (a restart changes nodes; a
    /// read is not logged).
    pub fn act(self) -> Option<&'static str> {
        match self {
            NodeAsk::Restart => Some("restarted"),
            NodeAsk::GetIdValue | NodeAsk::NetStats | NodeAsk::Crashes => None,
        }
    }

    /// The hello feature an agent announces when it can be asked.
    pub fn feature(self) -> &'static str {
        match self {
            NodeAsk::Restart => "restart",
            NodeAsk::GetIdValue | NodeAsk::NetStats => "node_dispatch",
            NodeAsk::Crashes => "get_crashes",
        }
    }

    /// What an agent that cannot be asked answers for each of `nodes`.
    pub fn unsupported(self, reqid: &ReqId, agent: &str, nodes: &[String]) -> Vec<BrokerResult> {
        nodes
            .iter()
            .map(|n| {
                let error = format!("{} is not supported by agent {agent}", self.stem());
                let r = BrokerResult::failure(reqid, error).for_node(n);
                // Without an instance, zeek-client lists a restart's
                // failure under errors (and exits 1).
                match self {
                    NodeAsk::Restart => r,
                    NodeAsk::GetIdValue | NodeAsk::NetStats | NodeAsk::Crashes => {
                        r.from_instance(agent)
                    }
                }
            })
            .collect()
    }
}

/// One configured agent as a request about nodes sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    pub name: String,
    /// Connected and welcomed.
    pub ready: bool,
    /// It announced the request's feature.
    pub able: bool,
}

/// Whom a request about nodes goes to.
#[derive(Debug, Default, PartialEq)]
pub struct NodePlan {
    /// The results of the controller's own, before the agents'.
    pub leading: Vec<BrokerResult>,
    /// The nodes to name in every agent's request (empty: all).
    pub valid: Vec<String>,
    /// Each agent asked, with the deployed nodes it runs that concern the
    /// request (for its answer should it not know the request after all).
    pub asks: Vec<(String, Vec<String>)>,
}

/// Plans `ask` for `nodes` (empty: all). `Err` is the whole answer, now:
/// nothing to ask, or nobody to ask it of.
pub fn node_request(
    ask: NodeAsk,
    reqid: &ReqId,
    nodes: &[String],
    deployed: Option<&Configuration>,
    any_known: bool,
    agents: &[Reachable],
) -> Result<NodePlan, Vec<BrokerResult>> {
    let restart = ask == NodeAsk::Restart;
    let nothing = if restart {
        (!any_known).then_some("no instances connected")
    } else {
        agents.is_empty().then_some("no cluster deployed")
    };
    if let Some(why) = nothing {
        return Err(vec![BrokerResult::failure(reqid, why)]);
    }
    let deployed_nodes = match deployed {
        Some(d) => d.nodes.as_slice(),
        None if restart => {
            return Err(vec![BrokerResult::failure(
                reqid,
                "no active cluster deployment",
            )])
        }
        None => &[],
    };
    let known_node = |n: &String| deployed_nodes.iter().any(|d| &d.name == n);
    let mut leading: Vec<BrokerResult> = nodes
        .iter()
        .filter(|n| !known_node(n))
        .map(|n| BrokerResult::failure(reqid, "unknown cluster node").for_node(n))
        .collect();
    let valid: Vec<String> = nodes.iter().filter(|n| known_node(n)).cloned().collect();
    if !nodes.is_empty() && valid.is_empty() {
        return Err(leading);
    }
    if !agents.iter().any(|a| a.ready) {
        // Nothing would be sent, so only the deadline could answer:
        // answer now, with the same words.
        leading.push(BrokerResult::failure(reqid, "request timed out"));
        return Err(leading);
    }
    let mut asks = Vec::new();
    for agent in agents.iter().filter(|a| a.ready) {
        let concerned: Vec<String> = deployed_nodes
            .iter()
            .filter(|n| n.instance == agent.name && (valid.is_empty() || valid.contains(&n.name)))
            .map(|n| n.name.clone())
            .collect();
        if agent.able {
            asks.push((agent.name.clone(), concerned));
        } else {
            leading.extend(ask.unsupported(reqid, &agent.name, &concerned));
        }
    }
    Ok(NodePlan {
        leading,
        valid,
        asks,
    })
}

/// The workers of the deployed configuration, by name: whom `netstats`
/// asks when no node is named.
pub fn workers(deployed: Option<&Configuration>) -> Vec<String> {
    deployed
        .into_iter()
        .flat_map(|c| &c.nodes)
        .filter(|n| n.role == crate::api::types::Role::Worker)
        .map(|n| n.name.clone())
        .collect()
}

/// How the configured instances become those of a configuration.
#[derive(Debug, Default, PartialEq)]
pub struct Reconcile {
    /// No longer configured as they were (gone, or moved to another
    /// address or port): forgotten, their dials stopped.
    pub dropped: Vec<String>,
    /// Of `dropped`, those the configuration no longer names: stood by.
    pub standby: Vec<String>,
    /// Newly configured: dialled when they listen, welcomed when known.
    pub added: Vec<Instance>,
}

/// Compares the configured instances with `config`'s. An instance whose
/// address becomes unspecified keeps its configured one (the address the
/// controller observed).
pub fn reconcile(configured: &BTreeMap<String, Instance>, config: &Configuration) -> Reconcile {
    let wanted: BTreeMap<&str, &Instance> = config
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i))
        .collect();
    let dropped: Vec<String> = configured
        .iter()
        .filter(|(name, old)| match wanted.get(name.as_str()) {
            None => true,
            Some(new) => {
                (new.host != old.host && !new.host.0.is_unspecified())
                    || new.listen_port != old.listen_port
            }
        })
        .map(|(n, _)| n.clone())
        .collect();
    let standby = dropped
        .iter()
        .filter(|n| !wanted.contains_key(n.as_str()))
        .cloned()
        .collect();
    let added = wanted
        .values()
        .filter(|i| !configured.contains_key(&i.name) || dropped.contains(&i.name))
        .map(|i| (*i).clone())
        .collect();
    Reconcile {
        dropped,
        standby,
        added,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Addr, Node, Port, Role};

    fn config(nodes: &[(&str, &str)]) -> Configuration {
        Configuration {
            id: "c".into(),
            nodes: nodes
                .iter()
                .map(|(n, i)| Node::new(n, i, Role::Worker))
                .collect(),
            ..Configuration::default()
        }
    }

    fn agent(name: &str, ready: bool, able: bool) -> Reachable {
        Reachable {
            name: name.into(),
            ready,
            able,
        }
    }

    fn errors(r: &[BrokerResult]) -> Vec<(Option<&str>, Option<&str>)> {
        r.iter()
            .map(|r| (r.node.as_deref(), r.error.as_deref()))
            .collect()
    }

    type Owned = Vec<(Option<String>, Option<String>)>;

    fn owned(r: &[BrokerResult]) -> Owned {
        r.iter()
            .map(|r| (r.node.clone(), r.error.clone()))
            .collect()
    }

    fn pair(node: Option<&str>, error: &str) -> (Option<String>, Option<String>) {
        (node.map(str::to_owned), Some(error.to_owned()))
    }

    #[test]
    fn a_restart_with_nothing_to_restart_is_answered_at_once() {
        let plan = |deployed, known| {
            node_request(
                NodeAsk::Restart,
                &ReqId::from("r"),
                &[],
                deployed,
                known,
                &[],
            )
            .map(|_| ())
            .map_err(|r| errors(&r)[0].1.map(str::to_owned))
        };
        assert_eq!(
            plan(None, false),
            Err(Some("no instances connected".into()))
        );
        assert_eq!(
            plan(None, true),
            Err(Some("no active cluster deployment".into()))
        );
        let r = node_request(NodeAsk::GetIdValue, &ReqId::from("r"), &[], None, true, &[]);
        assert_eq!(
            r.map_err(|r| errors(&r)[0].1.map(str::to_owned)),
            Err(Some("no cluster deployed".into()))
        );
    }

    #[test]
    fn unknown_nodes_lead_and_agents_without_the_feature_answer_for_theirs() {
        let c = config(&[("w1", "a"), ("w2", "b"), ("w3", "c")]);
        let agents = [
            agent("a", true, true),
            agent("b", true, false),
            agent("c", false, true),
        ];
        let nodes = vec!["bogus".to_owned(), "w1".to_owned(), "w2".to_owned()];
        let plan = node_request(
            NodeAsk::Restart,
            &ReqId::from("r"),
            &nodes,
            Some(&c),
            true,
            &agents,
        )
        .expect("a plan");
        assert_eq!(plan.valid, ["w1", "w2"]);
        assert_eq!(plan.asks, [("a".to_owned(), vec!["w1".to_owned()])]);
        assert_eq!(
            errors(&plan.leading),
            [
                (Some("bogus"), Some("unknown cluster node")),
                (Some("w2"), Some("restart is not supported by agent b")),
            ]
        );
        // Only unknown nodes: their failures are the answer.
        let only = node_request(
            NodeAsk::Restart,
            &ReqId::from("r"),
            &["x".into()],
            Some(&c),
            true,
            &agents,
        );
        assert_eq!(
            only.map_err(|r| owned(&r)),
            Err(vec![pair(Some("x"), "unknown cluster node")])
        );
        // Nobody ready: the deadline's words, now.
        let none = node_request(
            NodeAsk::GetIdValue,
            &ReqId::from("r"),
            &[],
            Some(&c),
            true,
            &[agent("a", false, true)],
        );
        assert_eq!(
            none.map_err(|r| owned(&r)),
            Err(vec![pair(None, "request timed out")])
        );
    }

    #[test]
    fn a_deployment_drops_moved_and_gone_instances_and_adds_the_new() {
        let inst = |name: &str, ip: [u8; 4], port: Option<u16>| Instance {
            name: name.into(),
            host: Addr(ip.into()),
            listen_port: port.map(Port::tcp),
        };
        let configured: BTreeMap<String, Instance> = [
            inst("stays", [198, 18, 0, 1], None),
            inst("moves", [198, 18, 0, 2], Some(2151)),
            inst("goes", [198, 18, 0, 3], None),
            inst("unspecified", [198, 18, 0, 4], None),
        ]
        .into_iter()
        .map(|i| (i.name.clone(), i))
        .collect();
        let next = Configuration {
            instances: vec![
                inst("stays", [198, 18, 0, 1], None),
                inst("moves", [198, 18, 0, 2], Some(2152)),
                inst("unspecified", [0, 0, 0, 0], None),
                inst("new", [198, 18, 0, 5], None),
            ],
            ..Configuration::default()
        };
        let r = reconcile(&configured, &next);
        assert_eq!(r.dropped, ["goes", "moves"]);
        assert_eq!(r.standby, ["goes"]);
        let added: Vec<&str> = r.added.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(added, ["moves", "new"]);
    }

    #[test]
    fn netstats_asks_the_workers_of_the_deployed_configuration() {
        assert!(workers(None).is_empty());
        let mut c = config(&[("w1", "a"), ("w2", "b")]);
        c.nodes.push(Node::new("manager", "a", Role::Manager));
        assert_eq!(workers(Some(&c)), ["w1", "w2"]);
    }
}
