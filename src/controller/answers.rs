//! Agents' answers turned into the results zeek-client reads (plain
//! functions: an agent's CBOR `Result` in, Broker `Result`s out).

use crate::api::types::{ApiResult, ResultData};
use crate::broker::records::{node_status, BrokerResult};
use crate::broker::Value;

fn text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// `set_configuration_response`: one result per node, or one node-less
/// result for an agent-wide failure or an unchanged configuration.
pub fn set_configuration(subid: &str, r: &ApiResult) -> Vec<BrokerResult> {
    if r.unchanged && r.success {
        return vec![BrokerResult::ok(subid).from_instance(&r.instance)];
    }
    match &r.data {
        Some(ResultData::Results(per)) if !per.is_empty() => per
            .iter()
            .map(|p| {
                let instance = text(&p.instance).or_else(|| text(&r.instance));
                let data = match (&p.data, p.success) {
                    (_, true) => None,
                    (Some(ResultData::Outputs(o)), false) => Some(outputs(&o.stdout, &o.stderr)),
                    (_, false) => text(&p.error).map(|e| outputs("", &e)),
                };
                BrokerResult {
                    reqid: subid.to_owned(),
                    success: p.success,
                    instance,
                    data,
                    error: None,
                    node: p.node.clone(),
                }
            })
            .collect(),
        _ if r.success => vec![BrokerResult::ok(subid).from_instance(&r.instance)],
        _ => vec![BrokerResult::failure(subid, r.error.clone()).from_instance(&r.instance)],
    }
}

/// `Management::NodeOutputs`: `[stdout, stderr]`.
fn outputs(stdout: &str, stderr: &str) -> Value {
    Value::Vector(vec![Value::string(stdout), Value::string(stderr)])
}

/// `restart_response`: one result per node the agent restarted, or one
/// node-less failure.
pub fn per_node(subid: &str, r: &ApiResult) -> Vec<BrokerResult> {
    match &r.data {
        Some(ResultData::Results(per)) => per
            .iter()
            .map(|p| BrokerResult {
                reqid: subid.to_owned(),
                success: p.success,
                instance: text(&p.instance).or_else(|| text(&r.instance)),
                data: match &p.data {
                    Some(ResultData::Text(t)) => Some(Value::string(t)),
                    _ => None,
                },
                error: text(&p.error),
                node: p.node.clone(),
            })
            .collect(),
        _ if r.success => Vec::new(),
        _ => vec![BrokerResult::failure(subid, r.error.clone()).from_instance(&r.instance)],
    }
}

/// `get_nodes_response`: one result for the agent, its node statuses as
/// data; then one failed result from that agent for each running node
/// that has not joined its cluster, with the reason, which zeek-client
/// prints among its errors (a state alone would tell it nothing).
pub fn get_nodes(subid: &str, r: &ApiResult) -> Vec<BrokerResult> {
    let (data, not_joined) = match &r.data {
        Some(ResultData::NodeStatuses(list)) => (
            Some(Value::Vector(list.iter().map(node_status).collect())),
            list.iter()
                .filter(|s| s.joined == Some(false))
                .map(|s| {
                    let why = s
                        .join_error
                        .clone()
                        .unwrap_or_else(|| format!("node {} has not joined the cluster", s.node));
                    BrokerResult::failure(subid, why).from_instance(&r.instance)
                })
                .collect(),
        ),
        _ => (None, Vec::new()),
    };
    let mut out = vec![BrokerResult {
        reqid: subid.to_owned(),
        success: r.success,
        instance: text(&r.instance),
        data,
        error: text(&r.error),
        node: None,
    }];
    out.extend(not_joined);
    out
}

/// An agent that could not answer: one failed result from it.
pub fn agent_failed(subid: &str, instance: &str, error: &str) -> BrokerResult {
    BrokerResult::failure(subid, error).from_instance(instance)
}

/// A request's results in one sentence for the operator's log: how many
/// nodes succeeded, and each failure with the first line of its reason
/// (`what` names the act: "running", "restarted").
pub fn sentence(results: &[BrokerResult], what: &str) -> String {
    let nodes = results.iter().filter(|r| r.node.is_some()).count();
    let ok = results
        .iter()
        .filter(|r| r.node.is_some() && r.success)
        .count();
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.success)
        .map(|r| {
            let reason = r
                .error
                .clone()
                .or_else(|| match &r.data {
                    Some(Value::Vector(o)) => o.get(1).and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .unwrap_or_default();
            let first = reason
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed");
            match (&r.node, &r.instance) {
                (Some(n), _) => format!("{n} ({first})"),
                (None, Some(i)) => format!("agent {i} ({first})"),
                (None, None) => first.to_owned(),
            }
        })
        .collect();
    let mut out = if ok == nodes {
        format!("{} {what}", crate::logging::count(nodes, "node"))
    } else {
        format!("{ok} of {} {what}", crate::logging::count(nodes, "node"))
    };
    if !failures.is_empty() {
        out.push_str("; failed: ");
        out.push_str(&failures.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_as_one_sentence() {
        let ok = |n: &str| BrokerResult::ok("r").for_node(n).from_instance("agent-a");
        assert_eq!(
            sentence(&[ok("manager"), ok("proxy-1")], "running"),
            "2 nodes running"
        );
        let mut crashed = ok("worker-1");
        crashed.success = false;
        crashed.data = Some(outputs("", "\nfatal error: can't find x.zeek\nmore\n"));
        let lost = agent_failed("r", "agent-b", "lost connection to agent agent-b");
        assert_eq!(
            sentence(&[ok("manager"), crashed, lost], "restarted"),
            "1 of 2 nodes restarted; failed: worker-1 (fatal error: can't find x.zeek), agent agent-b (lost connection to agent agent-b)"
        );
    }
    use crate::api::types::{MgmtRole, NodeStatus, ReqId, Role, State};

    fn per_node(node: &str, ok: bool, error: &str) -> ApiResult {
        let mut r = if ok {
            ApiResult::ok(ReqId("x".into()), "agent-a")
        } else {
            ApiResult::failure(ReqId("x".into()), "agent-a", error)
        };
        r.node = Some(node.into());
        r
    }

    #[test]
    fn a_deploy_answer_becomes_one_result_per_node() {
        let mut r = ApiResult::failure(ReqId("s".into()), "agent-a", "1 of 2 nodes failed");
        r.data = Some(ResultData::Results(vec![
            per_node("manager", true, ""),
            per_node("worker-1", false, "fatal error: boom"),
        ]));
        let out = set_configuration("sub", &r);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            BrokerResult::ok("sub")
                .from_instance("agent-a")
                .for_node("manager")
        );
        assert_eq!(out[1].node.as_deref(), Some("worker-1"));
        assert!(!out[1].success);
        // The summary error is dropped; the node's error is its stderr.
        assert_eq!(out[1].error, None);
        assert_eq!(
            out[1].data,
            Some(Value::Vector(vec![
                Value::string(""),
                Value::string("fatal error: boom")
            ]))
        );
    }

    #[test]
    fn a_failed_nodes_output_tails_become_its_node_outputs() {
        let mut w = per_node(
            "worker-1",
            false,
            "node worker-1 exited with code 1 while starting",
        );
        w.data = Some(ResultData::Outputs(crate::api::types::NodeOutputs {
            stdout: "some stdout\n".into(),
            stderr: "fatal error: boom\n".into(),
        }));
        let mut r = ApiResult::failure(ReqId("s".into()), "agent-a", "1 of 1 nodes failed");
        r.data = Some(ResultData::Results(vec![w]));
        let out = set_configuration("sub", &r);
        assert_eq!(
            out[0].data,
            Some(Value::Vector(vec![
                Value::string("some stdout\n"),
                Value::string("fatal error: boom\n")
            ]))
        );
    }

    #[test]
    fn an_unchanged_answer_is_one_node_less_success() {
        let mut r = ApiResult::ok(ReqId("s".into()), "agent-a");
        r.unchanged = true;
        r.data = Some(ResultData::Results(vec![per_node("manager", true, "")]));
        assert_eq!(
            set_configuration("sub", &r),
            [BrokerResult::ok("sub").from_instance("agent-a")]
        );
    }

    #[test]
    fn a_restart_answer_becomes_one_result_per_node() {
        let mut r = ApiResult::failure(
            ReqId("s".into()),
            "agent-a",
            "1 of 2 nodes failed to restart",
        );
        r.data = Some(ResultData::Results(vec![
            per_node("manager", true, ""),
            per_node("worker-1", false, "could not restart node worker-1: boom"),
        ]));
        let out = super::per_node("sub", &r);
        assert_eq!(
            out[0],
            BrokerResult::ok("sub")
                .from_instance("agent-a")
                .for_node("manager")
        );
        assert_eq!(
            out[1],
            BrokerResult::failure("sub", "could not restart node worker-1: boom")
                .from_instance("agent-a")
                .for_node("worker-1")
        );
        let refused = ApiResult::failure(ReqId("s".into()), "agent-a", "agent is shutting down");
        assert_eq!(
            super::per_node("sub", &refused),
            [BrokerResult::failure("sub", "agent is shutting down").from_instance("agent-a")]
        );
    }

    #[test]
    fn an_agent_wide_refusal_is_one_node_less_failure() {
        let r = ApiResult::failure(ReqId("s".into()), "agent-a", "invalid configuration: x");
        assert_eq!(
            set_configuration("sub", &r),
            [BrokerResult::failure("sub", "invalid configuration: x").from_instance("agent-a")]
        );
        let ok = ApiResult::ok(ReqId("s".into()), "agent-a");
        assert_eq!(
            set_configuration("sub", &ok),
            [BrokerResult::ok("sub").from_instance("agent-a")]
        );
    }

    #[test]
    fn node_statuses_become_broker_records_and_a_node_not_joined_an_error() {
        let mut r = ApiResult::ok(ReqId("s".into()), "agent-a");
        let worker = NodeStatus {
            node: "worker-1".into(),
            state: State::Running,
            mgmt_role: MgmtRole::None,
            cluster_role: Role::Worker,
            pid: Some(8),
            p: None,
            metrics_port: None,
            cpu_affinity: None,
            cpu_percent: None,
            rss_bytes: None,
            restarts: None,
            uptime_secs: None,
            running_by: Some("degraded".into()),
            joined: Some(false),
            join_error: Some("node worker-1 has not joined the cluster: why".into()),
            archive: None,
        };
        r.data = Some(ResultData::NodeStatuses(vec![
            worker,
            NodeStatus {
                node: "agent-a".into(),
                state: State::Running,
                mgmt_role: MgmtRole::Agent,
                cluster_role: Role::None,
                pid: Some(7),
                p: None,
                metrics_port: None,
                cpu_affinity: None,
                cpu_percent: Some(0.5),
                rss_bytes: Some(1),
                restarts: None,
                uptime_secs: None,
                running_by: None,
                joined: None,
                join_error: None,
                archive: None,
            },
        ]));
        let all = get_nodes("sub", &r);
        let [b, not_joined] = &all[..] else {
            panic!("{all:?}")
        };
        assert_eq!(
            *not_joined,
            BrokerResult::failure("sub", "node worker-1 has not joined the cluster: why")
                .from_instance("agent-a")
        );
        assert!(b.success && b.error.is_none());
        assert_eq!(b.instance.as_deref(), Some("agent-a"));
        let Some(Value::Vector(list)) = &b.data else {
            panic!("no statuses: {b:?}")
        };
        assert_eq!(list[1].as_list().map(<[Value]>::len), Some(7));
    }
}
