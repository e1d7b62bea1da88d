//! `netstats`: each sniffing node's packet counters since it started, asked
//! of the node itself through its node channel (Zeek's `get_net_stats()`
//! and `packet_source()`, the `net_stats` command of the channel script),
//! as ZeekControl's `netstats` shows them. With agents, as
//! `node_dispatch_request(reqid, ["net_stats"], nodes)`; through a
//! controller, as `get_net_stats_request(reqid, nodes)` (ours).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::per_node::{self, Answers};
use super::{error_entry, get_nodes, ClientOptions, Outcome};
use crate::api::events::{NodeDispatchRequest, Request};

/// The node channel's command.
pub use crate::agent::channel::NET_STATS as ACTION;

/// One node's counters since it started, as its channel script reports
/// them.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct NetStats {
    /// The packet source: an interface (or a trace file); empty for a node
    /// that reads no packets.
    pub interface: String,
    /// Packets Zeek received.
    pub received: u64,
    /// Packets the system reports dropped before Zeek saw them.
    pub dropped: u64,
    /// Packets seen on the link (0 where the packet source cannot tell).
    pub link: u64,
    /// Bytes Zeek received.
    pub bytes: u64,
}

impl NetStats {
    /// Dropped packets in percent of those received and dropped; `None`
    /// before the first packet.
    pub fn drop_percent(&self) -> Option<f64> {
        let seen = self.received + self.dropped;
        (seen > 0).then(|| self.dropped as f64 * 100.0 / seen as f64)
    }

    fn to_json(&self, instance: &str) -> Value {
        json!({
            "instance": instance,
            "interface": self.interface,
            "received": self.received,
            "dropped": self.dropped,
            "link": self.link,
            "bytes": self.bytes,
            "drop_percent": self.drop_percent(),
        })
    }
}

/// Reads a node's answer (the script's JSON).
pub fn parse(text: &str) -> Result<NetStats, String> {
    serde_json::from_str(text).map_err(|e| format!("unreadable net_stats answer {text:?}: {e}"))
}

/// The JSON of `netstats`: `results` by node (instance, interface,
/// received, dropped, link, bytes, drop_percent), `errors` for the nodes
/// that could not answer. A node that reads no packets is left out unless
/// it was `named`.
pub fn outcome(answers: Answers, named: bool) -> Outcome {
    let mut errors = Vec::new();
    let mut results = Map::new();
    for (instance, node, answer) in answers {
        match answer.and_then(|text| parse(&text)) {
            Ok(stats) if named || !stats.interface.is_empty() => {
                results.insert(node, stats.to_json(&instance));
            }
            Ok(_) => {}
            Err(why) => errors.push(error_entry(&node, &why)),
        }
    }
    per_node::outcome_of(errors, results)
}

/// `netstats` with agents: the workers of every agent (or the nodes
/// named), asked through their channels.
pub async fn with_agents(opts: &ClientOptions, nodes: &[String]) -> Outcome {
    // ZeekControl's netstats is about workers: their names come first.
    let listing = get_nodes(opts).await;
    let mut targets: Vec<String> = nodes.to_vec();
    if targets.is_empty() {
        for (_, list) in listing.json["results"].as_object().into_iter().flatten() {
            for (node, s) in list.as_object().into_iter().flatten() {
                if s["cluster_role"] == "WORKER" {
                    targets.push(node.clone());
                }
            }
        }
        if targets.is_empty() {
            return Outcome {
                json: json!({"errors": listing.json["errors"], "results": {}}),
                ..listing
            };
        }
    }
    let names = targets.clone();
    let make = Arc::new(move |reqid| {
        Ok(Request::NodeDispatch(NodeDispatchRequest {
            reqid,
            action: vec![ACTION.to_owned()],
            nodes: names.clone(),
        }))
    });
    let mut out = per_node::outcome_from_agents(opts, make, outcome, !nodes.is_empty()).await;
    out.unreachable |= listing.unreachable;
    out
}

/// `netstats` through a controller: its `get_net_stats_response`'s
/// results, one per node (or per failure).
pub fn from_controller(args: &[crate::broker::Value], named: bool) -> Outcome {
    per_node::outcome_from_controller(args, outcome, named)
}

/// Each node's drop rate in a `netstats` outcome, by node.
pub fn drop_rates(outcome: &Outcome) -> BTreeMap<String, f64> {
    outcome.json["results"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(node, s)| Some((node.clone(), s["drop_percent"].as_f64()?)))
        .collect()
}

/// An aligned table of a `netstats` outcome, for people.
pub fn table(outcome: &Outcome) -> String {
    let mut rows = vec![[
        "node",
        "instance",
        "interface",
        "received",
        "dropped",
        "link",
        "drop%",
    ]
    .map(String::from)];
    for (node, s) in outcome.json["results"].as_object().into_iter().flatten() {
        let text = |k: &str| match &s[k] {
            Value::String(v) if v.is_empty() => "-".to_owned(),
            Value::String(v) => v.clone(),
            Value::Null => "-".to_owned(),
            v => v.to_string(),
        };
        rows.push([
            node.clone(),
            text("instance"),
            text("interface"),
            text("received"),
            text("dropped"),
            text("link"),
            s["drop_percent"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.2}")),
        ]);
    }
    super::table::aligned(&rows, &outcome.json["errors"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(interface: &str, received: u64, dropped: u64) -> Result<String, String> {
        Ok(format!(
            r#"{{"interface":"{interface}","live":true,"received":{received},"dropped":{dropped},"link":{},"bytes":{}}}"#,
            received + dropped,
            received * 60
        ))
    }

    #[test]
    fn the_sniffing_nodes_are_listed_with_their_drop_rate_and_failures_named() {
        let o = outcome(
            vec![
                (
                    "agent-a".into(),
                    "worker-1".into(),
                    answer("eth0", 900, 100),
                ),
                ("agent-a".into(), "worker-2".into(), answer("eth0", 0, 0)),
                ("agent-a".into(), "manager".into(), answer("", 0, 0)),
                (
                    "agent-b".into(),
                    "worker-3".into(),
                    Err("request timed out".into()),
                ),
            ],
            false,
        );
        let w1 = &o.json["results"]["worker-1"];
        assert_eq!(
            (w1["received"].as_u64(), w1["dropped"].as_u64()),
            (Some(900), Some(100))
        );
        assert_eq!(w1["drop_percent"].as_f64(), Some(10.0));
        assert_eq!(w1["instance"], "agent-a");
        assert_eq!(o.json["results"]["worker-2"]["drop_percent"], Value::Null);
        assert!(o.json["results"].get("manager").is_none(), "{}", o.json);
        assert_eq!(o.json["errors"][0]["source"], "worker-3");
        assert!(o.failed);
        let t = table(&o);
        assert!(t.lines().next().is_some_and(|h| h.contains("drop%")), "{t}");
        assert!(t.contains("10.00"), "{t}");
        assert!(t.contains("error from worker-3: request timed out"), "{t}");
        // A node named is listed even when it reads no packets.
        let named = outcome(vec![("a".into(), "manager".into(), answer("", 0, 0))], true);
        assert!(named.json["results"].get("manager").is_some());
        assert_eq!(drop_rates(&o).get("worker-1"), Some(&10.0));
    }

    #[test]
    fn an_unreadable_answer_is_an_error_that_quotes_it() {
        let o = outcome(vec![("a".into(), "w".into(), Ok("[1]".into()))], false);
        let e = o.json["errors"][0]["error"].as_str().unwrap_or_default();
        assert!(e.contains("unreadable net_stats answer \"[1]\""), "{e}");
    }
}
