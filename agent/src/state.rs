//! The agent's state directory: its installation id and the last batch sequence
//! number the collector acked.
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A state directory problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory or one of its files cannot be created, read or written.
    #[error("state dir {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A state file holds something other than what the agent wrote there.
    #[error("state file {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating it, mode 0700) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = dir.into();
        let io_error = |source| StateError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error)?;
        // It holds the agent's identity (and later its credential): owner only.
        let mode = std::fs::metadata(&dir)
            .map_err(io_error)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_error)?;
        }
        Ok(StateDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// This agent installation's id, created on first use.
    pub fn agent_id(&self) -> Result<String, StateError> {
        let path = self.dir.join("agent-id");
        match std::fs::read_to_string(&path) {
            Ok(id) if is_hex_id(id.trim()) => return Ok(id.trim().to_string()),
            Ok(id) => {
                return Err(StateError::Corrupt {
                    path,
                    reason: format!("expected 32 hex digits, found {:?}", id.trim()),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StateError::Io { path, source }),
        }
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        self.write_atomic("agent-id", id.as_bytes())?;
        Ok(id)
    }

    /// The key of this agent's redaction markers, created on first use (mode 0600):
    /// markers stay comparable across restarts and cannot be brute-forced by anyone
    /// without the node's state dir.
    pub fn redaction_key(&self) -> Result<[u8; 32], StateError> {
        let path = self.dir.join("redaction-key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut key).map_err(|_| StateError::Corrupt {
                    path,
                    reason: "expected 64 hex digits".into(),
                })?;
                Ok(key)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let key = crate::redact::random_key()
                    .map_err(|source| StateError::Io { path, source })?;
                self.write_atomic("redaction-key", hex::encode(key).as_bytes())?;
                Ok(key)
            }
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// The highest batch seq the collector acked; 0 before the first ack.
    pub fn last_acked_seq(&self) -> Result<u64, StateError> {
        let path = self.dir.join("last-acked-seq");
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| StateError::Corrupt {
                path,
                reason: format!("expected a number, found {:?}", text.trim()),
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    pub fn set_last_acked_seq(&self, seq: u64) -> Result<(), StateError> {
        self.write_atomic("last-acked-seq", seq.to_string().as_bytes())
    }

    /// The planned state (see [`crate::delta::Planned`]); empty when there is none yet
    /// or when it is damaged (the next round then sends every kind whole).
    pub fn planned(&self) -> crate::delta::Planned {
        let path = self.dir.join("planned");
        match std::fs::read(&path) {
            Ok(bytes) => crate::delta::Planned::decode(&bytes).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "planned state is damaged: every kind is sent whole");
                Default::default()
            }),
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "cannot read the planned state: every kind is sent whole");
                }
                Default::default()
            }
        }
    }

    pub fn set_planned(&self, planned: &crate::delta::Planned) -> Result<(), StateError> {
        self.write_atomic("planned", &planned.encode())
    }

    /// The delivery counters kept across restarts.
    pub fn counters(&self) -> Counters {
        let path = self.dir.join("delivery-counters");
        std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn set_counters(&self, counters: &Counters) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(counters).unwrap_or_default();
        self.write_atomic("delivery-counters", &bytes)
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Writes `name` atomically (see [`write_synced`]).
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        write_synced(
            &self.dir.join(name),
            &self.dir.join(format!(".{name}.tmp")),
            bytes,
        )
    }
}

/// Writes `path` via `temporary` (mode 0600), fsync and rename, so a crash leaves the
/// old or the new content, never a torn file. The rename is durable once the
/// directory is synced.
pub(crate) fn write_synced(path: &Path, temporary: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io_error = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(temporary)
        .map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    std::fs::rename(temporary, path).map_err(io_error)?;
    Ok(())
}

/// What delivery has lost or repaired, reported to the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub shed_batches: u64,
    pub shed_changes: u64,
    pub corrupt_records: u64,
    pub resyncs: u64,
}

fn is_hex_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn agent_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("state")).unwrap();
        let id = state.agent_id().unwrap();
        assert!(is_hex_id(&id), "{id}");
        assert_eq!(
            StateDir::open(dir.path().join("state"))
                .unwrap()
                .agent_id()
                .unwrap(),
            id
        );
    }

    #[test]
    fn the_redaction_key_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let key = state.redaction_key().unwrap();
        assert_eq!(state.redaction_key().unwrap(), key);
        let mode = std::fs::metadata(dir.path().join("redaction-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn acked_seq_round_trips_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.last_acked_seq().unwrap(), 0);
        state.set_last_acked_seq(41).unwrap();
        assert_eq!(state.last_acked_seq().unwrap(), 41);
        std::fs::write(dir.path().join("last-acked-seq"), "forty-two").unwrap();
        let error = state.last_acked_seq().unwrap_err().to_string();
        assert!(
            error.contains("last-acked-seq") && error.contains("forty-two"),
            "{error}"
        );
    }
}
