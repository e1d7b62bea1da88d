//! Load held by the real binary: many peers pipelining many requests, and
//! connection churn, with the agent's memory and descriptors checked
//! against their idle level afterwards. Figures are printed, never asserted
//! against a clock.

use std::time::{Duration, Instant};

use zeek_mgmt_agent::api::events::{GetNodesRequest, Request};
use zeek_mgmt_agent::api::types::ReqId;
use zeek_mgmt_agent::protocol::to_agent::{Connection, PeerOptions};

use crate::support::procfs::{fds, rss_kib};
use crate::support::*;

const PEERS: usize = 64;
const PIPELINED: usize = 10_000;
const CYCLES: usize = 10_000;
/// Resident memory over the idle level still counted as "back to idle".
const IDLE_SLACK_KIB: u64 = 2 * 1024;

/// Waits (bounded) for the agent's memory and descriptors to come back to
/// their idle level; returns what it saw last.
async fn back_to_idle(pid: u32, idle_rss: u64, idle_fds: usize) -> (u64, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (rss, fd) = (rss_kib(pid), fds(pid));
        if (rss <= idle_rss + IDLE_SLACK_KIB && fd <= idle_fds) || Instant::now() > deadline {
            return (rss, fd);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_idle((rss, fd): (u64, usize), (idle_rss, idle_fds): (u64, usize)) {
    assert!(
        rss <= idle_rss + IDLE_SLACK_KIB,
        "memory stayed at {rss} KiB (idle {idle_rss} KiB)"
    );
    assert!(
        fd <= idle_fds,
        "descriptors stayed at {fd} (idle {idle_fds})"
    );
}

async fn idle_level(agent: &Agent) -> (u64, usize) {
    // One warm-up round so that lazily made things exist.
    let c = agent.connect().await;
    get_nodes(&c).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    (rss_kib(agent.pid()), fds(agent.pid()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peers_pipelining_get_every_answer_once() {
    let agent = Agent::start(&["--max-in-flight", "10000", "--request-timeout", "60"]);
    let (idle_rss, idle_fds) = idle_level(&agent).await;
    let addr = agent.addr.expect("addr");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PEERS {
        tasks.push(tokio::spawn(async move {
            let c = Connection::connect(addr, PeerOptions::default())
                .await
                .expect("connect");
            let mut waiting = Vec::with_capacity(PIPELINED);
            for i in 0..PIPELINED {
                let reqid = ReqId(format!("p{p}-{i}"));
                let rx = c
                    .start_request(Request::GetNodes(GetNodesRequest {
                        reqid: reqid.clone(),
                    }))
                    .expect("send");
                waiting.push((reqid, rx));
            }
            let mut ok = 0;
            for (reqid, rx) in waiting {
                let r = match tokio::time::timeout(Duration::from_secs(30), rx).await {
                    Ok(r) => r.expect("answered"),
                    Err(_) => panic!("peer {p}: {reqid} unanswered after {ok} answers"),
                };
                assert_eq!(r.reqid, reqid, "the response of another request");
                assert!(r.result.success, "{:?}", r.result);
                ok += 1;
            }
            // Anything else arriving now would be a duplicate.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(c.unmatched_responses(), 0, "duplicate or stray responses");
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        match t.await {
            Ok(n) => total += n,
            Err(e) => {
                let log = agent.log();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains(" rx ") && !l.contains(" tx "))
                    .collect();
                panic!("{e}\n{}", tail[tail.len().saturating_sub(40)..].join("\n"));
            }
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(total, PEERS * PIPELINED);
    let peak = rss_kib(agent.pid());
    let (rss, fd) = back_to_idle(agent.pid(), idle_rss, idle_fds).await;
    println!(
        "{PEERS} peers x {PIPELINED} pipelined get_nodes: {total} answered in {elapsed:?} ({:.0}/s); \
         rss idle {idle_rss} KiB, after {rss} KiB (peak seen {peak} KiB); fds idle {idle_fds}, after {fd}",
        total as f64 / elapsed.as_secs_f64()
    );
    assert_idle((rss, fd), (idle_rss, idle_fds));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_leaves_nothing_behind() {
    let agent = Agent::start(&[]);
    let (idle_rss, idle_fds) = idle_level(&agent).await;
    let addr = agent.addr.expect("addr");
    let watcher = agent.connect().await;
    let started = Instant::now();
    let churn = tokio::spawn(async move {
        for i in 0..CYCLES {
            // connect, hello, drop
            let c = Connection::connect(addr, PeerOptions::default())
                .await
                .expect("connect");
            drop(c);
            // connect and drop before any hello
            drop(tokio::net::TcpStream::connect(addr).await.expect("tcp"));
            // connect, hello, send a request, drop at once
            let c = Connection::connect(addr, PeerOptions::default())
                .await
                .expect("connect");
            let _ = c.start_request(Request::GetNodes(GetNodesRequest {
                reqid: ReqId(format!("churn-{i}")),
            }));
            drop(c);
        }
    });
    // The other peer is served throughout.
    let mut served = 0;
    while !churn.is_finished() {
        let nodes = get_nodes(&watcher).await;
        assert_eq!(nodes.len(), 1);
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    churn.await.expect("churn");
    let elapsed = started.elapsed();
    assert_eq!(get_nodes(&watcher).await.len(), 1);
    drop(watcher);
    let (rss, fd) = back_to_idle(agent.pid(), idle_rss, idle_fds).await;
    println!(
        "{CYCLES} x 3 churn cycles in {elapsed:?}, {served} get_nodes served meanwhile; \
         rss idle {idle_rss} KiB, after {rss} KiB; fds idle {idle_fds}, after {fd}"
    );
    assert_idle((rss, fd), (idle_rss, idle_fds));
}

/// One thread spinning per CPU until dropped, as Zeek workers keep a
/// sensor's CPUs busy.
struct BusyCpus(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

impl BusyCpus {
    fn start() -> BusyCpus {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        BusyCpus(stop, threads)
    }
}

impl Drop for BusyCpus {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a health check does: connect, hello, one request, close without
/// waiting for anything.
fn health_check(addr: std::net::SocketAddr, i: usize) -> std::io::Result<()> {
    use std::io::Write;
    use zeek_mgmt_agent::protocol::cbor::{self, EventBody, Frame, Hello};
    let frame =
        |f: &Frame| zeek_mgmt_agent::protocol::to_agent::framed(&cbor::encode(f).expect("encode"));
    let mut bytes = frame(&Frame::Hello(Hello {
        version: 1,
        endpoint: format!("health-{i}"),
        role: "client".into(),
        heartbeat: 0,
        features: vec![],
    }));
    bytes.extend(frame(&Frame::Event {
        topic: format!("zeek/management/agent/{AGENT}"),
        body: EventBody::Request(Request::GetNodes(GetNodesRequest {
            reqid: ReqId(format!("health-{i}")),
        })),
    }));
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(&bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_health_check_is_never_refused_on_a_busy_host() {
    // The client runs ahead of a CPU-starved agent: connections it already
    // closed, whose actors have not run yet, must never turn a newcomer away
    // (with the default peer limit of 64). Each request it received is a
    // line of the tracker's, at debug.
    let agent = Agent::start_with_env(
        &[],
        &[(
            "RUST_LOG",
            "info,zeek_mgmt_agent::agent::actors::tracker=debug",
        )],
    );
    let (idle_rss, idle_fds) = idle_level(&agent).await;
    let addr = agent.addr.expect("addr");
    let watcher = agent.connect().await;
    let busy = BusyCpus::start();
    let started = Instant::now();
    let checks = tokio::task::spawn_blocking(move || {
        let mut refused = Vec::new();
        for i in 0..CYCLES {
            if let Err(e) = health_check(addr, i) {
                refused.push(format!("cycle {i}: {e}"));
            }
        }
        refused
    });
    // A long-lived peer is answered all the while.
    let mut served = 0;
    while !checks.is_finished() {
        assert_eq!(get_nodes(&watcher).await.len(), 1);
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = checks.await.expect("checks");
    assert!(failed.is_empty(), "{failed:?}");
    // Every connection became a peer and its request was read.
    let deadline = Instant::now() + LONG;
    let mut received = 0;
    while received < CYCLES && Instant::now() < deadline {
        received = agent
            .log()
            .lines()
            .filter(|l| l.contains("rx get_nodes_request") && l.contains("reqid=health-"))
            .count();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    drop(busy);
    let refused = agent.log().matches("refused").count();
    assert_eq!(
        received, CYCLES,
        "requests of {CYCLES} health checks received ({refused} log lines say refused)"
    );
    assert!(served > 0);
    drop(watcher);
    let (rss, fd) = back_to_idle(agent.pid(), idle_rss, idle_fds).await;
    println!(
        "{CYCLES} health checks with every CPU busy: all accepted in {elapsed:?}, {served} get_nodes \
         served meanwhile; fds idle {idle_fds}, after {fd}; rss idle {idle_rss} KiB, after {rss} KiB"
    );
    assert_idle((rss, fd), (idle_rss, idle_fds));
}
