//! node.cfg as ZeekControl reads it: its example files, every key, the
//! expansion of load-balanced workers, and its refusals in its words.
use super::*;

fn read(text: &str) -> Result<Converted, FileError> {
    let map: HostMap = [("sensor1".to_owned(), "agent-s1".to_owned())].into();
    convert(text, "node.cfg", None, None, &map)
}

fn refusal(text: &str) -> String {
    read(text).expect_err(text).message
}

/// ZeekControl's own example: a standalone node.
const STANDALONE: &str = "# Example ZeekControl node configuration.\n\
    [zeek]\ntype=standalone\nhost=localhost\ninterface=eth0\n\n\
    ## Below is an example clustered configuration.\n\
    #[logger-1]\n#type=logger\n#host=localhost\n";

/// Its clustered example, uncommented.
const CLUSTER: &str = "[logger-1]\ntype=logger\nhost=localhost\n\n\
    [manager]\ntype=manager\nhost=localhost\n\n\
    [proxy-1]\ntype=proxy\nhost=localhost\n\n\
    [worker-1]\ntype=worker\nhost=localhost\ninterface=eth0\n\n\
    [worker-2]\ntype=worker\nhost=localhost\ninterface=eth0\n";

#[test]
fn zeekctls_example_files_convert() {
    let s = read(STANDALONE).expect("standalone");
    assert_eq!(s.file.nodes.len(), 1);
    let zeek = &s.file.nodes[0];
    assert_eq!((zeek.name.as_str(), zeek.role), ("zeek", Role::Manager));
    assert_eq!(zeek.interface.as_deref(), Some("eth0"));
    let local = crate::agent::config::default_name();
    assert_eq!(zeek.instance, local);

    let c = read(CLUSTER).expect("cluster");
    let names: Vec<(&str, Role)> = c
        .file
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.role))
        .collect();
    assert_eq!(
        names,
        [
            ("logger-1", Role::Logger),
            ("manager", Role::Manager),
            ("proxy-1", Role::Proxy),
            ("worker-1", Role::Worker),
            ("worker-2", Role::Worker)
        ]
    );
    // One local instance, no address: the agent of this host.
    assert_eq!(c.file.instances.len(), 1);
    assert_eq!(
        (
            c.file.instances[0].name.clone(),
            c.file.instances[0].host.clone()
        ),
        (local, None)
    );
}

#[test]
fn load_balanced_workers_expand_with_every_key() {
    let text = "[manager]\ntype=manager\nhost=mgr1\n[proxy-1]\ntype=proxy\nhost=mgr1\n\
        [worker-1]\ntype=worker\nhost=sensor1\ninterface=eth0\nlb_method=af_packet\nlb_procs=4\n\
        pin_cpus=2,3\nenv_vars=A=1, B = two\naf_packet.fanout_mode=AF_Packet::FANOUT_QM\n\
        af_packet_buffer_size=134217728\naux_scripts=site/a.zeek site/b.zeek\n\
        [tap]\ntype=worker\nhost=10.0.0.6\nlb_method=interfaces\nlb_procs=3\nlb_interfaces=e1, e2,e3\n";
    let zeekctl = zeekctl::read("env_vars = A=global, C=3\nZeekPort = 47760\nMailTo = x\n")
        .expect("zeekctl.cfg");
    let c = convert(
        text,
        "node.cfg",
        Some("10.0.0.0/8 Private\n# none\n\n192.168.0.0/16\n"),
        Some(&zeekctl),
        &HostMap::from([("sensor1".to_owned(), "agent-s1".to_owned())]),
    )
    .expect("converts");
    let w: Vec<&Node> = c
        .file
        .nodes
        .iter()
        .filter(|n| n.name.starts_with("worker-1-"))
        .collect();
    assert_eq!(w.len(), 4);
    let cpus: Vec<Option<i64>> = w.iter().map(|n| n.cpu_affinity).collect();
    assert_eq!(
        cpus,
        [Some(2), Some(3), Some(2), Some(3)],
        "pin_cpus repeats to cover lb_procs"
    );
    assert!(w
        .iter()
        .all(|n| n.interface.as_deref() == Some("af_packet::eth0") && n.instance == "agent-s1"));
    assert_eq!(w[0].env.get("B").map(String::as_str), Some("two"));
    // zeekctl.cfg's env_vars reach every node, the node's own winning.
    assert_eq!(w[0].env.get("A").map(String::as_str), Some("1"));
    assert_eq!(w[0].env.get("C").map(String::as_str), Some("3"));
    let manager = c
        .file
        .nodes
        .iter()
        .find(|n| n.name == "manager")
        .expect("manager");
    assert_eq!(
        manager.p.map(|p| p.number),
        Some(47760),
        "ZeekPort from zeekctl.cfg"
    );
    assert!(ini(&c).contains("#   mailto = x: not carried (no counterpart here)"));
    assert_eq!(
        w[0].scripts.as_deref(),
        Some(&["site/a.zeek".to_owned(), "site/b.zeek".to_owned()][..])
    );
    let options: Vec<(String, String)> = w[0]
        .options
        .iter()
        .flatten()
        .map(|o| (o.name.clone(), o.value.clone()))
        .collect();
    assert_eq!(
        options,
        [
            (
                "AF_Packet::fanout_mode".to_owned(),
                "AF_Packet::FANOUT_QM".to_owned()
            ),
            ("AF_Packet::buffer_size".to_owned(), "134217728".to_owned()),
            (
                "Site::local_nets".to_owned(),
                "{10.0.0.0/8,192.168.0.0/16}".to_owned()
            ),
        ]
    );
    // lb_method=interfaces: one each, from the end of the list as
    // ZeekControl hands them out.
    let taps: Vec<(&str, &str)> = c
        .file
        .nodes
        .iter()
        .filter(|n| n.name.starts_with("tap-"))
        .map(|n| (n.name.as_str(), n.interface.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(taps, [("tap-1", "e3"), ("tap-2", "e2"), ("tap-3", "e1")]);
    // Remote hosts are instances with their agents' address.
    let remote = c
        .file
        .instances
        .iter()
        .find(|i| i.name == "agent-10.0.0.6")
        .expect("instance");
    assert_eq!(remote.address().as_deref(), Some("10.0.0.6:2151"));
    // The INI of our own reads back to the same nodes.
    let mut back = crate::client::ini::parse(&ini(&c), "converted.ini")
        .expect("our INI")
        .nodes;
    let mut nodes = c.file.nodes.clone();
    back.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back, nodes);
}

#[test]
fn refusals_are_zeekctls_words() {
    let base = "[manager]\ntype=manager\nhost=localhost\n[proxy-1]\ntype=proxy\nhost=localhost\n";
    let with =
        |worker: &str| format!("{base}[w]\ntype=worker\nhost=localhost\ninterface=eth0\n{worker}");
    for (text, words) in [
        ("[m]\nhost=localhost\n".to_owned(), "no type given for node m"),
        ("[m]\ntype=boss\nhost=localhost\n".to_owned(), "unknown node type 'boss' given for node 'm'"),
        ("[m]\ntype=manager\n".to_owned(), "no host given for node 'm'"),
        (format!("{base}[l]\ntype=logger\nhost=localhost\nlb_procs=2\n"), "node 'l' config: load balancing node config options are only for worker nodes"),
        (with("lb_procs=two\nlb_method=af_packet\n"), "number of load-balanced processes must be an integer for node 'w'"),
        (with("lb_procs=0\nlb_method=af_packet\n"), "number of load-balanced processes must be greater than zero for node 'w'"),
        (with("lb_method=af_packet\n"), "number of load-balanced processes not specified for node 'w'"),
        (with("lb_procs=2\n"), "no load balancing method given for node 'w'"),
        (with("lb_procs=2\nlb_method=magic\n"), "unknown load balancing method 'magic' given for node 'w'"),
        (with("lb_procs=2\nlb_method=interfaces\n"), "list of load-balanced interfaces not specified for node 'w'"),
        (with("lb_procs=2\nlb_method=interfaces\nlb_interfaces=e1\n"), "number of load-balanced interfaces is not same as number of load-balanced processes for node 'w'"),
        (with("pin_cpus=1,-2\n"), "pin cpus list must contain only non-negative integers for node 'w'"),
        (with("env_vars=NOVALUE\n"), "node 'w' config: missing '=' in env_vars option value: NOVALUE"),
        (format!("{base}[m2]\ntype=manager\nhost=localhost\n"), "only one manager can be defined in node config"),
        ("[p]\ntype=proxy\nhost=localhost\n".to_owned(), "no manager defined in node config"),
        ("[m]\ntype=manager\nhost=localhost\n".to_owned(), "no proxy defined in node config"),
        (format!("{STANDALONE}[x]\ntype=proxy\nhost=localhost\n"), "more than one node defined in standalone node config"),
        (format!("{base}[w]\ntype=worker\nhost=localhost\nlb_procs=2\nlb_method=af_packet\ninterface=eth0\n[w-1]\ntype=worker\nhost=localhost\n"), "node name \"w-1\" is a duplicate of \"w-1\""),
        ("# nothing\n".to_owned(), "no nodes found in node config"),
        (format!("{base}[w]\ntype=worker\nhost=10.0.0.5\ninterface=eth0\n"), "all nodes must use localhost/127.0.0.1/::1 when manager uses it"),
    ] {
        assert_eq!(refusal(&text), words, "{text}");
    }
    // Methods we cannot drive say why and what to use.
    let pf = refusal(&with("lb_procs=2\nlb_method=pf_ring\n"));
    assert!(
        pf.contains("'pf_ring'") && pf.contains("use lb_method=af_packet"),
        "{pf}"
    );
    // An unknown key is passed over, and a known one without a
    // counterpart here is named, each said.
    let c = read(&with("bogus=1\nzone_id=eth0\n")).expect("warnings only");
    assert_eq!(
        c.file.warnings,
        [
            "ignoring unrecognized node config option 'bogus' given for node 'w'",
            "node config option 'zone_id' given for node 'w' is not carried (no counterpart here)"
        ]
    );
}
