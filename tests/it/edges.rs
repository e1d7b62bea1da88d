//! Configurations and frames at the edges: each gets a clear error (or is
//! handled), and nothing that runs is disturbed.

use serde_cbor::Value;
use zeek_mgmt_agent::api::events::Stem;
use zeek_mgmt_agent::api::types::{Node, Role};
use zeek_mgmt_agent::protocol::cbor::ErrorCode;
use zeek_mgmt_agent::protocol::to_agent::framed;

use crate::support::*;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn event(topic: &str, args: Vec<Value>) -> Vec<u8> {
    let v = Value::Map(
        [
            ("type", text("event")),
            ("topic", text(topic)),
            (
                "name",
                Value::Text(Stem::SetConfiguration.request_name().to_owned()),
            ),
            ("args", Value::Array(args)),
        ]
        .into_iter()
        .map(|(k, v)| (text(k), v))
        .collect(),
    );
    framed(&serde_cbor::to_vec(&v).expect("cbor"))
}

/// One running worker; returns its pid list to compare later.
async fn baseline(
    c: &zeek_mgmt_agent::protocol::to_agent::Connection,
) -> Vec<(String, Option<i64>)> {
    assert!(
        set_config(c, cluster("base", &[("w", Role::Worker, None)]))
            .await
            .result
            .success
    );
    wait_nodes(c, "running", all_running)
        .await
        .into_iter()
        .map(|n| (n.node, n.pid))
        .collect()
}

async fn unchanged(
    c: &zeek_mgmt_agent::protocol::to_agent::Connection,
    before: &[(String, Option<i64>)],
) {
    let now: Vec<_> = get_nodes(c)
        .await
        .into_iter()
        .map(|n| (n.node, n.pid))
        .collect();
    assert_eq!(now, before);
}

#[tokio::test]
async fn ten_thousand_nodes() {
    let agent = Agent::start(&[]);
    let c = agent.connect().await;
    let mut cfg = cluster("big", &[("local", Role::Worker, None)]);
    cfg.instances.push(instance("far"));
    for i in 0..9_999 {
        cfg.nodes
            .push(Node::new(&format!("w{i:05}"), "far", Role::Worker));
    }
    let r = set_config(&c, cfg).await;
    assert!(r.result.success, "{:?}", r.result.error);
    assert_eq!(per_node(&r.result).len(), 1, "one result per local node");
    let nodes = wait_nodes(&c, "running", all_running).await;
    assert_eq!(nodes.len(), 2);
    let layout = std::fs::read_to_string(agent.node_dir("local").join("cluster-layout.zeek"))
        .expect("layout");
    assert_eq!(layout.matches("$node_type=").count(), 10_000);
}

#[tokio::test]
async fn a_mebibyte_of_env_is_refused_clearly() {
    let agent = Agent::start(&[]);
    let c = agent.connect().await;
    let before = baseline(&c).await;
    let mut cfg = cluster("env", &[("w", Role::Worker, None)]);
    for i in 0..16 {
        cfg.nodes[0]
            .env
            .insert(format!("K{i}"), "v".repeat(64 * 1024));
    }
    let r = set_config(&c, cfg).await;
    assert!(!r.result.success);
    assert!(
        r.result.error.contains("bytes of env and arguments"),
        "{}",
        r.result.error
    );
    unchanged(&c, &before).await;
}

#[tokio::test]
async fn hostile_values_get_clear_errors_and_change_nothing() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let before = baseline(&c).await;
    let topic = c.topic().to_owned();

    // Deep nesting inside the configuration: the frame cannot be decoded.
    // Encoded by hand: 100,000 nested one-element arrays around a null.
    let mut nested = vec![0x81u8; 100_000];
    nested.push(0xf6);
    let mut frame = serde_cbor::to_vec(&Value::Map(
        [
            ("type", text("event")),
            ("topic", text(&topic)),
            (
                "name",
                Value::Text(Stem::SetConfiguration.request_name().to_owned()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (text(k), v))
        .collect(),
    ))
    .expect("cbor");
    // Turn the 3-pair map into a 4-pair map whose last value is the nesting.
    frame[0] = 0xa4;
    frame.extend(serde_cbor::to_vec(&text("args")).expect("key"));
    frame.extend(nested);
    c.send_raw(framed(&frame)).expect("send");
    let (code, _) = c.wait_error(LONG).await.expect("error");
    assert_eq!(code, ErrorCode::BadFrame);

    // Text that is not UTF-8 as the reqid.
    let body = [
        &[0xa4u8][..],
        &serde_cbor::to_vec(&text("type")).expect("k"),
        &serde_cbor::to_vec(&text("event")).expect("v"),
        &serde_cbor::to_vec(&text("topic")).expect("k"),
        &serde_cbor::to_vec(&text(&topic)).expect("v"),
        &serde_cbor::to_vec(&text("name")).expect("k"),
        &serde_cbor::to_vec(&Value::Text(Stem::GetNodes.request_name().to_owned())).expect("v"),
        &serde_cbor::to_vec(&text("args")).expect("k"),
        &[0x81, 0x62, 0xc3, 0x28][..], // ["\xc3\x28"]: invalid UTF-8
    ]
    .concat();
    c.send_raw(framed(&body)).expect("send");
    let (code, _) = c.wait_error(LONG).await.expect("error");
    assert_eq!(code, ErrorCode::BadFrame);

    // Negative and huge integers where counts and ports go.
    let node = |extra: Vec<(&str, Value)>| {
        let mut pairs = vec![
            ("name", text("w2")),
            ("instance", text(AGENT)),
            ("role", text("WORKER")),
        ];
        pairs.extend(extra);
        Value::Map(pairs.into_iter().map(|(k, v)| (text(k), v)).collect())
    };
    let config = |n: Value| {
        Value::Map(
            [
                ("id", text("edge")),
                (
                    "instances",
                    Value::Array(vec![Value::Map(
                        [("name", text(AGENT)), ("host", text("127.0.0.1"))]
                            .into_iter()
                            .map(|(k, v)| (text(k), v))
                            .collect(),
                    )]),
                ),
                ("nodes", Value::Array(vec![n])),
            ]
            .into_iter()
            .map(|(k, v)| (text(k), v))
            .collect(),
        )
    };
    let cases = [
        (
            "neg-cpu",
            node(vec![("cpu_affinity", Value::Integer(-5))]),
            "cpu_affinity -5",
        ),
        (
            "huge-cpu",
            node(vec![("cpu_affinity", Value::Integer(i128::from(i64::MAX)))]),
            "cpu_affinity 9223372036854775807",
        ),
        (
            "too-huge-cpu",
            node(vec![("cpu_affinity", Value::Integer(i128::from(u64::MAX)))]),
            "invalid configuration",
        ),
        (
            "big-port",
            node(vec![("p", text("70000/tcp"))]),
            "invalid port",
        ),
        (
            "neg-port",
            node(vec![("p", text("-1/tcp"))]),
            "invalid port",
        ),
        (
            "int-port",
            node(vec![("p", Value::Integer(-3))]),
            "invalid configuration",
        ),
    ];
    for (reqid, n, expect) in cases {
        let rx = c.expect_response(reqid.into());
        c.send_raw(event(&topic, vec![text(reqid), config(n)]))
            .expect("send");
        let r = tokio::time::timeout(LONG, rx)
            .await
            .expect("in time")
            .expect("response");
        assert!(!r.result.success, "{reqid}");
        assert!(
            r.result.error.contains(expect),
            "{reqid}: {}",
            r.result.error
        );
    }
    // A reqid that is a huge integer: no usable reqid, bad-args.
    c.send_raw(event(&topic, vec![Value::Integer(i128::from(u64::MAX))]))
        .expect("send");
    let (code, _) = c.wait_error(LONG).await.expect("error");
    assert_eq!(code, ErrorCode::BadArgs);
    unchanged(&c, &before).await;
}
