//! Purge runs as the DPSA rules want them: a backup before the bulk delete, the purge
//! with its audit, an integrity check, then the backup dropped so deleted data does not
//! outlive its deadline in a copy (unless the operator keeps it).
use std::path::PathBuf;

use jiff::Timestamp;

use crate::store::{PurgeOptions, PurgeRun, Store, StoreError, sqlite_path};

/// What a purge did, and where its backup is if it was kept.
#[derive(Debug)]
pub struct Purged {
    pub run: PurgeRun,
    pub backup: Option<PathBuf>,
}

/// Runs a purge of the store at `db` (its `--db` URL). A dry run only counts.
pub fn purge(
    store: &dyn Store,
    db: &str,
    options: PurgeOptions,
    keep_backup: bool,
) -> Result<Purged, StoreError> {
    if options.dry_run {
        return Ok(Purged {
            run: store.purge(&options)?,
            backup: None,
        });
    }
    // A backup only when some deadline has come: a purge that deletes nothing is cheap.
    let limit = options
        .now
        .saturating_add(options.horizon)
        .unwrap_or(Timestamp::MAX);
    let due = store.next_deadline()?.is_some_and(|next| next <= limit);
    let backup = match sqlite_path(db) {
        Some(path) if due => {
            let stamp = Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ");
            let backup = PathBuf::from(format!("{path}.pre-purge-{stamp}.bak"));
            store.backup(&backup)?;
            tracing::info!(backup = %backup.display(), "database backed up before purge");
            Some(backup)
        }
        _ => None,
    };
    let run = store.purge(&options)?;
    store.verify()?;
    let backup = match backup {
        Some(backup) if !keep_backup => {
            if let Err(error) = std::fs::remove_file(&backup) {
                tracing::warn!(%error, backup = %backup.display(), "cannot remove the pre-purge backup: it still holds purged data");
                Some(backup)
            } else {
                None
            }
        }
        backup => backup,
    };
    Ok(Purged { run, backup })
}
