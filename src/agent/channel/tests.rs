use super::*;

/// A ping answer captured from a real Zeek 8.2.2 worker.
const PING_ANSWER: &str = r#"{"type":"data-message","topic":"zeek/agent/node/worker-1/reply","@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"AgentChannel::response"},{"@data-type":"vector","data":[{"@data-type":"string","data":"r1"},{"@data-type":"string","data":"worker-1"},{"@data-type":"boolean","data":true},{"@data-type":"string","data":"{\"node\":\"worker-1\",\"id\":\"zeromq_worker-1_vm_14341_NWFlnr4uTcUi215I8e\",\"pid\":14341,\"version\":\"8.2.2\",\"listening\":true,\"peers\":[\"manager\",\"proxy-1\"]}"},{"@data-type":"string","data":""}]}]}]}"#;

fn answer(text: &str) -> Answer {
    match parse(text) {
        Incoming::Response(a) => a,
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn the_request_frame_is_zeeks_without_the_metadata() {
    // The captured request, minus its third (empty metadata) element.
    let captured = r#"{"type":"data-message","topic":"zeek/agent/node/worker-1/request","@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"AgentChannel::request"},{"@data-type":"vector","data":[{"@data-type":"string","data":"r2"},{"@data-type":"vector","data":[{"@data-type":"string","data":"get_id_value"},{"@data-type":"string","data":"Cluster::node"}]}]}]}]}"#;
    let action = ["get_id_value".to_owned(), "Cluster::node".to_owned()];
    assert_eq!(request("worker-1", "r2", &action), captured);
    assert_eq!(
        subscription("worker-1"),
        r#"["zeek/agent/node/worker-1/reply"]"#
    );
}

#[test]
fn captured_frames_are_read() {
    let ack = r#"{"type":"ack","endpoint":"zeromq_worker-1_vm_14341_NWFlnr4uTcUi215I8e-websocket-0","version":"8.2.2"}"#;
    assert_eq!(parse(ack), Incoming::Ack);
    let a = answer(PING_ANSWER);
    assert_eq!(
        (a.reqid.as_str(), a.node.as_str(), a.success),
        ("r1", "worker-1", true)
    );
    let unknown = r#"{"type":"data-message","topic":"zeek/agent/node/worker-1/reply","@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"AgentChannel::response"},{"@data-type":"vector","data":[{"@data-type":"string","data":"r4"},{"@data-type":"string","data":"worker-1"},{"@data-type":"boolean","data":false},{"@data-type":"string","data":""},{"@data-type":"string","data":"unknown id"}]}]}]}"#;
    let a = answer(unknown);
    assert_eq!((a.success, a.error.as_str()), (false, "unknown id"));
    let up = r#"{"type":"data-message","topic":"zeek/agent/node/worker-1/reply","@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"AgentChannel::peer_up"},{"@data-type":"vector","data":[{"@data-type":"string","data":"worker-1"},{"@data-type":"string","data":"worker-2"}]}]}]}"#;
    assert_eq!(parse(up), Incoming::PeerUp("worker-2".into()));
    assert_eq!(
        parse(&up.replace("peer_up", "peer_down")),
        Incoming::PeerDown("worker-2".into())
    );
    let error = r#"{"type":"error","code":"deserialization_failed","context":"failed to create Zeek event"}"#;
    assert_eq!(
        parse(error),
        Incoming::Error("deserialization_failed: failed to create Zeek event".into())
    );
    assert!(matches!(parse("not json"), Incoming::Other(_)));
    assert!(matches!(parse("[]"), Incoming::Other(_)));
}

#[test]
fn a_valid_ping_names_the_target_and_its_pid() {
    let a = answer(PING_ANSWER);
    let ping = check_ping(&a, "worker-1", 14341).expect("valid");
    assert_eq!(ping.peers, ["manager", "proxy-1"]);
    assert!(ping.listening);
    let wrong_pid = check_ping(&a, "worker-1", 18096).unwrap_err();
    assert_eq!(
        wrong_pid,
        "channel answered by pid 14341, expected 18096 (another cluster on the same ZeroMQ ports?)"
    );
    assert!(check_ping(&a, "worker-2", 14341).is_err());
    let mut failed = a.clone();
    failed.success = false;
    assert!(check_ping(&failed, "worker-1", 14341).is_err());
    let mut not_object = a.clone();
    not_object.data = "\"worker-1\"".into();
    assert!(check_ping(&not_object, "worker-1", 14341).is_err());
    let mut other_inside = a;
    other_inside.data = other_inside
        .data
        .replace("\"node\":\"worker-1\"", "\"node\":\"worker-2\"");
    assert!(check_ping(&other_inside, "worker-1", 14341).is_err());
}

fn facts(elapsed_ms: u64, opened_ms: Option<u64>, answered: bool, settled: bool) -> Facts {
    Facts {
        elapsed: Duration::from_millis(elapsed_ms),
        opened: opened_ms.map(Duration::from_millis),
        answered,
        settled,
    }
}

#[test]
fn an_own_channel_runs_at_its_answer_not_at_the_settle_time() {
    let t = crate::agent::config::Config::default().channel();
    let wait = Verdict::Wait { fallen_back: false };
    assert_eq!(decide(Path::Own, &facts(300, None, false, true), &t), wait);
    assert_eq!(
        decide(Path::Own, &facts(300, Some(290), false, true), &t),
        wait
    );
    assert_eq!(
        decide(Path::Own, &facts(310, Some(290), true, false), &t),
        Verdict::Running(Rule::Channel)
    );
}

#[test]
fn degraded_after_the_join_grace_from_the_upgrade() {
    let t = crate::agent::config::Config::default().channel();
    assert_eq!(
        decide(Path::Own, &facts(5_289, Some(290), false, true), &t),
        Verdict::Wait { fallen_back: false }
    );
    assert_eq!(
        decide(Path::Own, &facts(5_290, Some(290), false, false), &t),
        Verdict::Running(Rule::Degraded)
    );
    // Routed: the grace counts from the logging node's port accepting.
    assert_eq!(
        decide(Path::Routed, &facts(5_300, Some(300), false, false), &t),
        Verdict::Running(Rule::Degraded)
    );
    // An upgrade late in the channel timeout still gets its grace.
    assert_eq!(
        decide(Path::Own, &facts(31_000, Some(29_000), false, true), &t),
        Verdict::Wait { fallen_back: false }
    );
}

#[test]
fn fallback_after_the_channel_timeout_with_no_upgrade() {
    let t = crate::agent::config::Config::default().channel();
    assert_eq!(
        decide(Path::Own, &facts(29_999, None, false, true), &t),
        Verdict::Wait { fallen_back: false }
    );
    assert_eq!(
        decide(Path::Own, &facts(30_000, None, false, true), &t),
        Verdict::Running(Rule::Fallback)
    );
    // Fallen back, but the rule without a channel does not hold yet.
    assert_eq!(
        decide(Path::Own, &facts(30_000, None, false, false), &t),
        Verdict::Wait { fallen_back: true }
    );
    assert_eq!(
        decide(Path::Routed, &facts(30_000, None, false, true), &t),
        Verdict::Running(Rule::Fallback)
    );
    // A logging node's port that first accepts after the channel timeout
    // opens no grace: the node has fallen back, and its port rule holds.
    assert_eq!(
        decide(Path::Routed, &facts(31_000, Some(31_000), false, false), &t),
        Verdict::Wait { fallen_back: true }
    );
    assert_eq!(
        decide(Path::Routed, &facts(36_000, Some(31_000), false, true), &t),
        Verdict::Running(Rule::Fallback)
    );
}

#[test]
fn nodes_without_a_channel_follow_their_own_rule() {
    let t = crate::agent::config::Config::default().channel();
    assert_eq!(
        decide(Path::PortOnly, &facts(100, None, false, false), &t),
        Verdict::Wait { fallen_back: false }
    );
    assert_eq!(
        decide(Path::PortOnly, &facts(300, None, false, true), &t),
        Verdict::Running(Rule::Port)
    );
    assert_eq!(
        decide(Path::None, &facts(250, None, false, true), &t),
        Verdict::Running(Rule::Settle)
    );
    // An answer means nothing to a path without a channel.
    assert_eq!(
        decide(Path::None, &facts(10, None, true, false), &t),
        Verdict::Wait { fallen_back: false }
    );
}

#[test]
fn a_collision_is_read_from_zeeks_words() {
    let stderr = "error in <params>, line 1: WebSocket: Unable to listen on 127.0.0.1:59901: SocketServer::listen() error calling bind at address 127.0.0.1:59901 : Address already in use\n";
    assert!(collided(stderr, 59901));
    assert!(!collided(stderr, 5990));
    assert!(!collided("fatal error: something else", 59901));
    assert_eq!(secs(Duration::from_secs(5)), "5.0");
    assert_eq!(secs(Duration::from_millis(9_000)), "9.0");
}

#[test]
fn a_node_has_joined_when_it_answers_and_sees_the_manager() {
    use std::collections::BTreeSet;
    let grace = Duration::from_secs(5);
    let needs = ["manager".to_owned()];
    let none = BTreeSet::new();
    let both: BTreeSet<String> = ["manager".to_owned(), "proxy-1".to_owned()].into();
    let proxy: BTreeSet<String> = ["proxy-1".to_owned()].into();
    let facts = |peers, answer: Option<u64>, open: u64| JoinFacts {
        needs: &needs,
        peers,
        since_answer: answer.map(Duration::from_millis),
        since_open: Duration::from_millis(open),
    };
    // Answered, and the manager's hello came.
    assert_eq!(
        join_verdict(&facts(&both, Some(10), 300), grace),
        Some(Join::Joined)
    );
    // Answered without the manager's hello: wait out the grace, then say so.
    assert_eq!(join_verdict(&facts(&proxy, Some(10), 300), grace), None);
    assert_eq!(
        join_verdict(&facts(&proxy, Some(10), 5_000), grace),
        Some(Join::NotJoined(
            "no hello from manager within 5.0 s (it sees: proxy-1)".into()
        ))
    );
    assert_eq!(
        join_verdict(&facts(&none, Some(10), 6_000), grace),
        Some(Join::NotJoined(
            "no hello from manager within 5.0 s (it sees: no other node)".into()
        ))
    );
    // Never answered: not yet, then not joined (a degraded start).
    assert_eq!(join_verdict(&facts(&none, None, 4_999), grace), None);
    let lost = Some(Join::NotJoined(
        "no answer through its cluster backend for 5.0 s".into(),
    ));
    assert_eq!(join_verdict(&facts(&none, None, 5_000), grace), lost);
    // Answered once, then silent for the grace (the manager went away),
    // even with the manager still among its peers.
    assert_eq!(
        join_verdict(&facts(&both, Some(5_000), 60_000), grace),
        lost
    );
    // Nothing needed (the manager itself): an answer is enough.
    let facts = JoinFacts {
        needs: &[],
        peers: &none,
        since_answer: Some(Duration::ZERO),
        since_open: Duration::ZERO,
    };
    assert_eq!(join_verdict(&facts, grace), Some(Join::Joined));
}
