//! Errors that stop the agent from starting. Modules keep their own error
//! types; only these reach `main`, which picks the exit code.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::agent::config::ConfigError;
use crate::agent::state::LockError;
use crate::protocol::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {addr}: {reason}")]
    Metrics { addr: SocketAddr, reason: String },
    #[error(
        "directory {path} cannot be used (it must be a directory the agent can write): {source}"
    )]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}
