//! The client API (`Management::Controller::API::*`): each request event
//! read into a [`Call`], and each response written as its event.

use crate::api::types::{Configuration, ReqId};
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
    /// Packet counters of nodes (ours): the workers, or the nodes named.
    GetNetStats {
        nodes: Vec<String>,
    },
    /// The crash records the agents keep of nodes (ours).
    GetCrashes {
        nodes: Vec<String>,
    },
}

impl Call {
    /// The stem of its events.
    pub fn stem(&self) -> Stem {
        match self {
            Call::GetInstances => Stem::GetInstances,
            Call::Stage(_) => Stem::StageConfiguration,
            Call::GetConfiguration { .. } => Stem::GetConfiguration,
            Call::Deploy => Stem::Deploy,
            Call::GetNodes => Stem::GetNodes,
            Call::GetIdValue { .. } => Stem::GetIdValue,
            Call::Restart { .. } => Stem::Restart,
            Call::TestTimeout { .. } => Stem::TestTimeout,
            Call::Check(_) => Stem::CheckConfiguration,
            Call::GetNetStats { .. } => Stem::GetNetStats,
            Call::GetCrashes { .. } => Stem::GetCrashes,
        }
    }
}

/// The client API's requests, each named by the stem of its two events
/// (`get_nodes` of `get_nodes_request` and `get_nodes_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stem {
    GetInstances,
    StageConfiguration,
    GetConfiguration,
    Deploy,
    GetNodes,
    GetIdValue,
    Restart,
    TestTimeout,
    CheckConfiguration,
    GetNetStats,
    GetCrashes,
}

impl Stem {
    pub const ALL: [Stem; 11] = [
        Stem::GetInstances,
        Stem::StageConfiguration,
        Stem::GetConfiguration,
        Stem::Deploy,
        Stem::GetNodes,
        Stem::GetIdValue,
        Stem::Restart,
        Stem::TestTimeout,
        Stem::CheckConfiguration,
        Stem::GetNetStats,
        Stem::GetCrashes,
    ];

    /// `get_nodes`.
    pub fn name(self) -> &'static str {
        match self {
            Stem::GetInstances => "get_instances",
            Stem::StageConfiguration => "stage_configuration",
            Stem::GetConfiguration => "get_configuration",
            Stem::Deploy => "deploy",
            Stem::GetNodes => "get_nodes",
            Stem::GetIdValue => "get_id_value",
            Stem::Restart => "restart",
            Stem::TestTimeout => "test_timeout",
            Stem::CheckConfiguration => "check_configuration",
            Stem::GetNetStats => "get_net_stats",
            Stem::GetCrashes => "get_crashes",
        }
    }

    /// The request's argument count, reqid included.
    fn arguments(self) -> usize {
        match self {
            Stem::GetInstances | Stem::Deploy | Stem::GetNodes => 1,
            Stem::GetIdValue => 3,
            Stem::StageConfiguration
            | Stem::GetConfiguration
            | Stem::Restart
            | Stem::TestTimeout
            | Stem::CheckConfiguration
            | Stem::GetNetStats
            | Stem::GetCrashes => 2,
        }
    }

    pub fn from_name(name: &str) -> Option<Stem> {
        Stem::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Stem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an event on the controller's topic is.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request: its reqid and what it asks.
    Request(ReqId, Call),
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
        if Stem::from_name(stem).is_some() {
            return Ok(Incoming::Response);
        }
    }
    let stem = name
        .strip_suffix("_request")
        .and_then(Stem::from_name)
        .ok_or_else(|| format!("unknown event {:?}", event.name))?;
    let count = stem.arguments();
    if event.args.len() != count {
        return Err(format!(
            "{} takes {count} arguments, got {}",
            event.name,
            event.args.len()
        ));
    }
    let reqid = ReqId(
        event.args[0]
            .as_str()
            .ok_or("the reqid must be a string")?
            .to_owned(),
    );
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
        Stem::GetInstances => Call::GetInstances,
        Stem::StageConfiguration => Call::Stage(read_configuration(&event.args[1])?),
        Stem::GetConfiguration => Call::GetConfiguration {
            deployed: boolean(&event.args[1])?,
        },
        Stem::Deploy => Call::Deploy,
        Stem::GetNodes => Call::GetNodes,
        Stem::GetIdValue => Call::GetIdValue {
            id: event.args[1]
                .as_str()
                .ok_or("the identifier must be a string")?
                .to_owned(),
            nodes: names(&event.args[2])?,
        },
        Stem::Restart => Call::Restart {
            nodes: names(&event.args[1])?,
        },
        Stem::CheckConfiguration => Call::Check(read_configuration(&event.args[1])?),
        Stem::GetNetStats => Call::GetNetStats {
            nodes: names(&event.args[1])?,
        },
        Stem::GetCrashes => Call::GetCrashes {
            nodes: names(&event.args[1])?,
        },
        Stem::TestTimeout => Call::TestTimeout {
            with_state: boolean(&event.args[1])?,
        },
    };
    Ok(Incoming::Request(reqid, call))
}

/// The response event `<stem>_response(reqid, arg)` on the controller's
/// topic.
pub fn response(stem: Stem, reqid: &ReqId, arg: Value) -> DataMessage {
    DataMessage {
        topic: CONTROLLER_TOPIC.to_owned(),
        value: Event {
            name: format!("{PREFIX}{stem}_response"),
            args: vec![Value::string(&reqid.0), arg],
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
            assert_eq!(
                read(&e),
                Ok(Incoming::Request(ReqId("r1".into()), call)),
                "{e:?}"
            );
        }
    }

    #[test]
    fn each_stem_is_named_by_its_events() {
        for stem in Stem::ALL {
            assert_eq!(Stem::from_name(stem.name()), Some(stem));
        }
        assert_eq!(Stem::from_name("test_noop"), None);
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
