//! Requests answered per node (`node_dispatch`, `get_crashes`): each
//! agent's result holds one result per node with the node's answer as
//! text; through a controller, one Result per node. Both become the same
//! list of answers.

use serde_json::{json, Map, Value};

use super::{error_entry, per_agent_with, ClientOptions, MakeRequest, Outcome};
use crate::api::types::{ApiResult, ResultData};

/// What each node answered: `(instance, node, its text or why not)`.
pub type Answers = Vec<(String, String, Result<String, String>)>;

/// The answers of every agent's nodes, the errors of the agents that could
/// not be asked, and whether one could not be reached.
pub struct Asked {
    pub answers: Answers,
    pub errors: Vec<Value>,
    pub unreachable: bool,
}

/// Each node's answer in an agent's result.
fn node_answers(r: &ApiResult) -> Value {
    let mut nodes = Map::new();
    if let Some(ResultData::Results(list)) = &r.data {
        for n in list {
            let Some(node) = &n.node else { continue };
            let answer = match (&n.data, n.success) {
                (Some(ResultData::Text(t)), true) => json!({"ok": t}),
                _ => json!({"error": n.error}),
            };
            nodes.insert(node.clone(), answer);
        }
    }
    Value::Object(nodes)
}

/// Asks every agent the request `make` builds.
pub async fn ask_agents(opts: &ClientOptions, make: MakeRequest) -> Asked {
    let asked = per_agent_with(opts, make, node_answers).await;
    let mut answers = Answers::new();
    for (agent, list) in asked.json["results"].as_object().into_iter().flatten() {
        for (node, a) in list.as_object().into_iter().flatten() {
            let answer = match a["ok"].as_str() {
                Some(text) => Ok(text.to_owned()),
                None => Err(a["error"].as_str().unwrap_or("no answer").to_owned()),
            };
            answers.push((agent.clone(), node.clone(), answer));
        }
    }
    // Agents that could not be reached or asked are errors of their own.
    let errors = asked.json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            let source = e["source"].as_str().unwrap_or_default();
            asked.json["results"].get(source).is_none()
        })
        .cloned()
        .collect();
    Asked {
        answers,
        errors,
        unreachable: asked.unreachable,
    }
}

/// A controller's response: its Results, one per node, as answers, and the
/// errors that concern no node.
pub fn from_controller(args: &[crate::broker::Value]) -> (Answers, Vec<Value>) {
    let mut answers = Answers::new();
    let mut errors = Vec::new();
    for r in super::controller::results_of(args) {
        let Some(node) = r.node.clone() else {
            errors.push(error_entry(
                r.instance.as_deref().unwrap_or("controller"),
                r.error.as_deref().unwrap_or("no reason given"),
            ));
            continue;
        };
        let answer = match (&r.data, r.success) {
            (Some(crate::broker::Value::String(t)), true) => Ok(t.clone()),
            _ => Err(r
                .error
                .clone()
                .unwrap_or_else(|| "no reason given".to_owned())),
        };
        answers.push((r.instance.clone().unwrap_or_default(), node, answer));
    }
    (answers, errors)
}

/// The outcome of per-node `results` and `errors` (sorted by source): it
/// failed when there is any error.
pub fn outcome_of(mut errors: Vec<Value>, results: Map<String, Value>) -> Outcome {
    errors.sort_by_key(|e| e["source"].as_str().unwrap_or_default().to_owned());
    let failed = !errors.is_empty();
    Outcome {
        json: json!({"errors": errors, "results": results}),
        failed,
        unreachable: false,
    }
}

/// Adds `errors` to an outcome's, which then failed if it has any.
pub fn add_errors(out: &mut Outcome, errors: Vec<Value>) {
    if let Some(list) = out.json["errors"].as_array_mut() {
        list.extend(errors);
        out.failed |= !list.is_empty();
    }
}

/// Each node's answer to the request `make` builds, asked of every agent,
/// made into an outcome by `shape` (`named`: nodes were named), with the
/// errors of the agents that could not be asked.
pub async fn outcome_from_agents(
    opts: &ClientOptions,
    make: MakeRequest,
    shape: fn(Answers, bool) -> Outcome,
    named: bool,
) -> Outcome {
    let asked = ask_agents(opts, make).await;
    let mut out = shape(asked.answers, named);
    add_errors(&mut out, asked.errors);
    out.unreachable = asked.unreachable;
    out
}

/// A controller's per-node response made into an outcome by `shape`.
pub fn outcome_from_controller(
    args: &[crate::broker::Value],
    shape: fn(Answers, bool) -> Outcome,
    named: bool,
) -> Outcome {
    let (answers, errors) = from_controller(args);
    let mut out = shape(answers, named);
    add_errors(&mut out, errors);
    out
}
