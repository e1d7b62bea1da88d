//! `NodeProcess`: one actor per OS process of a node. It spawns the process
//! (from the long-lived spawner thread), tells the supervisor when it has
//! started, when it counts as running and when it has exited, and stops it
//! on request: SIGTERM to its process group, SIGKILL after the grace period.
//! It never restarts anything; the restart policy is the supervisor's.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::agent::process::{self, SpawnSpec};

/// Identifies one launch of one node; reports of an older launch are told
/// apart from the current one by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId(pub u64);

/// What happened to a node process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// exec succeeded; the process has this pid (and process group).
    Spawned { pid: u32 },
    /// The process could not be started (missing or non-executable program…).
    SpawnFailed { error: String },
    /// Alive after the settle time (and, with port checks, its port accepts).
    Running,
    /// The process has exited and been reaped. `requested`: after a `StopNode`.
    Exited {
        status: process::Exit,
        requested: bool,
    },
}

/// Sent by a `NodeProcess` to the `NodeSupervisor` for every fact above.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct NodeReport {
    pub node: String,
    pub proc_id: ProcId,
    pub event: NodeEvent,
}

/// Sent by the supervisor: stop the process (SIGTERM, SIGKILL after the
/// grace period). The outcome arrives as `NodeEvent::Exited`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StopNode;

/// How a `NodeProcess` decides that its node runs.
#[derive(Debug, Clone)]
pub struct NodeTiming {
    /// Alive this long after exec counts as running (zero: at once).
    pub settle: Duration,
    /// With port checks on, the address that must accept a connection.
    pub port_check: Option<SocketAddr>,
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
}

const PORT_POLL: Duration = Duration::from_millis(50);

pub struct NodeProcess {
    node: String,
    proc_id: ProcId,
    spec: Option<SpawnSpec>,
    timing: NodeTiming,
    report: Recipient<NodeReport>,
    pid: Option<u32>,
    stop_requested: bool,
    exited: bool,
}

impl NodeProcess {
    pub fn new(
        node: String,
        proc_id: ProcId,
        spec: SpawnSpec,
        timing: NodeTiming,
        report: Recipient<NodeReport>,
    ) -> Self {
        NodeProcess {
            node,
            proc_id,
            spec: Some(spec),
            timing,
            report,
            pid: None,
            stop_requested: false,
            exited: false,
        }
    }

    fn tell(&self, event: NodeEvent) {
        self.report.do_send(NodeReport {
            node: self.node.clone(),
            proc_id: self.proc_id,
            event,
        });
    }

    fn on_spawned(&mut self, child: process::NodeChild, ctx: &mut Context<Self>) {
        let pid = child.id();
        self.pid = Some(pid);
        self.tell(NodeEvent::Spawned { pid });
        ctx.spawn(
            process::wait_exit(child)
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.exited = true;
                    act.tell(NodeEvent::Exited {
                        status: process::Exit::from(res),
                        requested: act.stop_requested,
                    });
                    ctx.stop();
                }),
        );
        if self.stop_requested {
            self.terminate(ctx);
        } else if self.timing.settle.is_zero() && self.timing.port_check.is_none() {
            self.tell(NodeEvent::Running);
        } else {
            ctx.run_later(self.timing.settle, |act, ctx| act.check_running(ctx));
        }
    }

    fn check_running(&mut self, ctx: &mut Context<Self>) {
        if self.exited || self.stop_requested {
            return;
        }
        let Some(addr) = self.timing.port_check else {
            self.tell(NodeEvent::Running);
            return;
        };
        let attempt = tokio::time::timeout(PORT_POLL * 4, tokio::net::TcpStream::connect(addr));
        ctx.spawn(attempt.into_actor(self).map(|res, act, ctx| {
            if act.exited || act.stop_requested {
                return;
            }
            if matches!(res, Ok(Ok(_))) {
                act.tell(NodeEvent::Running);
            } else {
                ctx.run_later(PORT_POLL, |act, ctx| act.check_running(ctx));
            }
        }));
    }

    fn terminate(&mut self, ctx: &mut Context<Self>) {
        let Some(pid) = self.pid else { return };
        process::signal_group(pid, libc::SIGTERM);
        ctx.run_later(self.timing.stop_grace, move |act, _| {
            if !act.exited {
                tracing::warn!(node = %act.node, pid, "node ignored SIGTERM; sending SIGKILL");
                process::signal_group(pid, libc::SIGKILL);
            }
        });
    }
}

impl Actor for NodeProcess {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(spec) = self.spec.take() else {
            return;
        };
        tracing::debug!(node = %self.node, ?spec, "spawning");
        ctx.spawn(
            process::spawn(spec)
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(child) => act.on_spawned(child, ctx),
                    Err(error) => {
                        act.exited = true;
                        act.tell(NodeEvent::SpawnFailed {
                            error: error.to_string(),
                        });
                        ctx.stop();
                    }
                }),
        );
    }
}

impl Handler<StopNode> for NodeProcess {
    type Result = ();

    fn handle(&mut self, _: StopNode, ctx: &mut Context<Self>) {
        if self.stop_requested || self.exited {
            return;
        }
        self.stop_requested = true;
        self.terminate(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{wait_until, Probe};

    fn spec(dir: &std::path::Path, script: &str) -> SpawnSpec {
        SpawnSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: dir.to_owned(),
            env: vec![],
            cpu: None,
            file: None,
        }
    }

    fn timing(settle_ms: u64, grace_ms: u64) -> NodeTiming {
        NodeTiming {
            settle: Duration::from_millis(settle_ms),
            port_check: None,
            stop_grace: Duration::from_millis(grace_ms),
        }
    }

    fn events(seen: &crate::testing::Seen<NodeReport>) -> Vec<NodeEvent> {
        seen.all().into_iter().map(|r| r.event).collect()
    }

    #[actix_rt::test]
    async fn spawn_settle_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (probe, seen) = Probe::<NodeReport>::start();
        let node = NodeProcess::new(
            "n".into(),
            ProcId(1),
            spec(dir.path(), "exec sleep 30"),
            timing(20, 2000),
            probe,
        )
        .start();
        wait_until(|| events(&seen).contains(&NodeEvent::Running), 5_000).await;
        assert!(matches!(events(&seen)[0], NodeEvent::Spawned { .. }));
        node.do_send(StopNode);
        wait_until(|| events(&seen).len() == 3, 5_000).await;
        assert_eq!(
            events(&seen)[2],
            NodeEvent::Exited {
                status: process::Exit::Signal(libc::SIGTERM),
                requested: true
            }
        );
    }

    #[actix_rt::test]
    async fn sigkill_after_grace_when_sigterm_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (probe, seen) = Probe::<NodeReport>::start();
        let node = NodeProcess::new(
            "n".into(),
            ProcId(2),
            spec(
                dir.path(),
                "trap '' TERM; echo up; while :; do sleep 0.05; done",
            ),
            timing(0, 200),
            probe,
        )
        .start();
        wait_until(|| events(&seen).contains(&NodeEvent::Running), 5_000).await;
        // Let the shell install its trap.
        wait_until(
            || process::tail(&dir.path().join("stdout"), 1) == "up",
            5_000,
        )
        .await;
        node.do_send(StopNode);
        wait_until(|| events(&seen).len() == 3, 5_000).await;
        assert_eq!(
            events(&seen)[2],
            NodeEvent::Exited {
                status: process::Exit::Signal(libc::SIGKILL),
                requested: true
            }
        );
    }

    #[actix_rt::test]
    async fn premature_exit_and_failed_spawn_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (probe, seen) = Probe::<NodeReport>::start();
        NodeProcess::new(
            "n".into(),
            ProcId(3),
            spec(dir.path(), "exit 4"),
            timing(500, 100),
            probe.clone(),
        )
        .start();
        let mut bad = spec(dir.path(), "");
        bad.program = "/nonexistent".into();
        NodeProcess::new("m".into(), ProcId(4), bad, timing(0, 100), probe).start();
        wait_until(|| seen.all().len() == 3, 5_000).await;
        let all = seen.all();
        let n: Vec<_> = all
            .iter()
            .filter(|r| r.node == "n")
            .map(|r| r.event.clone())
            .collect();
        assert_eq!(
            n.len(),
            2,
            "no Running for a node that died while settling: {n:?}"
        );
        assert_eq!(
            n[1],
            NodeEvent::Exited {
                status: process::Exit::Code(4),
                requested: false
            }
        );
        let m: Vec<_> = all.iter().filter(|r| r.node == "m").collect();
        assert!(matches!(m[0].event, NodeEvent::SpawnFailed { .. }));
    }

    #[actix_rt::test]
    async fn port_check_waits_for_the_port_to_accept() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Reserve a free port, then release it: nothing listens there yet.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let (probe, seen) = Probe::<NodeReport>::start();
        let node = NodeProcess::new(
            "n".into(),
            ProcId(5),
            spec(dir.path(), "exec sleep 30"),
            NodeTiming {
                settle: Duration::from_millis(10),
                port_check: Some(addr),
                stop_grace: Duration::from_millis(500),
            },
            probe,
        )
        .start();
        wait_until(|| !seen.is_empty(), 5_000).await;
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !events(&seen).contains(&NodeEvent::Running),
            "running before its port accepts"
        );
        let _listener = std::net::TcpListener::bind(addr).expect("bind the node's port");
        wait_until(|| events(&seen).contains(&NodeEvent::Running), 5_000).await;
        node.do_send(StopNode);
        wait_until(|| events(&seen).len() == 3, 5_000).await;
    }
}
