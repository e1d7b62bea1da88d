//! Settings and startup checks of the real binary: one syntax per setting in
//! flags, environment and file; what is refused at startup, and how.

use std::process::Command;

use zeek_mgmt_agent::api::types::Role;

use crate::support::*;

fn refused(extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().expect("tmp");
    let (status, stderr) = Agent::run_to_exit(tmp.path(), extra);
    assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
    stderr
}

#[test]
fn a_period_of_zero_is_refused_naming_the_setting() {
    for (flag, key) in [
        ("--sample-interval", "sample_interval"),
        ("--request-timeout", "request_timeout"),
        ("--handshake-timeout", "handshake_timeout"),
        ("--stop-grace", "stop_grace"),
        ("--reconnect-interval", "reconnect_interval"),
        ("--revive-delay", "revive_delay"),
        ("--revive-reset-after", "revive_reset_after"),
        ("--version-timeout", "version_timeout"),
    ] {
        let stderr = refused(&[flag, "0"]);
        assert!(
            stderr.contains(&format!("{key} ({flag}) must be more than 0")),
            "{flag}: {stderr}"
        );
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("agent.toml");
    std::fs::write(&file, "revive_max_delay = \"0s\"\n").expect("write");
    let stderr = refused(&["--config", file.to_str().expect("utf-8")]);
    assert!(stderr.contains("revive_max_delay"), "{stderr}");
}

#[tokio::test]
async fn zero_turns_heartbeats_and_the_settle_time_off() {
    let agent = Agent::start(&["--heartbeat", "0", "--settle-time", "0"]);
    let c = agent.connect().await;
    assert!(
        set_config(&c, cluster("zero", &[("w", Role::Worker, None)]))
            .await
            .result
            .success
    );
}

#[test]
fn help_says_which_settings_take_zero_to_mean_off() {
    let out = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent"))
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("only --heartbeat and --settle-time take 0"),
        "{help}"
    );
    // Each flag's own text, from its declaration, says what 0 does.
    let text_of = |flag: &str| {
        let at = help.find(&format!("{flag} <")).expect(flag);
        help[at..]
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    for off in ["--heartbeat", "--settle-time"] {
        assert!(text_of(off).contains("0 turns it off"), "{}", text_of(off));
    }
    assert!(
        text_of("--version-timeout").contains("(more than 0)"),
        "{help}"
    );
    assert!(help.contains("ZEEK_AGENT_PORT"), "{help}");
}

#[tokio::test]
async fn one_duration_syntax_in_flags_and_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("agent.toml");
    std::fs::write(
        &file,
        "stop_grace = \"30s\"\nrequest_timeout = \"2m\"\nsettle_time = \"100ms\"\nheartbeat = 5\nno_listen = false\nlisten_port = \"0/tcp\"\n",
    )
    .expect("write");
    let agent = Agent::start_in(
        tmp.path(),
        &[
            "--config",
            file.to_str().expect("utf-8"),
            "--sample-interval",
            "1.5s",
            "--reconnect-interval",
            "500ms",
        ],
        &[],
    );
    let c = agent.connect().await;
    assert_eq!(get_nodes(&c).await.len(), 1);
    // The old spelling of a key is refused, naming it.
    std::fs::write(&file, "listen_in_connect_mode = true\n").expect("write");
    let stderr = refused(&["--config", file.to_str().expect("utf-8")]);
    assert!(stderr.contains("listen_in_connect_mode"), "{stderr}");
}

#[test]
fn an_invalid_environment_value_names_the_variable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut args = base_args(tmp.path());
    // The variables are read only where no flag says otherwise; the flag's
    // value is never looked at when the variable is bad.
    args.retain(|a| a != "--listen-port" && a != "0");
    for (var, value) in [
        ("ZEEK_AGENT_PORT", "http"),
        ("ZEEK_AGENT_ADDR", "localhost:1"),
        ("ZEEK_CONTROLLER_PORT", "99999"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent"))
            .args(&args)
            .env(var, value)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(stderr.contains(value), "{var}: {stderr}");
        assert!(!stderr.contains("--"), "names the variable only: {stderr}");
    }
}

#[test]
fn directories_that_cannot_be_written_are_refused_at_startup() {
    // Root may write anywhere but in sysfs.
    for flag in ["--state-dir", "--cluster-dir"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let (status, stderr) = Agent::run_to_exit(tmp.path(), &[flag, "/sys"]);
        assert_eq!(status.code(), Some(1), "{flag}: {stderr}");
        assert!(
            stderr.contains(
                "directory /sys cannot be used (it must be a directory the agent can write)"
            ),
            "{flag}: {stderr}"
        );
    }
}

#[test]
fn the_client_takes_the_same_durations() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let run = |timeout: &str| {
        Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
            .args([
                "--agent",
                &addr,
                &format!("--timeout={timeout}"),
                "get-nodes",
            ])
            .current_dir(tmp.path())
            .output()
            .expect("client")
    };
    for ok in ["5s", "500ms", "2m", "3"] {
        let out = run(ok);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Taken: the client tried the (closed) address.
        assert!(!stderr.contains("--timeout"), "{ok}: {stderr}");
    }
    for bad in ["0", "5 seconds", "-1"] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
    }
}

#[test]
fn the_quick_start_leaves_the_checkout_clean() {
    // `cargo run` in the checkout writes the default directories there.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ignore = std::fs::read_to_string(root.join(".gitignore")).expect(".gitignore");
    let defaults = zeek_mgmt_agent::Config::default();
    for dir in [&defaults.cluster_dir, &defaults.state_dir] {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a plain name");
        assert!(
            ignore
                .lines()
                .any(|l| l.trim() == format!("/{name}/") || l.trim() == format!("/{name}")),
            "{} is not ignored by git",
            dir.display()
        );
    }
}

#[test]
fn the_local_agents_flags_are_refused_without_it_and_named_for_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-controller"))
            .current_dir(tmp.path())
            .args(args)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        stderr
    };
    let stderr = run(&["--", "--cluster-dir", "x"]);
    assert!(stderr.contains("need --local-agent"), "{stderr}");
    let stderr = run(&["--local-agent", "--", "--bogus"]);
    assert!(stderr.contains("'--bogus'"), "{stderr}");
    assert!(
        stderr.contains("zeek-mgmt-controller --local-agent --"),
        "the usage names the local agent's flags: {stderr}"
    );
    assert!(
        std::fs::read_dir(tmp.path()).expect("dir").next().is_none(),
        "nothing written"
    );
}

#[test]
fn port_0_is_a_free_port_for_the_controller_too_and_a_listener_has_its_own_off_switch() {
    use crate::support::controller::ready_addresses;
    let tmp = tempfile::tempdir().expect("tmp");
    let start = |extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-controller"))
            .args(["--websocket-port", "0", "--listen-port", "0", "--state-dir"])
            .arg(tmp.path().join("state"))
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the controller");
        let line = first_line(&mut child);
        // SAFETY: plain signal delivery to our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let _ = child.wait();
        ready_addresses(&line)
    };
    let (ws, agents) = start(&[]);
    let (ws, agents) = (ws.expect("clients"), agents.expect("agents"));
    assert!(ws.port() != 0 && agents.port() != 0 && ws.port() != agents.port());
    let (ws, agents) = start(&["--no-listen"]);
    assert!(ws.is_some_and(|a| a.port() != 0) && agents.is_none());
    let (ws, agents) = start(&["--no-websocket"]);
    assert!(ws.is_none() && agents.is_some());
}
