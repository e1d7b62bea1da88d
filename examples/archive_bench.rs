//! The log archive against `gzip -6`: the figures of `docs/benchmarks.md`,
//! "The log archive".
//!
//! ```sh
//! cargo build --release && cargo run --release --example archive_bench [-- --mb 1024]
//! ```
//!
//! Writes Zeek-like `conn.log` files (TSV, a header, varied addresses,
//! ports, uids and durations) into a queue, `--mb` MiB in all (256 by
//! default) in files of 64 MiB, then archives each file twice in the same
//! run, in turns: with the agent's own archiving (`archive::archive_file`,
//! in this process, the CPU time of this thread) and with `gzip -6 -c` (a
//! process, its CPU time). It prints throughput, CPU time and compressed
//! size, and never asserts.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeek_mgmt_agent::agent::archive;

const FILE_MB: usize = 64;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a plain struct the call fills in.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of this process's waited-for children.
fn children_cpu() -> Duration {
    // SAFETY: `ru` is a plain struct the call fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
    }
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// A Zeek-like conn.log of about `mb` MiB.
fn write_conn_log(path: &Path, mb: usize, seed: u64) {
    let mut f = BufWriter::new(std::fs::File::create(path).expect("log"));
    writeln!(f, "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2026-12-06-09-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]").expect("header");
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let services = ["dns", "http", "ssl", "-", "ssh", "smtp"];
    let states = ["SF", "S0", "REJ", "RSTO", "SH", "OTH"];
    let mut written = 0usize;
    let mut ts = 1_796_547_600.0_f64;
    while written < mb << 20 {
        let r = next();
        ts += (r % 1000) as f64 / 10_000.0;
        let uid: String = (0..17)
            .map(|i| alphabet[((r >> (i * 3)) as usize + i) % alphabet.len()] as char)
            .collect();
        let line = format!(
            "{ts:.6}\tC{uid}\t10.{}.{}.{}\t{}\t192.168.{}.{}\t{}\ttcp\t{}\t{:.6}\t{}\t{}\t{}\tT\tF\t0\tShAdDaFf\t{}\t{}\t{}\t{}\t-\n",
            (r >> 8) % 4,
            (r >> 12) % 256,
            (r >> 20) % 256,
            1024 + (r >> 28) % 60000,
            (r >> 36) % 8,
            (r >> 40) % 256,
            [53, 80, 443, 22, 25][(r >> 48) as usize % 5],
            services[(r >> 52) as usize % services.len()],
            (r % 100_000) as f64 / 1000.0,
            (r >> 5) % 5000,
            (r >> 9) % 90000,
            states[(r >> 56) as usize % states.len()],
            (r >> 3) % 40,
            (r >> 7) % 4000,
            (r >> 11) % 60,
            (r >> 15) % 90000,
        );
        written += line.len();
        f.write_all(line.as_bytes()).expect("write");
    }
    writeln!(f, "#close\t2026-12-06-10-00-00").expect("close");
    f.flush().expect("flush");
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let mut mb: usize = 256;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--mb" {
            mb = args.next().and_then(|v| v.parse().ok()).unwrap_or(mb);
        }
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (queue, ours, theirs) = (
        tmp.path().join("queue"),
        tmp.path().join("archive"),
        tmp.path().join("gzip"),
    );
    for d in [&queue, &ours, &theirs] {
        std::fs::create_dir_all(d).expect("dir");
    }
    let files = mb.div_ceil(FILE_MB);
    println!(
        "archiving {files} conn logs of {FILE_MB} MiB ({mb} MiB), ours against gzip -6, in turns"
    );
    let (mut ours_wall, mut ours_cpu, mut ours_bytes) = (Duration::ZERO, Duration::ZERO, 0u64);
    let (mut gz_wall, mut gz_cpu, mut gz_bytes) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut input = 0u64;
    for i in 0..files {
        let name = format!(
            "conn__2026-12-06-{:02}-00-00__2026-12-06-{:02}-59-59__.log",
            i % 24,
            i % 24
        );
        let src: PathBuf = queue.join(&name);
        write_conn_log(&src, FILE_MB.min(mb - i * FILE_MB), i as u64 + 7);
        input += size(&src);

        // gzip -6 on the file, before ours removes it.
        let out = theirs.join(format!("{i}.gz"));
        let (c0, t0) = (children_cpu(), Instant::now());
        let status = Command::new("gzip")
            .args(["-6", "-c"])
            .stdin(std::fs::File::open(&src).expect("src"))
            .stdout(Stdio::from(std::fs::File::create(&out).expect("out")))
            .status()
            .expect("run gzip");
        assert!(status.success(), "gzip failed");
        gz_wall += t0.elapsed();
        gz_cpu += children_cpu() - c0;
        gz_bytes += size(&out);

        let q = archive::parse_queued(&name).expect("a queued name");
        let (c0, t0) = (thread_cpu(), Instant::now());
        let done = archive::archive_file(&src, &q, &ours, 6, &|_| {}).expect("archived");
        ours_wall += t0.elapsed();
        ours_cpu += thread_cpu() - c0;
        ours_bytes += size(&done.path);
    }
    let mib = input as f64 / (1 << 20) as f64;
    let row = |who: &str, wall: Duration, cpu: Duration, bytes: u64| {
        println!(
            "{who:<22} {:>8.1} MiB/s wall  {:>8.1} MiB/s cpu  cpu {:>7.2} s  out {:>7.1} MiB ({:.1}% of the input)",
            mib / wall.as_secs_f64(),
            mib / cpu.as_secs_f64(),
            cpu.as_secs_f64(),
            bytes as f64 / (1 << 20) as f64,
            bytes as f64 * 100.0 / input as f64
        );
    };
    row("agent (zlib-rs, 6)", ours_wall, ours_cpu, ours_bytes);
    row("gzip -6", gz_wall, gz_cpu, gz_bytes);
    println!(
        "agent / gzip: {:.2}x the throughput (cpu), {:.3}x the size",
        gz_cpu.as_secs_f64() / ours_cpu.as_secs_f64(),
        ours_bytes as f64 / gz_bytes as f64
    );
}
