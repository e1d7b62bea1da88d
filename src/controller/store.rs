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
/// Locked (`flock`) by the controller that uses the directory, holding
/// its pid.
pub const LOCK_FILE: &str = "controller.lock";

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub staged: Option<Configuration>,
    pub ready: Option<Configuration>,
    pub deployed: Option<Configuration>,
    /// A deployment under way: had the controller stopped before it
    /// completed, the restarted controller finishes it (agents that
    /// already run it change nothing) instead of rolling every agent back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploying: Option<Configuration>,
}

/// Reads the snapshot. A file that does not decode (torn, damaged bytes,
/// an unknown version) is renamed aside (`controller.json.bad`) and the
/// controller starts empty; a file that cannot be read at all, or kept
/// aside, is an error: starting empty would overwrite it at the next save.
pub fn load(dir: &Path) -> std::io::Result<Snapshot> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Snapshot::default()),
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    let why = match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(s) if s.version == 1 => return Ok(s),
        Ok(s) => format!("unknown version {}", s.version),
        Err(e) => e.to_string(),
    };
    let aside = dir.join(format!("{FILE}.bad"));
    std::fs::rename(&path, &aside).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "{} is unreadable ({why}) and cannot be kept aside as {}: {e}",
                path.display(),
                aside.display()
            ),
        )
    })?;
    tracing::error!(
        "{} is unreadable ({why}); kept aside as {} and starting empty",
        path.display(),
        aside.display()
    );
    Ok(Snapshot::default())
}

/// Fails unless a file can be written in `dir` (as a save writes one):
/// found at start, not at the first stage-config.
pub fn probe(dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, b"")?;
    std::fs::remove_file(&tmp)
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
        assert_eq!(load(dir.path()).expect("load"), Snapshot::default());
        let s = Snapshot {
            version: 1,
            staged: Some(Configuration {
                id: "c1".into(),
                ..Configuration::default()
            }),
            ready: None,
            deployed: None,
            deploying: None,
        };
        save(dir.path(), &s).expect("save");
        assert_eq!(load(dir.path()).expect("load"), s);
        std::fs::write(dir.path().join(FILE), "{\"version\": 1, \"sta").expect("write");
        assert_eq!(load(dir.path()).expect("load"), Snapshot::default());
        assert!(dir.path().join("controller.json.bad").exists());
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn a_file_with_damaged_bytes_is_kept_aside_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = b"{\"version\": 1, \"staged\": null, ".to_vec();
        bytes.extend([0xff, 0xfe, 0x00]);
        bytes.extend(b"\"ready\": null, \"deployed\": null}");
        std::fs::write(dir.path().join(FILE), &bytes).expect("write");
        assert_eq!(load(dir.path()).expect("load"), Snapshot::default());
        assert_eq!(
            std::fs::read(dir.path().join("controller.json.bad")).expect("kept"),
            bytes
        );
    }
}
