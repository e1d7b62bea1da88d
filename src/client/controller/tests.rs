use super::*;

fn ok(node: Option<&str>, instance: Option<&str>) -> BrokerResult {
    let mut r = BrokerResult::ok("r");
    r.node = node.map(str::to_owned);
    r.instance = instance.map(str::to_owned);
    r
}

fn args(list: &[BrokerResult]) -> Vec<Value> {
    vec![records::results(list)]
}

#[test]
fn output_is_pythons_json_dumps_with_sorted_keys() {
    let v = json!({"b": [], "a": {"z": 1, "y": "ü"}, "c": {}});
    assert_eq!(
        render(&v),
        "{\n  \"a\": {\n    \"y\": \"\\u00fc\",\n    \"z\": 1\n  },\n  \"b\": [],\n  \"c\": {}\n}\n"
    );
}

#[test]
fn restart_lists_refusals_under_errors_and_nodes_under_results() {
    let list = [
        ok(Some("worker-1"), Some("agent-a")),
        BrokerResult::failure("r", "unknown cluster node").for_node("bogus"),
    ];
    let p = restart(&args(&list));
    assert_eq!(p.code, 1);
    assert_eq!(
        p.stdout,
        "{\n  \"errors\": [\n    {\n      \"error\": \"unknown cluster node\",\n      \"source\": \"bogus\"\n    }\n  ],\n  \"results\": {\n    \"worker-1\": true\n  }\n}\n"
    );
}

#[test]
fn deploy_prints_the_id_and_each_nodes_outcome() {
    let mut id = BrokerResult::ok("r");
    id.data = Some(Value::string("c1"));
    let mut bad = BrokerResult::failure("r", "boom")
        .for_node("worker-1")
        .from_instance("agent-a");
    bad.data = Some(Value::Vector(vec![
        Value::string("out\n"),
        Value::string("err\n"),
    ]));
    let p = deploy(&args(&[id, ok(Some("manager"), Some("agent-a")), bad]));
    assert_eq!(p.code, 1);
    let v: Json = serde_json::from_str(&p.stdout).expect("json");
    assert_eq!(v["results"]["id"], "c1");
    assert_eq!(v["results"]["nodes"]["worker-1"]["stderr"], "err\n");
    assert_eq!(v["results"]["nodes"]["manager"]["success"], true);
    assert_eq!(v["errors"], json!([]));
}

#[test]
fn the_ini_form_follows_zeek_clients_layout() {
    let mut m = Node::new("manager", "agent-a", Role::Manager);
    m.scripts = Some(vec!["my script.zeek".into(), "local.zeek".into()]);
    m.cpu_affinity = Some(1);
    m.env.insert("FOO".into(), "bar".into());
    m.env.insert("BAZ".into(), "x y".into());
    let mut w = Node::new("worker-1", "agent-b", Role::Worker);
    w.interface = Some("eth0".into());
    w.metrics_port = Some(crate::api::types::Port::tcp(9911));
    let c = Configuration {
        id: "x".into(),
        instances: vec![
            Instance {
                name: "agent-b".into(),
                host: crate::api::types::Addr([0, 0, 0, 0].into()),
                listen_port: None,
            },
            Instance {
                name: "agent-a".into(),
                host: crate::api::types::Addr([127, 0, 0, 1].into()),
                listen_port: Some(crate::api::types::Port::tcp(2151)),
            },
        ],
        nodes: vec![w, m],
        zeromq: None,
    };
    assert_eq!(
        config_ini(&c),
        "[instances]\nagent-a = 127.0.0.1:2151\nagent-b\n\n[manager]\ninstance = agent-a\nrole = MANAGER\nscripts = local.zeek \"my script.zeek\"\ncpu_affinity = 1\nenv = BAZ=\"x y\" FOO=bar\n\n[worker-1]\ninstance = agent-b\nrole = WORKER\ninterface = eth0\nmetrics_port = 9911\n\n"
    );
}

#[test]
fn controller_addresses_are_read_as_zeek_client_reads_them() {
    for (arg, addr) in [
        ("10.0.0.1:2149", "10.0.0.1:2149"),
        ("10.0.0.1", "10.0.0.1:2149"),
        ("sensor1", "sensor1:2149"),
        (":2150", "127.0.0.1:2150"),
        ("", "127.0.0.1:2149"),
        ("[::1]:2150", "[::1]:2150"),
        ("[::1]", "[::1]:2149"),
    ] {
        assert_eq!(controller_address(arg).as_deref(), Ok(addr), "{arg:?}");
    }
    for arg in ["::1:2149", "127.0.0.1:http", "127.0.0.1:70000"] {
        let e = controller_address(arg).expect_err(arg);
        assert!(e.starts_with("controller address "), "{e}");
    }
}
