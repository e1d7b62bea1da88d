//! The records of Zeek's Management framework (`Management::Instance`,
//! `Management::Node`, …) as Rust types, with the value encodings of the wire
//! protocol: ports as `NUMBER/PROTO` text, addresses as text, enums as their
//! bare value names, `&optional` fields left out when absent.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A request identifier, echoed in the response (`reqid: string`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReqId(pub String);

impl fmt::Display for ReqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ReqId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ReqId {
    fn from(s: &str) -> Self {
        ReqId(s.to_owned())
    }
}

/// Transport protocol of a Zeek `port` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Unknown,
}

/// A Zeek `port`, encoded as text `NUMBER/PROTO` (`2151/tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    pub number: u16,
    pub proto: Proto,
}

impl Port {
    /// A TCP port, the only kind cluster nodes listen on.
    pub fn tcp(number: u16) -> Self {
        Port {
            number,
            proto: Proto::Tcp,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Unknown => "unknown",
        };
        write!(f, "{}/{}", self.number, proto)
    }
}

impl FromStr for Port {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (num, proto) = match s.split_once('/') {
            Some((n, p)) => (n, p),
            None => (s, "tcp"),
        };
        let number = num.trim().parse::<u16>().map_err(|_| {
            format!("invalid port {s:?}: expected NUMBER/PROTO with NUMBER 0-65535")
        })?;
        let proto = match proto.trim() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            "unknown" => Proto::Unknown,
            other => return Err(format!("invalid port {s:?}: unknown protocol {other:?}")),
        };
        Ok(Port { number, proto })
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Zeek `addr`, encoded as text in its usual literal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addr(pub IpAddr);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<IpAddr>()
            .map(Addr)
            .map_err(|_| serde::de::Error::custom(format!("invalid address {s:?}")))
    }
}

/// `Supervisor::ClusterRole`: the role of a node in the data cluster.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    #[default]
    None,
    Logger,
    Manager,
    Proxy,
    Worker,
}

impl Role {
    /// The launch order of ZeekControl: loggers, manager, proxies, workers.
    pub fn launch_rank(self) -> u8 {
        match self {
            Role::Logger => 0,
            Role::Manager => 1,
            Role::Proxy => 2,
            Role::Worker => 3,
            Role::None => 4,
        }
    }

    /// The `Cluster::NodeType` value name for `cluster-layout.zeek`.
    pub fn zeek_node_type(self) -> &'static str {
        match self {
            Role::None => "Cluster::NONE",
            Role::Logger => "Cluster::LOGGER",
            Role::Manager => "Cluster::MANAGER",
            Role::Proxy => "Cluster::PROXY",
            Role::Worker => "Cluster::WORKER",
        }
    }
}

/// `Management::State`: the state of a node process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    #[default]
    Pending,
    Running,
    Stopped,
    Failed,
    Crashed,
    Unknown,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            State::Pending => "PENDING",
            State::Running => "RUNNING",
            State::Stopped => "STOPPED",
            State::Failed => "FAILED",
            State::Crashed => "CRASHED",
            State::Unknown => "UNKNOWN",
        };
        f.write_str(s)
    }
}

/// `Management::Role`: the management role of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MgmtRole {
    #[default]
    None,
    Agent,
    Controller,
}

/// `Management::Instance`: a host running an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub host: Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<Port>,
}

/// `Management::Option`: a `name=value` redefinition passed to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeekOption {
    pub name: String,
    pub value: String,
}

/// `Management::Node`: one Zeek process of the cluster.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub instance: String,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scripts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<ZeekOption>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_affinity: Option<i64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Prometheus port of the node (an extension, see `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<Port>,
}

impl Node {
    /// A node with only the required fields set.
    pub fn new(name: &str, instance: &str, role: Role) -> Self {
        Node {
            name: name.to_owned(),
            instance: instance.to_owned(),
            role,
            state: State::Pending,
            p: None,
            scripts: None,
            options: None,
            interface: None,
            cpu_affinity: None,
            env: BTreeMap::new(),
            metrics_port: None,
        }
    }

    /// The same node with its state ignored, for comparing configurations.
    fn without_state(&self) -> Node {
        Node {
            state: State::Pending,
            ..self.clone()
        }
    }
}

/// The node's `env` may hold secrets: its values are never printed.
impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("instance", &self.instance)
            .field("role", &self.role)
            .field("state", &self.state)
            .field("p", &self.p)
            .field("scripts", &self.scripts)
            .field("options", &self.options)
            .field("interface", &self.interface)
            .field("cpu_affinity", &self.cpu_affinity)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("metrics_port", &self.metrics_port)
            .finish()
    }
}

/// `Management::Configuration`: the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Configuration {
    /// When absent on the wire, the agent makes one (a UUID).
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub instances: Vec<Instance>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// Where the manager's ZeroMQ broker listens (an extension, see
    /// `docs/protocol.md`); Zeek's own ports when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zeromq: Option<ZeromqPorts>,
}

/// The two ports of the manager's ZeroMQ XPUB/XSUB broker, the same on
/// every host of a cluster: every node reaches the broker at the manager's
/// address on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeromqPorts {
    /// The broker's XPUB socket (Zeek's `listen_xpub_endpoint`, which the
    /// nodes' `connect_xsub_endpoint` names): 5555 by default.
    pub xpub_port: Port,
    /// The broker's XSUB socket (Zeek's `listen_xsub_endpoint`, which the
    /// nodes' `connect_xpub_endpoint` names): 5556 by default.
    pub xsub_port: Port,
}

impl Default for ZeromqPorts {
    fn default() -> Self {
        ZeromqPorts {
            xpub_port: Port::tcp(DEFAULT_ZEROMQ_XPUB_PORT),
            xsub_port: Port::tcp(DEFAULT_ZEROMQ_XSUB_PORT),
        }
    }
}

/// Zeek's own port of the ZeroMQ broker's XPUB socket.
pub const DEFAULT_ZEROMQ_XPUB_PORT: u16 = 5555;
/// Zeek's own port of the ZeroMQ broker's XSUB socket.
pub const DEFAULT_ZEROMQ_XSUB_PORT: u16 = 5556;

impl Configuration {
    /// A UUID-shaped digest of the content, the id aside: the same for the
    /// same cluster, whoever computes it.
    pub fn content_id(&self) -> String {
        let probe = Configuration {
            id: String::new(),
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&probe).unwrap_or_default();
        let fnv = |seed: u64| {
            bytes.iter().fold(seed, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142));
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// The address of `instance`'s host, if the configuration declares it.
    pub fn host_of(&self, instance: &str) -> Option<std::net::IpAddr> {
        self.instances
            .iter()
            .find(|i| i.name == instance)
            .map(|i| i.host.0)
    }

    /// The manager, and the address of its instance's host where known.
    pub fn manager(&self) -> Option<(&Node, Option<std::net::IpAddr>)> {
        let m = self.nodes.iter().find(|n| n.role == Role::Manager)?;
        Some((m, self.host_of(&m.instance)))
    }

    /// The ports of the manager's ZeroMQ broker: the configuration's, or
    /// Zeek's.
    pub fn zeromq_ports(&self) -> ZeromqPorts {
        self.zeromq.unwrap_or_default()
    }

    /// Whether two configurations describe the same cluster (node states
    /// aside).
    pub fn same_cluster(&self, other: &Configuration) -> bool {
        self.id == other.id
            && self.instances == other.instances
            && self.zeromq == other.zeromq
            && self.nodes.len() == other.nodes.len()
            && self
                .nodes
                .iter()
                .zip(&other.nodes)
                .all(|(a, b)| a.without_state() == b.without_state())
    }
}

/// `Management::NodeStatus`, plus the extension keys this agent adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub state: State,
    #[serde(default)]
    pub mgmt_role: MgmtRole,
    #[serde(default)]
    pub cluster_role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Port>,
    /// Prometheus port of the node (an extension, see `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<Port>,
    /// The CPU the node is pinned to, when it is (an extension, see
    /// `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_affinity: Option<i64>,
    /// CPU use in percent of one core, sampled in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Resident memory in bytes, sampled in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Revivals of this node since its configuration was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u64>,
    /// Seconds the current process had run at the last background sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<f64>,
    /// Which rule made a `RUNNING` node running: `channel`, `degraded`,
    /// `fallback`, `port` or `settle` (an extension, see
    /// `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_by: Option<String>,
    /// Whether a `RUNNING` node has joined its cluster (it reaches the
    /// cluster backend and sees the manager), where the agent can tell (an
    /// extension, see `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<bool>,
    /// Why a node has not joined, in words for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_error: Option<String>,
    /// On the agent's own entry: its log archive (an extension, see
    /// `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStatus>,
}

/// The agent's log archive, as `get_nodes` shows it on the agent's entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveStatus {
    /// Files archived since the agent started.
    pub archived_files: u64,
    /// Their bytes before compression.
    pub archived_bytes: u64,
    /// When the last one was archived, in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived: Option<f64>,
    /// Rotated files waiting in the queue.
    pub waiting: u64,
    /// The last archive error, until a file is archived again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Free space of the archive's filesystem, in percent, at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_percent: Option<f64>,
}

/// The `data` of a `Management::Result`; its Zeek type is `any`, and this
/// agent sends one of these shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResultData {
    /// `get_nodes_response`: one status per node plus the agent.
    NodeStatuses(Vec<NodeStatus>),
    /// `set_configuration_response`: one result per local node.
    Results(Vec<ApiResult>),
    /// A failed node's output tails, in its per-node result of
    /// `set_configuration_response` (an extension, `node_outputs`).
    Outputs(NodeOutputs),
    /// Any other text a peer may send.
    Text(String),
}

/// `Management::NodeOutputs`: the tails of a node's stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeOutputs {
    pub stdout: String,
    pub stderr: String,
}

/// `Management::Result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiResult {
    pub reqid: ReqId,
    #[serde(default)]
    pub instance: String,
    #[serde(default = "default_true")]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<ResultData>,
    #[serde(default)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// In `set_configuration_response`: the agent already ran this
    /// configuration and restarted nothing (an extension, `unchanged`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unchanged: bool,
    /// In `set_configuration_response`: the agent refused the configuration
    /// before anything stopped (invalid, or its check failed): it runs what
    /// it ran (an extension, `refused`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub refused: bool,
}

fn default_true() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ApiResult {
    /// A successful result with no data.
    pub fn ok(reqid: ReqId, instance: &str) -> Self {
        ApiResult {
            reqid,
            instance: instance.to_owned(),
            success: true,
            data: None,
            error: String::new(),
            node: None,
            unchanged: false,
            refused: false,
        }
    }

    /// A failed result carrying `error`.
    pub fn failure(reqid: ReqId, instance: &str, error: impl Into<String>) -> Self {
        ApiResult {
            success: false,
            error: error.into(),
            ..ApiResult::ok(reqid, instance)
        }
    }

    /// A one-line summary for the `rx`/`tx` log lines (formatted when
    /// displayed, without building a string first).
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

/// `success` or `error "..."`, then `, node NAME` when the result names a
/// node.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a>(&'a ApiResult);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        if r.success {
            f.write_str("success")?;
        } else {
            write!(f, "error {:?}", r.error)?;
        }
        if let Some(node) = &r.node {
            write!(f, ", node {node}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
