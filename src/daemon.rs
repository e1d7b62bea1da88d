//! What the daemons' `main`s share: the log set-up and the wait for
//! SIGTERM or SIGINT.

use std::io::IsTerminal;

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
