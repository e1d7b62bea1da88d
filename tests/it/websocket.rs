//! The controller's WebSocket transport, raw: Zeek's error frames for every
//! kind of bad input, the connection staying usable after each, fan-out to
//! other clients, plain HTTP, and clients vanishing by the thousand.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::controller::Controller;
use crate::support::procfs::{fds, rss_kib};
use crate::support::Later;

type Ws = WebSocketStream<TcpStream>;

const GET_INSTANCES: &str = r#"{"@data-type": "vector", "data": [{"@data-type": "count", "data": 1}, {"@data-type": "count", "data": 1}, {"@data-type": "vector", "data": [{"@data-type": "string", "data": "Management::Controller::API::get_instances_request"}, {"@data-type": "vector", "data": [{"@data-type": "string", "data": "r1"}]}]}], "topic": "zeek/management/controller", "type": "data-message"}"#;

async fn open(c: &Controller, path: &str, app: Option<&str>) -> Ws {
    let mut req = format!("ws://{}{path}", c.ws)
        .into_client_request()
        .expect("request");
    if let Some(a) = app {
        req.headers_mut()
            .insert("X-Application-Name", a.parse().expect("header"));
    }
    let tcp = TcpStream::connect(c.ws).await.expect("connect");
    tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("upgrade")
        .0
}

/// The next text frame.
async fn text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.as_str().to_owned(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, t: &str) {
    ws.send(Message::text(t)).await.expect("send");
}

fn error(code: &str, context: &str) -> String {
    format!(r#"{{"type":"error","code":"{code}","context":"{context}"}}"#)
}

async fn acked(c: &Controller) -> Ws {
    let mut ws = open(c, "/v1/messages/json", None).await;
    send(&mut ws, r#"["zeek/management/controller"]"#).await;
    let ack: serde_json::Value = serde_json::from_str(&text(&mut ws).await).expect("ack");
    assert_eq!(ack["type"], "ack");
    ws
}

fn controller() -> (tempfile::TempDir, Controller) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Controller::start(tmp.path());
    (tmp, c)
}

#[tokio::test]
async fn a_wrong_path_or_application_name_is_told_then_closed_with_1008() {
    let (_tmp, c) = controller();
    for (path, app, code, context) in [
        (
            "/other",
            None,
            "invalid_uri",
            "Invalid URI - use /v1/messages/json",
        ),
        (
            "/v1/messages/json",
            Some("has space"),
            "invalid_application_name",
            "Invalid X-Application-Name",
        ),
    ] {
        let mut ws = open(&c, path, app).await;
        assert_eq!(text(&mut ws).await, error(code, context));
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                assert_eq!(f.code, CloseCode::Policy);
                assert_eq!(f.reason.as_str(), context);
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    // An acceptable application name is fine.
    let mut ws = open(&c, "/v1/messages/json", Some("zeek-client/1.5.0")).await;
    send(&mut ws, "[]").await;
    assert!(text(&mut ws)
        .await
        .starts_with(r#"{"type":"ack","endpoint":""#));
}

#[tokio::test]
async fn bad_frames_get_zeeks_error_frames_and_the_connection_stays_usable() {
    let (_tmp, c) = controller();
    let mut ws = open(&c, "/v1/messages/json", None).await;
    // Before the ack: subscriptions that are not an array of strings.
    send(&mut ws, r#"{"a": 1}"#).await;
    assert_eq!(
        text(&mut ws).await,
        error("deserialization_failed", "subscriptions not an array")
    );
    send(&mut ws, r#"["a", 1]"#).await;
    assert_eq!(
        text(&mut ws).await,
        error(
            "deserialization_failed",
            "individual subscription not a string"
        )
    );
    send(&mut ws, r#"["zeek/management/controller"]"#).await;
    let ack = text(&mut ws).await;
    let v: serde_json::Value = serde_json::from_str(&ack).expect("ack");
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 3, "{ack}");
    assert!(ack.starts_with(r#"{"type":"ack","endpoint":""#), "{ack}");
    assert!(v["endpoint"]
        .as_str()
        .is_some_and(|e| e.contains("-websocket-")));
    // After it: every kind of bad message, each told, none fatal.
    for (frame, context) in [
        ("not json", "failed to decode JSON object"),
        (
            r#"{"type": "data-message", "@data-type": "count", "data": 1}"#,
            "no topic in top-level JSON object",
        ),
        (
            r#"{"type": "data-message", "topic": "zeek/management/controller", "@data-type": "count", "data": 1}"#,
            "failed to create Zeek event",
        ),
        (
            &GET_INSTANCES.replace("get_instances_request", "test_noop_request"),
            "failed to create Zeek event",
        ),
        (
            &GET_INSTANCES.replace(r#"{"@data-type": "string", "data": "r1"}"#, ""),
            "failed to create Zeek event",
        ),
    ] {
        send(&mut ws, frame).await;
        assert_eq!(
            text(&mut ws).await,
            error("deserialization_failed", context),
            "{frame}"
        );
    }
    // Binary frames are taken as text.
    ws.send(Message::binary(GET_INSTANCES.as_bytes().to_vec()))
        .await
        .expect("send");
    let answer = text(&mut ws).await;
    assert!(
        answer.starts_with(
            r#"{"type":"data-message","topic":"zeek/management/controller","@data-type":"vector""#
        ),
        "{answer}"
    );
    assert!(answer.contains("get_instances_response") && answer.contains("\"r1\""));
}

#[tokio::test]
async fn other_clients_see_requests_and_responses_but_not_their_own_request() {
    let (_tmp, c) = controller();
    let mut a = acked(&c).await;
    let mut b = acked(&c).await;
    send(&mut a, GET_INSTANCES).await;
    let first_a = text(&mut a).await;
    assert!(first_a.contains("get_instances_response"), "{first_a}");
    let relayed = text(&mut b).await;
    assert!(relayed.contains("get_instances_request"), "{relayed}");
    let response = text(&mut b).await;
    assert_eq!(response, first_a);
}

#[tokio::test]
async fn a_plain_http_request_gets_400() {
    let (_tmp, c) = controller();
    let mut tcp = TcpStream::connect(c.ws).await.expect("connect");
    tcp.write_all(b"GET /v1/messages/json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut reply))
        .await
        .expect("answered")
        .expect("read");
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");
}

#[tokio::test]
async fn ten_thousand_clients_vanishing_at_every_stage_leave_nothing_behind() {
    let (_tmp, c) = controller();
    // Warm up: one full session, so that lazily made things exist.
    drop(acked(&c).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = c.pid();
    let (fds_before, rss_before) = (fds(pid), rss_kib(pid));
    let start = std::time::Instant::now();
    let mut peak = 0;
    for i in 0..10_000 {
        if i % 1000 == 999 {
            peak = peak.max(rss_kib(pid));
        }
        match i % 4 {
            // TCP only.
            0 => drop(TcpStream::connect(c.ws).await.expect("connect")),
            // Half an upgrade request.
            1 => {
                let mut t = TcpStream::connect(c.ws).await.expect("connect");
                let _ = t.write_all(b"GET /v1/messages/json HTTP/1.1\r\nUpgr").await;
            }
            // Upgraded, never subscribed.
            2 => drop(open(&c, "/v1/messages/json", None).await),
            // Acked, a request sent, gone before the answer (as
            // zeek-client does: no close frame).
            _ => {
                let mut ws = acked(&c).await;
                send(&mut ws, GET_INSTANCES).await;
            }
        }
    }
    let took = start.elapsed();
    // Still serving.
    let mut ws = acked(&c).await;
    send(&mut ws, GET_INSTANCES).await;
    assert!(text(&mut ws).await.contains("get_instances_response"));
    drop(ws);
    let settled = {
        let end = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let now = fds(pid);
            if now <= fds_before || std::time::Instant::now() > end {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // Memory comes back too (the hub hands freed pages back after
    // departures): within 8 MiB of where it started.
    let limit = rss_before + 8 * 1024;
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while rss_kib(pid) > limit && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_after = rss_kib(pid);
    println!(
        "10000 connect-and-drop cycles in {took:?}; fds {fds_before} -> {settled}; rss {rss_before} KiB -> peak {peak} KiB -> {rss_after} KiB"
    );
    assert!(settled <= fds_before, "fds {fds_before} -> {settled}");
    assert!(
        rss_after <= limit,
        "rss {rss_before} KiB -> {rss_after} KiB"
    );
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_dropped_and_one_that_does_stays() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Controller::start_with(tmp.path(), &["--websocket-ping", "0.5"]);
    let mut silent = acked(&c).await;
    let mut alive = acked(&c).await;
    // `alive` reads (tungstenite answers each ping) for three seconds;
    // `silent` reads nothing meanwhile.
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut pings = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, alive.next()).await {
        if matches!(m, Message::Ping(_)) {
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings} pings");
    send(&mut alive, GET_INSTANCES).await;
    assert!(text(&mut alive).await.contains("get_instances_response"));
    // `silent` was dropped: what is left to read ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match silent.next().await {
                Some(Ok(Message::Ping(_))) => continue,
                _ => return true,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true));
}

/// Writes a masked text frame header announcing `len` payload bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend(len.to_be_bytes());
    h.extend([1, 2, 3, 4]);
    h
}

#[tokio::test]
async fn a_frame_too_large_is_refused_at_its_header_and_costs_no_memory() {
    let (_tmp, c) = controller();
    let mut idle = acked(&c).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(c.pid());
    // A 50 MB frame: the header, then its bytes for as long as the
    // controller reads them.
    let mut raw = open(&c, "/v1/messages/json", None).await;
    send(&mut raw, r#"["zeek/management/controller"]"#).await;
    let _ack = text(&mut raw).await;
    let mut tcp = raw.into_inner();
    const LEN: u64 = 50 << 20;
    tcp.write_all(&frame_header(LEN)).await.expect("header");
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    while sent < LEN {
        if tcp.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len() as u64;
    }
    // The controller closed the connection (1009) without reading it all.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(
        rest.windows(2).any(|w| w == [0x03, 0xf1]),
        "no close frame with 1009 in {:?}",
        &rest[..rest.len().min(64)]
    );
    let after = rss_kib(c.pid());
    eprintln!("controller RSS {before} KiB before, {after} KiB after a 50 MB frame");
    assert!(after < before + 4 * 1024, "RSS {before} KiB -> {after} KiB");
    // Other clients are served still.
    send(&mut idle, GET_INSTANCES).await;
    assert!(text(&mut idle).await.contains("get_instances_response"));
}

#[test]
fn silent_connections_by_the_thousand_do_not_lock_zeek_client_out() {
    let (_tmp, c) = controller();
    // Each connection is taken at once: none waits for a retransmitted SYN
    // (the kernel's first retransmission comes after 1 s), which is what
    // happens once a controller stops accepting and its listen queue fills.
    let mut slowest = Duration::ZERO;
    let silent: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| {
            let t = std::time::Instant::now();
            let s = std::net::TcpStream::connect(c.ws).expect("connect");
            slowest = slowest.max(t.elapsed());
            s
        })
        .collect();
    assert!(
        slowest < Duration::from_secs(1),
        "a connection waited {slowest:?}: its SYN was dropped"
    );
    // The controller takes every connection off its listen queue at once
    // (one that stopped accepting while they say nothing would leave
    // newcomers, zeek-client among them, queued behind them).
    crate::support::eventually(
        Later(|| {
            format!(
                "connections left in the listen queue: {:?}",
                accept_queue(c.ws.port())
            )
        }),
        Duration::from_secs(5),
        || accept_queue(c.ws.port()) == Some(0),
    );
    let t = std::time::Instant::now();
    let (code, out, err) = c.client(&["get-instances"]);
    eprintln!(
        "zeek-client answered in {:?} with {} silent connections held",
        t.elapsed(),
        silent.len()
    );
    assert_eq!((code, out.as_str()), (0, "{}\n"), "{err}");
    drop(silent);
}

/// The connections waiting in the accept queue of the IPv4 listener on
/// `port` (`/proc/net/tcp`: a listening socket's rx_queue).
fn accept_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let listening = f.get(3) == Some(&"0A");
        if !listening || !f.get(1).is_some_and(|a| a.ends_with(&local)) {
            return None;
        }
        let (_, rx) = f.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}
