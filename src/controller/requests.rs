//! The client API (`Management::Controller::API::*`): each request event
//! read into a [`Call`], and each response written as its event.

use crate::api::types::Configuration;
use crate::broker::message::{DataMessage, Event, CONTROLLER_TOPIC};
use crate::broker::records::read_configuration;
use crate::broker::Value;

const PREFIX: &str = "Management::Controller::API::";

/// What a client asks the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    GetInstances,
    Stage(Configuration),
    GetConfiguration {
        deployed: bool,
    },
    Deploy,
    GetNodes,
    GetIdValue {
        id: String,
        nodes: Vec<String>,
    },
    Restart {
        nodes: Vec<String>,
    },
    TestTimeout {
        with_state: bool,
    },
    /// The dry run of a deployment (ours: zeek-client has no such
    /// command): each agent the configuration names checks its nodes.
    Check(Configuration),
}

impl Call {
    /// The stem of its events (`get_nodes`).
    pub fn stem(&self) -> &'static str {
        match self {
            Call::GetInstances => "get_instances",
            Call::Stage(_) => "stage_configuration",
            Call::GetConfiguration { .. } => "get_configuration",
            Call::Deploy => "deploy",
            Call::GetNodes => "get_nodes",
            Call::GetIdValue { .. } => "get_id_value",
            Call::Restart { .. } => "restart",
            Call::TestTimeout { .. } => "test_timeout",
            Call::Check(_) => "check_configuration",
        }
    }
}

/// The stems of the requests, each with its argument count (reqid
/// included).
const REQUESTS: &[(&str, usize)] = &[
    ("get_instances", 1),
    ("stage_configuration", 2),
    ("get_configuration", 2),
    ("deploy", 1),
    ("get_nodes", 1),
    ("get_id_value", 3),
    ("restart", 2),
    ("test_timeout", 2),
    ("check_configuration", 2),
];

/// What an event on the controller's topic is.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request: its reqid and what it asks.
    Request(String, Call),
    /// A response of the API (another client's business): nothing to do.
    Response,
}

/// Reads an event of the client API; `Err` with the reason when Zeek could
/// not have made the event (unknown name, wrong arguments).
pub fn read(event: &Event) -> Result<Incoming, String> {
    let Some(name) = event.name.strip_prefix(PREFIX) else {
        return Err(format!("unknown event {:?}", event.name));
    };
    if let Some(stem) = name.strip_suffix("_response") {
        if REQUESTS.iter().any(|(s, _)| *s == stem) {
            return Ok(Incoming::Response);
        }
    }
    let stem = name
        .strip_suffix("_request")
        .ok_or_else(|| format!("unknown event {:?}", event.name))?;
    let (_, count) = REQUESTS
        .iter()
        .find(|(s, _)| *s == stem)
        .ok_or_else(|| format!("unknown event {:?}", event.name))?;
    if event.args.len() != *count {
        return Err(format!(
            "{} takes {count} arguments, got {}",
            event.name,
            event.args.len()
        ));
    }
    let reqid = event.args[0]
        .as_str()
        .ok_or("the reqid must be a string")?
        .to_owned();
    let boolean = |v: &Value| match v {
        Value::Boolean(b) => Ok(*b),
        other => Err(format!("expected a boolean, got {}", other.type_name())),
    };
    let names = |v: &Value| -> Result<Vec<String>, String> {
        let list = v.as_list().ok_or("expected a set of node names")?;
        let mut out: Vec<String> = list
            .iter()
            .map(|n| {
                n.as_str()
                    .map(str::to_owned)
                    .ok_or("node names are strings")
            })
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    };
    let call = match stem {
        "get_instances" => Call::GetInstances,
        "stage_configuration" => Call::Stage(read_configuration(&event.args[1])?),
        "get_configuration" => Call::GetConfiguration {
            deployed: boolean(&event.args[1])?,
        },
        "deploy" => Call::Deploy,
        "get_nodes" => Call::GetNodes,
        "get_id_value" => Call::GetIdValue {
            id: event.args[1]
                .as_str()
                .ok_or("the identifier must be a string")?
                .to_owned(),
            nodes: names(&event.args[2])?,
        },
        "restart" => Call::Restart {
            nodes: names(&event.args[1])?,
        },
        "check_configuration" => Call::Check(read_configuration(&event.args[1])?),
        _ => Call::TestTimeout {
            with_state: boolean(&event.args[1])?,
        },
    };
    Ok(Incoming::Request(reqid, call))
}

/// The response event `<stem>_response(reqid, arg)` on the controller's
/// topic.
pub fn response(stem: &str, reqid: &str, arg: Value) -> DataMessage {
    DataMessage {
        topic: CONTROLLER_TOPIC.to_owned(),
        value: Event {
            name: format!("{PREFIX}{stem}_response"),
            args: vec![Value::string(reqid), arg],
        }
        .into_value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, args: Vec<Value>) -> Event {
        Event {
            name: format!("{PREFIX}{name}"),
            args,
        }
    }

    #[test]
    fn each_request_reads_into_its_call() {
        let r = Value::string("r1");
        let set = |names: &[&str]| Value::Set(names.iter().map(|n| Value::string(*n)).collect());
        for (e, call) in [
            (
                event("get_instances_request", vec![r.clone()]),
                Call::GetInstances,
            ),
            (event("deploy_request", vec![r.clone()]), Call::Deploy),
            (event("get_nodes_request", vec![r.clone()]), Call::GetNodes),
            (
                event(
                    "get_configuration_request",
                    vec![r.clone(), Value::Boolean(true)],
                ),
                Call::GetConfiguration { deployed: true },
            ),
            (
                event("restart_request", vec![r.clone(), set(&["w2", "w1", "w1"])]),
                Call::Restart {
                    nodes: vec!["w1".into(), "w2".into()],
                },
            ),
            (
                event(
                    "get_id_value_request",
                    vec![r.clone(), Value::string("Cluster::node"), set(&[])],
                ),
                Call::GetIdValue {
                    id: "Cluster::node".into(),
                    nodes: vec![],
                },
            ),
            (
                event(
                    "test_timeout_request",
                    vec![r.clone(), Value::Boolean(false)],
                ),
                Call::TestTimeout { with_state: false },
            ),
        ] {
            assert_eq!(read(&e), Ok(Incoming::Request("r1".into(), call)), "{e:?}");
        }
    }

    #[test]
    fn what_zeek_could_not_make_into_an_event_is_refused() {
        let r = Value::string("r1");
        for e in [
            event("test_noop_request", vec![r.clone()]),
            event("get_nodes_request", vec![]),
            event("get_nodes_request", vec![r.clone(), r.clone()]),
            event("get_nodes_request", vec![Value::Count(1)]),
            event(
                "get_configuration_request",
                vec![r.clone(), Value::string("yes")],
            ),
            event(
                "stage_configuration_request",
                vec![r.clone(), Value::Count(1)],
            ),
            Event {
                name: "Other::thing".into(),
                args: vec![],
            },
        ] {
            assert!(read(&e).is_err(), "{e:?}");
        }
        assert_eq!(
            read(&event(
                "get_nodes_response",
                vec![r.clone(), Value::Vector(vec![])]
            )),
            Ok(Incoming::Response)
        );
    }
}
