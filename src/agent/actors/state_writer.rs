//! `StateWriter`: the state directory's blocking file work (the persisted
//! configuration, fsynced, and the pids file), on a thread of its own (a
//! `SyncArbiter` of one), so that no fsync runs on the thread the other
//! actors share. One thread keeps the writes in the order they were asked
//! for.

use actix::prelude::*;

use crate::agent::state::{PidRecord, StateDir};
use crate::api::types::Configuration;

pub struct StateWriter {
    state: StateDir,
}

impl StateWriter {
    /// Starts the writer on a thread of its own.
    pub fn start(state: StateDir) -> Addr<StateWriter> {
        SyncArbiter::start(1, move || StateWriter {
            state: state.clone(),
        })
    }
}

impl Actor for StateWriter {
    type Context = SyncContext<Self>;
}

/// Persist the accepted configuration (temporary file, fsync, rename).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct SaveConfig(pub Configuration);

/// Remove the persisted configuration (standby).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct ClearConfig;

/// Record the running node processes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SavePids(pub Vec<PidRecord>);

impl Handler<SaveConfig> for StateWriter {
    type Result = Result<(), String>;

    fn handle(
        &mut self,
        SaveConfig(config): SaveConfig,
        _: &mut SyncContext<Self>,
    ) -> Self::Result {
        self.state.save_config(&config).map_err(|e| e.to_string())
    }
}

impl Handler<ClearConfig> for StateWriter {
    type Result = Result<(), String>;

    fn handle(&mut self, _: ClearConfig, _: &mut SyncContext<Self>) -> Self::Result {
        self.state.clear_config().map_err(|e| e.to_string())
    }
}

impl Handler<SavePids> for StateWriter {
    type Result = ();

    fn handle(&mut self, SavePids(records): SavePids, _: &mut SyncContext<Self>) {
        if let Err(e) = self.state.save_pids(&records) {
            tracing::warn!("cannot record node pids: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::state::Loaded;
    use crate::api::types::{Node, Role};

    #[actix_rt::test]
    async fn writes_in_order_off_the_actor_thread() {
        let dir = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(dir.path().join("s"));
        let w = StateWriter::start(state.clone());
        let c = Configuration {
            id: "c".into(),
            instances: vec![],
            nodes: vec![Node::new("w", "a", Role::Worker)],
            zeromq: None,
        };
        w.send(SaveConfig(c.clone()))
            .await
            .expect("sent")
            .expect("saved");
        assert!(matches!(state.load_config(), Loaded::Config(ref l) if *l == c));
        let record = PidRecord {
            pid: 12,
            node: "w".into(),
            program: "zeek".into(),
        };
        w.do_send(SavePids(vec![record.clone()]));
        w.send(ClearConfig).await.expect("sent").expect("cleared");
        // The pids were written before the clear was handled.
        assert_eq!(state.load_pids(), vec![record]);
        assert!(matches!(state.load_config(), Loaded::None));
    }
}
