//! The settings: defaults, the file form, durations, what is refused.
use super::*;

#[test]
fn defaults_match_the_documentation() {
    let c = Config::default();
    assert_eq!(c.listen_addr.to_string(), "127.0.0.1");
    assert_eq!(c.listen_port, 2151);
    assert_eq!(c.controller_port, 2150);
    assert_eq!(c.cluster_dir, PathBuf::from("./cluster"));
    assert_eq!(c.state_dir, PathBuf::from("./state"));
    assert_eq!(c.request_timeout, Duration::from_secs(10));
    assert_eq!(c.max_frame_bytes, 16 * 1024 * 1024);
    assert_eq!(c.heartbeat, Duration::from_secs(5));
    assert!(c.name.starts_with("agent"));
}

#[test]
fn the_example_file_names_every_setting_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/zeek-mgmt-agent.toml");
    crate::settings::tests::example_file_agrees(path, &Settings::specs(), |file| {
        Ok(Settings::from_file(file)?.keeps_defaults())
    });
}

#[test]
fn the_readme_table_lists_every_setting_with_its_variable_and_default() {
    crate::settings::tests::readme_table_agrees("### The agent's settings", &Settings::specs());
}

#[test]
fn the_defaults_help_shows_are_the_defaults() {
    crate::settings::tests::shown_defaults_parse_back(&Settings::specs(), Settings::keeps_defaults);
}

#[test]
fn one_duration_syntax() {
    let ok = |t: &str| parse_duration(t).expect(t);
    assert_eq!(ok("500ms"), Duration::from_millis(500));
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("2m"), Duration::from_secs(120));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("10"), Duration::from_secs(10));
    assert_eq!(ok("0.25"), Duration::from_millis(250));
    assert_eq!(ok(" 30s "), Duration::from_secs(30));
    assert_eq!(ok("0"), Duration::ZERO);
    for bad in [
        "",
        "s",
        "-1",
        "1.5x",
        "ten",
        "1e3",
        "NaN",
        "inf",
        "1s2",
        "99999999999",
    ] {
        let e = parse_duration(bad).expect_err(bad);
        assert!(e.contains("500ms, 1.5s, 2m"), "{e}");
    }
}

#[test]
fn file_keys_are_the_flags_names_in_the_flags_syntax() {
    let o: Settings = toml::from_str(
        "name = \"a1\"\nlisten_port = \"9/tcp\"\nsettle_time = \"500ms\"\nstop_grace = \"30s\"\nrequest_timeout = 3\nheartbeat = 1.5\nno_listen = true\n",
    )
    .expect("toml");
    let mut c = Config::default();
    o.apply(&mut c);
    assert_eq!(c.name, "a1");
    assert_eq!(c.listen_port, 9);
    assert_eq!(c.settle_time, Duration::from_millis(500));
    assert_eq!(c.stop_grace, Duration::from_secs(30));
    assert_eq!(c.request_timeout, Duration::from_secs(3));
    assert_eq!(c.heartbeat, Duration::from_millis(1500));
    assert!(c.no_listen);
    for bad in [
        "listen_prot = 1",
        "listen_in_connect_mode = true",
        "stop_grace = \"30 seconds\"",
        "stop_grace = -1",
        "listen_port = \"http\"",
    ] {
        assert!(toml::from_str::<Settings>(bad).is_err(), "{bad}");
    }
}

#[test]
fn zero_is_refused_for_every_period_but_the_ones_where_it_means_off() {
    let mut c = Config {
        heartbeat: Duration::ZERO,
        settle_time: Duration::ZERO,
        max_revivals: 0,
        notification_backlog: 0,
        ..Config::default()
    };
    c.check().expect("0 means off or none here");
    c.sample_interval = Duration::ZERO;
    let e = c.check().expect_err("zero interval").to_string();
    assert!(
        e.starts_with("sample_interval (--sample-interval) must be more than 0"),
        "{e}"
    );
    for key in [
        "stop_grace",
        "request_timeout",
        "reconnect_interval",
        "revive_reset_after",
    ] {
        let mut c = Config::default();
        let mut s: Settings = toml::from_str(&format!("{key} = 0")).expect("toml");
        s.name = None;
        s.apply(&mut c);
        let e = c.check().expect_err(key).to_string();
        assert!(e.starts_with(key), "{e}");
    }
    let c = Config {
        max_peers: 0,
        ..Config::default()
    };
    assert!(c
        .check()
        .expect_err("no peers")
        .to_string()
        .contains("max_peers"));
}
