use std::sync::{Arc, Mutex};

use super::*;
use crate::broker::message::{DataMessage, Event};
use crate::broker::Value;
use crate::testing::{eventually, Probe, Seen};

/// What the fake node's server saw: each text frame, and whether it came
/// after the ack.
type Log = Arc<Mutex<Vec<(String, bool)>>>;

/// A fake node server: upgrades one connection, acks the subscription
/// after `ack_delay`, answers pings with `ping_pid` and get_id_value with
/// the node's name.
async fn fake_node(ack_delay: Duration, ping_pid: u32) -> (u16, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    actix_rt::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (mut sink, mut stream) = ws.split();
        let mut acked = false;
        let ack_at = tokio::time::sleep(ack_delay);
        tokio::pin!(ack_at);
        loop {
            tokio::select! {
                () = &mut ack_at, if !acked => {
                    acked = true;
                    let ack = r#"{"type":"ack","endpoint":"fake-websocket-0","version":"8.2.2"}"#;
                    if sink.send(Message::text(ack)).await.is_err() {
                        return;
                    }
                }
                m = stream.next() => {
                    let Some(Ok(Message::Text(t))) = m else { return };
                    seen.lock().expect("log").push((t.to_string(), acked));
                    if !acked {
                        continue;
                    }
                    let Some(e) = DataMessage::parse(t.as_str()).ok().and_then(|m| Event::from_value(&m.value)) else {
                        continue;
                    };
                    let reqid = e.args[0].as_str().unwrap_or("").to_owned();
                    let action: Vec<&str> = e.args[1].as_list().unwrap_or(&[]).iter().filter_map(Value::as_str).collect();
                    let data = match action.first() {
                        Some(&"ping") => format!(r#"{{"node":"worker-1","id":"x","pid":{ping_pid},"version":"8.2.2","listening":true,"peers":["manager"]}}"#),
                        _ => "\"worker-1\"".to_owned(),
                    };
                    let answer = Event {
                        name: "AgentChannel::response".into(),
                        args: vec![Value::string(reqid), Value::string("worker-1"), Value::Boolean(true), Value::string(data), Value::string("")],
                    };
                    let msg = DataMessage { topic: "zeek/agent/node/worker-1/reply".into(), value: answer.into_value() };
                    if sink.send(Message::text(msg.to_json())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (port, log)
}

fn spec(port: u16, pid: u32) -> ChannelSpec {
    ChannelSpec {
        target: "worker-1".into(),
        port,
        pid,
        route: false,
        timings: Arc::new(Timings {
            connect_interval: Duration::from_millis(10),
            ping_interval: Duration::from_millis(20),
            ..crate::agent::config::Config::default().channel()
        }),
        max_message: 1 << 20,
    }
}

fn facts(seen: &Seen<ChannelReport>) -> Vec<ChannelFact> {
    seen.all().into_iter().map(|r| r.fact).collect()
}

#[actix_rt::test]
async fn opens_subscribes_waits_for_the_ack_then_pings_until_answered() {
    let (port, log) = fake_node(Duration::from_millis(150), 4242).await;
    let (probe, seen) = Probe::<ChannelReport>::start();
    let ch = NodeChannel::new(spec(port, 4242), probe).start();
    // A command sent before the ack is held until it.
    let answer = ch.send(NodeCommand {
        action: vec!["get_id_value".into(), "Cluster::node".into()],
        timeout: Duration::from_secs(5),
    });
    let answer = answer.await.expect("mailbox").expect("answered");
    assert_eq!(answer.data, "\"worker-1\"");
    eventually(
        "facts(&seen) .iter() .any(|f| matches!(f, ChannelFact::Answered(_)))",
        Duration::from_secs(5),
        || {
            facts(&seen)
                .iter()
                .any(|f| matches!(f, ChannelFact::Answered(_)))
        },
    )
    .await;
    let f = facts(&seen);
    assert_eq!(f[0], ChannelFact::Opened);
    assert_eq!(f[1], ChannelFact::Acked);
    assert_eq!(
        f[2],
        ChannelFact::Answered(channel::Ping {
            peers: vec!["manager".into()],
            listening: true
        })
    );
    let log = log.lock().expect("log").clone();
    assert_eq!(
        log[0],
        (r#"["zeek/agent/node/worker-1/reply"]"#.to_owned(), false)
    );
    assert!(
        log[1..].iter().all(|(_, after_ack)| *after_ack),
        "nothing but the subscription before the ack: {log:?}"
    );
}

#[actix_rt::test]
async fn an_answer_from_another_pid_is_not_valid() {
    let (port, log) = fake_node(Duration::from_millis(1), 999).await;
    let (probe, seen) = Probe::<ChannelReport>::start();
    let _ch = NodeChannel::new(spec(port, 4242), probe).start();
    eventually(
        "facts(&seen) .iter() .any(|f| matches!(f, ChannelFact::Invalid(_)))",
        Duration::from_secs(5),
        || {
            facts(&seen)
                .iter()
                .any(|f| matches!(f, ChannelFact::Invalid(_)))
        },
    )
    .await;
    // It keeps pinging, and says so once.
    eventually(
        "log.lock().expect(\"log\").len() >= 4",
        Duration::from_secs(5),
        || log.lock().expect("log").len() >= 4,
    )
    .await;
    let f = facts(&seen);
    assert!(!f.iter().any(|f| matches!(f, ChannelFact::Answered(_))));
    assert_eq!(
        f.iter()
            .filter(|f| matches!(f, ChannelFact::Invalid(_)))
            .count(),
        1
    );
    assert!(f.contains(&ChannelFact::Invalid(
        "channel answered by pid 999, expected 4242 (another cluster on the same ZeroMQ ports?)"
            .into()
    )));
}

#[actix_rt::test]
async fn a_closed_connection_is_told_and_commands_fail() {
    // A server that upgrades, then closes with Zeek's ping-timeout code.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    actix_rt::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                let _ = ws.next().await;
                let _ = ws
                    .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: 1011.into(),
                        reason: "Ping timeout".into(),
                    }))
                    .await;
            }
        }
    });
    let (probe, seen) = Probe::<ChannelReport>::start();
    let ch = NodeChannel::new(spec(port, 1), probe).start();
    let r = ch
        .send(NodeCommand {
            action: vec!["ping".into()],
            timeout: Duration::from_secs(5),
        })
        .await;
    assert!(
        matches!(r, Ok(Err(NodeCommandError::Closed)) | Err(_)),
        "{r:?}"
    );
    eventually(
        "facts(&seen) .iter() .any(|f| matches!(f, ChannelFact::Closed { .. }))",
        Duration::from_secs(5),
        || {
            facts(&seen)
                .iter()
                .any(|f| matches!(f, ChannelFact::Closed { .. }))
        },
    )
    .await;
    assert!(facts(&seen).contains(&ChannelFact::Closed {
        reason: "closed 1011 Ping timeout".into()
    }));
}

#[test]
fn a_channel_remembers_only_its_latest_pings() {
    let mut pings = RecentPings::default();
    for n in 0..10_000 {
        pings.push(format!("ch-{n}"));
    }
    assert_eq!(pings.0.len(), KEPT_PINGS);
    assert!(pings.contains("ch-9999"));
    assert!(pings.contains(&format!("ch-{}", 10_000 - KEPT_PINGS)));
    assert!(!pings.contains("ch-0"));
}
