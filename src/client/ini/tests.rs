use super::*;

fn parse_ok(text: &str) -> ClusterFile {
    parse_ini(text, "c.ini").unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> FileError {
    match parse_ini(text, "c.ini") {
        Err(e) => e,
        Ok(c) => panic!("parsed: {c:?}"),
    }
}

#[test]
fn every_key() {
    let c = parse_ok(
        r#"
# a comment
; another
[instances]
agent-a = 10.0.0.1:2151
agent-b = sensor-b.example:2151/tcp
agent-c

[manager]
instance = agent-a
role = Manager
port = 27760
metrics_port = 9100

[w1]
instance = agent-b
type = worker
port = 27770/tcp
interface = eth1
cpu_affinity = 3
scripts = site/a.zeek "site/with space.zeek" 'single quoted' esc\ aped
env = A=1 B="two words" C='x=y' D=
"#,
    );
    assert_eq!(
        c.instances,
        vec![
            InstanceSpec {
                name: "agent-a".into(),
                host: Some("10.0.0.1".into()),
                port: Some(2151)
            },
            InstanceSpec {
                name: "agent-b".into(),
                host: Some("sensor-b.example".into()),
                port: Some(2151)
            },
            InstanceSpec {
                name: "agent-c".into(),
                host: None,
                port: None
            },
        ]
    );
    assert_eq!(c.instances[0].address().as_deref(), Some("10.0.0.1:2151"));
    assert_eq!(c.instances[2].address(), None);
    let m = &c.nodes[0];
    assert_eq!(
        (m.name.as_str(), m.instance.as_str(), m.role),
        ("manager", "agent-a", Role::Manager)
    );
    assert_eq!(m.p, Some(Port::tcp(27760)));
    assert_eq!(m.metrics_port, Some(Port::tcp(9100)));
    let w = &c.nodes[1];
    assert_eq!(w.role, Role::Worker);
    assert_eq!(w.p, Some(Port::tcp(27770)));
    assert_eq!(w.interface.as_deref(), Some("eth1"));
    assert_eq!(w.cpu_affinity, Some(3));
    assert_eq!(
        w.scripts.clone().unwrap_or_default(),
        [
            "site/a.zeek",
            "site/with space.zeek",
            "single quoted",
            "esc aped"
        ]
    );
    let env: Vec<(&str, &str)> = w
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("A", "1"), ("B", "two words"), ("C", "x=y"), ("D", "")]
    );
    assert!(c.warnings.is_empty());
}

#[test]
fn unknown_keys_and_state_warn() {
    let c = parse_ok("[w]\nrole = worker\nstate = RUNNING\ncolour = blue\n");
    assert_eq!(c.warnings.len(), 2);
    assert!(
        c.warnings[0].contains("c.ini:3: section [w]: key \"state\" is ignored"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[1].contains("c.ini:4: section [w]: unknown key \"colour\""),
        "{:?}",
        c.warnings
    );
}

#[test]
fn without_instances_every_node_goes_to_this_host() {
    let c = parse_ok("[manager]\nrole = manager\nport = 1\n[w]\nrole = worker\n");
    let agent = crate::agent::config::default_name();
    assert!(c.nodes.iter().all(|n| n.instance == agent));
    assert_eq!(
        c.instances,
        vec![InstanceSpec {
            name: agent,
            host: None,
            port: None
        }]
    );
}

#[test]
fn instances_implied_by_nodes_without_a_section() {
    let c = parse_ok("[w]\ninstance = a\nrole = worker\n");
    assert_eq!(
        c.instances,
        vec![InstanceSpec {
            name: "a".into(),
            host: None,
            port: None
        }]
    );
}

#[test]
fn every_error_names_file_section_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "role = worker\n",
            "c.ini:1: \"role = worker\" is outside any section",
        ),
        (
            "[w\n",
            "c.ini:1: section header \"[w\" lacks its closing ']'",
        ),
        ("[]\n", "c.ini:1: empty section name"),
        (
            "[w]\nrole=worker\n[w]\n",
            "c.ini:3: section [w]: section repeats the one on line 1",
        ),
        (
            "[w]\nrole = wizard\n",
            "c.ini:2: section [w], key \"role\": \"wizard\" is not a role",
        ),
        (
            "[w]\nrole = worker\nport = http\n",
            "c.ini:3: section [w], key \"port\": invalid port",
        ),
        (
            "[w]\nrole = worker\ncpu_affinity = two\n",
            "c.ini:3: section [w], key \"cpu_affinity\": \"two\" is not a CPU number",
        ),
        (
            "[w]\nrole = worker\nscripts = 'open\n",
            "c.ini:3: section [w], key \"scripts\": unterminated single quote",
        ),
        (
            "[w]\nrole = worker\nenv = \"open\n",
            "c.ini:3: section [w], key \"env\": unterminated double quote",
        ),
        (
            "[w]\nrole = worker\nenv = NOEQUALS\n",
            "c.ini:3: section [w], key \"env\": \"NOEQUALS\" is not KEY=VALUE",
        ),
        (
            "[w]\ninstance = a\n",
            "c.ini:1: section [w], key \"role\": every node needs a role",
        ),
        (
            "[a]\ninstance = x\nrole = worker\n[b]\nrole = worker\n",
            "c.ini:4: section [b], key \"instance\": some nodes name an instance",
        ),
        (
            "[instances]\nx = 1.2.3.4:1\n[w]\ninstance = y\nrole = worker\n",
            "c.ini:3: section [w], key \"instance\": instance \"y\" is not listed in [instances]",
        ),
        (
            "[instances]\nx = nohostport\n",
            "c.ini:2: section [instances], key \"x\": \"nohostport\" is not host:port",
        ),
        (
            "[instances]\nx = :80\n",
            "c.ini:2: section [instances], key \"x\": \":80\" has no host",
        ),
        (
            "[instances]\nx\nx\n",
            "c.ini:3: section [instances], key \"x\": instance listed twice",
        ),
    ];
    for (text, expect) in cases {
        let e = parse_err(text).to_string();
        assert!(
            e.starts_with(expect),
            "{text:?}:\n  got      {e}\n  expected {expect}"
        );
    }
}

#[test]
fn shell_split_rules() {
    assert_eq!(
        shell_split("  a  b\tc ").unwrap_or_default(),
        ["a", "b", "c"]
    );
    assert_eq!(
        shell_split(r#"a"b c"d 'e\f'"#).unwrap_or_default(),
        ["ab cd", "e\\f"]
    );
    assert_eq!(shell_split(r#""a\"b""#).unwrap_or_default(), ["a\"b"]);
    assert_eq!(shell_split("''").unwrap_or_default(), [""]);
    assert!(shell_split("a\\").is_err());
}

#[test]
fn json_form_by_extension() {
    let text = r#"{"id": "j1", "instances": [{"name": "a", "host": "10.0.0.1", "listen_port": "2151/tcp"}],
        "nodes": [{"name": "m", "instance": "a", "role": "MANAGER", "p": "27760/tcp"}]}"#;
    let c = parse(text, "cluster.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.id, "j1");
    assert_eq!(c.instances[0].address().as_deref(), Some("10.0.0.1:2151"));
    assert_eq!(c.nodes[0].role, Role::Manager);
    let e = parse("{\"nodes\": 3}", "bad.json").expect_err("invalid");
    assert!(e.to_string().starts_with("bad.json:1: "), "{e}");
}

#[test]
fn the_example_configurations_parse() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (file, nodes, instances) in [
        ("examples/cluster-small.ini", 4, 1),
        ("examples/cluster-full.ini", 9, 3),
    ] {
        let path = format!("{root}/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let c = parse(&text, file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.nodes.len(), nodes, "{file}");
        assert_eq!(c.instances.len(), instances, "{file}");
        assert!(c.warnings.is_empty(), "{file}: {:?}", c.warnings);
    }
}
