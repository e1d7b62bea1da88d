//! Property tests of the wire layer: arbitrary bytes never panic and never
//! make the decoder reserve more than the frame limit; every valid message
//! round-trips.

use std::collections::BTreeMap;

use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::Decoder;
use zeek_mgmt_agent::api::events::{
    Notification, NotifyChange, NotifyError, Request, Response, SetConfigurationRequest, Stem,
};
use zeek_mgmt_agent::api::types::{
    Addr, ApiResult, Configuration, Instance, Node, Port, Role, State, ZeekOption,
};
use zeek_mgmt_agent::protocol::cbor::{self, EventBody, Frame};
use zeek_mgmt_agent::protocol::codec::{FrameCodec, FrameError};

const LIMIT: usize = 4096;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = cbor::decode(&data);
    }

    #[test]
    fn arbitrary_streams_respect_the_frame_limit(
        data in proptest::collection::vec(any::<u8>(), 0..8192),
        split in 0usize..8192,
    ) {
        let split = split.min(data.len());
        let mut codec = FrameCodec::new(LIMIT);
        let mut buf = BytesMut::new();
        'outer: for chunk in [&data[..split], &data[split..]] {
            buf.extend_from_slice(chunk);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        prop_assert!(frame.len() <= LIMIT);
                        let _ = cbor::decode(&frame);
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { len, max }) => {
                        prop_assert!(len > max);
                        break 'outer;
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
                prop_assert!(buf.capacity() <= LIMIT + 4 + data.len());
            }
        }
    }

    #[test]
    fn valid_messages_roundtrip(config in configuration(), reqid in "\\PC{0,20}", text in "\\PC{0,40}") {
        let frames = vec![
            Frame::Event {
                topic: text.clone(),
                body: EventBody::Request(Request::SetConfiguration(SetConfigurationRequest {
                    reqid: reqid.as_str().into(),
                    config: config.clone(),
                })),
            },
            Frame::Event {
                topic: text.clone(),
                body: EventBody::Response(Response {
                    stem: Stem::AgentStandby,
                    reqid: reqid.as_str().into(),
                    result: ApiResult::failure(reqid.as_str().into(), &text, text.clone()),
                }),
            },
            Frame::Event {
                topic: text.clone(),
                body: EventBody::Notification(Notification::Error(NotifyError {
                    instance: text.clone(),
                    msg: reqid.clone(),
                    node: text.clone(),
                })),
            },
        ];
        for frame in frames {
            let bytes = cbor::encode(&frame).expect("encode");
            let back = cbor::decode(&bytes).expect("decode");
            prop_assert_eq!(format!("{back:?}"), format!("{frame:?}"));
        }
        for node in &config.nodes {
            let n = Notification::Change(NotifyChange {
                instance: text.clone(),
                node: node.clone(),
                old: State::Running,
                new: State::Crashed,
            });
            let frame = Frame::Event { topic: text.clone(), body: EventBody::Notification(n.clone()) };
            match cbor::decode(&cbor::encode(&frame).expect("encode")).expect("decode") {
                Frame::Event { body: EventBody::Notification(back), .. } => prop_assert_eq!(back, n),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
        }
        let persisted = cbor::encode_configuration(&config).expect("encode");
        prop_assert_eq!(cbor::decode_configuration(&persisted).expect("decode"), config);
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::None),
        Just(Role::Logger),
        Just(Role::Manager),
        Just(Role::Proxy),
        Just(Role::Worker)
    ]
}

fn node() -> impl Strategy<Value = Node> {
    (
        "\\PC{0,12}",
        "\\PC{0,8}",
        role(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(proptest::collection::vec("\\PC{0,10}", 0..3)),
        proptest::option::of(("\\PC{1,8}", "\\PC{0,8}")),
        proptest::option::of("\\PC{0,8}"),
        proptest::option::of(any::<i64>()),
        proptest::collection::btree_map("\\PC{1,8}", "\\PC{0,8}", 0..3),
    )
        .prop_map(
            |(name, instance, role, port, scripts, option, interface, cpu, env)| Node {
                name,
                instance,
                role,
                state: State::Pending,
                p: port.map(Port::tcp),
                scripts,
                options: option.map(|(name, value)| vec![ZeekOption { name, value }]),
                interface,
                cpu_affinity: cpu,
                env: env.into_iter().collect::<BTreeMap<_, _>>(),
                metrics_port: port.map(|p| Port::tcp(p.wrapping_add(1))),
            },
        )
}

fn configuration() -> impl Strategy<Value = Configuration> {
    (
        "\\PC{0,16}",
        proptest::collection::vec(
            (
                "\\PC{0,8}",
                any::<[u8; 4]>(),
                proptest::option::of(any::<u16>()),
            ),
            0..3,
        ),
        proptest::collection::vec(node(), 0..5),
    )
        .prop_map(|(id, instances, nodes)| Configuration {
            id,
            instances: instances
                .into_iter()
                .map(|(name, ip, port)| Instance {
                    name,
                    host: Addr(ip.into()),
                    listen_port: port.map(Port::tcp),
                })
                .collect(),
            nodes,
            zeromq: None,
        })
}
