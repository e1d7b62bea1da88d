//! The state directory: the accepted configuration (written atomically) and
//! the pids of the node processes, so that a restarted agent can end the
//! leftovers of its previous run and bring the configuration back.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::api::types::Configuration;
use crate::protocol::cbor;

const CONFIG_FILE: &str = "configuration.cbor";
const PIDS_FILE: &str = "nodes.pids";
/// Locked (`flock`) by the agent that uses the directory, holding its pid.
pub const LOCK_FILE: &str = "agent.lock";

/// A persisted-state failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encode the configuration: {0}")]
    Encode(String),
}

pub use crate::daemon::{DirLock as StateLock, LockError};

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// What loading the persisted configuration found.
#[derive(Debug)]
pub enum Loaded {
    None,
    Config(Configuration),
    /// The file could not be decoded; it was kept at `kept_as`.
    Corrupt {
        error: String,
        kept_as: PathBuf,
    },
}

/// One node process recorded in the pids file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: i32,
    pub node: String,
    pub program: String,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        StateDir { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Takes the directory for this process (creating it if need be), or
    /// says which process holds it. Nothing else in it is touched.
    pub fn lock(&self) -> Result<StateLock, LockError> {
        crate::daemon::lock_dir(&self.dir, LOCK_FILE, "agent")
    }

    /// Writes through a temporary file and a rename; `durable` also
    /// fsyncs the file and the directory.
    fn write_atomically(&self, name: &str, bytes: &[u8], durable: bool) -> Result<(), StateError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        if durable {
            f.sync_all().map_err(err)?;
        }
        drop(f);
        fs::rename(&tmp, &path).map_err(err)?;
        if durable {
            // Make the rename itself durable.
            if let Ok(d) = fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Persists the configuration: temporary file, fsync, rename.
    pub fn save_config(&self, config: &Configuration) -> Result<(), StateError> {
        let bytes =
            cbor::encode_configuration(config).map_err(|e| StateError::Encode(e.to_string()))?;
        self.write_atomically(CONFIG_FILE, &bytes, true)
    }

    /// Removes the persisted configuration (standby).
    pub fn clear_config(&self) -> Result<(), StateError> {
        let path = self.dir.join(CONFIG_FILE);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Write { path, source }),
        }
    }

    /// Loads the persisted configuration; a corrupt file is moved aside.
    pub fn load_config(&self) -> Loaded {
        let path = self.dir.join(CONFIG_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::None,
            Err(e) => {
                return Loaded::Corrupt {
                    error: format!("cannot read {}: {e}", path.display()),
                    kept_as: path,
                }
            }
        };
        match cbor::decode_configuration(&bytes) {
            Ok(c) => Loaded::Config(c),
            Err(error) => Loaded::Corrupt {
                error,
                kept_as: self.keep_config_aside(),
            },
        }
    }

    /// Moves the persisted configuration aside (`configuration.cbor.bad-<unix
    /// time>`), so that it is neither loaded again nor lost; returns where it
    /// is now.
    pub fn keep_config_aside(&self) -> PathBuf {
        let path = self.dir.join(CONFIG_FILE);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let kept_as = self.dir.join(format!("{CONFIG_FILE}.bad-{stamp}"));
        match fs::rename(&path, &kept_as) {
            Ok(()) => kept_as,
            Err(_) => path,
        }
    }

    /// Records the running node processes.
    pub fn save_pids(&self, records: &[PidRecord]) -> Result<(), StateError> {
        let mut text = String::new();
        for r in records {
            text.push_str(&format!("{}\t{}\t{}\n", r.pid, r.node, r.program));
        }
        // No fsync: the file matters after the agent dies, not after the
        // host does (then the nodes are gone too), and it is rewritten on
        // the actor's thread whenever nodes start or stop.
        self.write_atomically(PIDS_FILE, text.as_bytes(), false)
    }

    /// The node processes recorded by an earlier run.
    pub fn load_pids(&self) -> Vec<PidRecord> {
        let Ok(text) = fs::read_to_string(self.dir.join(PIDS_FILE)) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let mut it = line.splitn(3, '\t');
                let pid = it.next()?.parse().ok()?;
                let node = it.next()?.to_owned();
                let program = it.next()?.to_owned();
                (pid > 1).then_some(PidRecord { pid, node, program })
            })
            .collect()
    }
}

/// Whether `pid` is still the node process that was recorded: its argv[0]
/// is the recorded program (argv[1] for a script run by its interpreter) and
/// its environment names the node.
fn is_recorded_node(r: &PidRecord) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{}/cmdline", r.pid)) else {
        return false;
    };
    cmdline
        .split(|&b| b == 0)
        .take(2)
        .any(|arg| arg == r.program.as_bytes())
        && names_node(r.pid, &r.node)
}

/// Whether the environment of `pid` holds `CLUSTER_NODE=<node>`, as every
/// process a node starts inherits it.
fn names_node(pid: i32, node: &str) -> bool {
    let marker = format!("CLUSTER_NODE={node}");
    fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()))
        .unwrap_or(false)
}

/// The process group of `pid`, from `/proc/PID/stat`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold anything but ") ".
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `pid` is what is left of the recorded node: the node process
/// itself, or a process in its process group (a helper it started, left
/// behind when the node died with the agent) whose environment names the
/// node.
fn is_leftover(pid: i32, r: &PidRecord) -> bool {
    if pid == r.pid {
        is_recorded_node(r)
    } else {
        process_group(pid) == Some(r.pid) && names_node(pid, &r.node)
    }
}

/// Every live process that is left of the recorded nodes, with the record
/// it belongs to (its `pid` set to that process's).
fn find_leftovers(records: &[PidRecord]) -> Vec<PidRecord> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut found = Vec::new();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
    {
        let Some(group) = process_group(pid) else {
            continue;
        };
        if let Some(r) = records
            .iter()
            .find(|r| r.pid == group && is_leftover(pid, r))
        {
            found.push(PidRecord {
                pid,
                node: r.node.clone(),
                program: r.program.clone(),
            });
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Ends what is left of node processes from an earlier run, the processes
/// they started included: SIGTERM to each, SIGKILL to those still alive
/// after `grace`. Blocking: run it off the actor threads. Returns one record
/// per process ended.
pub fn end_leftovers(records: &[PidRecord], grace: Duration) -> Vec<PidRecord> {
    let found = find_leftovers(records);
    let still_there = |f: &PidRecord| {
        alive(f.pid)
            && records
                .iter()
                .any(|r| r.node == f.node && is_leftover(f.pid, r))
    };
    for f in &found {
        // SAFETY: plain signal delivery to a process verified above.
        unsafe {
            libc::kill(f.pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while found.iter().any(still_there) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for f in found.iter().filter(|f| still_there(f)) {
        // SAFETY: as above, verified again just now.
        unsafe {
            libc::kill(f.pid, libc::SIGKILL);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Node, Role};

    #[test]
    fn config_saves_loads_and_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("s"));
        assert!(matches!(state.load_config(), Loaded::None));
        let c = Configuration {
            id: "c".into(),
            instances: vec![],
            nodes: vec![Node::new("w", "a", Role::Worker)],
            zeromq: None,
        };
        state.save_config(&c).expect("save");
        assert!(matches!(state.load_config(), Loaded::Config(ref l) if *l == c));
        state.clear_config().expect("clear");
        assert!(matches!(state.load_config(), Loaded::None));
    }

    #[test]
    fn corrupt_config_is_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().to_owned());
        fs::write(dir.path().join(CONFIG_FILE), b"\xa3garbage").expect("write");
        match state.load_config() {
            Loaded::Corrupt { kept_as, .. } => {
                assert!(kept_as.exists());
                assert!(!dir.path().join(CONFIG_FILE).exists());
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
        assert!(matches!(state.load_config(), Loaded::None));
    }

    #[test]
    fn the_directory_is_held_by_one_lock_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("s"));
        let held = state.lock().expect("first");
        match state.lock() {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected held, got {other:?}"),
        }
        let msg = state.lock().expect_err("held").to_string();
        assert!(
            msg.contains(&dir.path().join("s").display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        state.lock().expect("free again");
    }

    #[test]
    fn pids_roundtrip_and_strangers_are_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().to_owned());
        let me = PidRecord {
            pid: i32::try_from(std::process::id()).expect("pid"),
            node: "not-a-node".into(),
            program: "/bin/false".into(),
        };
        state.save_pids(std::slice::from_ref(&me)).expect("save");
        assert_eq!(state.load_pids(), vec![me.clone()]);
        // Our own process is not a recorded node: it must survive.
        assert!(end_leftovers(&[me], Duration::from_millis(10)).is_empty());
    }
}
