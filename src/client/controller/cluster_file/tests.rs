use super::*;

fn refused(text: &str) -> String {
    match parse(text, "f.ini") {
        Err(Refusal::Invalid(why)) => why,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn zeek_clients_refusals_word_for_word() {
    for (text, why) in [
        (
            "[manager]\ninstance = a\nrole = manager\n\n[worker-1]\nrole = worker\n",
            "either all or no nodes must state instances",
        ),
        (
            "[instances]\na\n\n[manager]\nrole = manager\n",
            "omit instances section when skipping instances in node definitions",
        ),
        (
            "[manager]\nrole = bogus\n",
            "invalid node \"manager\" configuration: role \"bogus\" is invalid",
        ),
        (
            "[manager]\nport = 1\n",
            "invalid node \"manager\" configuration: node requires a role",
        ),
        // Conversions come before the role check.
        (
            "[manager]\nport = abc\n",
            "invalid node \"manager\" configuration: cannot convert \"manager.port\" value \"abc\" to int",
        ),
        (
            "[w]\nrole = worker\ncpu_affinity = x\n",
            "invalid node \"w\" configuration: cannot convert \"w.cpu_affinity\" value \"x\" to int",
        ),
        (
            "[manager]\nrole = manager\nport = 70000\n",
            "invalid node \"manager\" configuration: port 70000 outside valid range",
        ),
        // zeek-client names the node's port in the metrics port's refusal.
        (
            "[manager]\nrole = manager\nmetrics_port = 0\n",
            "invalid node \"manager\" configuration: metrics port None outside valid range",
        ),
        (
            "[manager]\nrole = manager\nport = 2200\nmetrics_port = -1\n",
            "invalid node \"manager\" configuration: metrics port 2200 outside valid range",
        ),
        (
            "[w]\nrole = worker\nenv = A=1 B\n",
            "invalid node \"w\" configuration: env value \"A=1 B\" is invalid",
        ),
        (
            "[w]\nrole = worker\nscripts = \"a.zeek\n",
            "invalid node \"w\" configuration: No closing quotation",
        ),
        (
            "[w]\nrole\n",
            "invalid node \"w\" configuration: node requires a role",
        ),
        (
            "[instances]\na = host-without-port\n\n[w]\ninstance = a\nrole = worker\n",
            "invalid spec for instance \"a\": \"host-without-port\" should be <host>:<port>",
        ),
        // [DEFAULT]'s keys are in every section, [instances] too.
        (
            "[DEFAULT]\ninterface = eth0\n\n[instances]\na = 10.0.0.1:2151\n\n[m]\ninstance = a\nrole = manager\n",
            "invalid spec for instance \"interface\": \"eth0\" should be <host>:<port>",
        ),
    ] {
        assert_eq!(refused(text), why, "{text:?}");
    }
}

#[test]
fn refusals_print_as_zeek_client_prints_them() {
    assert_eq!(
        Refusal::Invalid("either all or no nodes must state instances".into())
            .printed()
            .stderr,
        "error: either all or no nodes must state instances\nerror: configuration has errors, not sending\n"
    );
    let none = Refusal::NoFile.printed();
    assert_eq!(
        (none.stderr.as_str(), none.code),
        ("error: please provide a cluster configuration file.\n", 1)
    );
    assert_eq!(read("/nonexistent/cluster.ini"), Err(Refusal::NoFile));
}

#[test]
fn values_are_read_as_configparser_and_zeek_client_read_them() {
    let text = "\
# a comment
[instances]
agent-a = 10.0.0.1:2151
agent-b

[Manager]
Instance: agent-a
TYPE = Supervisor::MANAGER
port = +2_200
metrics_port = 9000
scripts = z.zeek \"a b.zeek\"
env = A=\"x y\" B=1=2
state = RUNNING
unknown = ignored
interface = eth0

[worker-1]
instance = agent-b
role = worker
interface = eth1
cpu_affinity = 3
";
    let f = parse(text, "f.ini").expect("valid");
    assert!(f.warnings.is_empty(), "zeek-client warns only when asked");
    assert_eq!(
        f.instances,
        [
            InstanceSpec {
                name: "agent-a".into(),
                host: Some("10.0.0.1".into()),
                port: Some(2151),
            },
            InstanceSpec {
                name: "agent-b".into(),
                host: None,
                port: None,
            },
        ]
    );
    let m = &f.nodes[0];
    assert_eq!(
        (m.name.as_str(), m.instance.as_str(), m.role),
        ("Manager", "agent-a", Role::Manager)
    );
    assert_eq!(m.p, Some(Port::tcp(2200)));
    assert_eq!(m.metrics_port, Some(Port::tcp(9000)));
    assert_eq!(m.interface.as_deref(), Some("eth0"));
    assert_eq!(
        m.scripts,
        Some(vec!["a b.zeek".to_owned(), "z.zeek".to_owned()]),
        "sorted, as zeek-client sends them"
    );
    assert_eq!(
        m.env.iter().collect::<Vec<_>>(),
        [
            (&"A".to_owned(), &"x y".to_owned()),
            (&"B".to_owned(), &"1=2".to_owned())
        ]
    );
    let w = &f.nodes[1];
    assert_eq!(w.interface.as_deref(), Some("eth1"));
    assert_eq!(w.cpu_affinity, Some(3));
}

#[test]
fn without_instances_every_node_goes_to_this_hosts_agent_or_its_own() {
    let f = parse(
        "[DEFAULT]\ninterface = eth0\n\n[m]\nrole = manager\n\n[w]\nrole = worker\n",
        "f.ini",
    )
    .expect("valid");
    assert!(f
        .nodes
        .iter()
        .all(|n| n.interface.as_deref() == Some("eth0")));
    let agent = crate::settings::host_name_or("agent");
    assert!(f.nodes.iter().all(|n| n.instance == agent));
    assert_eq!(f.instances.len(), 1);
    assert_eq!(f.instances[0].name, agent);
    let f = parse(
        "[m]\ninstance = b\nrole = manager\n\n[w]\ninstance = a\nrole = worker\n",
        "f.ini",
    )
    .expect("valid");
    let names: Vec<&str> = f.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "sorted, all connecting");
    assert!(f.instances.iter().all(|i| i.port.is_none()));
}

#[test]
fn continuation_lines_extend_a_value() {
    let f = parse(
        "[w]\nrole = worker\nscripts = b.zeek\n    a.zeek\n",
        "f.ini",
    )
    .expect("valid");
    assert_eq!(
        f.nodes[0].scripts,
        Some(vec!["a.zeek".to_owned(), "b.zeek".to_owned()])
    );
}

#[test]
fn what_zeek_client_cannot_read_gets_one_line() {
    for (text, why) in [
        (
            "role = worker\n",
            "f.ini:1: \"role = worker\" is outside any section",
        ),
        (
            "[w]\nrole = worker\n[w]\n",
            "f.ini:3: section [w] is given twice",
        ),
        (
            "[w]\nrole = worker\nRole = proxy\n",
            "f.ini:3: key \"role\" is given twice in its section",
        ),
    ] {
        assert_eq!(
            parse(text, "f.ini").err(),
            Some(Refusal::Syntax(why.into())),
            "{text:?}"
        );
    }
}

#[test]
fn integers_are_read_as_python_reads_them() {
    for (text, n) in [("12", Some(12)), ("+1_000", Some(1000)), ("-5", Some(-5))] {
        assert_eq!(python_int(text), n, "{text}");
    }
    for text in ["", "1__0", "_1", "1_", "0x10", "2151/tcp", "1.5"] {
        assert_eq!(python_int(text), None, "{text}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Whatever an operator's file holds, reading it ends in a file or a
    /// refusal, never a panic.
    #[test]
    fn any_text_is_read_or_refused(
        lines in proptest::collection::vec(
            "[ \\t]{0,2}(\\[[a-zA-Z:_. \\]-]{0,8}\\]|[a-zA-Z_]{0,10}[ ]?[=:]?[ ]?[-+0-9a-zA-Z_\"'\\\\:=/ .\\[\\]]{0,16}|[#;].{0,5}|ü.{0,3})",
            0..12,
        )
    ) {
        let text = lines.join("\n");
        let _ = parse(&text, "f.ini");
    }
}
