//! The controller's state directory: `controller.json` with the staged,
//! ready and deployed configurations, written atomically (temporary file,
//! fsync, rename) by a `Store` on a thread of its own.

use std::io::Write;
use std::path::{Path, PathBuf};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::api::types::Configuration;

/// The file's name in the state directory.
pub const FILE: &str = "controller.json";

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub staged: Option<Configuration>,
    pub ready: Option<Configuration>,
    pub deployed: Option<Configuration>,
}

/// Reads the snapshot; an unreadable file is renamed aside
/// (`controller.json.bad`) and the controller starts empty.
pub fn load(dir: &Path) -> Snapshot {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Snapshot::default(),
        Err(e) => {
            tracing::error!("cannot read {}: {e}; starting empty", path.display());
            return Snapshot::default();
        }
    };
    match serde_json::from_str::<Snapshot>(&text) {
        Ok(s) if s.version == 1 => s,
        other => {
            let why = match other {
                Ok(s) => format!("unknown version {}", s.version),
                Err(e) => e.to_string(),
            };
            let aside = dir.join(format!("{FILE}.bad"));
            tracing::error!(
                "{} is unreadable ({why}); kept aside as {} and starting empty",
                path.display(),
                aside.display()
            );
            let _ = std::fs::rename(&path, aside);
            Snapshot::default()
        }
    }
}

/// Writes `snapshot` atomically.
pub fn save(dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(FILE))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The writer, on a `SyncArbiter` thread.
pub struct Store {
    pub dir: PathBuf,
}

impl Actor for Store {
    type Context = SyncContext<Self>;
}

/// Persist this snapshot.
#[derive(Message)]
#[rtype(result = "std::io::Result<()>")]
pub struct Save(pub Snapshot);

impl Handler<Save> for Store {
    type Result = std::io::Result<()>;

    fn handle(&mut self, msg: Save, _: &mut SyncContext<Self>) -> Self::Result {
        save(&self.dir, &msg.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_and_a_torn_file_is_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), Snapshot::default());
        let s = Snapshot {
            version: 1,
            staged: Some(Configuration {
                id: "c1".into(),
                ..Configuration::default()
            }),
            ready: None,
            deployed: None,
        };
        save(dir.path(), &s).expect("save");
        assert_eq!(load(dir.path()), s);
        std::fs::write(dir.path().join(FILE), "{\"version\": 1, \"sta").expect("write");
        assert_eq!(load(dir.path()), Snapshot::default());
        assert!(dir.path().join("controller.json.bad").exists());
        assert!(!dir.path().join(FILE).exists());
    }
}
