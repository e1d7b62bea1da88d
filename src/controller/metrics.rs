//! The controller's figures: its deployments by result with their
//! duration, its agents at each scrape, and Prometheus' HTTP service
//! discovery of every node's metrics port across all hosts, from the
//! deployed configuration.

use std::sync::Arc;

use actix::Addr;
use prometheus::{IntGauge, Registry};
use serde_json::{json, Value};

use crate::api::types::Configuration;
use crate::controller::actors::core::{Core, Figures};
use crate::metrics::{Pending, Scrape};

/// The controller's scrape: asks the core for its figures.
pub struct ControllerScrape {
    core: Addr<Core>,
    connected: IntGauge,
    configured: IntGauge,
    deployed_nodes: IntGauge,
}

impl ControllerScrape {
    pub fn new(registry: &Registry, core: Addr<Core>) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(ControllerScrape {
            core,
            connected: gauge(
                "zeek_mgmt_controller_agents_connected",
                "Agents connected that checked in.",
            )?,
            configured: gauge(
                "zeek_mgmt_controller_agents_configured",
                "Agents the deployed configuration names.",
            )?,
            deployed_nodes: gauge(
                "zeek_mgmt_controller_deployed_nodes",
                "Nodes of the deployed configuration.",
            )?,
        })
    }
}

/// Prometheus' HTTP service discovery: one target group per node of the
/// configuration with a metrics port, at its instance's address, labelled
/// with the node, its role, its instance and the configuration's id.
pub fn service_discovery(config: Option<&Configuration>) -> Value {
    let Some(c) = config else {
        return json!([]);
    };
    let groups: Vec<Value> = c
        .nodes
        .iter()
        .filter_map(|n| {
            let port = n.metrics_port?;
            let host = c.instances.iter().find(|i| i.name == n.instance)?.host.0;
            let target = std::net::SocketAddr::new(host, port.number).to_string();
            Some(json!({
                "targets": [target],
                "labels": {
                    "zeek_node": n.name,
                    "zeek_role": n.role.zeek_node_type().trim_start_matches("Cluster::"),
                    "zeek_instance": n.instance,
                    "zeek_configuration": c.id,
                },
            }))
        })
        .collect();
    Value::Array(groups)
}

impl Scrape for Arc<ControllerScrape> {
    fn refresh(&self) -> Pending<()> {
        let me = Arc::clone(self);
        Box::pin(async move {
            match me.core.send(Figures).await {
                Ok(f) => {
                    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
                    me.connected.set(n(f.connected));
                    me.configured.set(n(f.configured));
                    me.deployed_nodes
                        .set(n(f.deployed.as_ref().map_or(0, |c| c.nodes.len())));
                }
                Err(e) => tracing::warn!("metrics: the core did not answer: {e}"),
            }
        })
    }

    fn service_discovery(&self) -> Option<Pending<String>> {
        let core = self.core.clone();
        Some(Box::pin(async move {
            let deployed = core.send(Figures).await.ok().and_then(|f| f.deployed);
            service_discovery(deployed.as_deref()).to_string()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Addr as ZeekAddr, Instance, Node, Port, Role};

    #[test]
    fn service_discovery_lists_every_node_with_a_metrics_port_at_its_host() {
        let inst = |name: &str, ip: [u8; 4]| Instance {
            name: name.into(),
            host: ZeekAddr(std::net::IpAddr::from(ip)),
            listen_port: None,
        };
        let node = |name: &str, inst: &str, role, port: Option<u16>| {
            let mut n = Node::new(name, inst, role);
            n.metrics_port = port.map(Port::tcp);
            n
        };
        let c = Configuration {
            id: "c7".into(),
            instances: vec![
                inst("agent-a", [198, 18, 0, 2]),
                inst("agent-b", [198, 18, 0, 3]),
            ],
            nodes: vec![
                node("manager", "agent-a", Role::Manager, Some(9000)),
                node("worker-1", "agent-b", Role::Worker, Some(9000)),
                node("worker-2", "agent-b", Role::Worker, None),
            ],
            ..Configuration::default()
        };
        let sd = service_discovery(Some(&c));
        assert_eq!(
            sd,
            json!([
                {"targets": ["198.18.0.2:9000"], "labels": {"zeek_node": "manager", "zeek_role": "MANAGER", "zeek_instance": "agent-a", "zeek_configuration": "c7"}},
                {"targets": ["198.18.0.3:9000"], "labels": {"zeek_node": "worker-1", "zeek_role": "WORKER", "zeek_instance": "agent-b", "zeek_configuration": "c7"}},
            ])
        );
        assert_eq!(service_discovery(None), json!([]));
    }
}
