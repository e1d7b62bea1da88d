//! The repository documents its own wire protocol: `docs/protocol.md` names
//! everything the agent can put on the wire.

use zeek_mgmt_agent::api::events::Stem;
use zeek_mgmt_agent::api::types::{MgmtRole, NodeStatus, Port, Role, State};
use zeek_mgmt_agent::protocol::cbor::ErrorCode;

fn protocol_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md")
}

#[test]
fn the_protocol_document_names_everything_on_the_wire() {
    let doc = protocol_doc();
    for code in ErrorCode::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", code.as_str())),
            "error code {} is not in the table",
            code.as_str()
        );
    }
    for stem in Stem::ALL {
        for name in [stem.request_name(), stem.response_name()] {
            let short = name.rsplit("::").next().unwrap_or(name);
            assert!(doc.contains(&format!("`{short}`")), "{short}");
        }
    }
    for n in [
        "notify_agent_hello",
        "notify_change",
        "notify_error",
        "notify_log",
    ] {
        assert!(doc.contains(&format!("`{n}`")), "{n}");
    }
    // Every key a NodeStatus can carry, extensions included.
    let full = NodeStatus {
        node: "n".into(),
        state: State::Running,
        mgmt_role: MgmtRole::Agent,
        cluster_role: Role::Worker,
        pid: Some(1),
        p: None,
        metrics_port: Some(Port::tcp(9000)),
        cpu_affinity: Some(1),
        cpu_percent: Some(0.0),
        rss_bytes: Some(0),
        restarts: Some(0),
        uptime_secs: Some(0.0),
        running_by: Some("channel".into()),
        joined: Some(false),
        join_error: Some("why".into()),
        archive: Some(zeek_mgmt_agent::api::types::ArchiveStatus {
            last_archived: Some(1.0),
            last_error: Some("e".into()),
            free_percent: Some(50.0),
            ..Default::default()
        }),
    };
    let value = serde_json::to_value(&full).expect("json");
    for key in value.as_object().expect("a record").keys() {
        assert!(doc.contains(&format!("`{key}`")), "NodeStatus key {key}");
    }
    for key in value["archive"].as_object().expect("a record").keys() {
        assert!(doc.contains(&format!("`{key}`")), "archive key {key}");
    }
    // The request-level errors, as the agent writes them.
    for text in [
        "overloaded",
        "request timed out after S s",
        "is already in flight from this\n  peer",
        "agent is shutting down",
        "was superseded by",
        "invalid configuration: PROBLEM; PROBLEM",
        "cannot persist the\n  configuration, nothing changed",
        "more than one manager",
    ] {
        assert!(doc.contains(text), "{text:?}");
    }
}

#[test]
fn the_repository_cites_no_document_it_does_not_hold() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("actors.md")];
    for dir in ["src", "docs", "examples", "contrib"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for outside in ["PROTOCOL.md", "BEHAVIOUR.md", "shared docs"] {
            assert!(!text.contains(outside), "{} cites {outside}", f.display());
        }
    }
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            out.push((path, text));
        }
    }
}

#[test]
fn every_actor_and_message_in_actors_md_exists_in_the_source() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("actors.md")).expect("actors.md");
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let defined = |name: &str| {
        files.iter().any(|(_, text)| {
            ["struct", "enum", "type", "trait"]
                .iter()
                .any(|kind| {
                    text.contains(&format!("{kind} {name} "))
                        || text.contains(&format!("{kind} {name}<"))
                        || text.contains(&format!("{kind} {name};"))
                        || text.contains(&format!("{kind} {name}("))
                })
                || text.contains(&format!("    {name}("))
                || text.contains(&format!("    {name} {{"))
                || text.contains(&format!("    {name},"))
                // Declared through a macro: `Stem(stem) Name { ... }`.
                || text.contains(&format!(") {name} {{"))
        })
    };
    let file_exists = |name: &str| files.iter().any(|(p, _)| p.ends_with(name));
    let mut missing = Vec::new();
    let mut checked = 0;
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        // The first cell: one or more `Name { fields }` / `A::B` names.
        for name in cells[0].split('`').skip(1).step_by(2) {
            let ident: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            for part in ident.split("::").filter(|p| !p.is_empty()) {
                checked += 1;
                if !defined(part) {
                    missing.push(part.to_owned());
                }
            }
        }
        // An actor's file, in the actor tables.
        if let Some(cell) = cells.get(1) {
            let file = cell.split('`').nth(1).unwrap_or("");
            if file.ends_with(".rs") {
                checked += 1;
                if !file_exists(file) {
                    missing.push(file.to_owned());
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} names found: is the table format the same?"
    );
    assert!(
        missing.is_empty(),
        "named in actors.md, not in src/: {missing:?}"
    );
}
