//! Operating-system process control for node processes: a spawner thread
//! that lives as long as the agent (the parent-death signal fires when the
//! spawning *thread* ends), exit notification without polling (pidfd),
//! signals to process groups, and the background cpu/memory sampler.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{mpsc, Mutex, OnceLock};

use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

mod check;
mod launch;
mod tail;

pub use check::{run_check, CheckRun};
pub use launch::{NodeChild, OutputStart};
pub use tail::{failure_lines, output_tail, read_from, tail};

/// How to start one node process.
#[derive(Clone)]
pub struct SpawnSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Added to the agent's own environment.
    pub env: Vec<(String, String)>,
    /// Pin the process to this CPU.
    pub cpu: Option<usize>,
    /// Removed from the agent's environment (before `env` is added).
    pub unset: Vec<String>,
    /// Files to put into the working directory first (the cluster layout,
    /// the node channel's script).
    pub files: Vec<NodeFile>,
}

/// A file every node of a configuration gets in its working directory: a
/// hard link to one shared copy (1000 nodes would otherwise write 1000
/// copies of a large file), or a copy of its own where links are not
/// possible. The shared copy's name holds a hash of its contents, so that a
/// link never points at another configuration's copy; it is written by the
/// first launch that needs it (on the spawner thread, like every node's
/// files), and the copies of earlier contents are removed then.
#[derive(Clone, Debug)]
pub struct NodeFile {
    /// Its name in the working directory, `cluster-layout.zeek`.
    name: &'static str,
    /// The shared copy: `<dir>/<stem>-<hash>.<ext>`.
    shared: PathBuf,
    contents: std::sync::Arc<str>,
}

impl NodeFile {
    /// The file `name` with `contents`, its shared copy kept in `dir`.
    pub fn new(name: &'static str, dir: &Path, contents: std::sync::Arc<str>) -> NodeFile {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        contents.hash(&mut h);
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        NodeFile {
            name,
            shared: dir.join(format!("{stem}-{:016x}.{ext}", h.finish())),
            contents,
        }
    }

    /// The shared copy's path.
    pub fn shared(&self) -> &Path {
        &self.shared
    }

    fn place(&self, dir: &Path) -> io::Result<()> {
        let target = dir.join(self.name);
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !self.shared.exists() {
            self.write_shared();
        }
        if std::fs::hard_link(&self.shared, &target).is_ok() {
            return Ok(());
        }
        std::fs::write(&target, self.contents.as_bytes())
    }

    /// Writes the shared copy (atomically) and removes those of earlier
    /// contents; on failure each node gets a copy of its own.
    fn write_shared(&self) {
        let (Some(dir), Some(file)) = (self.shared.parent(), self.shared.file_name()) else {
            return;
        };
        let tmp = dir.join(format!(".{}.tmp", file.to_string_lossy()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, self.contents.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &self.shared));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", self.shared.display());
            return;
        }
        let (stem, _) = self.name.rsplit_once('.').unwrap_or((self.name, ""));
        let prefix = format!("{stem}-");
        for old in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = old.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(&prefix) && old.path() != self.shared {
                let _ = std::fs::remove_file(old.path());
            }
        }
    }
}

/// Why a node process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot prepare {}: {source}", dir.display())]
    Prepare { dir: PathBuf, source: io::Error },
    #[error("cannot run {}: {source}", program.display())]
    Run { program: PathBuf, source: io::Error },
}

impl SpawnError {
    /// The kind of the underlying I/O error.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            SpawnError::Prepare { source, .. } | SpawnError::Run { source, .. } => source.kind(),
        }
    }
}

impl std::fmt::Debug for SpawnSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cpu", &self.cpu)
            .finish()
    }
}

type SpawnJob = (SpawnSpec, oneshot::Sender<Result<NodeChild, SpawnError>>);

fn spawner() -> io::Result<&'static Mutex<mpsc::Sender<SpawnJob>>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    let (tx, rx) = mpsc::channel::<SpawnJob>();
    // The thread holds the only receiver; the static holds a sender forever,
    // so the thread (and the parent-death signal of its children) lives as
    // long as the process.
    std::thread::Builder::new()
        .name("node-spawner".into())
        .spawn(move || {
            for (spec, reply) in rx {
                let _ = reply.send(spawn_now(&spec));
            }
        })?;
    Ok(SPAWNER.get_or_init(|| Mutex::new(tx)))
}

fn spawn_now(spec: &SpawnSpec) -> Result<NodeChild, SpawnError> {
    let prepared = std::fs::create_dir_all(&spec.cwd)
        .and_then(|()| spec.files.iter().try_for_each(|f| f.place(&spec.cwd)));
    if let Err(source) = prepared {
        return Err(SpawnError::Prepare {
            dir: spec.cwd.clone(),
            source,
        });
    }
    launch_in_place(spec).map_err(|source| SpawnError::Run {
        program: spec.program.clone(),
        source,
    })
}

fn launch_in_place(spec: &SpawnSpec) -> io::Result<NodeChild> {
    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.cwd.join(name))
    };
    // Opened in this order, so their numbers ascend (see `launch`).
    let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
    let out = open("stdout")?;
    let err = open("stderr")?;
    let start = OutputStart {
        stdout: out.metadata().map(|m| m.len()).unwrap_or(0),
        stderr: err.metadata().map(|m| m.len()).unwrap_or(0),
    };
    let (out, err) = (OwnedFd::from(out), OwnedFd::from(err));
    let mut child = launch::launch(
        &spec.program,
        &spec.args,
        &spec.cwd,
        &spec.env,
        &spec.unset,
        [&null, &out, &err],
        spec.cpu,
    )?;
    child.set_output_start(start);
    Ok(child)
}

/// Spawns a node process from the long-lived spawner thread (which also
/// prepares its working directory: no blocking file work on the actors'
/// threads).
pub async fn spawn(spec: SpawnSpec) -> Result<NodeChild, SpawnError> {
    let program = spec.program.clone();
    let gone = |what: &str| SpawnError::Run {
        program: program.clone(),
        source: io::Error::other(what.to_owned()),
    };
    let (tx, rx) = oneshot::channel();
    {
        let spawner = spawner().map_err(|source| SpawnError::Run {
            program: program.clone(),
            source,
        })?;
        let sender = spawner.lock().map_err(|_| gone("spawner lock poisoned"))?;
        sender
            .send((spec, tx))
            .map_err(|_| gone("spawner thread has ended"))?;
    }
    rx.await
        .map_err(|_| gone("spawner thread dropped the request"))?
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Set (to anything) in the agent's environment, nodes' exits are waited
/// for by a thread each, as where `pidfd_open` is not available (kernels
/// before 5.3, container profiles that deny it): for tests of that path.
pub const NO_PIDFD_ENV: &str = "ZEEK_MGMT_AGENT_NO_PIDFD";

fn pidfd_wanted() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os(NO_PIDFD_ENV).is_none())
}

/// Waits for the child to exit, driven by the kernel (a pidfd becomes
/// readable), with a waiting thread where pidfds are not available. Before
/// the child is reaped, whatever is left of its process group is killed, so
/// no grandchild outlives its node.
pub async fn wait_exit(mut child: NodeChild) -> io::Result<ExitStatus> {
    let pid = child.id();
    let registered = if pidfd_wanted() {
        pidfd_open(pid).and_then(|fd| {
            // SAFETY: an `OwnedFd` stays open and always returns the same fd
            // for as long as the `AsyncFd` owns it.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| io::Error::other(e.to_string()))
        })
    } else {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    };
    let fd = match registered {
        Ok(fd) => fd,
        Err(_) => return wait_exit_by_thread(child).await,
    };
    let _ready = fd.readable().await?;
    kill_group_leftovers(pid);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        // Readable means exited; the status is there at once.
        std::thread::yield_now();
    }
}

/// `wait_exit` without a pidfd: a thread waits until the child has exited
/// but leaves it unreaped (so that its pid, the group's id, is not reused),
/// then kills what is left of its process group, then reaps it.
pub async fn wait_exit_by_thread(mut child: NodeChild) -> io::Result<ExitStatus> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("node-waiter".into())
        .spawn(move || {
            let pid = child.id();
            let status = child.wait_unreaped().and_then(|()| {
                kill_group_leftovers(pid);
                child.wait()
            });
            let _ = tx.send(status);
        })?;
    rx.await
        .map_err(|_| io::Error::other("waiter thread ended"))?
}

fn kill_group_leftovers(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: signal to the process group the node leads; while the
        // leader is unreaped its pid (and so the group id) cannot be reused.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Sends `signal` to the process group led by `pid`.
pub fn signal_group(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain signal delivery.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// How a node's process ended: an exit code is not a signal, and a process
/// the agent lost track of has neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// Waiting for it failed; the reason.
    Lost(String),
}

impl From<&ExitStatus> for Exit {
    fn from(status: &ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Lost("the process ended without a code or a signal".into()),
        }
    }
}

impl From<io::Result<ExitStatus>> for Exit {
    fn from(res: io::Result<ExitStatus>) -> Self {
        match res {
            Ok(s) => Exit::from(&s),
            Err(e) => Exit::Lost(e.to_string()),
        }
    }
}

/// "exited with code 3" / "killed by signal 9 (SIGKILL)".
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal(sig) => {
                let name = match *sig {
                    libc::SIGKILL => " (SIGKILL)",
                    libc::SIGTERM => " (SIGTERM)",
                    libc::SIGSEGV => " (SIGSEGV)",
                    libc::SIGABRT => " (SIGABRT)",
                    libc::SIGINT => " (SIGINT)",
                    libc::SIGHUP => " (SIGHUP)",
                    _ => "",
                };
                write!(f, "killed by signal {sig}{name}")
            }
            Exit::Lost(why) => write!(f, "lost track of the process: {why}"),
        }
    }
}

/// Figures sampled for one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

type SampleJob = (Vec<u32>, oneshot::Sender<HashMap<u32, Sample>>);

fn sampler() -> Option<&'static Mutex<mpsc::Sender<SampleJob>>> {
    static SAMPLER: OnceLock<Option<Mutex<mpsc::Sender<SampleJob>>>> = OnceLock::new();
    SAMPLER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SampleJob>();
            std::thread::Builder::new()
                .name("sampler".into())
                .spawn(move || {
                    let Ok(mut sys) = sysinfo::System::new() else {
                        return;
                    };
                    for (pids, reply) in rx {
                        let pids: Vec<sysinfo::Pid> =
                            pids.into_iter().map(sysinfo::Pid::from_u32).collect();
                        sys.refresh_processes_specifics(
                            sysinfo::ProcessesToUpdate::Some(&pids),
                            true,
                            sysinfo::ProcessRefreshKind::nothing()
                                .with_cpu()
                                .with_memory(),
                        );
                        let out = pids
                            .iter()
                            .filter_map(|pid| {
                                sys.process(*pid).map(|p| {
                                    (
                                        pid.as_u32(),
                                        Sample {
                                            cpu_percent: f64::from(p.cpu_usage()),
                                            rss_bytes: p.memory(),
                                        },
                                    )
                                })
                            })
                            .collect();
                        let _ = reply.send(out);
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// Samples cpu and memory of `pids` on the sampler thread.
pub async fn sample(pids: Vec<u32>) -> HashMap<u32, Sample> {
    let (tx, rx) = oneshot::channel();
    let sent = sampler()
        .and_then(|s| s.lock().ok())
        .map(|s| s.send((pids, tx)).is_ok())
        .unwrap_or(false);
    if !sent {
        return HashMap::new();
    }
    rx.await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn spawn_wait_and_describe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = SpawnSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo out; echo err >&2; exit 3".into()],
            cwd: dir.path().join("n"),
            env: vec![],
            cpu: Some(0),
            unset: vec![],
            files: vec![],
        };
        let child = spawn(spec.clone()).await.expect("spawn");
        let status = wait_exit(child).await.expect("wait");
        assert_eq!(Exit::from(&status).to_string(), "exited with code 3");
        assert_eq!(tail(&dir.path().join("n/stderr"), 20), "err");
        // Appended, not truncated, across launches.
        let status = wait_exit(spawn(spec).await.expect("spawn"))
            .await
            .expect("wait");
        assert_eq!(status.code(), Some(3));
        assert_eq!(tail(&dir.path().join("n/stdout"), 20), "out\nout");
        assert_eq!(
            output_tail(&dir.path().join("n/stdout"), 0, 20),
            "out\nout\n"
        );
        // From where the second launch began: its lines only.
        assert_eq!(output_tail(&dir.path().join("n/stdout"), 4, 20), "out\n");
    }

    #[actix_rt::test]
    async fn without_pidfd_the_exit_is_awaited_and_only_then_the_group_ended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = SpawnSpec {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "sleep 30 & echo $! > helper; sleep 0.3; exit 3".into(),
            ],
            cwd: dir.path().join("n"),
            env: vec![],
            cpu: None,
            unset: vec![],
            files: vec![],
        };
        let child = spawn(spec).await.expect("spawn");
        let status = wait_exit_by_thread(child).await.expect("wait");
        // Its own exit, not a kill at launch.
        assert_eq!(Exit::from(&status).to_string(), "exited with code 3");
        let helper: i32 = std::fs::read_to_string(dir.path().join("n/helper"))
            .expect("helper pid")
            .trim()
            .parse()
            .expect("pid");
        // The helper left in the node's group was killed with it; it is not
        // our child, so wait for it to go rather than reap it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{helper}/stat")).unwrap_or_default();
            let gone = stat.is_empty()
                || stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, r)| r.starts_with('Z'));
            if gone {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "helper {helper} outlived its node"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[actix_rt::test]
    async fn missing_program_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = spawn(SpawnSpec {
            program: "/nonexistent/zeek".into(),
            args: vec![],
            cwd: dir.path().to_owned(),
            env: vec![],
            cpu: None,
            unset: vec![],
            files: vec![],
        })
        .await
        .expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[actix_rt::test]
    async fn samples_our_own_process() {
        let me = std::process::id();
        let s = sample(vec![me]).await;
        assert!(s.get(&me).is_some_and(|s| s.rss_bytes > 0));
    }
}
