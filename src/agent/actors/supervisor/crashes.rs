//! Crash records: each unexpected exit of a node is kept as a record in its
//! directory (`agent/crash.rs`), written off the supervisor's thread, and
//! `get_crashes_request` reads them back.

use std::time::Duration;

use actix::prelude::*;

use super::NodeSupervisor;
use crate::agent::crash::{self, Crash, CrashRecord};
use crate::agent::process::Exit;
use crate::api::events::{GetCrashesRequest, GetCrashesResponse};
use crate::api::types::{ApiResult, NodeOutputs, ResultData};

impl NodeSupervisor {
    /// Makes the record of a crash and has it written (the newest
    /// `--crash-records` of the node kept); returns its summary line, for
    /// `notify_error`. With `--crash-records 0` nothing is written.
    pub(super) fn keep_crash_record(
        &self,
        node: &str,
        pid: Option<u32>,
        status: &Exit,
        (ran, was_running): (Duration, bool),
        outputs: &NodeOutputs,
    ) -> String {
        let dir = self.cfg.cluster_dir.join(node);
        let crash = Crash {
            node,
            dir: &dir,
            pid,
            status,
            ran,
            was_running,
            stdout: &outputs.stdout,
            stderr: &outputs.stderr,
        };
        let mut record = CrashRecord::new(&crash, std::time::SystemTime::now());
        let keep = self.cfg.crash_records;
        if keep == 0 {
            return record.summary();
        }
        record.file = Some(record.path_in(&dir));
        let summary = record.summary();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = record.save(&dir, keep) {
                tracing::warn!(node = %record.node, "cannot write its crash record in {}: {e}", dir.display());
            }
        });
        summary
    }
}

impl Handler<GetCrashesRequest> for NodeSupervisor {
    type Result = ResponseFuture<GetCrashesResponse>;

    fn handle(&mut self, req: GetCrashesRequest, _: &mut Context<Self>) -> Self::Result {
        let GetCrashesRequest { reqid, nodes } = req;
        let instance = self.cfg.name.clone();
        // The slots come sorted by name; names not run here are ignored.
        let asked: Vec<(String, std::path::PathBuf)> = self
            .slots
            .keys()
            .filter(|n| nodes.is_empty() || nodes.contains(n))
            .map(|n| (n.clone(), self.cfg.cluster_dir.join(n)))
            .collect();
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || {
                asked
                    .into_iter()
                    .map(|(node, dir)| (node, crash::read_all(&dir)))
                    .collect::<Vec<_>>()
            })
            .await;
            let mut result = ApiResult::ok(reqid.clone(), &instance);
            match read {
                Ok(per_node) => {
                    let list = per_node
                        .into_iter()
                        .map(|(node, records)| {
                            let mut r = ApiResult::ok(reqid.clone(), &instance);
                            let text =
                                serde_json::to_string(&records).unwrap_or_else(|_| "[]".to_owned());
                            r.data = Some(ResultData::Text(text));
                            r.node = Some(node);
                            r
                        })
                        .collect();
                    result.data = Some(ResultData::Results(list));
                }
                Err(e) => {
                    result.success = false;
                    result.error = format!("cannot read the crash records: {e}");
                }
            }
            GetCrashesResponse { reqid, result }
        })
    }
}
