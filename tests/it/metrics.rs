//! Prometheus metrics: `/metrics` of an agent and of the controller,
//! parsed by a Prometheus text parser, after a deploy and a crash; the
//! controller's service discovery of every node's metrics port across two
//! agents; and the metric names `contrib/`'s scrape configuration and
//! dashboard use, each served.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;

use prometheus_parse::{Sample, Scrape, Value as Sampled};
use serde_json::Value;

use crate::support::controller::{free_port, Controller};
use crate::support::*;

/// `GET path` of `addr`: the status line's code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics address");
    s.set_read_timeout(Some(LONG)).expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("the Prometheus text format")
}

/// The value of `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x: &&Sample| {
            x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        })
        .map(|x| match &x.value {
            Sampled::Counter(v) | Sampled::Gauge(v) | Sampled::Untyped(v) => *v,
            Sampled::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            Sampled::Summary(_) => f64::NAN,
        })
}

/// Every metric name of a scrape, as a query names it (with the
/// histograms' `_bucket`, `_sum` and `_count`).
fn names(s: &Scrape) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for x in &s.samples {
        all.insert(x.metric.clone());
        if matches!(x.value, Sampled::Histogram(_)) {
            for suffix in ["_bucket", "_sum", "_count"] {
                all.insert(format!("{}{suffix}", x.metric));
            }
        }
    }
    all
}

#[tokio::test]
async fn metrics_after_a_deploy_and_a_crash_and_service_discovery_across_two_agents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start_with(dir, &["--metrics-addr", "127.0.0.1:0"]);
    let c_metrics = controller
        .metrics
        .expect("the controller's metrics address");
    // Nothing deployed yet: no target.
    assert_eq!(get(c_metrics, "/sd"), (200, "[]".to_owned()));
    let a = Agent::start_dialling(
        controller.agents,
        &[
            "--name",
            "agent-a",
            "--metrics-addr",
            "127.0.0.1:0",
            "--no-listen=false",
        ],
    );
    let b = Agent::start(&["--name", "agent-b", "--metrics-addr", "127.0.0.1:0"]);
    let b_port = b.addr.expect("agent-b listens").port();
    controller.wait_checked_in("agent-a");
    std::fs::write(
        dir.join("cluster.ini"),
        format!(
            "[instances]\nagent-a\nagent-b = 127.0.0.1:{b_port}\n\n\
             [manager]\ninstance = agent-a\nrole = manager\nport = {}\n\n\
             [worker-1]\ninstance = agent-b\nrole = worker\n\n\
             [worker-2]\ninstance = agent-b\nrole = worker\n",
            free_port()
        ),
    )
    .expect("cluster.ini");
    let (code, out, err) = controller.ours(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 0, "{out}{err}");

    // The service discovery: every node, at its host and metrics port.
    let (code, config, _) = controller.ours(&["get-config", "--deployed", "--as-json"]);
    assert_eq!(code, 0, "{config}");
    let config: Value = serde_json::from_str(&config).expect("json");
    let (code, sd) = get(c_metrics, "/sd");
    assert_eq!(code, 200, "{sd}");
    let sd: Value = serde_json::from_str(&sd).expect("service discovery JSON");
    let mut listed = BTreeSet::new();
    for group in sd.as_array().expect("target groups") {
        let node = group["labels"]["zeek_node"].as_str().expect("zeek_node");
        let deployed = config["nodes"]
            .as_array()
            .and_then(|all| all.iter().find(|n| n["name"] == node))
            .unwrap_or_else(|| panic!("{node} is not deployed: {config}"));
        let port = deployed["metrics_port"].as_u64().expect("metrics port");
        assert_eq!(
            group["targets"],
            serde_json::json!([format!("127.0.0.1:{port}")]),
            "{group}"
        );
        let inst = deployed["instance"].as_str().unwrap_or_default();
        assert_eq!(group["labels"]["zeek_instance"], inst, "{group}");
        listed.insert(node.to_owned());
    }
    assert_eq!(
        listed,
        ["manager", "worker-1", "worker-2"].map(String::from).into()
    );

    // A crash on agent-b: worker-1 is killed and revived.
    let mut cb = b.connect().await;
    let nodes = wait_nodes(&cb, "all running", all_running).await;
    let killed = node_pid(&nodes, "worker-1");
    // SAFETY: plain signal delivery to a node process the agent started.
    unsafe {
        libc::kill(killed, libc::SIGKILL);
    }
    let _ = cb
        .wait_notification(LONG, |n| {
            matches!(n, zeek_mgmt_agent::api::events::Notification::Error(e) if e.node == "worker-1")
        })
        .await;
    wait_nodes(&cb, "worker-1 revived", |s| {
        all_running(s)
            && s.iter()
                .any(|n| n.node == "worker-1" && n.pid != Some(i64::from(killed)))
    })
    .await;

    // agent-b's figures, once its sampler has seen the new process.
    let b_metrics = b.metrics.expect("agent-b's metrics address");
    let mut s = scrape(b_metrics);
    eventually(
        "worker-1's resident memory sampled and the archive's free space looked at",
        LONG,
        || {
            s = scrape(b_metrics);
            value(
                &s,
                "zeek_node_resident_memory_bytes",
                &[("node", "worker-1")],
            )
            .is_some_and(|v| v > 0.0)
                && value(&s, "zeek_mgmt_agent_archive_free_percent", &[]).is_some()
        },
    );
    let running = [
        ("node", "worker-1"),
        ("role", "WORKER"),
        ("state", "RUNNING"),
    ];
    assert_eq!(value(&s, "zeek_node_state", &running), Some(1.0));
    let crashed = [("node", "worker-1"), ("state", "CRASHED")];
    assert_eq!(value(&s, "zeek_node_state", &crashed), Some(0.0));
    assert_eq!(
        value(&s, "zeek_node_restarts_total", &[("node", "worker-1")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "zeek_node_restarts_total", &[("node", "worker-2")]),
        Some(0.0)
    );
    assert!(value(&s, "zeek_node_uptime_seconds", &[("node", "worker-2")]).is_some());
    assert!(value(&s, "zeek_node_cpu_percent", &[("node", "worker-2")]).is_some());
    let deployed = [("request", "set_configuration"), ("result", "success")];
    assert_eq!(
        value(&s, "zeek_mgmt_agent_requests_total", &deployed),
        Some(1.0)
    );
    let latency = value(
        &s,
        "zeek_mgmt_agent_request_duration_seconds",
        &[("request", "set_configuration")],
    );
    assert_eq!(latency, Some(1.0), "one set_configuration in the histogram");
    assert!(value(&s, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    // agent-a runs no worker: its manager only.
    let sa = scrape(a.metrics.expect("agent-a's metrics address"));
    assert_eq!(
        value(
            &sa,
            "zeek_node_state",
            &[("node", "manager"), ("state", "RUNNING")]
        ),
        Some(1.0)
    );
    assert!(value(&sa, "zeek_node_state", &[("node", "worker-1")]).is_none());

    // The controller's figures.
    let sc = scrape(c_metrics);
    assert_eq!(
        value(&sc, "zeek_mgmt_controller_agents_connected", &[]),
        Some(2.0)
    );
    assert_eq!(
        value(&sc, "zeek_mgmt_controller_deployed_nodes", &[]),
        Some(3.0)
    );
    assert_eq!(
        value(
            &sc,
            "zeek_mgmt_controller_deployments_total",
            &[("result", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &sc,
            "zeek_mgmt_controller_deployment_duration_seconds",
            &[("result", "success")]
        ),
        Some(1.0)
    );
    let staged = [("request", "stage_configuration"), ("result", "success")];
    assert_eq!(
        value(&sc, "zeek_mgmt_controller_requests_total", &staged),
        Some(1.0)
    );
    assert!(value(
        &sc,
        "zeek_mgmt_controller_request_duration_seconds",
        &[("request", "deploy")]
    )
    .is_some());
    assert_eq!(get(c_metrics, "/nothing").0, 404);

    // Every metric contrib/ queries is served by an agent or the controller.
    let served: BTreeSet<String> = names(&s).union(&names(&sc)).cloned().collect();
    for file in [
        "contrib/prometheus/zeek-mgmt.rules.yml",
        "contrib/grafana/zeek-cluster.json",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} queries no metric");
        let missing: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} queries metrics nobody serves: {missing:?}"
        );
    }
    drop(cb);
}

/// The metric names a file's queries use: `zeek_…` and `process_…` words.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    for ch in text.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
            continue;
        }
        // The service discovery's labels are not metrics.
        let label = [
            "zeek_node",
            "zeek_role",
            "zeek_instance",
            "zeek_configuration",
        ]
        .contains(&word.as_str());
        if (word.starts_with("zeek_") || word.starts_with("process_")) && !label {
            out.insert(std::mem::take(&mut word));
        }
        word.clear();
    }
    out
}
