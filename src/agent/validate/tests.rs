use super::*;
use crate::api::types::{Addr, Instance, Node, Port};

/// The agent "a" on port 2151 of a host with two CPUs.
pub(crate) fn host() -> HostFacts {
    HostFacts {
        agent_name: "a".into(),
        agent_port: Some(2151),
        cpus: 2,
        zeromq: true,
    }
}

/// An instance on 127.0.0.1.
pub(crate) fn inst(name: &str) -> Instance {
    Instance {
        name: name.into(),
        host: Addr("127.0.0.1".parse().expect("addr")),
        listen_port: None,
    }
}

#[test]
fn a_good_configuration_passes() {
    let mut m = Node::new("manager", "a", Role::Manager);
    m.p = Some(Port::tcp(27760));
    let mut w = Node::new("worker-1", "a", Role::Worker);
    w.cpu_affinity = Some(1);
    let c = Configuration {
        id: "x".into(),
        instances: vec![inst("a"), inst("b")],
        nodes: vec![m, w, Node::new("worker-2", "b", Role::Worker)],
        zeromq: None,
    };
    assert_eq!(validate(&c, &host()), Ok(()));
}

#[test]
fn every_problem_is_listed_sorted() {
    let mut m = Node::new("manager", "a", Role::Manager);
    m.p = None;
    let mut w1 = Node::new("w1", "a", Role::Worker);
    w1.p = Some(Port::tcp(5000));
    w1.cpu_affinity = Some(7);
    w1.env.insert("A=B".into(), "x".into());
    w1.env.insert("".into(), "x".into());
    let mut w2 = Node::new("w2", "a", Role::Worker);
    w2.p = Some(Port::tcp(5000));
    let mut w3 = Node::new("w3", "a", Role::Worker);
    w3.p = Some(Port::tcp(2151));
    w3.cpu_affinity = Some(-1);
    let c = Configuration {
        id: "x".into(),
        instances: vec![inst("a"), inst("a")],
        nodes: vec![
            m,
            w1,
            w2,
            w3,
            Node::new("../x", "a", Role::Worker),
            Node::new("..", "a", Role::Worker),
            Node::new("", "a", Role::Worker),
            Node::new("w2", "a", Role::Worker),
            Node::new("nobody", "zz", Role::Worker),
            Node::new("norole", "a", Role::None),
        ],
        zeromq: None,
    };
    let problems = validate(&c, &host()).expect_err("invalid");
    let mut sorted = problems.clone();
    sorted.sort();
    assert_eq!(problems, sorted);
    let expect = [
        "duplicate instance name \"a\"",
        "duplicate node name \"w2\"",
        "node \"../x\" is invalid",
        "node name \"..\" is invalid",
        "node name \"\" is invalid",
        "node \"manager\" is a manager and needs a port",
        "nodes \"w1\" and \"w2\" of instance \"a\" both use port 5000/tcp",
        "node \"w3\" uses port 2151/tcp, the agent's own port",
        "node \"w1\" asks for cpu_affinity 7",
        "node \"w3\" asks for cpu_affinity -1",
        "node \"w1\" has env key \"A=B\"",
        "node \"w1\" has env key \"\"",
        "node \"nobody\" names instance \"zz\", which is not declared",
        "node \"norole\" has no cluster role (NONE)",
    ];
    for e in expect {
        let e = e.replace("node \"../x\" is invalid", "node name \"../x\" is invalid");
        assert!(
            problems.iter().any(|p| p.starts_with(&e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}

#[test]
fn oversized_env_and_arguments_are_refused() {
    let mut w = Node::new("w", "a", Role::Worker);
    w.env
        .insert("BIG".into(), "x".repeat(MAX_EXEC_STRING_BYTES));
    let mut v = Node::new("v", "a", Role::Worker);
    for i in 0..16 {
        v.env.insert(format!("K{i}"), "y".repeat(100 * 1024));
    }
    let c = Configuration {
        id: "x".into(),
        instances: vec![inst("a")],
        nodes: vec![w, v],
        zeromq: None,
    };
    let problems = validate(&c, &host()).expect_err("too big");
    assert!(
        problems[0].starts_with("node \"v\" has 1638"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("node \"w\" has an env entry"),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 2);
}

#[test]
fn remote_cpu_affinity_is_not_checked_here() {
    let mut w = Node::new("w", "b", Role::Worker);
    w.cpu_affinity = Some(64);
    let c = Configuration {
        id: "x".into(),
        instances: vec![inst("b")],
        nodes: vec![w],
        zeromq: None,
    };
    assert_eq!(validate(&c, &host()), Ok(()));
}

#[test]
fn a_second_manager_is_refused_among_the_other_problems() {
    let mut m1 = Node::new("manager", "a", Role::Manager);
    m1.p = Some(Port::tcp(27760));
    let mut m2 = Node::new("manager-2", "b", Role::Manager);
    m2.p = Some(Port::tcp(27760));
    let mut m3 = Node::new("manager-3", "b", Role::Manager);
    m3.p = Some(Port::tcp(27761));
    let c = Configuration {
        id: "x".into(),
        instances: vec![inst("a"), inst("b")],
        nodes: vec![m1, m2, m3, Node::new("norole", "a", Role::None)],
        zeromq: None,
    };
    let problems = validate(&c, &host()).expect_err("two managers");
    assert_eq!(
        problems,
        vec![
            "node \"norole\" has no cluster role (NONE)".to_owned(),
            "the configuration has 3 managers (\"manager\", \"manager-2\", \"manager-3\"); a cluster has at most one".to_owned(),
        ]
    );
}

#[test]
fn the_zeromq_brokers_ports_are_free_on_the_managers_host() {
    let mut m = Node::new("manager", "a", Role::Manager);
    m.p = Some(Port::tcp(5555));
    let mut p = Node::new("proxy-1", "a", Role::Proxy);
    p.metrics_port = Some(Port::tcp(5556));
    // Another host may use them.
    let mut w = Node::new("worker-1", "b", Role::Worker);
    w.metrics_port = Some(Port::tcp(5556));
    let mut a = inst("a");
    a.host = Addr("198.18.0.1".parse().expect("addr"));
    let mut b = inst("b");
    b.host = Addr("198.18.0.2".parse().expect("addr"));
    let c = Configuration {
        id: "x".into(),
        instances: vec![a, b],
        nodes: vec![m, p, w],
        zeromq: None,
    };
    let problems = validate(&c, &host()).expect_err("collisions");
    assert_eq!(
        problems,
        [
            "node \"manager\" uses port 5555/tcp, a port of the manager's ZeroMQ broker on 198.18.0.1; give the cluster other ZeroMQ ports or the node \"manager\" another port",
            "node \"proxy-1\" uses port 5556/tcp, a port of the manager's ZeroMQ broker on 198.18.0.1; give the cluster other ZeroMQ ports or the node \"proxy-1\" another port",
        ]
    );
    // Under Broker the ports mean nothing.
    let broker = HostFacts {
        zeromq: false,
        ..host()
    };
    assert_eq!(validate(&c, &broker), Ok(()));
    // Other ports for the broker, and the agent's own port among them.
    let mut moved = c.clone();
    moved.zeromq = Some(crate::api::types::ZeromqPorts {
        xpub_port: Port::tcp(2151),
        xsub_port: Port::tcp(2151),
    });
    let problems = validate(&moved, &host()).expect_err("collisions");
    assert_eq!(
        problems,
        [
            "agent \"a\" uses port 2151/tcp, a port of the manager's ZeroMQ broker on 198.18.0.1; give the cluster other ZeroMQ ports or the agent \"a\" another port",
            "the ZeroMQ broker's XPUB and XSUB ports are both 2151; they must differ",
        ]
    );
}

#[test]
fn a_manager_on_loopback_is_refused_when_nodes_run_on_other_hosts() {
    let mut m = Node::new("manager", "a", Role::Manager);
    m.p = Some(Port::tcp(2200));
    let mut p = Node::new("proxy-1", "a", Role::Proxy);
    p.p = Some(Port::tcp(2201));
    let mut b = inst("b");
    b.host = Addr("198.18.0.2".parse().expect("addr"));
    let c = Configuration {
        id: "x".into(),
        instances: vec![inst("a"), b],
        nodes: vec![m, p, Node::new("worker-1", "b", Role::Worker)],
        zeromq: None,
    };
    let manager = "node \"manager\" runs on instance \"a\" at 127.0.0.1, a loopback address, which the nodes of instance \"b\" (198.18.0.2) cannot reach; give \"a\" its host's address (an agent that dials its controller is known by the address it dials from)";
    assert_eq!(validate(&c, &host()), Err(vec![manager.to_owned()]));
    // With Broker, the workers connect to the proxies too.
    let broker = HostFacts {
        zeromq: false,
        ..host()
    };
    let problems = validate(&c, &broker).expect_err("refused");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[1].starts_with("node \"proxy-1\" runs on instance \"a\" at 127.0.0.1"));
    // Every host on loopback (one machine), or the remote one not yet
    // known (0.0.0.0): nothing to refuse.
    let mut one = c.clone();
    one.instances[1].host = Addr("127.0.0.1".parse().expect("addr"));
    assert_eq!(validate(&one, &host()), Ok(()));
    one.instances[1].host = Addr("0.0.0.0".parse().expect("addr"));
    assert_eq!(validate(&one, &host()), Ok(()));
}

#[test]
fn two_workers_on_one_plain_interface_are_refused_unless_meant() {
    let mut m = Node::new("manager", "a", Role::Manager);
    m.p = Some(Port::tcp(27760));
    m.interface = Some("eth0".into());
    let worker = |name: &str, instance: &str, iface: &str| {
        let mut w = Node::new(name, instance, Role::Worker);
        w.interface = Some(iface.into());
        w
    };
    let config = |nodes: Vec<Node>| Configuration {
        id: "x".into(),
        instances: vec![inst("a"), inst("b")],
        nodes,
        zeromq: None,
    };
    // The manager's interface, other hosts and AF_PACKET do not count.
    let fine = config(vec![
        m.clone(),
        worker("w1", "a", "eth0"),
        worker("w2", "b", "eth0"),
        worker("w3", "a", "af_packet::eth1"),
        worker("w4", "a", "af_packet::eth1"),
    ]);
    assert_eq!(validate(&fine, &host()), Ok(()));
    let shared = config(vec![
        m.clone(),
        worker("w1", "a", "eth0"),
        worker("w2", "a", "eth0"),
    ]);
    let problems = validate(&shared, &host()).expect_err("refused");
    assert_eq!(
        problems,
        ["nodes \"w1\" and \"w2\" of instance \"a\" both sniff eth0 through libpcap, so each would analyse every packet (every connection logged twice): use interface = af_packet::eth0 for both, which balances the packets across them (or set env ZEEK_MGMT_SHARED_INTERFACE=1 on both to mean it)"]
    );
    let mut meant = shared;
    for n in meant.nodes.iter_mut().skip(1) {
        n.env.insert(SHARED_INTERFACE_ENV.into(), "1".into());
    }
    assert_eq!(validate(&meant, &host()), Ok(()));
}

#[test]
fn nodes_of_this_host_pinned_to_one_cpu_are_warned_about() {
    let pinned = |name: &str, instance: &str, cpu: i64| {
        let mut w = Node::new(name, instance, Role::Worker);
        w.cpu_affinity = Some(cpu);
        w
    };
    let c = Configuration {
        id: "x".into(),
        instances: vec![inst("a"), inst("b")],
        nodes: vec![
            pinned("w1", "a", 1),
            pinned("w2", "a", 1),
            pinned("w3", "a", 0),
            pinned("w4", "b", 1),
        ],
        zeromq: None,
    };
    assert_eq!(
        warnings(&c, &host()),
        ["nodes w1, w2 are all pinned to CPU 1 (cpu_affinity) and share it"]
    );
}
