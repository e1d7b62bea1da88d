//! The Management records and enums in Broker's encoding: records as
//! vectors of every field in declaration order (`none` for an unset
//! optional field), enums fully qualified (`Supervisor::WORKER`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Value;
use crate::api::types::{
    Addr, Configuration, Instance, MgmtRole, Node, NodeStatus, Port, Role, State, ZeekOption,
};

/// A `Management::Result` as zeek-client reads it: `instance`, `error` and
/// `node` may be unset.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerResult {
    pub reqid: String,
    pub success: bool,
    pub instance: Option<String>,
    pub data: Option<Value>,
    pub error: Option<String>,
    pub node: Option<String>,
}

impl BrokerResult {
    /// A result of the controller's own (no instance, no node).
    pub fn ok(reqid: impl AsRef<str>) -> Self {
        BrokerResult {
            reqid: reqid.as_ref().to_owned(),
            success: true,
            instance: None,
            data: None,
            error: None,
            node: None,
        }
    }

    /// A failure of the controller's own.
    pub fn failure(reqid: impl AsRef<str>, error: impl Into<String>) -> Self {
        BrokerResult {
            success: false,
            error: Some(error.into()),
            ..BrokerResult::ok(reqid)
        }
    }

    /// The same result, about `node`.
    pub fn for_node(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }

    /// The same result, from `instance`.
    pub fn from_instance(mut self, instance: &str) -> Self {
        self.instance = Some(instance.to_owned());
        self
    }

    /// The same result, carrying `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The record's 6 fields.
    pub fn to_value(&self) -> Value {
        let text = |s: &Option<String>| Value::optional(s.clone(), Value::String);
        Value::Vector(vec![
            Value::string(&self.reqid),
            Value::Boolean(self.success),
            text(&self.instance),
            self.data.clone().unwrap_or(Value::None),
            text(&self.error),
            text(&self.node),
        ])
    }
}

impl BrokerResult {
    /// Reads a `Management::Result` record (6 fields; `data` kept as is).
    pub fn from_value(v: &Value) -> Result<BrokerResult, String> {
        let f = fields(v, "a Result", 6)?;
        let opt_text = |v: &Value, what: &str| opt(v, |t| text(t, what));
        Ok(BrokerResult {
            reqid: text(&f[0], "a result's reqid")?,
            success: match &f[1] {
                Value::Boolean(b) => *b,
                other => {
                    return Err(format!(
                        "success must be a boolean, got {}",
                        other.type_name()
                    ))
                }
            },
            instance: opt_text(&f[2], "a result's instance")?,
            data: match &f[3] {
                Value::None => None,
                other => Some(other.clone()),
            },
            error: opt_text(&f[4], "a result's error")?,
            node: opt_text(&f[5], "a result's node")?,
        })
    }
}

/// A vector of results.
pub fn results(list: &[BrokerResult]) -> Value {
    Value::Vector(list.iter().map(BrokerResult::to_value).collect())
}

/// The wire name of an enum value (`WORKER`), from its serde name.
fn bare<T: Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn qualified<T: Serialize>(module: &str, v: T) -> Value {
    Value::EnumValue(format!("{module}::{}", bare(v)))
}

fn unqualified<T: DeserializeOwned>(module: &str, v: &Value) -> Result<T, String> {
    let Value::EnumValue(name) = v else {
        return Err(format!("expected an enum value, got {}", v.type_name()));
    };
    name.strip_prefix(module)
        .and_then(|n| n.strip_prefix("::"))
        .and_then(|n| serde_json::from_value(serde_json::Value::String(n.to_owned())).ok())
        .ok_or_else(|| format!("unknown {module} value {name:?}"))
}

/// `Supervisor::ClusterRole`.
pub fn role(r: Role) -> Value {
    qualified("Supervisor", r)
}

/// `Management::State`.
pub fn state(s: State) -> Value {
    qualified("Management", s)
}

/// `Management::Role`.
pub fn mgmt_role(r: MgmtRole) -> Value {
    qualified("Management", r)
}

fn port(p: Option<Port>) -> Value {
    Value::optional(p, |p| Value::Port(p.to_string()))
}

/// `Management::Instance` (3 fields).
pub fn instance(i: &Instance) -> Value {
    Value::Vector(vec![
        Value::string(&i.name),
        Value::Address(i.host.to_string()),
        port(i.listen_port),
    ])
}

/// `Management::Node` (11 fields). `options` is always unset: zeek-client
/// cannot render them, and never sends any.
pub fn node(n: &Node) -> Value {
    Value::Vector(vec![
        Value::string(&n.name),
        Value::string(&n.instance),
        role(n.role),
        state(n.state),
        port(n.p),
        Value::optional(n.scripts.clone(), |s| {
            Value::Vector(s.into_iter().map(Value::String).collect())
        }),
        Value::None,
        Value::optional(n.interface.clone(), Value::String),
        Value::optional(n.cpu_affinity, Value::Integer),
        Value::Table(
            n.env
                .iter()
                .map(|(k, v)| (Value::string(k), Value::string(v)))
                .collect(),
        ),
        port(n.metrics_port),
    ])
}

/// `Management::Configuration` (3 fields; instances and nodes are sets).
pub fn configuration(c: &Configuration) -> Value {
    Value::Vector(vec![
        Value::string(&c.id),
        Value::Set(c.instances.iter().map(instance).collect()),
        Value::Set(c.nodes.iter().map(node).collect()),
    ])
}

/// `Management::NodeStatus` (7 fields; the agent's figures are dropped).
pub fn node_status(s: &NodeStatus) -> Value {
    Value::Vector(vec![
        Value::string(&s.node),
        state(s.state),
        mgmt_role(s.mgmt_role),
        role(s.cluster_role),
        Value::optional(s.pid, Value::Integer),
        port(s.p),
        port(s.metrics_port),
    ])
}

/// The fields of a record, at least `min` of them.
fn fields<'a>(v: &'a Value, what: &str, min: usize) -> Result<&'a [Value], String> {
    match v {
        Value::Vector(f) if f.len() >= min => Ok(f),
        Value::Vector(f) => Err(format!("{what} needs {min} fields, got {}", f.len())),
        other => Err(format!(
            "{what} must be a vector, got {}",
            other.type_name()
        )),
    }
}

fn text(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{what} must be a string, got {}", v.type_name()))
}

fn opt<T>(v: &Value, f: impl FnOnce(&Value) -> Result<T, String>) -> Result<Option<T>, String> {
    match v {
        Value::None => Ok(None),
        other => f(other).map(Some),
    }
}

fn read_port(v: &Value, what: &str) -> Result<Port, String> {
    match v {
        Value::Port(p) => p.parse::<Port>().map_err(|e| format!("{what}: {e}")),
        other => Err(format!("{what} must be a port, got {}", other.type_name())),
    }
}

/// Reads an `Instance` record.
pub fn read_instance(v: &Value) -> Result<Instance, String> {
    let f = fields(v, "an Instance", 3)?;
    let host = match &f[1] {
        Value::Address(a) => a
            .parse()
            .map(Addr)
            .map_err(|_| format!("invalid address {a:?}"))?,
        other => {
            return Err(format!(
                "an instance's host must be an address, got {}",
                other.type_name()
            ))
        }
    };
    Ok(Instance {
        name: text(&f[0], "an instance's name")?,
        host,
        listen_port: opt(&f[2], |p| read_port(p, "listen_port"))?,
    })
}

fn read_node(v: &Value) -> Result<Node, String> {
    let f = fields(v, "a Node", 10)?;
    let list = |v: &Value, what: &str| -> Result<Vec<String>, String> {
        v.as_list()
            .ok_or_else(|| format!("{what} must be a vector"))?
            .iter()
            .map(|e| text(e, what))
            .collect()
    };
    let options = opt(&f[6], |v| {
        v.as_list()
            .ok_or_else(|| "options must be a set".to_owned())?
            .iter()
            .map(|o| {
                let of = fields(o, "an Option", 2)?;
                Ok(ZeekOption {
                    name: text(&of[0], "an option's name")?,
                    value: text(&of[1], "an option's value")?,
                })
            })
            .collect()
    })?;
    let env = match &f[9] {
        Value::Table(t) => t
            .iter()
            .map(|(k, v)| Ok((text(k, "an env key")?, text(v, "an env value")?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?,
        Value::None => BTreeMap::new(),
        other => return Err(format!("env must be a table, got {}", other.type_name())),
    };
    Ok(Node {
        name: text(&f[0], "a node's name")?,
        instance: text(&f[1], "a node's instance")?,
        role: unqualified("Supervisor", &f[2])?,
        state: unqualified("Management", &f[3])?,
        p: opt(&f[4], |p| read_port(p, "p"))?,
        scripts: opt(&f[5], |v| list(v, "scripts"))?,
        options,
        interface: opt(&f[7], |v| text(v, "interface"))?,
        cpu_affinity: opt(&f[8], |v| match v {
            Value::Integer(n) => Ok(*n),
            Value::Count(n) => {
                i64::try_from(*n).map_err(|_| "cpu_affinity is too large".to_owned())
            }
            other => Err(format!(
                "cpu_affinity must be an integer, got {}",
                other.type_name()
            )),
        })?,
        env,
        metrics_port: match f.get(10) {
            Some(v) => opt(v, |p| read_port(p, "metrics_port"))?,
            None => None,
        },
    })
}

/// Reads a `Management::Configuration` a client sent.
pub fn read_configuration(v: &Value) -> Result<Configuration, String> {
    let f = fields(v, "a Configuration", 3)?;
    let list = |v: &Value, what: &str| {
        v.as_list()
            .ok_or_else(|| format!("{what} must be a set"))
            .map(<[Value]>::to_vec)
    };
    Ok(Configuration {
        id: text(&f[0], "the configuration id")?,
        instances: list(&f[1], "instances")?
            .iter()
            .map(read_instance)
            .collect::<Result<_, _>>()?,
        nodes: list(&f[2], "nodes")?
            .iter()
            .map(read_node)
            .collect::<Result<_, _>>()?,
        zeromq: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::{DataMessage, Event};

    /// The response of CONTROLLER.md's worked example, byte for byte.
    const GET_NODES_RESPONSE: &str = r#"{"type":"data-message","topic":"zeek/management/controller","@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"Management::Controller::API::get_nodes_response"},{"@data-type":"vector","data":[{"@data-type":"string","data":"6a1b5c3e-ed8c-11f1-8e45-02fc00000001"},{"@data-type":"vector","data":[{"@data-type":"vector","data":[{"@data-type":"string","data":"Jx0DmpBGrX3"},{"@data-type":"boolean","data":true},{"@data-type":"string","data":"agent-local"},{"@data-type":"vector","data":[{"@data-type":"vector","data":[{"@data-type":"string","data":"agent-local"},{"@data-type":"enum-value","data":"Management::RUNNING"},{"@data-type":"enum-value","data":"Management::AGENT"},{"@data-type":"enum-value","data":"Supervisor::NONE"},{"@data-type":"integer","data":26388},{"@data-type":"none","data":{}},{"@data-type":"none","data":{}}]},{"@data-type":"vector","data":[{"@data-type":"string","data":"manager"},{"@data-type":"enum-value","data":"Management::RUNNING"},{"@data-type":"enum-value","data":"Management::NONE"},{"@data-type":"enum-value","data":"Supervisor::MANAGER"},{"@data-type":"integer","data":26554},{"@data-type":"port","data":"2200/tcp"},{"@data-type":"port","data":"9000/tcp"}]},{"@data-type":"vector","data":[{"@data-type":"string","data":"worker-1"},{"@data-type":"enum-value","data":"Management::RUNNING"},{"@data-type":"enum-value","data":"Management::NONE"},{"@data-type":"enum-value","data":"Supervisor::WORKER"},{"@data-type":"integer","data":26552},{"@data-type":"none","data":{}},{"@data-type":"port","data":"9002/tcp"}]}]},{"@data-type":"none","data":{}},{"@data-type":"none","data":{}}]}]}]}]}]}"#;

    fn status(
        node: &str,
        mgmt: MgmtRole,
        role: Role,
        pid: i64,
        p: Option<u16>,
        m: Option<u16>,
    ) -> NodeStatus {
        NodeStatus {
            node: node.into(),
            state: State::Running,
            mgmt_role: mgmt,
            cluster_role: role,
            pid: Some(pid),
            p: p.map(Port::tcp),
            metrics_port: m.map(Port::tcp),
            cpu_affinity: None,
            cpu_percent: Some(1.0),
            rss_bytes: None,
            restarts: None,
            uptime_secs: None,
            running_by: None,
            joined: None,
            join_error: None,
            archive: None,
        }
    }

    #[test]
    fn the_specs_get_nodes_response_is_written_byte_for_byte() {
        let statuses = [
            status(
                "agent-local",
                MgmtRole::Agent,
                Role::None,
                26388,
                None,
                None,
            ),
            status(
                "manager",
                MgmtRole::None,
                Role::Manager,
                26554,
                Some(2200),
                Some(9000),
            ),
            status(
                "worker-1",
                MgmtRole::None,
                Role::Worker,
                26552,
                None,
                Some(9002),
            ),
        ];
        let r = BrokerResult::ok("Jx0DmpBGrX3")
            .from_instance("agent-local")
            .with_data(Value::Vector(statuses.iter().map(node_status).collect()));
        let m = DataMessage {
            topic: "zeek/management/controller".into(),
            value: Event {
                name: "Management::Controller::API::get_nodes_response".into(),
                args: vec![
                    Value::string("6a1b5c3e-ed8c-11f1-8e45-02fc00000001"),
                    results(&[r]),
                ],
            }
            .into_value(),
        };
        assert_eq!(m.to_json(), GET_NODES_RESPONSE);
        assert_eq!(DataMessage::parse(GET_NODES_RESPONSE), Ok(m));
    }

    fn sample() -> Configuration {
        let mut w = Node::new("worker-1", "agent-a", Role::Worker);
        w.interface = Some("eth0".into());
        w.scripts = Some(vec!["local.zeek".into(), "my script.zeek".into()]);
        w.cpu_affinity = Some(1);
        w.env.insert("FOO".into(), "bar".into());
        w.metrics_port = Some(Port::tcp(9911));
        let mut m = Node::new("manager", "agent-a", Role::Manager);
        m.p = Some(Port::tcp(2200));
        m.state = State::Running;
        Configuration {
            id: "c1".into(),
            instances: vec![
                Instance {
                    name: "agent-a".into(),
                    host: Addr([127, 0, 0, 1].into()),
                    listen_port: Some(Port::tcp(2151)),
                },
                Instance {
                    name: "agent-b".into(),
                    host: Addr([0, 0, 0, 0].into()),
                    listen_port: None,
                },
            ],
            nodes: vec![m, w],
            zeromq: None,
        }
    }

    #[test]
    fn configurations_round_trip_with_every_field() {
        let c = sample();
        let v = configuration(&c);
        let f = v.as_list().expect("fields");
        assert_eq!(f.len(), 3);
        let nodes = f[2].as_list().expect("nodes");
        assert_eq!(nodes[0].as_list().map(<[Value]>::len), Some(11));
        assert_eq!(read_configuration(&v), Ok(c));
    }

    #[test]
    fn enums_are_qualified_and_unknown_ones_refused() {
        assert_eq!(
            role(Role::Worker),
            Value::EnumValue("Supervisor::WORKER".into())
        );
        assert_eq!(
            state(State::Crashed),
            Value::EnumValue("Management::CRASHED".into())
        );
        assert_eq!(
            mgmt_role(MgmtRole::Agent),
            Value::EnumValue("Management::AGENT".into())
        );
        let mut v = configuration(&sample());
        if let Value::Vector(f) = &mut v {
            if let Value::Set(nodes) = &mut f[2] {
                if let Value::Vector(n) = &mut nodes[0] {
                    n[2] = Value::EnumValue("WORKER".into());
                }
            }
        }
        let e = read_configuration(&v).expect_err("bare enum");
        assert!(e.contains("unknown Supervisor value \"WORKER\""), "{e}");
    }

    #[test]
    fn short_or_mistyped_records_are_refused() {
        assert!(read_configuration(&Value::Vector(vec![Value::string("x")]))
            .expect_err("short")
            .contains("needs 3 fields"));
        assert!(read_configuration(&Value::Count(1))
            .expect_err("not a vector")
            .contains("must be a vector"));
    }

    #[test]
    fn results_leave_unset_fields_none() {
        let r = BrokerResult::failure("r", "boom").for_node("w1");
        assert_eq!(
            r.to_value().to_json(),
            r#"{"@data-type":"vector","data":[{"@data-type":"string","data":"r"},{"@data-type":"boolean","data":false},{"@data-type":"none","data":{}},{"@data-type":"none","data":{}},{"@data-type":"string","data":"boom"},{"@data-type":"string","data":"w1"}]}"#
        );
    }
}
