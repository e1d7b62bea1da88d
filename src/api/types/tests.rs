use super::*;

#[test]
fn summaries_say_success_or_the_error_and_the_node() {
    let ok = ApiResult::ok(ReqId("r".into()), "a");
    assert_eq!(ok.summary().to_string(), "success");
    let mut failed = ApiResult::failure(ReqId("r".into()), "a", "no \"x\"");
    failed.node = Some("w1".into());
    assert_eq!(failed.summary().to_string(), r#"error "no \"x\"", node w1"#);
}

#[test]
fn ports_parse_and_print() {
    assert_eq!("2151/tcp".parse::<Port>(), Ok(Port::tcp(2151)));
    assert_eq!("53".parse::<Port>(), Ok(Port::tcp(53)));
    assert_eq!(
        "53/udp".parse::<Port>().map(|p| p.to_string()),
        Ok("53/udp".to_owned())
    );
    assert!("70000/tcp".parse::<Port>().is_err());
    assert!("1/sctp".parse::<Port>().is_err());
    assert!("x/tcp".parse::<Port>().is_err());
}

#[test]
fn node_debug_hides_env_values() {
    let mut n = Node::new("w1", "a", Role::Worker);
    n.env.insert("TOKEN".into(), "s3cret".into());
    let dbg = format!("{n:?}");
    assert!(dbg.contains("TOKEN"));
    assert!(!dbg.contains("s3cret"));
}

#[test]
fn same_cluster_ignores_states() {
    let mut a = Configuration {
        id: "c1".into(),
        instances: vec![],
        nodes: vec![Node::new("w1", "a", Role::Worker)],
        zeromq: None,
    };
    let mut b = a.clone();
    b.nodes[0].state = State::Running;
    assert!(a.same_cluster(&b));
    a.nodes[0].p = Some(Port::tcp(1));
    assert!(!a.same_cluster(&b));
}
