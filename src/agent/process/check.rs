//! A node run to its end as a check (`zeek -a`): prepared as a launch,
//! its output captured, killed when its time is up.

use std::io;
use std::time::Duration;

use super::{SpawnError, SpawnSpec};

/// What a check run of a node printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// Its exit code; `None` when it was killed (or timed out).
    pub code: Option<i32>,
    pub stderr: String,
}

/// Runs `spec` to its end as a check (`zeek -a`): its directory prepared
/// as a launch's, its environment, stdin `/dev/null`, its output captured;
/// killed when `timeout` passes. The directory's files are written off the
/// actors' thread.
pub async fn run_check(spec: SpawnSpec, timeout: Duration) -> Result<CheckRun, SpawnError> {
    let prepared = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&spec.cwd)
                .and_then(|()| spec.files.iter().try_for_each(|f| f.place(&spec.cwd)))
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
    };
    if let Err(source) = prepared {
        return Err(SpawnError::Prepare {
            dir: spec.cwd.clone(),
            source,
        });
    }
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for k in &spec.unset {
        cmd.env_remove(k);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    let run = |source| SpawnError::Run {
        program: spec.program.clone(),
        source,
    };
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) => Ok(CheckRun {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(run(e)),
        Err(_) => Ok(CheckRun {
            code: None,
            stderr: format!("no verdict within {:.1} s", timeout.as_secs_f64()),
        }),
    }
}
