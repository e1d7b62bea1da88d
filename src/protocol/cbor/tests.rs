use super::*;
use crate::api::events::{
    AgentStandbyRequest, AgentWelcomeRequest, GetNodesRequest, SetConfigurationRequest,
};
use crate::api::types::{Instance, MgmtRole, NodeStatus, Port, ResultData, Role, ZeekOption};

fn sample_config() -> Configuration {
    let mut w = Node::new("worker-1", "agent-a", Role::Worker);
    w.interface = Some("eth0".into());
    w.cpu_affinity = Some(1);
    w.scripts = Some(vec!["site/x.zeek".into()]);
    w.options = Some(vec![ZeekOption {
        name: "ignore_checksums".into(),
        value: "T".into(),
    }]);
    w.env.insert("A".into(), "b".into());
    let mut m = Node::new("manager", "agent-a", Role::Manager);
    m.p = Some(Port::tcp(27760));
    Configuration {
        id: "cfg-1".into(),
        instances: vec![Instance {
            name: "agent-a".into(),
            host: Addr("10.0.0.1".parse().expect("addr")),
            listen_port: Some(Port::tcp(2151)),
        }],
        nodes: vec![m, w],
        zeromq: None,
    }
}

fn roundtrip(frame: &Frame) -> Frame {
    decode(&encode(frame).expect("encode")).expect("decode")
}

fn cbor(v: &Value) -> Vec<u8> {
    serde_cbor::to_vec(v).expect("to_vec")
}

#[test]
fn hello_heartbeat_error_roundtrip() {
    let hello = Hello {
        version: 1,
        endpoint: "ctl".into(),
        role: "controller".into(),
        heartbeat: 5,
        features: vec![],
    };
    assert!(matches!(roundtrip(&Frame::Hello(hello.clone())), Frame::Hello(h) if h == hello));
    let with = hello.clone().with_features(&["restart", "metrics_port"]);
    assert!(
        matches!(roundtrip(&Frame::Hello(with.clone())), Frame::Hello(h) if h == with && h.has_feature("restart"))
    );
    assert!(matches!(roundtrip(&Frame::Heartbeat), Frame::Heartbeat));
    let err = Frame::Error {
        code: ErrorCode::UnknownTopic,
        message: "x".into(),
    };
    assert!(matches!(
        roundtrip(&err),
        Frame::Error { code: ErrorCode::UnknownTopic, message } if message == "x"
    ));
}

#[test]
fn every_request_roundtrips() {
    let reqs = vec![
        Request::SetConfiguration(SetConfigurationRequest {
            reqid: "r1".into(),
            config: sample_config(),
        }),
        Request::GetNodes(GetNodesRequest { reqid: "r2".into() }),
        Request::AgentWelcome(AgentWelcomeRequest { reqid: "r3".into() }),
        Request::AgentStandby(AgentStandbyRequest { reqid: "r4".into() }),
    ];
    for req in reqs {
        let frame = Frame::Event {
            topic: "t".into(),
            body: EventBody::Request(req.clone()),
        };
        let Frame::Event {
            topic,
            body: EventBody::Request(back),
        } = roundtrip(&frame)
        else {
            panic!("not a request");
        };
        assert_eq!(topic, "t");
        assert_eq!(back.stem(), req.stem());
        assert_eq!(back.reqid(), req.reqid());
        if let (Request::SetConfiguration(a), Request::SetConfiguration(b)) = (&back, &req) {
            assert_eq!(a.config, b.config);
        }
    }
}

#[test]
fn every_response_and_notification_roundtrips() {
    let status = NodeStatus {
        node: "agent-a".into(),
        state: State::Running,
        mgmt_role: MgmtRole::Agent,
        cluster_role: Role::None,
        pid: Some(42),
        p: Some(Port::tcp(2151)),
        metrics_port: None,
        cpu_affinity: None,
        cpu_percent: Some(1.5),
        rss_bytes: Some(1024),
        restarts: Some(0),
        uptime_secs: Some(3.25),
        running_by: None,
        joined: None,
        join_error: None,
        archive: None,
    };
    let mut per_node = ApiResult::failure("r".into(), "agent-a", "boom");
    per_node.node = Some("worker-1".into());
    let results = vec![
        ApiResult {
            data: Some(ResultData::NodeStatuses(vec![status])),
            ..ApiResult::ok("r".into(), "agent-a")
        },
        ApiResult {
            data: Some(ResultData::Results(vec![per_node])),
            ..ApiResult::ok("r".into(), "agent-a")
        },
        ApiResult::failure("r".into(), "agent-a", "nope"),
    ];
    for stem in Stem::ALL {
        for result in &results {
            let resp = Response {
                stem,
                reqid: "r".into(),
                result: result.clone(),
            };
            let frame = Frame::Event {
                topic: "t".into(),
                body: EventBody::Response(resp.clone()),
            };
            match roundtrip(&frame) {
                Frame::Event {
                    body: EventBody::Response(back),
                    ..
                } => assert_eq!(back, resp),
                other => panic!("not a response: {other:?}"),
            }
        }
    }
    let notes = vec![
        Notification::AgentHello(NotifyAgentHello {
            instance: "a".into(),
            host: Addr("::1".parse().expect("addr")),
            api_version: 1,
        }),
        Notification::Change(NotifyChange {
            instance: "a".into(),
            node: sample_config().nodes[1].clone(),
            old: State::Running,
            new: State::Crashed,
        }),
        Notification::Error(NotifyError {
            instance: "a".into(),
            msg: "m".into(),
            node: "n".into(),
        }),
        Notification::Log(NotifyLog {
            instance: "a".into(),
            msg: "m".into(),
            node: String::new(),
        }),
    ];
    for n in notes {
        let frame = Frame::Event {
            topic: "t".into(),
            body: EventBody::Notification(n.clone()),
        };
        match roundtrip(&frame) {
            Frame::Event {
                body: EventBody::Notification(back),
                ..
            } => assert_eq!(back, n),
            other => panic!("not a notification: {other:?}"),
        }
    }
}

#[test]
fn configuration_persists() {
    let c = sample_config();
    let bytes = encode_configuration(&c).expect("encode");
    assert_eq!(decode_configuration(&bytes), Ok(c));
    assert!(decode_configuration(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn unknown_keys_are_ignored() {
    let v = map_of(vec![
        ("type", text("hello")),
        ("version", Value::Integer(1)),
        ("endpoint", text("c")),
        ("role", text("client")),
        ("heartbeat", Value::Integer(0)),
        ("colour", text("blue")),
    ]);
    assert!(matches!(decode(&cbor(&v)), Ok(Frame::Hello(_))));
    let mut node = to_value(&Node::new("w", "a", Role::Worker)).expect("node");
    if let Value::Map(m) = &mut node {
        m.insert(text("future_field"), Value::Bool(true));
    }
    let config = map_of(vec![
        ("id", text("x")),
        ("nodes", Value::Array(vec![node])),
        ("extra", Value::Null),
    ]);
    let ev = map_of(vec![
        ("type", text("event")),
        ("topic", text("t")),
        (
            "name",
            Value::Text(Stem::SetConfiguration.request_name().to_owned()),
        ),
        ("args", Value::Array(vec![text("r"), config])),
        ("ttl", Value::Integer(3)),
    ]);
    match decode(&cbor(&ev)) {
        Ok(Frame::Event {
            body: EventBody::Request(Request::SetConfiguration(r)),
            ..
        }) => assert_eq!(r.config.nodes[0].name, "w"),
        other => panic!("expected set_configuration, got {other:?}"),
    }
}

#[test]
fn malformed_input_is_refused_with_its_code() {
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (vec![], ErrorCode::BadFrame),
        (vec![0xff, 0x00], ErrorCode::BadFrame),
        (cbor(&Value::Array(vec![])), ErrorCode::BadFrame),
        (cbor(&map_of(vec![("x", Value::Null)])), ErrorCode::BadFrame),
        (
            cbor(&map_of(vec![("type", text("gossip"))])),
            ErrorCode::BadFrame,
        ),
        (
            cbor(&map_of(vec![("type", Value::Integer(1))])),
            ErrorCode::BadFrame,
        ),
        // Truncated: a map announcing two pairs with one given.
        (vec![0xa2, 0x61, b'a', 0x01], ErrorCode::BadFrame),
        // Text that is not UTF-8.
        (
            vec![0xa1, 0x64, b't', b'y', 0xff, b'e', 0x01],
            ErrorCode::BadFrame,
        ),
        (
            cbor(&map_of(vec![
                ("type", text("hello")),
                ("version", Value::Integer(-1)),
            ])),
            ErrorCode::BadHello,
        ),
        (
            cbor(&map_of(vec![
                ("type", text("event")),
                ("topic", text("t")),
                ("name", text("Management::Agent::API::launch_missiles")),
                ("args", Value::Array(vec![])),
            ])),
            ErrorCode::UnknownEvent,
        ),
        (
            cbor(&map_of(vec![
                ("type", text("event")),
                ("topic", text("t")),
                (
                    "name",
                    Value::Text(Stem::GetNodes.request_name().to_owned()),
                ),
                ("args", Value::Array(vec![Value::Integer(7)])),
            ])),
            ErrorCode::BadArgs,
        ),
        (
            cbor(&map_of(vec![
                ("type", text("event")),
                ("topic", text("t")),
                (
                    "name",
                    Value::Text(Stem::GetNodes.request_name().to_owned()),
                ),
                ("args", Value::Array(vec![])),
            ])),
            ErrorCode::BadArgs,
        ),
    ];
    for (bytes, code) in cases {
        match decode(&bytes) {
            Err(e) => assert_eq!(e.code(), code, "{bytes:?}: {e}"),
            Ok(f) => panic!("{bytes:?} decoded as {f:?}"),
        }
    }
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    let mut bytes = vec![0x81; 100_000];
    bytes.push(0x00);
    assert_eq!(
        decode(&bytes).map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::BadFrame)
    );
}

#[test]
fn bad_args_with_reqid_become_invalid_requests() {
    let ev = |args| {
        cbor(&map_of(vec![
            ("type", text("event")),
            ("topic", text("t")),
            (
                "name",
                Value::Text(Stem::SetConfiguration.request_name().to_owned()),
            ),
            ("args", Value::Array(args)),
        ]))
    };
    for args in [
        vec![text("r9")],
        vec![text("r9"), Value::Integer(3)],
        vec![
            text("r9"),
            map_of(vec![("nodes", Value::Array(vec![text("x")]))]),
        ],
    ] {
        match decode(&ev(args)) {
            Ok(Frame::Event {
                body: EventBody::Request(Request::Invalid { stem, reqid, error }),
                ..
            }) => {
                assert_eq!(stem, Stem::SetConfiguration);
                assert_eq!(reqid.0, "r9");
                assert!(!error.is_empty());
            }
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }
}

fn status(name: &str, uptime: Option<f64>) -> NodeStatus {
    NodeStatus {
        node: name.into(),
        state: State::Running,
        mgmt_role: MgmtRole::None,
        cluster_role: Role::Worker,
        pid: Some(7),
        p: None,
        metrics_port: None,
        cpu_affinity: None,
        cpu_percent: Some(0.5),
        rss_bytes: Some(4096),
        restarts: Some(1),
        joined: None,
        join_error: None,
        archive: None,
        uptime_secs: uptime,
        running_by: None,
    }
}

/// The event as the generic path writes it (the result serialized whole).
fn plain(topic: &str, r: &Response) -> Vec<u8> {
    to_bytes(|out| event(topic, r.stem.response_name(), (&r.reqid.0, &r.result), out))
        .expect("encode")
}

#[test]
fn node_lists_encoded_once_are_reused_byte_for_byte_and_never_stale() {
    let list = vec![status("w1", Some(1.5)), status("w2", None)];
    let mut with_node = ApiResult::failure("r2".into(), "agent-a", "partly");
    with_node.node = Some("w2".into());
    let results = [
        ApiResult::ok("r1".into(), "agent-a"),
        with_node,
        ApiResult::ok("r3".into(), ""),
    ];
    for base in results {
        for list in [list.clone(), vec![], list.clone()] {
            let r = Response {
                stem: Stem::GetNodes,
                reqid: base.reqid.clone(),
                result: ApiResult {
                    data: Some(ResultData::NodeStatuses(list)),
                    ..base.clone()
                },
            };
            // A miss, then a hit: both as the generic path.
            for _ in 0..2 {
                let bytes = encode_event("t", &EventBody::Response(r.clone())).expect("encode");
                assert_eq!(bytes, plain("t", &r));
            }
        }
    }
    // A change in any field is seen: the next answer is not the cached one.
    let mut changed = list.clone();
    changed[1].state = State::Crashed;
    for l in [list, changed] {
        let r = Response {
            stem: Stem::GetNodes,
            reqid: "x".into(),
            result: ApiResult {
                data: Some(ResultData::NodeStatuses(l.clone())),
                ..ApiResult::ok("x".into(), "a")
            },
        };
        let frame = Frame::Event {
            topic: "t".into(),
            body: EventBody::Response(r),
        };
        match roundtrip(&frame) {
            Frame::Event {
                body: EventBody::Response(back),
                ..
            } => assert_eq!(back.result.data, Some(ResultData::NodeStatuses(l))),
            other => panic!("not a response: {other:?}"),
        }
    }
}
