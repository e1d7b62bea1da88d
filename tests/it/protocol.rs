//! The wire protocol against the real binary: hello, check-in, every
//! request, every error code.

use std::time::Duration;

use serde_cbor::Value;
use zeek_mgmt_agent::api::events::{
    AgentStandbyRequest, AgentWelcomeRequest, GetNodesRequest, Notification, Request, Stem,
};
use zeek_mgmt_agent::api::types::{MgmtRole, Port, Role, State};
use zeek_mgmt_agent::protocol::cbor::{self, ErrorCode, Frame, Hello};
use zeek_mgmt_agent::protocol::to_agent::{framed, Connection, Incoming, LinkError, PeerOptions};

use crate::support::*;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn map(pairs: Vec<(&str, Value)>) -> Vec<u8> {
    let v = Value::Map(pairs.into_iter().map(|(k, v)| (text(k), v)).collect());
    framed(&serde_cbor::to_vec(&v).expect("cbor"))
}

fn event(topic: &str, name: &str, args: Vec<Value>) -> Vec<u8> {
    map(vec![
        ("type", text("event")),
        ("topic", text(topic)),
        ("name", text(name)),
        ("args", Value::Array(args)),
    ])
}

#[tokio::test]
async fn hello_and_check_in() {
    let agent = Agent::start(&[]);
    let addr = agent.addr.expect("addr");
    let mut c = Connection::connect(addr, PeerOptions::default())
        .await
        .expect("connect");
    let hello = c.agent().clone();
    assert_eq!(
        hello,
        Hello {
            version: 1,
            endpoint: AGENT.into(),
            role: "agent".into(),
            heartbeat: 5,
            features: [
                "restart",
                "metrics_port",
                "node_outputs",
                "unchanged",
                "node_dispatch",
                "check_configuration",
                "get_crashes"
            ]
            .map(String::from)
            .to_vec()
        }
    );
    assert_eq!(c.topic(), format!("zeek/management/agent/{AGENT}"));
    match c.wait_notification(LONG, |_| true).await.expect("check-in") {
        Notification::AgentHello(h) => {
            assert_eq!(h.instance, AGENT);
            assert_eq!(h.host.to_string(), "127.0.0.1");
            assert_eq!(h.api_version, 1);
        }
        other => panic!("first notification: {other:?}"),
    }
}

#[tokio::test]
async fn every_request_is_answered() {
    let agent = Agent::start(&[]);
    let c = agent.connect().await;

    let r = c
        .request(
            Request::AgentWelcome(AgentWelcomeRequest { reqid: "w1".into() }),
            LONG,
        )
        .await
        .expect("welcome");
    assert_eq!((r.stem, r.reqid.0.as_str()), (Stem::AgentWelcome, "w1"));
    assert!(r.result.success);
    assert_eq!(r.result.instance, AGENT);

    let nodes = get_nodes(&c).await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let me = &nodes[0];
    assert_eq!(me.node, AGENT);
    assert_eq!(me.mgmt_role, MgmtRole::Agent);
    assert_eq!(me.state, State::Running);
    assert_eq!(me.pid, Some(i64::from(agent.pid())));
    assert_eq!(me.p, Some(Port::tcp(agent.addr.expect("addr").port())));

    let r = set_config(&c, cluster("c1", &[("worker-1", Role::Worker, None)])).await;
    assert_eq!(r.stem, Stem::SetConfiguration);
    assert!(r.result.success, "{:?}", r.result);
    let per = per_node(&r.result);
    assert_eq!(per.len(), 1);
    assert_eq!(per[0].node.as_deref(), Some("worker-1"));
    assert!(per[0].success);

    let r = c
        .request(
            Request::AgentStandby(AgentStandbyRequest { reqid: "s1".into() }),
            LONG,
        )
        .await
        .expect("standby");
    assert_eq!(r.stem, Stem::AgentStandby);
    assert!(r.result.success, "{:?}", r.result);
    let nodes = get_nodes(&c).await;
    assert_eq!(
        nodes.len(),
        1,
        "standby clears the configuration: {nodes:?}"
    );
}

#[tokio::test]
async fn protocol_errors_keep_the_connection_open() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let topic = c.topic().to_owned();
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (framed(&[0xff, 0xfe]), ErrorCode::BadFrame),
        (framed(&[]), ErrorCode::BadFrame),
        (map(vec![("type", text("gossip"))]), ErrorCode::BadFrame),
        (
            event(
                "zeek/management/agent/other",
                Stem::GetNodes.request_name(),
                vec![text("r")],
            ),
            ErrorCode::UnknownTopic,
        ),
        (
            event(
                &topic,
                "Management::Agent::API::reboot_request",
                vec![text("r")],
            ),
            ErrorCode::UnknownEvent,
        ),
        (
            event(
                &topic,
                Stem::GetNodes.request_name(),
                vec![Value::Integer(5)],
            ),
            ErrorCode::BadArgs,
        ),
        (
            event(&topic, Stem::GetNodes.request_name(), vec![]),
            ErrorCode::BadArgs,
        ),
    ];
    for (bytes, code) in cases {
        c.send_raw(bytes).expect("send");
        let (got, msg) = c.wait_error(LONG).await.expect("error frame");
        assert_eq!(got, code, "{msg}");
        assert!(!msg.is_empty());
    }
    // Still usable after all of that.
    assert_eq!(get_nodes(&c).await.len(), 1);
}

#[tokio::test]
async fn bad_args_with_a_reqid_get_their_response_event() {
    let agent = Agent::start(&[]);
    let c = agent.connect().await;
    let topic = c.topic().to_owned();
    let cases = [
        ("bad-1", vec![text("bad-1")], "expected 2 arguments"),
        (
            "bad-2",
            vec![text("bad-2"), Value::Array(vec![])],
            "invalid configuration",
        ),
        (
            "bad-3",
            vec![text("bad-3"), Value::Map(Default::default()), Value::Null],
            "expected 2 arguments",
        ),
    ];
    for (reqid, args, expect) in cases {
        let rx = c.expect_response(reqid.into());
        c.send_raw(event(&topic, Stem::SetConfiguration.request_name(), args))
            .expect("send");
        let r = tokio::time::timeout(LONG, rx)
            .await
            .expect("in time")
            .expect("response");
        assert_eq!(r.stem, Stem::SetConfiguration);
        assert!(!r.result.success);
        assert!(r.result.error.contains(expect), "{}", r.result.error);
    }
}

#[tokio::test]
async fn handshake_errors_close_the_connection() {
    let agent = Agent::start(&["--max-frame-bytes", "1024"]);
    let addr = agent.addr.expect("addr");

    let mut opts = PeerOptions::default();
    // A hello of another version.
    let s = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let code = raw_first_reply(
        s,
        map(vec![
            ("type", text("hello")),
            ("version", Value::Integer(2)),
            ("endpoint", text("c")),
            ("role", text("controller")),
            ("heartbeat", Value::Integer(0)),
        ]),
    )
    .await;
    assert_eq!(code, (ErrorCode::VersionMismatch, true));

    // A first frame that is not a hello.
    let s = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let code = raw_first_reply(s, map(vec![("type", text("heartbeat"))])).await;
    assert_eq!(code, (ErrorCode::BadHello, true));

    // A frame over the limit, after a good hello.
    opts.endpoint = "big".into();
    let mut c = Connection::connect(addr, opts).await.expect("connect");
    c.send_raw(framed(&vec![0xa0; 2000])).expect("send");
    let (code, msg) = c.wait_error(LONG).await.expect("too-large");
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(msg.contains("2000"), "{msg}");
    let closed = loop {
        match c.next_event(LONG).await {
            Err(LinkError::Closed) => break true,
            Err(_) => break false,
            Ok(_) => continue,
        }
    };
    assert!(closed, "the connection must close after too-large");

    // Another peer is unaffected by all of it.
    let other = agent.connect().await;
    assert_eq!(get_nodes(&other).await.len(), 1);
}

/// Sends `frame` as the first frame; returns the error code of the answer
/// and whether the agent then closed the connection.
async fn raw_first_reply(mut s: tokio::net::TcpStream, frame: Vec<u8>) -> (ErrorCode, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(&frame).await.expect("write");
    let len = s.read_u32().await.expect("len");
    let mut buf = vec![0; len as usize];
    s.read_exact(&mut buf).await.expect("frame");
    let code = match cbor::decode(&buf).expect("decode") {
        Frame::Error { code, .. } => code,
        other => panic!("expected an error frame, got {other:?}"),
    };
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(LONG, s.read_to_end(&mut rest))
        .await
        .is_ok();
    (code, closed)
}

#[tokio::test]
async fn request_level_errors_duplicate_overloaded_timeout() {
    // Work is held in flight by means the test controls, never by timing:
    // a node that ignores SIGTERM, with a stop grace far beyond the test,
    // holds every agent_standby until the test kills the node.
    let agent = Agent::start(&[
        "--stop-grace",
        "600",
        "--request-timeout",
        "600",
        "--max-in-flight",
        "2",
    ]);
    let c = agent.connect().await;
    let mut cfg = cluster("held", &[("w", Role::Worker, None)]);
    cfg.nodes[0]
        .env
        .insert("STANDIN_IGNORE_TERM".into(), "1".into());
    assert!(set_config(&c, cfg).await.result.success);
    let node = node_pid(&wait_nodes(&c, "running", all_running).await, "w");
    let standby = |reqid: &str| {
        c.start_request(Request::AgentStandby(AgentStandbyRequest {
            reqid: reqid.into(),
        }))
        .expect("send")
    };
    let first = standby("s1");
    // The client keeps one waiter per reqid: the duplicate's waiter takes
    // the place of the first "s2"'s, whose answer is awaited again below.
    drop(standby("s2"));
    // The same reqid again while it is in flight.
    let dup = c
        .request(
            Request::AgentStandby(AgentStandbyRequest { reqid: "s2".into() }),
            LONG,
        )
        .await
        .expect("dup answered");
    assert!(!dup.result.success);
    assert!(
        dup.result.error.contains("already in flight"),
        "{:?}",
        dup.result
    );
    let second = c.expect_response("s2".into());
    // Two in flight (max 2): a third request is overloaded.
    let over = c
        .request(
            Request::GetNodes(GetNodesRequest { reqid: "c".into() }),
            LONG,
        )
        .await
        .expect("c");
    assert!(!over.result.success);
    assert_eq!(over.result.error, "overloaded");
    // Released: both standbys finish, each answered once.
    unsafe {
        libc::kill(node, libc::SIGKILL);
    }
    for rx in [first, second] {
        let r = tokio::time::timeout(LONG, rx)
            .await
            .expect("in time")
            .expect("response");
        assert!(r.result.success, "{:?}", r.result);
    }

    // A deploy held by a port check that the test satisfies only after the
    // deadline: the readiness deadline (0.9 of the request timeout) answers
    // with the node's detail, before the tracker's bare timeout.
    let agent = Agent::start(&["--port-checks", "--request-timeout", "0.5"]);
    let c = agent.connect().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let r = set_config(
        &c,
        cluster("slow", &[("manager", Role::Manager, Some(port))]),
    )
    .await;
    assert!(!r.result.success);
    let per = per_node(&r.result);
    assert_eq!(per[0].error, "node manager not running within 0.5 s");
    let _manager_port = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    wait_nodes(&c, "the manager counted as running", all_running).await;
    assert_eq!(get_nodes(&c).await.len(), 2);

    // A standby held by a node that ignores SIGTERM for longer than the
    // request timeout: the timeout answers, the late result is dropped.
    let mut ignoring = cluster("stubborn", &[("worker-1", Role::Worker, None)]);
    ignoring.nodes[0]
        .env
        .insert("STANDIN_IGNORE_TERM".into(), "1".into());
    let r = set_config(&c, ignoring).await;
    assert!(r.result.success, "{:?}", r.result);
    let reqid = c.new_reqid();
    let r = c
        .request(Request::AgentStandby(AgentStandbyRequest { reqid }), LONG)
        .await
        .expect("standby response");
    assert!(!r.result.success);
    assert!(r.result.error.contains("timed out"), "{}", r.result.error);
    // The node is killed after the stop grace (2 s); the standby's late
    // answer is dropped.
    agent.wait_log("dropped a response: its request timed out", 1);
    assert_eq!(get_nodes(&c).await.len(), 1);
    assert_eq!(c.unmatched_responses(), 0, "the late result was sent");
}

#[tokio::test]
async fn idle_peer_without_hello_is_dropped() {
    let agent = Agent::start(&["--handshake-timeout", "0.3"]);
    let mut s = tokio::net::TcpStream::connect(agent.addr.expect("addr"))
        .await
        .expect("tcp");
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(LONG, s.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(n.is_ok());
    assert!(buf.is_empty());
}

#[tokio::test]
async fn heartbeats_arrive_when_idle() {
    let agent = Agent::start(&["--heartbeat", "1"]);
    let mut c = agent.connect().await;
    let mut got = false;
    for _ in 0..5 {
        if let Ok(Incoming::Heartbeat) = c.next_event(Duration::from_secs(3)).await {
            got = true;
            break;
        }
    }
    assert!(got, "no heartbeat from an idle agent");
}
