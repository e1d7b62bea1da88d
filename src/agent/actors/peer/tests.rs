//! A `Peer` over an in-memory duplex stream, with probes for the tracker,
//! the notifier and the close listeners.

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::api::events::{GetNodesRequest, Request, Response, Stem};
use crate::api::types::ApiResult;
use crate::testing::{eventually, Probe, Seen};

struct Harness {
    io: DuplexStream,
    peer: Addr<Peer>,
    tracked: Seen<Track>,
    ready: Seen<PeerReady>,
    closed: Seen<PeerClosed>,
}

fn start(side: Side, heartbeat_ms: u64) -> Harness {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (tracker, tracked) = Probe::<Track>::start();
    let (notifier, ready) = Probe::<PeerReady>::start();
    let (closer, closed) = Probe::<PeerClosed>::start();
    let settings = Arc::new(PeerSettings {
        agent_name: "a1".into(),
        heartbeat: Duration::from_millis(heartbeat_ms),
        handshake_timeout: Duration::from_secs(5),
        max_frame_bytes: 1024,
        max_outbound_bytes: 64 * 1024,
    });
    let peer = Peer::start(
        PeerId(7),
        theirs,
        "127.0.0.1:5000".parse().expect("addr"),
        "127.0.0.1:2151".parse().expect("addr"),
        side,
        settings,
        PeerLinks {
            tracker,
            notifier,
            on_close: vec![closer],
        },
    );
    Harness {
        io: ours,
        peer,
        tracked,
        ready,
        closed,
    }
}

async fn write(io: &mut DuplexStream, frame: &Frame) {
    let bytes = cbor::encode(frame).expect("encode");
    io.write_all(&(bytes.len() as u32).to_be_bytes())
        .await
        .expect("len");
    io.write_all(&bytes).await.expect("body");
}

async fn read(io: &mut DuplexStream) -> Option<Frame> {
    let len = io.read_u32().await.ok()?;
    let mut buf = vec![0; len as usize];
    io.read_exact(&mut buf).await.ok()?;
    Some(cbor::decode(&buf).expect("agent frames decode"))
}

/// Sends our hello and reads the agent's hello and its check-in.
async fn handshake(h: &mut Harness) {
    write(&mut h.io, &hello(1)).await;
    assert!(matches!(read(&mut h.io).await, Some(Frame::Hello(_))));
    assert!(matches!(read(&mut h.io).await, Some(Frame::Event { .. })));
}

fn hello(version: u64) -> Frame {
    hello_with_heartbeat(version, 0)
}

fn hello_with_heartbeat(version: u64, heartbeat: u64) -> Frame {
    Frame::Hello(Hello {
        version,
        endpoint: "ctl".into(),
        role: "controller".into(),
        heartbeat,
        features: vec![],
    })
}

#[actix_rt::test]
async fn accepted_peer_answers_hello_checks_in_and_forwards_requests() {
    let mut h = start(Side::Accepted, 0);
    write(&mut h.io, &hello(1)).await;
    assert!(
        matches!(read(&mut h.io).await, Some(Frame::Hello(ref x)) if x.endpoint == "a1" && x.role == "agent")
    );
    match read(&mut h.io).await {
        Some(Frame::Event {
            topic,
            body: EventBody::Notification(Notification::AgentHello(n)),
        }) => {
            assert_eq!(topic, "zeek/management/agent/a1");
            assert_eq!(
                (
                    n.instance.as_str(),
                    n.host.to_string().as_str(),
                    n.api_version
                ),
                ("a1", "127.0.0.1", 1)
            );
        }
        other => panic!("expected notify_agent_hello, got {other:?}"),
    }
    eventually("h.ready.len() == 1", Duration::from_secs(2), || {
        h.ready.len() == 1
    })
    .await;

    write(
        &mut h.io,
        &Frame::Event {
            topic: "zeek/management/agent/a1".into(),
            body: EventBody::Request(Request::GetNodes(GetNodesRequest { reqid: "r1".into() })),
        },
    )
    .await;
    eventually("h.tracked.len() == 1", Duration::from_secs(2), || {
        h.tracked.len() == 1
    })
    .await;
    let t = &h.tracked.all()[0];
    assert_eq!((t.peer, t.request.reqid().0.as_str()), (PeerId(7), "r1"));

    // A response handed back by the tracker goes out on the agent's topic.
    h.peer.do_send(Outbound::Response(Response {
        stem: Stem::GetNodes,
        reqid: "r1".into(),
        result: ApiResult::ok("r1".into(), "a1"),
    }));
    match read(&mut h.io).await {
        Some(Frame::Event {
            body: EventBody::Response(r),
            ..
        }) => assert_eq!((r.stem, r.reqid.0.as_str()), (Stem::GetNodes, "r1")),
        other => panic!("expected the response, got {other:?}"),
    }

    // Wrong topic: error, nothing tracked, still open.
    write(
        &mut h.io,
        &Frame::Event {
            topic: "elsewhere".into(),
            body: EventBody::Request(Request::GetNodes(GetNodesRequest { reqid: "r2".into() })),
        },
    )
    .await;
    assert!(matches!(
        read(&mut h.io).await,
        Some(Frame::Error {
            code: ErrorCode::UnknownTopic,
            ..
        })
    ));
    assert_eq!(h.tracked.len(), 1);
    drop(h.io);
    eventually("h.closed.len() == 1", Duration::from_secs(2), || {
        h.closed.len() == 1
    })
    .await;
    assert_eq!(h.closed.all()[0].peer, PeerId(7));
}

#[actix_rt::test]
async fn dialled_peer_sends_hello_first() {
    let mut h = start(Side::Dialed, 0);
    assert!(matches!(read(&mut h.io).await, Some(Frame::Hello(_))));
    write(&mut h.io, &hello(1)).await;
    assert!(matches!(
        read(&mut h.io).await,
        Some(Frame::Event {
            body: EventBody::Notification(Notification::AgentHello(_)),
            ..
        })
    ));
}

#[actix_rt::test]
async fn handshake_failures_close_the_connection() {
    for (first, code) in [
        (hello(2), ErrorCode::VersionMismatch),
        (Frame::Heartbeat, ErrorCode::BadHello),
    ] {
        let mut h = start(Side::Accepted, 0);
        write(&mut h.io, &first).await;
        assert!(matches!(read(&mut h.io).await, Some(Frame::Error { code: c, .. }) if c == code));
        assert!(read(&mut h.io).await.is_none(), "closed after {code:?}");
        eventually("h.closed.len() == 1", Duration::from_secs(2), || {
            h.closed.len() == 1
        })
        .await;
        assert!(h.ready.is_empty());
    }
}

#[actix_rt::test]
async fn oversize_frame_is_refused_and_closes() {
    let mut h = start(Side::Accepted, 0);
    handshake(&mut h).await;
    h.io.write_all(&4096u32.to_be_bytes()).await.expect("len");
    assert!(matches!(
        read(&mut h.io).await,
        Some(Frame::Error {
            code: ErrorCode::TooLarge,
            ..
        })
    ));
    assert!(read(&mut h.io).await.is_none());
}

#[actix_rt::test]
async fn idle_connection_gets_heartbeats() {
    let mut h = start(Side::Accepted, 40);
    handshake(&mut h).await;
    assert!(matches!(read(&mut h.io).await, Some(Frame::Heartbeat)));
}

#[actix_rt::test]
async fn silent_peer_is_dropped_after_three_heartbeats() {
    let mut h = start(Side::Accepted, 0);
    write(&mut h.io, &hello_with_heartbeat(1, 1)).await;
    let _ = read(&mut h.io).await;
    let _ = read(&mut h.io).await;
    // Say nothing more: after 3 s (three of the announced heartbeats) the
    // agent closes.
    eventually("h.closed.len() == 1", Duration::from_secs(6), || {
        h.closed.len() == 1
    })
    .await;
}

#[actix_rt::test]
async fn a_huge_announced_heartbeat_does_not_overflow() {
    let mut h = start(Side::Accepted, 20);
    write(&mut h.io, &hello_with_heartbeat(1, u64::MAX)).await;
    let _ = read(&mut h.io).await;
    let _ = read(&mut h.io).await;
    // Several ticks pass with the silence check armed; the peer lives on.
    assert!(matches!(read(&mut h.io).await, Some(Frame::Heartbeat)));
    assert!(matches!(read(&mut h.io).await, Some(Frame::Heartbeat)));
    assert!(h.closed.is_empty());
}

#[actix_rt::test]
async fn a_peer_that_stops_reading_is_disconnected() {
    let mut h = start(Side::Accepted, 0);
    handshake(&mut h).await;
    // Never read again: the duplex buffer (64 KiB) and then the outbound
    // bound (64 KiB) fill up.
    let big = ApiResult::failure("r".into(), "a1", "x".repeat(4096));
    for i in 0..100 {
        h.peer.do_send(Outbound::Response(Response {
            stem: Stem::GetNodes,
            reqid: format!("r{i}").as_str().into(),
            result: big.clone(),
        }));
    }
    eventually("h.closed.len() == 1", Duration::from_secs(5), || {
        h.closed.len() == 1
    })
    .await;
}

/// Yields its script, then ends.
struct Script(std::collections::VecDeque<Poll<Option<u32>>>);

impl Stream for Script {
    type Item = u32;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<u32>> {
        self.0.pop_front().unwrap_or(Poll::Ready(None))
    }
}

async fn batches(script: Vec<Poll<Option<u32>>>, max: usize) -> Vec<Vec<u32>> {
    let mut b = Script(script.into()).ready_chunks(max);
    let mut out = Vec::new();
    while let Some(batch) = std::future::poll_fn(|cx| Pin::new(&mut b).poll_next(cx)).await {
        out.push(batch);
    }
    // Once ended, it stays ended.
    assert!(std::future::poll_fn(|cx| Pin::new(&mut b).poll_next(cx))
        .await
        .is_none());
    out
}

#[actix_rt::test]
async fn frames_are_handed_on_in_batches_of_what_is_ready() {
    let ready = |v| Poll::Ready(Some(v));
    // What is ready before the stream waits goes together; the end after
    // items comes after their batch.
    assert_eq!(
        batches(
            vec![
                ready(1),
                ready(2),
                Poll::Pending,
                ready(3),
                Poll::Ready(None)
            ],
            8
        )
        .await,
        [vec![1, 2], vec![3]]
    );
    // At most `max` at a time.
    assert_eq!(
        batches((1..=5).map(ready).collect(), 2).await,
        [vec![1, 2], vec![3, 4], vec![5]]
    );
    assert!(batches(vec![], 8).await.is_empty());
}
