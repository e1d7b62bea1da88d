//! The serializer against serde_cbor's: the same bytes for every value.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Serialize;
use serde_cbor::Value;

use super::*;
use crate::api::types::{
    Addr, ApiResult, MgmtRole, NodeStatus, Port, ReqId, ResultData, Role, State,
};

fn ours<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    to_sink(v, &mut out).expect("encode");
    out
}

fn theirs<T: Serialize>(v: &T) -> Vec<u8> {
    serde_cbor::to_vec(v).expect("serde_cbor")
}

#[derive(Debug, Clone, Serialize)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, String),
    Struct { a: Option<bool>, b: Vec<f64> },
}

/// A sequence whose length is not known up front (an indefinite array).
struct Unsized(Vec<u16>);

impl Serialize for Unsized {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().filter(|v| **v % 3 != 0))
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<i32>().prop_map(Shape::Newtype),
        (any::<u8>(), "\\PC{0,30}").prop_map(|(a, b)| Shape::Tuple(a, b)),
        (
            proptest::option::of(any::<bool>()),
            proptest::collection::vec(any::<f64>(), 0..4)
        )
            .prop_map(|(a, b)| Shape::Struct { a, b }),
    ]
}

/// Any CBOR value serde can write (tags aside, which the protocol does
/// not use).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i128 << 64)..(1i128 << 64)).prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
        "\\PC{0,300}".prop_map(Value::Text),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(inner.clone(), inner, 0..8).prop_map(Value::Map),
        ]
    })
}

fn status() -> impl Strategy<Value = NodeStatus> {
    (
        "\\PC{0,12}",
        prop_oneof![
            Just(State::Running),
            Just(State::Crashed),
            Just(State::Pending)
        ],
        prop_oneof![Just(Role::Worker), Just(Role::Manager), Just(Role::None)],
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<f64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<f64>()),
    )
        .prop_map(
            |(node, state, cluster_role, pid, port, cpu, rss, restarts, uptime)| NodeStatus {
                node,
                state,
                mgmt_role: MgmtRole::None,
                cluster_role,
                pid,
                p: port.map(Port::tcp),
                metrics_port: None,
                cpu_affinity: None,
                cpu_percent: cpu,
                rss_bytes: rss,
                restarts,
                uptime_secs: uptime,
                running_by: None,
                joined: None,
                join_error: None,
                archive: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scalars_encode_as_serde_cbor_does(
        f in any::<f64>(),
        g in any::<f32>(),
        i in any::<i64>(),
        u in any::<u64>(),
        w in -(1i128 << 64)..(1i128 << 64),
        c in any::<char>(),
        s in "\\PC{0,100}",
    ) {
        prop_assert_eq!(ours(&f), theirs(&f));
        prop_assert_eq!(ours(&g), theirs(&g));
        prop_assert_eq!(ours(&i), theirs(&i));
        prop_assert_eq!(ours(&u), theirs(&u));
        prop_assert_eq!(ours(&w), theirs(&w));
        prop_assert_eq!(ours(&c), theirs(&c));
        prop_assert_eq!(ours(&s), theirs(&s));
        prop_assert_eq!(ours(&(i as i8, i as i16, i as i32, u as u8, u as u16, u as u32)),
            theirs(&(i as i8, i as i16, i as i32, u as u8, u as u16, u as u32)));
    }

    #[test]
    fn values_encode_as_serde_cbor_does(v in value()) {
        prop_assert_eq!(ours(&v), theirs(&v));
    }

    #[test]
    fn records_and_enums_encode_as_serde_cbor_does(
        shapes in proptest::collection::vec(shape(), 0..6),
        statuses in proptest::collection::vec(status(), 0..6),
        lengthless in proptest::collection::vec(any::<u16>(), 0..40),
        map in proptest::collection::btree_map("\\PC{0,8}", proptest::option::of(any::<i16>()), 0..6),
    ) {
        prop_assert_eq!(ours(&shapes), theirs(&shapes));
        prop_assert_eq!(ours(&Unsized(lengthless.clone())), theirs(&Unsized(lengthless)));
        prop_assert_eq!(ours(&map), theirs(&map));
        let mut result = ApiResult::ok(ReqId("r".into()), "agent");
        result.data = Some(ResultData::NodeStatuses(statuses));
        prop_assert_eq!(ours(&result), theirs(&result));
    }
}

#[test]
fn edge_values_encode_as_serde_cbor_does() {
    for f in [
        0.0,
        -0.0,
        1.0,
        0.5,
        65504.0,
        65520.0,
        1e-8,
        5.960_464_477_539_063e-8,
        f64::from(f32::MAX),
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ] {
        assert_eq!(ours(&f), theirs(&f), "{f}");
    }
    for i in [
        0i64,
        23,
        24,
        255,
        256,
        65535,
        65536,
        -1,
        -24,
        -25,
        -256,
        -257,
        i64::MIN,
        i64::MAX,
    ] {
        assert_eq!(ours(&i), theirs(&i), "{i}");
    }
    for w in [u128::from(u64::MAX) + 1, u128::MAX] {
        assert!(to_sink(&w, &mut Vec::new()).is_err());
    }
    assert!(to_sink(&(-(1i128 << 64) - 1), &mut Vec::new()).is_err());
    let unit = ();
    assert_eq!(ours(&unit), theirs(&unit));
    let bytes = serde_cbor::Value::Bytes(vec![1, 2, 3]);
    assert_eq!(ours(&bytes), theirs(&bytes));
    let long = "x".repeat(70_000);
    assert_eq!(ours(&long), theirs(&long));
    let addr = Addr("2001:db8::1".parse().expect("ip"));
    assert_eq!(ours(&addr), theirs(&addr));
    assert_eq!(ours(&Port::tcp(2151)), theirs(&Port::tcp(2151)));
    // Display output longer than the stack buffer.
    struct Long;
    impl fmt::Display for Long {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for i in 0..40 {
                write!(f, "{i}-")?;
            }
            Ok(())
        }
    }
    impl Serialize for Long {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }
    assert_eq!(ours(&Long), theirs(&Long));
    let map: BTreeMap<u8, ()> = [(1, ()), (2, ())].into();
    assert_eq!(ours(&map), theirs(&map));
}

#[test]
fn appends_to_a_bytes_buffer_as_to_a_vec() {
    let v = (1u8, "two", [3.5f64]);
    let mut buf = BytesMut::from(&b"head"[..]);
    to_sink(&v, &mut buf).expect("encode");
    assert_eq!(&buf[..4], b"head");
    assert_eq!(&buf[4..], &ours(&v)[..]);
}

#[test]
fn verbatim_bytes_are_written_as_they_are() {
    let inner = ours(&vec![1u8, 2]);
    let v = (5u8, Verbatim(&inner), "x");
    assert_eq!(ours(&v), ours(&(5u8, vec![1u8, 2], "x")));
}
