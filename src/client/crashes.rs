//! `crashes [NODES...]`: the crash records the agents keep of their nodes'
//! unexpected exits, newest first. With agents, as
//! `get_crashes_request(reqid, nodes)`; through a controller, as
//! `Management::Controller::API::get_crashes_request(reqid, nodes)` (ours).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::per_node::{self, Answers};
use super::{error_entry, ClientOptions, Outcome};
use crate::api::events::{GetCrashesRequest, Request};

/// `results` by node: its records, each with its instance, newest first;
/// a node without records only when `named`.
fn outcome(answers: Answers, named: bool) -> Outcome {
    let mut errors = Vec::new();
    let mut results = Map::new();
    for (instance, node, answer) in answers {
        let records = answer.and_then(|text| {
            serde_json::from_str::<Vec<Value>>(&text)
                .map_err(|e| format!("unreadable crash records: {e}"))
        });
        match records {
            Ok(list) if named || !list.is_empty() => {
                let list: Vec<Value> = list
                    .into_iter()
                    .map(|mut r| {
                        r["instance"] = json!(instance);
                        r
                    })
                    .collect();
                results.insert(node, Value::Array(list));
            }
            Ok(_) => {}
            Err(why) => errors.push(error_entry(&node, &why)),
        }
    }
    per_node::outcome_of(errors, results)
}

/// `crashes` with agents.
pub async fn with_agents(opts: &ClientOptions, nodes: &[String]) -> Outcome {
    let names = nodes.to_vec();
    let make = Arc::new(move |reqid| {
        Ok(Request::GetCrashes(GetCrashesRequest {
            reqid,
            nodes: names.clone(),
        }))
    });
    per_node::outcome_from_agents(opts, make, outcome, !nodes.is_empty()).await
}

/// `crashes` through a controller: its `get_crashes_response`.
pub fn from_controller(args: &[crate::broker::Value], named: bool) -> Outcome {
    per_node::outcome_from_controller(args, outcome, named)
}

/// One line per record, newest first: when, node, instance, how it ended,
/// how long it ran, and the record's file.
pub fn table(outcome: &Outcome) -> String {
    let mut all: Vec<&Value> = outcome.json["results"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, list)| list.as_array().into_iter().flatten())
        .collect();
    all.sort_by(|a, b| {
        b["time"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["time"].as_f64().unwrap_or(0.0))
    });
    let mut rows = vec![["when", "node", "instance", "status", "ran", "record"].map(String::from)];
    for r in all {
        let text = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        rows.push([
            text("when"),
            text("node"),
            text("instance"),
            text("status"),
            r["uptime_secs"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s")),
            text("file"),
        ]);
    }
    super::table::aligned(&rows, &outcome.json["errors"])
}
