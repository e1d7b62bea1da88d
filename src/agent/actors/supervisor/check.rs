//! Checking a configuration before anything stops: each new local node is
//! run as it will run (its files, environment and command line, in a
//! directory of its own under `<cluster-dir>/.check/`) in Zeek's
//! parse-only mode (`zeek -a`), several at once up to the host's CPUs. A
//! failure refuses the whole configuration, with Zeek's own lines for each
//! failing node; the running nodes go on and nothing is persisted.

use actix::prelude::*;
use futures_util::stream::{self, StreamExt};

use super::nodes::NodeLaunch;
use super::{Backend, NodeSupervisor};
use crate::agent::process::{self, SpawnSpec};
use crate::agent::validate;
use crate::api::events::{CheckConfigurationRequest, CheckConfigurationResponse};
use crate::api::types::{ApiResult, Configuration, NodeOutputs, ReqId, ResultData};

/// The working directories of checks, in the cluster directory.
const CHECK_DIR: &str = ".check";
/// Lines of a failing check's stderr quoted.
const CHECK_LINES: usize = 20;

/// One node's check that failed: the node and what Zeek said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckFailure {
    pub node: String,
    pub lines: String,
}

impl NodeSupervisor {
    /// Whether configurations are checked: on, and the program answered
    /// `--version` as Zeek (the backend known).
    pub(super) fn checks(&self) -> bool {
        self.cfg.check_scripts && self.is_zeek && matches!(self.backend, Backend::Known(_))
    }

    /// Each local node of `config` as it will run, with `-a` and without
    /// its interface (parsing opens none), in its check directory. Without
    /// metrics ports: Zeek opens its Prometheus endpoint even when it only
    /// parses, and the running nodes hold those ports.
    pub(super) fn check_specs(&self, config: &Configuration) -> Vec<(String, SpawnSpec)> {
        let Backend::Known(backend) = self.backend else {
            return Vec::new();
        };
        let mut config = config.clone();
        for n in &mut config.nodes {
            n.metrics_port = None;
        }
        let config = &config;
        let files = self.config_files(config);
        let root = self.cfg.cluster_dir.join(CHECK_DIR);
        config
            .nodes
            .iter()
            .filter(|n| n.instance == self.cfg.name)
            .map(|node| {
                let mut spec = self.node_spec(
                    &files,
                    config,
                    NodeLaunch {
                        node,
                        backend,
                        path: self.channel_path(node, config, backend),
                        channel_port: None,
                        dir: root.join(&node.name),
                    },
                );
                spec.args = check_args(spec.args);
                spec.cpu = None;
                (node.name.clone(), spec)
            })
            .collect()
    }
}

/// A node's arguments for a check: `-a` first, its `-i IFACE` dropped.
fn check_args(args: Vec<String>) -> Vec<String> {
    let mut out = vec!["-a".to_owned()];
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "-i" {
            it.next();
            continue;
        }
        out.push(a);
    }
    out
}

/// The last lines of what a failing check printed.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    process::failure_lines(&lines, CHECK_LINES).join("\n")
}

/// Runs the checks, `parallel` at once; the failures, by node name.
pub(super) async fn run_checks(
    specs: Vec<(String, SpawnSpec)>,
    parallel: usize,
    timeout: std::time::Duration,
) -> Vec<CheckFailure> {
    let mut failures: Vec<CheckFailure> = stream::iter(specs)
        .map(|(node, spec)| async move {
            let lines = match process::run_check(spec, timeout).await {
                Ok(run) if run.code == Some(0) => return None,
                Ok(run) => {
                    let t = tail(&run.stderr);
                    if t.is_empty() {
                        match run.code {
                            Some(c) => format!("zeek -a exited with code {c} and said nothing"),
                            None => "zeek -a was killed".to_owned(),
                        }
                    } else {
                        t
                    }
                }
                Err(e) => e.to_string(),
            };
            Some(CheckFailure { node, lines })
        })
        .buffer_unordered(parallel.max(1))
        .filter_map(|f| async move { f })
        .collect()
        .await;
    failures.sort_by(|a, b| a.node.cmp(&b.node));
    failures
}

/// The answer to a configuration whose check failed: one failed Result
/// per failing node, Zeek's lines in its error and in the stderr of its
/// outputs (which zeek-client prints), and the whole named in `error`.
pub(super) fn refusal(reqid: &ReqId, agent: &str, failures: &[CheckFailure]) -> ApiResult {
    let summary: Vec<String> = failures
        .iter()
        .map(|f| format!("node {}: {}", f.node, f.lines.replace('\n', " / ")))
        .collect();
    let mut r = ApiResult::failure(
        reqid.clone(),
        agent,
        format!(
            "configuration check failed, nothing changed: {}",
            summary.join("; ")
        ),
    );
    let per = failures
        .iter()
        .map(|f| {
            let mut p = ApiResult::failure(
                reqid.clone(),
                agent,
                format!("node {} failed its check (zeek -a): {}", f.node, f.lines),
            );
            p.node = Some(f.node.clone());
            p.data = Some(ResultData::Outputs(NodeOutputs {
                stdout: String::new(),
                stderr: format!("{}\n", f.lines),
            }));
            p
        })
        .collect();
    r.data = Some(ResultData::Results(per));
    r.refused = true;
    r
}

/// `check_configuration_request` (an extension): the check a deployment
/// runs, and nothing else. Valid and every local node parsed: success,
/// one successful Result per node; otherwise the refusal a deployment
/// would get. A program that is not Zeek cannot be checked: a failure that
/// says so.
impl Handler<CheckConfigurationRequest> for NodeSupervisor {
    type Result = ResponseFuture<CheckConfigurationResponse>;

    fn handle(&mut self, req: CheckConfigurationRequest, ctx: &mut Context<Self>) -> Self::Result {
        let CheckConfigurationRequest { reqid, config } = req;
        let name = self.cfg.name.clone();
        let answer = |reqid: ReqId, result: ApiResult| CheckConfigurationResponse { reqid, result };
        // Whether the program is Zeek is being asked (just after start):
        // ask again once it is known.
        if matches!(self.backend, Backend::Detecting) {
            let me = ctx.address();
            return Box::pin(async move {
                actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
                let again = CheckConfigurationRequest {
                    reqid: reqid.clone(),
                    config,
                };
                me.send(again).await.unwrap_or_else(|_| {
                    answer(
                        reqid.clone(),
                        ApiResult::failure(reqid, &name, "agent is shutting down"),
                    )
                })
            });
        }
        if let Err(problems) = validate::validate(&config, &self.host_facts()) {
            let error = format!("invalid configuration: {}", problems.join("; "));
            let r = ApiResult::failure(reqid.clone(), &name, error);
            return Box::pin(async move { answer(reqid, r) });
        }
        if !self.checks() {
            let error = format!(
                "cannot check: {} does not answer --version as Zeek (or --check-scripts=false)",
                self.cfg.zeek_binary.display()
            );
            let r = ApiResult::failure(reqid.clone(), &name, error);
            return Box::pin(async move { answer(reqid, r) });
        }
        let specs = self.check_specs(&config);
        let nodes: Vec<String> = specs.iter().map(|(n, _)| n.clone()).collect();
        let checks = run_checks(specs, self.cpus, self.cfg.request_timeout.mul_f64(0.5));
        Box::pin(async move {
            let failures = checks.await;
            if !failures.is_empty() {
                let mut r = refusal(&reqid, &name, &failures);
                r.refused = false;
                return answer(reqid, r);
            }
            let mut r = ApiResult::ok(reqid.clone(), &name);
            r.data = Some(ResultData::Results(
                nodes
                    .into_iter()
                    .map(|n| {
                        let mut p = ApiResult::ok(reqid.clone(), &name);
                        p.node = Some(n);
                        p
                    })
                    .collect(),
            ));
            answer(reqid, r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_parses_only_and_opens_no_interface() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check_args(args(&["-i", "eth0", "zeromq", "local", "x.zeek"])),
            args(&["-a", "zeromq", "local", "x.zeek"])
        );
        assert_eq!(tail("a\n\nb\n"), "a\nb");
    }

    #[test]
    fn a_refusal_names_each_failing_node_with_zeeks_lines() {
        let f = CheckFailure {
            node: "worker-1".into(),
            lines: "fatal error: can't find no-such-script.zeek".into(),
        };
        let r = refusal(&ReqId("r".into()), "agent-a", &[f]);
        assert!(!r.success);
        assert_eq!(
            r.error,
            "configuration check failed, nothing changed: node worker-1: fatal error: can't find no-such-script.zeek"
        );
        let Some(ResultData::Results(per)) = &r.data else {
            panic!("{r:?}")
        };
        assert_eq!(per[0].node.as_deref(), Some("worker-1"));
        let Some(ResultData::Outputs(o)) = &per[0].data else {
            panic!("{per:?}")
        };
        assert_eq!(o.stderr, "fatal error: can't find no-such-script.zeek\n");
    }
}
