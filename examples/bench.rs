//! Benchmarks of the agent binary against this machine's own limits,
//! measured in the same run. Prints a table; asserts nothing.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench
//! cargo run --release --example bench -- --quick     # smaller runs
//! cargo run --release --example bench -- --only get-nodes [--rounds N]
//! cargo run --release --example bench -- --only pipelined [--requests N]
//! cargo run --release --example bench -- --only deploy [--nodes N] [--repeat R]
//! ```
//! The agent is the release binary next to this example
//! (`target/release/zeek-mgmt-agent`), started with a settle time of 0 and
//! a node program that only sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeek_mgmt_agent::api::events::{
    AgentStandbyRequest, GetNodesRequest, Notification, Request, SetConfigurationRequest,
};
use zeek_mgmt_agent::api::types::{
    Addr, Configuration, Instance, Node, NodeStatus, ReqId, ResultData, Role, State,
};
use zeek_mgmt_agent::protocol::cbor::{self, EventBody, Frame};
use zeek_mgmt_agent::protocol::to_agent::{Connection, PeerOptions};

#[path = "common/mod.rs"]
mod common;
use common::{ms, rss_kib, sleeping_node, SLEEPING_NODES};

const NAME: &str = "bench";
const LONG: Duration = Duration::from_secs(120);

struct Row {
    what: String,
    ours: String,
    limit: String,
    ratio: String,
    target: String,
}

fn row(
    what: impl Into<String>,
    ours: impl Into<String>,
    limit: impl Into<String>,
    ratio: impl Into<String>,
    target: &str,
) -> Row {
    Row {
        what: what.into(),
        ours: ours.into(),
        limit: limit.into(),
        ratio: ratio.into(),
        target: target.to_owned(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

/// CPU time of the agent's main thread (where its actors run), from the
/// scheduler's own accounting.
fn main_thread_cpu(pid: u32) -> Duration {
    let ns = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("zeek-mgmt-agent")
}

struct Agent {
    child: Child,
    addr: SocketAddr,
    started_in: Duration,
}

impl Drop for Agent {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn start_agent(dir: &Path, node: &Path) -> Agent {
    let t = Instant::now();
    let mut child = Command::new(agent_binary())
        .args(["--name", NAME, "--listen-port", "0"])
        .args(SLEEPING_NODES)
        .args([
            "--stop-grace",
            "5",
            "--revive-delay",
            "30",
            "--max-in-flight",
            "100000",
        ])
        .arg("--cluster-dir")
        .arg(dir.join("cluster"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--zeek-binary")
        .arg(node)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("agent.log")).expect("log"),
        ))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run `cargo build --release` first)",
                agent_binary().display()
            )
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let started_in = t.elapsed();
    let addr = line
        .trim()
        .rsplit_once("listening on ")
        .expect("listening")
        .1
        .parse()
        .expect("addr");
    Agent {
        child,
        addr,
        started_in,
    }
}

fn cluster(n: usize, id: &str) -> Configuration {
    Configuration {
        id: id.into(),
        instances: vec![Instance {
            name: NAME.into(),
            host: Addr([127, 0, 0, 1].into()),
            listen_port: None,
        }],
        nodes: (0..n)
            .map(|i| Node::new(&format!("w{i:04}"), NAME, Role::Worker))
            .collect(),
        zeromq: None,
    }
}

async fn deploy(c: &Connection, n: usize, id: &str) -> Duration {
    let t = Instant::now();
    let r = c
        .request(
            Request::SetConfiguration(SetConfigurationRequest {
                reqid: c.new_reqid(),
                config: cluster(n, id),
            }),
            LONG,
        )
        .await
        .expect("deploy");
    let took = t.elapsed();
    assert!(r.result.success, "{:?}", r.result.error);
    took
}

/// Waits until every node's figures are sampled, so that get_nodes answers
/// with every key, as in a steady state.
async fn wait_sampled(c: &Connection) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        let st = node_statuses(c).await;
        if st
            .iter()
            .all(|n| n.rss_bytes.is_some() && n.uptime_secs.is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nodes not sampled within 20 s");
}

/// The agent's get_nodes answer.
async fn node_statuses(c: &Connection) -> Vec<NodeStatus> {
    let r = c
        .request(
            Request::GetNodes(GetNodesRequest {
                reqid: c.new_reqid(),
            }),
            LONG,
        )
        .await
        .expect("get_nodes");
    match r.result.data {
        Some(ResultData::NodeStatuses(s)) => s,
        _ => Vec::new(),
    }
}

async fn standby(c: &Connection) -> Duration {
    let t = Instant::now();
    let r = c
        .request(
            Request::AgentStandby(AgentStandbyRequest {
                reqid: c.new_reqid(),
            }),
            LONG,
        )
        .await
        .expect("standby");
    assert!(r.result.success);
    t.elapsed()
}

/// Spawns `n` copies of the node program as the agent would (own process
/// group, cwd, stdout and stderr files), then ends them.
fn raw_spawn(node: &Path, dir: &Path, n: usize) -> Duration {
    let t = Instant::now();
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let d = dir.join(format!("raw{i}"));
        std::fs::create_dir_all(&d).expect("dir");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("stdout"))
            .expect("out");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("stderr"))
            .expect("err");
        children.push(
            Command::new(node)
                .arg("local")
                .current_dir(&d)
                .env("CLUSTER_NODE", format!("raw{i}"))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .spawn()
                .expect("spawn"),
        );
    }
    let took = t.elapsed();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Pins the thread or process `tid` (0: the calling thread) to `cpu`, or
/// lets it run anywhere with `None`.
fn pin(tid: u32, cpu: Option<usize>) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes within it for an
    // index below the machine's CPU count.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) => libc::CPU_SET(c % cpus, &mut set),
            None => (0..cpus).for_each(|c| libc::CPU_SET(c, &mut set)),
        }
        libc::sched_setaffinity(tid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Where the round-trip client and its server run: on one CPU, or on two.
#[derive(Clone, Copy)]
enum Placement {
    SameCpu,
    OtherCpus,
}

impl Placement {
    const BOTH: [Placement; 2] = [Placement::SameCpu, Placement::OtherCpus];

    fn name(self) -> &'static str {
        match self {
            Placement::SameCpu => "same CPU",
            Placement::OtherCpus => "other CPUs",
        }
    }

    /// Pins the calling thread (the client) and the server's main thread.
    fn apply(self, server: u32) {
        pin(0, Some(0));
        pin(
            server,
            Some(match self {
                Placement::SameCpu => 0,
                Placement::OtherCpus => 1,
            }),
        );
    }
}

/// Round trips of `request` bytes answered by `response` bytes through a
/// plain loopback echo-like server: this program started again as a
/// separate process (as the agent is one) with blocking reads and writes,
/// driven by the same blocking client as the agent's round trips, placed
/// as they are.
fn raw_round_trips(
    request: usize,
    response: usize,
    rounds: usize,
    placement: Placement,
) -> Vec<Duration> {
    let exe = std::env::current_exe().expect("current exe");
    let mut server = Command::new(exe)
        .args(["--echo-server", &request.to_string(), &response.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("echo server");
    placement.apply(server.id());
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("echo port");
    let addr: SocketAddr = line.trim().parse().expect("echo address");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let req = vec![1u8; request];
    let mut inb = vec![0u8; response];
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        s.write_all(&req).expect("write");
        s.read_exact(&mut inb).expect("read");
        out.push(t.elapsed());
    }
    drop(s);
    let _ = server.wait();
    out.sort();
    out
}

/// The echo server's process: answers every `request` bytes with
/// `response` bytes on one connection, then exits.
fn echo_server(request: usize, response: usize) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let (mut s, _) = listener.accept().expect("accept");
    s.set_nodelay(true).expect("nodelay");
    let mut inb = vec![0u8; request];
    let out = vec![7u8; response];
    while s.read_exact(&mut inb).is_ok() {
        if s.write_all(&out).is_err() {
            break;
        }
    }
}

/// The blocking client of the round-trip figures: hello exchanged,
/// check-in read and skipped.
fn blocking_client(addr: SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(&framed(&hello_payload())).expect("hello");
    for _ in 0..2 {
        read_blocking_frame(&mut s);
    }
    s
}

fn read_blocking_frame(s: &mut std::net::TcpStream) -> usize {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("frame length");
    let len = u32::from_be_bytes(len) as usize;
    let mut buf = vec![0; len];
    s.read_exact(&mut buf).expect("frame");
    len + 4
}

fn hello_payload() -> Vec<u8> {
    cbor::encode(&Frame::Hello(zeek_mgmt_agent::protocol::cbor::Hello {
        version: 1,
        endpoint: "bench".into(),
        role: "client".into(),
        heartbeat: 0,
        features: vec![],
    }))
    .expect("hello")
}

/// A client that speaks raw frames, so that what is measured is the agent,
/// not a client's decoding: hello exchanged, check-in read and skipped.
async fn raw_client(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(&framed(&hello_payload())).await.expect("hello");
    for _ in 0..2 {
        read_raw_frame(&mut s).await;
    }
    s
}

fn framed(payload: &[u8]) -> Vec<u8> {
    zeek_mgmt_agent::protocol::to_agent::framed(payload)
}

async fn read_raw_frame(s: &mut (impl AsyncReadExt + Unpin)) -> usize {
    let len = s.read_u32().await.expect("frame length") as usize;
    let mut buf = vec![0; len];
    s.read_exact(&mut buf).await.expect("frame");
    len + 4
}

fn get_nodes_frame(reqid: &str) -> Vec<u8> {
    framed(
        &cbor::encode(&Frame::Event {
            topic: format!("zeek/management/agent/{NAME}"),
            body: EventBody::Request(Request::GetNodes(GetNodesRequest {
                reqid: ReqId(reqid.to_owned()),
            })),
        })
        .expect("encode"),
    )
}

/// Pipelined get_nodes on `conns` connections: every request written
/// up front in large writes, responses counted as they arrive.
async fn pipelined(addr: SocketAddr, conns: usize, per_conn: usize) -> f64 {
    let mut streams = Vec::new();
    for _ in 0..conns {
        streams.push(raw_client(addr).await);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in streams {
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let writer = tokio::spawn(async move {
                let mut batch = Vec::new();
                for i in 0..per_conn {
                    batch.extend(get_nodes_frame(&format!("p{i}")));
                    if batch.len() > 64 * 1024 {
                        w.write_all(&batch).await.expect("write");
                        batch.clear();
                    }
                }
                w.write_all(&batch).await.expect("write");
                w
            });
            let mut r = tokio::io::BufReader::with_capacity(256 * 1024, &mut r);
            for _ in 0..per_conn {
                read_raw_frame(&mut r).await;
            }
            drop(writer.await.expect("writer"));
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    (conns * per_conn) as f64 / t.elapsed().as_secs_f64()
}

/// get_nodes round trips (one at a time) against a raw echo of the same
/// byte counts: the p50 and p99 rows. Both use the same plain blocking
/// client on its own thread, so that neither pays for an async runtime's
/// hand-over between threads.
/// get_nodes round trips against the echo of the same bytes, with the
/// client and the agent's actor thread (or the echo) on the same CPU, then
/// on different CPUs: the ratio compares like with like.
async fn get_nodes_latency(addr: SocketAddr, agent_pid: u32, rounds: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for placement in Placement::BOTH {
        let (lat, raw, resp_len) = tokio::task::spawn_blocking(move || {
            let frame = get_nodes_frame("x");
            placement.apply(agent_pid);
            let mut c = blocking_client(addr);
            let mut lat = Vec::with_capacity(rounds);
            let mut resp_len = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                c.write_all(&frame).expect("write");
                resp_len = read_blocking_frame(&mut c);
                lat.push(t.elapsed());
            }
            drop(c);
            pin(agent_pid, None);
            lat.sort();
            let raw = raw_round_trips(frame.len(), resp_len, rounds, placement);
            pin(0, None);
            (lat, raw, resp_len)
        })
        .await
        .expect("round trips");
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        let (r50, r99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
        let place = placement.name();
        rows.push(row(
            format!("get_nodes, 100 nodes ({resp_len} B), {place}, p50"),
            us(p50),
            format!("{} (echo)", us(r50)),
            ratio(p50, r50),
            "",
        ));
        rows.push(row(
            format!("get_nodes, 100 nodes ({resp_len} B), {place}, p99"),
            us(p99),
            format!("{} (echo)", us(r99)),
            ratio(p99, r99),
            "<= 1.5x",
        ));
    }
    rows
}

fn print_table(rows: Vec<Row>) {
    println!("| figure | zeek-mgmt-agent | machine limit | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.ours, r.limit, r.ratio, r.target
        );
    }
}

/// The value after `flag` on the command line.
fn arg_value(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    if let Some(request) = arg_value("--echo-server") {
        let response = std::env::args().nth(3).and_then(|v| v.parse().ok());
        echo_server(
            request.parse().expect("request size"),
            response.expect("response size"),
        );
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let tmp = std::env::temp_dir().join(format!("zeek-mgmt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let node = sleeping_node(&tmp);
    let mut rows = Vec::new();

    // Start to listening, against starting a trivial program.
    let t = Instant::now();
    Command::new("/bin/true").status().expect("true");
    let trivial = t.elapsed();
    let agent = start_agent(&tmp, &node);
    rows.push(row(
        "start to listening",
        ms(agent.started_in),
        format!("{} (spawn /bin/true)", ms(trivial)),
        ratio(agent.started_in, trivial),
        "< 20 ms",
    ));

    // A single figure, for profiling: `--only get-nodes` (100 nodes,
    // `--rounds` round trips), `--only pipelined` (`--requests` on one
    // connection) or `--only deploy` (`--nodes`, `--repeat` times).
    if let Some(only) = arg_value("--only") {
        let count = |flag: &str, default: usize| {
            arg_value(flag)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let pid = agent.child.id();
        let mut c = None;
        if only == "get-nodes" || only == "deploy" {
            let conn = Connection::connect(agent.addr, PeerOptions::default())
                .await
                .expect("connect");
            if only == "get-nodes" {
                deploy(&conn, 100, "only").await;
                wait_sampled(&conn).await;
            }
            c = Some(conn);
        }
        let cpu = main_thread_cpu(pid);
        let (mut rows, requests) = match only.as_str() {
            "get-nodes" => {
                let rounds = count("--rounds", 3000);
                let rows = get_nodes_latency(agent.addr, agent.child.id(), rounds).await;
                (rows, 2 * rounds)
            }
            "pipelined" => {
                let requests = count("--requests", 200_000);
                let rate = pipelined(agent.addr, 1, requests).await;
                let rows = vec![row(
                    "pipelined get_nodes, 1 connection",
                    format!("{rate:.0}/s"),
                    "",
                    "",
                    ">= 300000/s",
                )];
                (rows, requests)
            }
            "deploy" => {
                let (n, repeat) = (count("--nodes", 100), count("--repeat", 5));
                let mut rows = Vec::new();
                for i in 0..repeat {
                    let raw = raw_spawn(&node, &tmp.join("raw"), n);
                    let conn = c.as_ref().expect("connection");
                    let ours = deploy(conn, n, &format!("only-{i}")).await;
                    standby(conn).await;
                    rows.push(row(
                        format!("deploy of {n} nodes"),
                        ms(ours),
                        format!("{} (raw spawn)", ms(raw)),
                        ratio(ours, raw),
                        "<= 1.5x",
                    ));
                }
                (rows, repeat)
            }
            other => panic!("--only takes get-nodes, pipelined or deploy, not {other}"),
        };
        // The echo's round trips are not the agent's: count only up to the
        // agent's last answer, which came before the echo started.
        let per = (main_thread_cpu(pid) - cpu) / requests as u32;
        rows.push(row(
            if only == "deploy" {
                "agent main thread CPU per deploy and standby"
            } else {
                "agent main thread CPU per request"
            },
            us(per),
            "",
            "",
            "",
        ));
        drop(c);
        drop(agent);
        let _ = std::fs::remove_dir_all(&tmp);
        print_table(rows);
        return;
    }
    let pid = agent.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(pid);
    rows.push(row(
        "resident memory, idle",
        format!("{:.1} MiB", idle as f64 / 1024.0),
        "",
        "",
        "< 10 MiB",
    ));

    let mut c = Connection::connect(agent.addr, PeerOptions::default())
        .await
        .expect("connect");
    let sizes: &[usize] = if quick {
        &[1, 10, 100]
    } else {
        &[1, 10, 100, 1000]
    };
    for &n in sizes {
        let raw = raw_spawn(&node, &tmp.join("raw"), n);
        let ours = deploy(&c, n, &format!("deploy-{n}")).await;
        rows.push(row(
            format!("deploy of {n} nodes"),
            ms(ours),
            format!("{} (raw spawn)", ms(raw)),
            ratio(ours, raw),
            if n == 100 { "<= 1.5x" } else { "" },
        ));
        if n == 100 || n == 1000 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rss = rss_kib(pid);
            rows.push(row(
                format!("resident memory, {n} nodes"),
                format!("{:.1} MiB", rss as f64 / 1024.0),
                "",
                "",
                if n == 1000 { "< 40 MiB" } else { "" },
            ));
        }
        if n == 100 {
            let rounds = if quick { 300 } else { 3000 };
            wait_sampled(&c).await;
            rows.extend(get_nodes_latency(agent.addr, agent.child.id(), rounds).await);

            // Time from a node's premature exit to its notify_change, and,
            // since a first crash is revived at once (as Zeek's Supervisor
            // does), to its new process counting as RUNNING (settle time 0
            // here). Each node is back before the next is killed, so that
            // one revival does not weigh on the next figure.
            let st = node_statuses(&c).await;
            let mut gaps = Vec::new();
            let mut revivals = Vec::new();
            for s in st
                .iter()
                .filter(|s| s.pid.is_some() && s.node != NAME)
                .take(if quick { 5 } else { 20 })
            {
                let pid = s.pid.expect("pid") as i32;
                let t = Instant::now();
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                let name = s.node.clone();
                c.wait_notification(LONG, |n| matches!(n, Notification::Change(ch) if ch.node.name == name && ch.new == State::Crashed))
                    .await
                    .expect("notify_change");
                gaps.push(t.elapsed());
                c.wait_notification(LONG, |n| matches!(n, Notification::Change(ch) if ch.node.name == name && ch.new == State::Running))
                    .await
                    .expect("revived");
                revivals.push(t.elapsed());
            }
            gaps.sort();
            revivals.sort();
            rows.push(row(
                "exit to notify_change, p50",
                us(percentile(&gaps, 0.5)),
                "",
                "",
                "< 1 ms",
            ));
            rows.push(row(
                "exit to notify_change, max",
                us(*gaps.last().expect("gaps")),
                "",
                "",
                "",
            ));
            rows.push(row(
                "kill to revived and RUNNING, p50",
                us(percentile(&revivals, 0.5)),
                "",
                "",
                "~40 ms (Zeek's Supervisor)",
            ));
        }
        let took = standby(&c).await;
        if n == 100 {
            rows.push(row("standby of 100 nodes", ms(took), "", "", "< 20 ms"));
        }
        while let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_millis(50),
            c.next_event(Duration::from_millis(50)),
        )
        .await
        {}
    }
    drop(c);

    let per = if quick { 20_000 } else { 200_000 };
    let one = pipelined(agent.addr, 1, per).await;
    rows.push(row(
        "pipelined get_nodes, 1 connection",
        format!("{one:.0}/s"),
        "",
        "",
        ">= 300000/s",
    ));
    let eight = pipelined(agent.addr, 8, per / 8).await;
    rows.push(row(
        "pipelined get_nodes, 8 connections",
        format!("{eight:.0}/s"),
        "",
        "",
        "",
    ));

    drop(agent);
    let _ = std::fs::remove_dir_all(&tmp);

    print_table(rows);
}
