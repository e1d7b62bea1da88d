//! What the daemons' `main`s share: the log set-up and the wait for
//! SIGTERM or SIGINT.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::logging::{BufferedStderr, FlushGuard, LineFormat};

/// Logs to stderr in the project's line format (`RUST_LOG`, `info` by
/// default). Lines are buffered and written out every few milliseconds (at
/// once for warnings and errors); dropping the guard flushes the rest.
pub fn init_logging() -> FlushGuard {
    let (writer, guard) = BufferedStderr::start();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .event_format(LineFormat {
            ansi: std::io::stderr().is_terminal(),
        })
        .init();
    guard
}

/// Waits for SIGTERM or SIGINT; returns its name.
pub async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Why a daemon's state directory cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("state directory {} is in use by another {who}{}; one {who} per state directory", dir.display(), holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held {
        dir: PathBuf,
        holder: Option<u32>,
        who: &'static str,
    },
    #[error("state directory {} cannot be used (it must be a directory the {who} can write): {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: io::Error,
        who: &'static str,
    },
}

/// A state directory held by this process: an advisory lock on its lock
/// file, released when this is dropped (or the process ends, however).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Takes `dir` for this process (creating it if need be) by locking
/// `file` in it, which then holds our pid; or says which process holds it.
/// `who` names the daemon in the error. Nothing else in it is touched.
pub fn lock_dir(dir: &Path, file: &str, who: &'static str) -> Result<DirLock, LockError> {
    use std::os::fd::AsRawFd;
    let io_err = |source| LockError::Io {
        dir: dir.to_owned(),
        source,
        who,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(file))
        .map_err(io_err)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err(e));
        }
        let holder = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        return Err(LockError::Held {
            dir: dir.to_owned(),
            holder,
            who,
        });
    }
    // Ours now: say who holds it.
    f.set_len(0).map_err(io_err)?;
    writeln!(f, "{}", std::process::id()).map_err(io_err)?;
    Ok(DirLock { _file: f })
}
