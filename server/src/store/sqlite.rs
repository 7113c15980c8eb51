//! The embedded store: one SQLite file in WAL mode, one writer connection (batches are
//! single transactions) and one reader connection so queries never wait on ingest.
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Alarm, Applied, BatchApply, CredentialInfo, DeletionOutcome, Delivery, DueGroup, Hold,
    NewCredential, NodeHello, NodeSummary, PurgeOptions, PurgeRun, RecordQuery, Scope, Store,
    StoreError, StoredRecord, TerminationOutcome, rfc3339,
};
use crate::calendar::Calendar;
use crate::console::{AlarmSetting, ConfigItem};

mod auth;
mod console;
mod retention;

pub use retention::Service;

/// Schema migrations; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: nodes and tagged records.
    "CREATE TABLE nodes (
        node_id          TEXT PRIMARY KEY,
        hostname         TEXT NOT NULL,
        agent_id         TEXT NOT NULL,
        agent_version    TEXT NOT NULL,
        first_seen       INTEGER NOT NULL,
        last_seen        INTEGER NOT NULL,
        last_applied_seq INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE records (
        node_id         TEXT NOT NULL REFERENCES nodes (node_id),
        kind            TEXT NOT NULL,
        key             TEXT NOT NULL,
        fingerprint     BLOB NOT NULL,
        fields          TEXT NOT NULL,
        observed_at     INTEGER NOT NULL,
        seq             INTEGER NOT NULL,
        removed_at      INTEGER,
        category        TEXT NOT NULL CHECK (category IN ('asset_basic_data', 'console_configuration_data')),
        policy          TEXT NOT NULL,
        collected_at    INTEGER NOT NULL,
        retain_until    INTEGER NOT NULL,
        delete_by       INTEGER,
        hosting_service TEXT NOT NULL,
        legal_hold      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (node_id, kind, key)
    ) STRICT;
    CREATE INDEX records_delete_by ON records (delete_by) WHERE delete_by IS NOT NULL;
    CREATE INDEX records_retain_until ON records (retain_until);",
    // 2: agents' delivery counters.
    "ALTER TABLE nodes ADD COLUMN shed_batches INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN shed_changes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN corrupt_records INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN spooled_batches INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN spooled_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN resyncs INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN checksum_mismatches INTEGER NOT NULL DEFAULT 0;",
    // 3: the retention lifecycle: terminations, the archive tier, deletion requests,
    // legal holds, purge runs and their audit, console configuration data.
    "ALTER TABLE nodes ADD COLUMN cluster TEXT;
    ALTER TABLE records ADD COLUMN delete_rule TEXT;
    CREATE INDEX records_hosting_service ON records (hosting_service, kind);
    CREATE TABLE archived_records (
        node_id         TEXT NOT NULL,
        kind            TEXT NOT NULL,
        key             TEXT NOT NULL,
        fingerprint     BLOB NOT NULL,
        fields          TEXT NOT NULL,
        observed_at     INTEGER NOT NULL,
        seq             INTEGER NOT NULL,
        removed_at      INTEGER,
        category        TEXT NOT NULL,
        policy          TEXT NOT NULL,
        collected_at    INTEGER NOT NULL,
        retain_until    INTEGER NOT NULL,
        delete_by       INTEGER,
        hosting_service TEXT NOT NULL,
        legal_hold      INTEGER NOT NULL DEFAULT 0,
        delete_rule     TEXT,
        archived_at     INTEGER NOT NULL,
        PRIMARY KEY (node_id, kind, key)
    ) STRICT;
    CREATE INDEX archived_records_delete_by ON archived_records (delete_by);
    CREATE INDEX archived_records_hosting_service ON archived_records (hosting_service, kind);
    CREATE TABLE console_config (
        kind            TEXT NOT NULL,
        key             TEXT NOT NULL,
        node_id         TEXT,
        fields          TEXT NOT NULL,
        version         INTEGER NOT NULL,
        category        TEXT NOT NULL CHECK (category = 'console_configuration_data'),
        policy          TEXT NOT NULL,
        collected_at    INTEGER NOT NULL,
        retain_until    INTEGER NOT NULL,
        delete_by       INTEGER,
        delete_rule     TEXT,
        hosting_service TEXT NOT NULL,
        legal_hold      INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL,
        deleted_at      INTEGER,
        PRIMARY KEY (kind, key)
    ) STRICT;
    CREATE TABLE terminations (
        hosting_service TEXT PRIMARY KEY,
        at              INTEGER NOT NULL,
        recorded_at     INTEGER NOT NULL,
        via             TEXT
    ) STRICT;
    CREATE TABLE deletion_requests (
        id                  INTEGER PRIMARY KEY,
        hosting_service     TEXT NOT NULL,
        kind                TEXT,
        key                 TEXT,
        rule                TEXT NOT NULL,
        at                  INTEGER NOT NULL,
        requested_delete_by INTEGER,
        recorded_at         INTEGER NOT NULL,
        records             INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE legal_holds (
        id              INTEGER PRIMARY KEY,
        hosting_service TEXT NOT NULL,
        kind            TEXT,
        reason          TEXT NOT NULL,
        set_at          INTEGER NOT NULL,
        cleared_at      INTEGER
    ) STRICT;
    CREATE TABLE purge_runs (
        id            INTEGER PRIMARY KEY,
        ran_at        INTEGER NOT NULL,
        as_of         INTEGER NOT NULL,
        horizon_secs  INTEGER NOT NULL,
        deleted       INTEGER NOT NULL,
        held          INTEGER NOT NULL,
        late          INTEGER NOT NULL,
        nodes_removed INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE retention_audit (
        run_id             INTEGER NOT NULL REFERENCES purge_runs (id),
        rule               TEXT NOT NULL,
        policy             TEXT NOT NULL,
        category           TEXT NOT NULL,
        hosting_service    TEXT NOT NULL,
        deleted            INTEGER NOT NULL,
        held               INTEGER NOT NULL,
        late               INTEGER NOT NULL,
        earliest_delete_by INTEGER,
        latest_delete_by   INTEGER
    ) STRICT;",
    // 4: alarms: which kinds of a node have had their first complete snapshot (new
    // records after it raise alarms), and the outbox of webhook calls.
    "CREATE TABLE kind_baselines (
        node_id TEXT NOT NULL,
        kind    TEXT NOT NULL,
        PRIMARY KEY (node_id, kind)
    ) STRICT;
    CREATE TABLE alarm_outbox (
        id           INTEGER PRIMARY KEY,
        alarm_key    TEXT NOT NULL,
        url          TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      INTEGER NOT NULL,
        delivered_at INTEGER,
        failed_at    INTEGER,
        last_error   TEXT
    ) STRICT;
    CREATE INDEX alarm_outbox_pending ON alarm_outbox (next_at) WHERE delivered_at IS NULL AND failed_at IS NULL;",
    // 5: per-agent credentials (only the SHA-256 of their secret) and the agents'
    // reported resource use.
    "CREATE TABLE credentials (
        id                TEXT PRIMARY KEY,
        secret_sha256     BLOB NOT NULL,
        node_id           TEXT NOT NULL,
        agent_id          TEXT NOT NULL,
        hostname          TEXT NOT NULL,
        enrolled_at       INTEGER NOT NULL,
        enrolled_from     TEXT NOT NULL,
        enrollment_secret TEXT NOT NULL,
        last_used         INTEGER,
        revoked_at        INTEGER,
        revoked_reason    TEXT
    ) STRICT;
    CREATE INDEX credentials_node ON credentials (node_id);
    ALTER TABLE nodes ADD COLUMN health TEXT;",
];

#[derive(Debug)]
pub struct SqliteStore {
    path: String,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        let mut writer = connect(path)?;
        migrate(&mut writer, path)?;
        let reader = connect(path)?;
        Ok(SqliteStore {
            path: path.to_string(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied
        // (SQLite rolls back an uncommitted transaction), so the connection is usable.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn connect(path: &str) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // Acks follow commits: FULL makes a commit durable before it returns.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted content is overwritten, so purged data is gone from the file's bytes.
    connection.pragma_update(None, "secure_delete", "ON")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(connection)
}

fn migrate(connection: &mut Connection, path: &str) -> Result<(), StoreError> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found: version,
            supported,
        });
    }
    if version > 0 && version < supported {
        // Migrations change a database that holds data: a copy first.
        let backup = format!("{path}.pre-migration-v{version}.bak");
        if std::path::Path::new(&backup).exists() {
            tracing::info!(backup, "pre-migration backup already present");
        } else {
            backup_to(connection, std::path::Path::new(&backup))?;
            tracing::info!(
                backup,
                from = version,
                to = supported,
                "database backed up before migration"
            );
        }
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
        tracing::info!(path, version = index + 1, "database migrated");
    }
    Ok(())
}

/// A consistent copy of the database at `to`, taken while it stays in use.
fn backup_to(connection: &Connection, to: &std::path::Path) -> Result<(), StoreError> {
    let failed = |reason: String| StoreError::Backup {
        path: to.display().to_string(),
        reason,
    };
    if to.exists() {
        return Err(failed("the file exists".into()));
    }
    let target = to
        .to_str()
        .ok_or_else(|| failed("the path is not UTF-8".into()))?;
    connection
        .execute("VACUUM INTO ?1", [target])
        .map_err(|error| failed(error.to_string()))?;
    Ok(())
}

/// [`terminated`] for a node by its stored cluster (none when it never said Hello).
fn known_node_terminated(connection: &Connection, node: &str) -> Result<(), StoreError> {
    let cluster: Option<String> = connection
        .query_row(
            "SELECT cluster FROM nodes WHERE node_id = ?1",
            [node],
            |row| row.get(0),
        )
        .optional()?
        .flatten();
    terminated(connection, node, cluster.as_deref())
}

/// Refuses a node whose hosting service (or cluster) was terminated.
fn terminated(
    connection: &Connection,
    node: &str,
    cluster: Option<&str>,
) -> Result<(), StoreError> {
    match retention::termination_of(connection, node, cluster)? {
        Some((service, at)) => Err(StoreError::Terminated {
            node: node.to_string(),
            service,
            at: rfc3339(at),
        }),
        None => Ok(()),
    }
}

impl Store for SqliteStore {
    fn hello(&self, hello: &NodeHello, now_ms: i64) -> Result<u64, StoreError> {
        let connection = self.writer();
        terminated(&connection, &hello.node_id, hello.cluster.as_deref())?;
        let seq: i64 = connection.query_row(
            "INSERT INTO nodes (node_id, hostname, agent_id, agent_version, first_seen, last_seen, cluster)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)
             ON CONFLICT (node_id) DO UPDATE SET
                hostname = excluded.hostname, agent_id = excluded.agent_id,
                agent_version = excluded.agent_version, last_seen = excluded.last_seen,
                cluster = excluded.cluster
             RETURNING last_applied_seq",
            params![
                hello.node_id,
                hello.hostname,
                hello.agent_id,
                hello.agent_version,
                now_ms,
                hello.cluster
            ],
            |row| row.get(0),
        )?;
        Ok(seq as u64)
    }

    fn apply(&self, batch: &BatchApply) -> Result<Applied, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (last, cluster): (i64, Option<String>) = transaction
            .query_row(
                "SELECT last_applied_seq, cluster FROM nodes WHERE node_id = ?1",
                [&batch.node_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownNode(batch.node_id.clone()))?;
        // A stream opened before its node's termination writes nothing after it.
        terminated(&transaction, &batch.node_id, cluster.as_deref())?;
        if batch.seq <= last as u64 {
            return Ok(Applied {
                duplicate: true,
                ..Applied::default()
            });
        }
        let seq = batch.seq as i64;
        let mut applied = Applied::default();
        {
            let mut touch = transaction.prepare_cached(
                "UPDATE records SET seq = ?1, observed_at = ?2, fields = ?7
                 WHERE node_id = ?3 AND kind = ?4 AND key = ?5 AND fingerprint = ?6 AND removed_at IS NULL",
            )?;
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO records (node_id, kind, key, fingerprint, fields, observed_at, seq, removed_at,
                    category, policy, collected_at, retain_until, delete_by, hosting_service, legal_hold)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9, ?10, ?11, ?12, ?13,
                    EXISTS (SELECT 1 FROM legal_holds h WHERE h.cleared_at IS NULL
                        AND h.hosting_service = ?13 AND (h.kind IS NULL OR h.kind = ?2)))
                 ON CONFLICT (node_id, kind, key) DO UPDATE SET
                    fingerprint = excluded.fingerprint, fields = excluded.fields,
                    observed_at = excluded.observed_at, seq = excluded.seq, removed_at = NULL,
                    category = excluded.category, policy = excluded.policy,
                    collected_at = excluded.collected_at, retain_until = excluded.retain_until,
                    delete_by = excluded.delete_by, delete_rule = NULL,
                    hosting_service = excluded.hosting_service",
            )?;
            let mut remove = transaction.prepare_cached(
                "UPDATE records SET removed_at = ?1, seq = ?2
                 WHERE node_id = ?3 AND kind = ?4 AND key = ?5 AND removed_at IS NULL",
            )?;
            let mut sweep = transaction.prepare_cached(
                "UPDATE records SET removed_at = ?1
                 WHERE node_id = ?2 AND kind = ?3 AND removed_at IS NULL AND seq < ?4",
            )?;
            let alarms = console::alarm_settings(&transaction)?;
            let mut live = transaction.prepare_cached(
                "SELECT 1 FROM records WHERE node_id = ?1 AND kind = ?2 AND key = ?3 AND removed_at IS NULL",
            )?;
            let mut baseline = transaction
                .prepare_cached("SELECT 1 FROM kind_baselines WHERE node_id = ?1 AND kind = ?2")?;
            for kind in &batch.kinds {
                // New records raise alarms once the kind's first snapshot is in.
                let watching: Vec<&(String, AlarmSetting)> = alarms
                    .iter()
                    .filter(|(_, a)| {
                        a.kind == kind.kind && a.node.as_ref().is_none_or(|n| *n == batch.node_id)
                    })
                    .collect();
                let watching = if !watching.is_empty()
                    && baseline.exists(params![batch.node_id, kind.kind])?
                {
                    watching
                } else {
                    Vec::new()
                };
                for record in &kind.upserts {
                    // Same fingerprint: the same state, tags kept; volatile values refreshed.
                    let touched = touch.execute(params![
                        seq,
                        record.observed_at_ms,
                        batch.node_id,
                        kind.kind,
                        record.key,
                        record.fingerprint,
                        record.fields
                    ])?;
                    if touched > 0 {
                        applied.unchanged += 1;
                        continue;
                    }
                    let tags = &record.tags;
                    if !watching.is_empty()
                        && !live.exists(params![batch.node_id, kind.kind, record.key])?
                    {
                        console::raise_alarms(
                            &transaction,
                            &watching,
                            &batch.node_id,
                            &kind.kind,
                            record,
                            batch.received_at_ms,
                        )?;
                    }
                    upsert.execute(params![
                        batch.node_id,
                        kind.kind,
                        record.key,
                        record.fingerprint,
                        record.fields,
                        record.observed_at_ms,
                        seq,
                        tags.category.as_str(),
                        tags.policy,
                        tags.collected_at.as_millisecond(),
                        tags.retain_until.as_millisecond(),
                        tags.delete_by.map(|t| t.as_millisecond()),
                        tags.hosting_service,
                    ])?;
                    applied.upserted += 1;
                }
                for key in &kind.removes {
                    applied.removed += remove.execute(params![
                        batch.received_at_ms,
                        seq,
                        batch.node_id,
                        kind.kind,
                        key
                    ])?;
                }
                if kind.complete_from_seq > 0 {
                    applied.removed += sweep.execute(params![
                        batch.received_at_ms,
                        batch.node_id,
                        kind.kind,
                        kind.complete_from_seq as i64
                    ])?;
                    transaction.execute(
                        "INSERT OR IGNORE INTO kind_baselines (node_id, kind) VALUES (?1, ?2)",
                        params![batch.node_id, kind.kind],
                    )?;
                }
            }
        }
        transaction.execute(
            "UPDATE nodes SET last_applied_seq = ?1, last_seen = ?2 WHERE node_id = ?3",
            params![seq, batch.received_at_ms, batch.node_id],
        )?;
        transaction.commit()?;
        Ok(applied)
    }

    fn nodes(&self) -> Result<Vec<NodeSummary>, StoreError> {
        let connection = self.reader();
        let transaction = connection.unchecked_transaction()?;
        let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        {
            let mut statement = transaction.prepare_cached(
                "SELECT node_id, kind, count(*) FROM records WHERE removed_at IS NULL GROUP BY node_id, kind",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)?))
            })?;
            for row in rows {
                let (node, kind, count): (String, String, i64) = row?;
                counts.entry(node).or_default().insert(kind, count as u64);
            }
        }
        let mut statement = transaction.prepare_cached(
            "SELECT node_id, hostname, agent_id, agent_version, first_seen, last_seen, last_applied_seq,
                shed_batches, shed_changes, corrupt_records, spooled_batches, spooled_bytes, resyncs,
                checksum_mismatches, cluster,
                (SELECT at FROM terminations t WHERE t.hosting_service = 'node:' || nodes.node_id),
                health
             FROM nodes ORDER BY node_id",
        )?;
        let nodes = statement
            .query_map([], |row| {
                let id: String = row.get(0)?;
                Ok(NodeSummary {
                    record_counts: counts.remove(&id).unwrap_or_default(),
                    id,
                    hostname: row.get(1)?,
                    agent_id: row.get(2)?,
                    agent_version: row.get(3)?,
                    first_seen: rfc3339(row.get(4)?),
                    last_seen: rfc3339(row.get(5)?),
                    last_applied_seq: row.get::<_, i64>(6)? as u64,
                    delivery: Delivery {
                        shed_batches: row.get::<_, i64>(7)? as u64,
                        shed_changes: row.get::<_, i64>(8)? as u64,
                        corrupt_records: row.get::<_, i64>(9)? as u64,
                        spooled_batches: row.get::<_, i64>(10)? as u64,
                        spooled_bytes: row.get::<_, i64>(11)? as u64,
                        resyncs: row.get::<_, i64>(12)? as u64,
                        checksum_mismatches: row.get::<_, i64>(13)? as u64,
                    },
                    cluster: row.get(14)?,
                    terminated_at: row.get::<_, Option<i64>>(15)?.map(rfc3339),
                    health: row
                        .get::<_, Option<String>>(16)?
                        .and_then(|text| serde_json::from_str(&text).ok()),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(nodes)
    }

    fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let connection = self.reader();
        let pattern = query.q.as_ref().map(|q| format!("%{}%", escape_like(q)));
        let table = if query.archived {
            "archived_records"
        } else {
            "records"
        };
        let mut statement = connection.prepare_cached(&format!(
            "SELECT node_id, kind, key, fingerprint, fields, observed_at, category, policy, collected_at,
                    retain_until, delete_by, hosting_service, legal_hold, removed_at, delete_rule
             FROM {table}
             WHERE (?1 IS NULL OR node_id = ?1)
               AND (?2 IS NULL OR kind = ?2)
               AND (?3 IS NULL OR key LIKE ?3 ESCAPE '\\' OR fields LIKE ?3 ESCAPE '\\')
               AND (?4 OR removed_at IS NULL)
             ORDER BY node_id, kind, key
             LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = statement.query_map(
            params![
                query.node,
                query.kind,
                pattern,
                query.include_removed,
                query.limit,
                query.offset
            ],
            |row| {
                let fields: String = row.get(4)?;
                Ok((
                    fields,
                    StoredRecord {
                        node: row.get(0)?,
                        kind: row.get(1)?,
                        key: row.get(2)?,
                        fingerprint: hex::encode(row.get::<_, Vec<u8>>(3)?),
                        fields: serde_json::Value::Null,
                        observed_at: rfc3339(row.get(5)?),
                        category: row.get(6)?,
                        policy: row.get(7)?,
                        collected_at: rfc3339(row.get(8)?),
                        retain_until: rfc3339(row.get(9)?),
                        delete_by: row.get::<_, Option<i64>>(10)?.map(rfc3339),
                        hosting_service: row.get(11)?,
                        legal_hold: row.get(12)?,
                        removed_at: row.get::<_, Option<i64>>(13)?.map(rfc3339),
                        delete_rule: row.get(14)?,
                    },
                ))
            },
        )?;
        rows.map(|row| {
            let (fields, mut record) = row?;
            record.fields = serde_json::from_str(&fields).map_err(|error| {
                StoreError::Corrupt(format!("fields of {} {}: {error}", record.kind, record.key))
            })?;
            Ok(record)
        })
        .collect()
    }

    fn report_delivery(&self, node_id: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let as_i64 = |v: u64| v.min(i64::MAX as u64) as i64;
        self.writer().execute(
            "UPDATE nodes SET shed_batches = ?1, shed_changes = ?2, corrupt_records = ?3,
                spooled_batches = ?4, spooled_bytes = ?5, resyncs = ?6
             WHERE node_id = ?7",
            params![
                as_i64(delivery.shed_batches),
                as_i64(delivery.shed_changes),
                as_i64(delivery.corrupt_records),
                as_i64(delivery.spooled_batches),
                as_i64(delivery.spooled_bytes),
                as_i64(delivery.resyncs),
                node_id
            ],
        )?;
        Ok(())
    }

    fn checksums(
        &self,
        node_id: &str,
        kinds: &[String],
    ) -> Result<BTreeMap<String, census_proto::KindDigest>, StoreError> {
        let connection = self.reader();
        let transaction = connection.unchecked_transaction()?;
        // A terminated node is never asked to resend what was archived.
        known_node_terminated(&transaction, node_id)?;
        let mut digests = BTreeMap::new();
        let mut statement = transaction.prepare_cached(
            "SELECT key, fingerprint FROM records
             WHERE node_id = ?1 AND kind = ?2 AND removed_at IS NULL",
        )?;
        for kind in kinds {
            let mut digest = census_proto::KindDigest::default();
            let mut rows = statement.query(params![node_id, kind])?;
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                let fingerprint: Vec<u8> = row.get(1)?;
                digest.add(&key, &fingerprint);
            }
            digests.insert(kind.clone(), digest);
        }
        Ok(digests)
    }

    fn count_mismatches(&self, node_id: &str, count: u64) -> Result<(), StoreError> {
        self.writer().execute(
            "UPDATE nodes SET checksum_mismatches = checksum_mismatches + ?1 WHERE node_id = ?2",
            params![count.min(i64::MAX as u64) as i64, node_id],
        )?;
        Ok(())
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.reader().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn terminate(
        &self,
        hosting_service: &str,
        at: Timestamp,
        calendar: &Calendar,
        now: Timestamp,
    ) -> Result<TerminationOutcome, StoreError> {
        retention::terminate(&mut self.writer(), hosting_service, at, calendar, now)
    }

    fn request_deletion(
        &self,
        scope: &Scope,
        at: Timestamp,
        requested: Option<Timestamp>,
        calendar: &Calendar,
        now: Timestamp,
    ) -> Result<DeletionOutcome, StoreError> {
        retention::request_deletion(&mut self.writer(), scope, at, requested, calendar, now)
    }

    fn set_hold(&self, scope: &Scope, reason: &str, now: Timestamp) -> Result<Hold, StoreError> {
        retention::set_hold(&mut self.writer(), scope, reason, now)
    }

    fn clear_hold(&self, id: i64, now: Timestamp) -> Result<Hold, StoreError> {
        retention::clear_hold(&mut self.writer(), id, now)
    }

    fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        retention::holds(&self.reader())
    }

    fn due(&self, before: Timestamp) -> Result<Vec<DueGroup>, StoreError> {
        retention::due(&self.reader(), before)
    }

    fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError> {
        retention::next_deadline(&self.reader())
    }

    fn purge(&self, options: &PurgeOptions) -> Result<PurgeRun, StoreError> {
        retention::purge(&mut self.writer(), options)
    }

    fn audit(&self, limit: u32) -> Result<Vec<PurgeRun>, StoreError> {
        retention::audit(&self.reader(), limit)
    }

    fn backup(&self, to: &std::path::Path) -> Result<(), StoreError> {
        backup_to(&self.reader(), to)
    }

    fn put_config(
        &self,
        kind: &str,
        key: &str,
        fields: &serde_json::Value,
        now: Timestamp,
    ) -> Result<(ConfigItem, bool), StoreError> {
        console::put(&mut self.writer(), kind, key, fields, now)
    }

    fn config_items(
        &self,
        kind: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<ConfigItem>, StoreError> {
        console::items(&self.reader(), kind, key)
    }

    fn enroll(&self, credential: &NewCredential, now: Timestamp) -> Result<(), StoreError> {
        let connection = self.writer();
        known_node_terminated(&connection, &credential.node_id)?;
        auth::enroll(&connection, credential, now)
    }

    fn credential(&self, id: &str) -> Result<Option<CredentialInfo>, StoreError> {
        auth::credential(&self.reader(), id)
    }

    fn credentials(&self, node: Option<&str>) -> Result<Vec<CredentialInfo>, StoreError> {
        auth::credentials(&self.reader(), node)
    }

    fn credential_used(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        auth::used(&self.writer(), id, now)
    }

    fn revoke_credential(
        &self,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<CredentialInfo, StoreError> {
        auth::revoke(&mut self.writer(), id, reason, now)
    }

    fn report_health(&self, node_id: &str, health: &serde_json::Value) -> Result<(), StoreError> {
        self.writer().execute(
            "UPDATE nodes SET health = ?1 WHERE node_id = ?2",
            params![health.to_string(), node_id],
        )?;
        Ok(())
    }

    fn pending_alarms(&self, now: Timestamp, limit: u32) -> Result<Vec<Alarm>, StoreError> {
        console::pending_alarms(&self.reader(), now, limit)
    }

    fn alarm_attempted(
        &self,
        id: i64,
        result: Result<(), String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        console::alarm_attempted(&self.writer(), id, result, now)
    }

    fn verify(&self) -> Result<(), StoreError> {
        let result: String = self
            .reader()
            .query_row("PRAGMA quick_check", [], |row| row.get(0))?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "{}: integrity check failed: {result}",
                self.path
            )))
        }
    }
}

/// Escapes LIKE wildcards so `q` matches literally.
fn escape_like(q: &str) -> String {
    let mut escaped = String::with_capacity(q.len());
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;
    use crate::store::{KindApply, TaggedRecord};

    const HOUR_MS: i64 = 3_600_000;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("census.db").to_str().unwrap()).unwrap();
        let hello = NodeHello {
            node_id: "n1".into(),
            hostname: "web-1".into(),
            agent_id: "a1".into(),
            agent_version: "0.1.0".into(),
            cluster: None,
        };
        assert_eq!(store.hello(&hello, 0).unwrap(), 0);
        (dir, store)
    }

    fn record(key: &str, fingerprint: u8, collected_ms: i64) -> TaggedRecord {
        let collected = jiff::Timestamp::from_millisecond(collected_ms).unwrap();
        TaggedRecord {
            key: key.into(),
            fingerprint: vec![fingerprint; 32],
            fields: format!(r#"{{"name":"{key}","version":"{fingerprint}"}}"#),
            observed_at_ms: collected_ms,
            tags: policy::tag("package", collected, "node:n1").unwrap(),
        }
    }

    fn batch(
        seq: u64,
        at_ms: i64,
        upserts: Vec<TaggedRecord>,
        removes: &[&str],
        complete_from_seq: u64,
    ) -> BatchApply {
        BatchApply {
            node_id: "n1".into(),
            seq,
            received_at_ms: at_ms,
            kinds: vec![KindApply {
                kind: "package".into(),
                upserts,
                removes: removes.iter().map(|k| k.to_string()).collect(),
                complete_from_seq,
            }],
        }
    }

    fn live(store: &SqliteStore) -> Vec<(String, String, String)> {
        let query = RecordQuery {
            limit: 100,
            ..Default::default()
        };
        store
            .records(&query)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.key,
                    r.fields["version"].as_str().unwrap().to_string(),
                    r.collected_at,
                )
            })
            .collect()
    }

    #[test]
    fn upserts_are_idempotent_and_keep_tags_of_unchanged_records() {
        let (_dir, store) = store();
        let first = store
            .apply(&batch(
                1,
                0,
                vec![record("a", 1, 0), record("b", 1, 0)],
                &[],
                1,
            ))
            .unwrap();
        assert_eq!((first.upserted, first.unchanged), (2, 0));
        // Same batch again: a duplicate seq is acknowledged without effect.
        assert!(
            store
                .apply(&batch(1, 0, vec![record("a", 9, 0)], &[], 0))
                .unwrap()
                .duplicate
        );
        // A later snapshot: a unchanged (collected_at kept), b changed (re-tagged).
        let later = 5 * HOUR_MS;
        let second = store
            .apply(&batch(
                2,
                later,
                vec![record("a", 1, later), record("b", 2, later)],
                &[],
                2,
            ))
            .unwrap();
        assert_eq!(
            (second.upserted, second.unchanged, second.removed),
            (1, 1, 0)
        );
        assert_eq!(
            live(&store),
            [
                ("a".into(), "1".into(), rfc3339(0)),
                ("b".into(), "2".into(), rfc3339(later)),
            ]
        );
    }

    #[test]
    fn volatile_values_refresh_without_recollecting() {
        let (_dir, store) = store();
        store
            .apply(&batch(1, 0, vec![record("a", 1, 0)], &[], 1))
            .unwrap();
        let mut refreshed = record("a", 1, 7 * HOUR_MS);
        refreshed.fields = r#"{"name":"a","version":"1","load":3.5}"#.into();
        let applied = store
            .apply(&batch(2, 7 * HOUR_MS, vec![refreshed], &[], 0))
            .unwrap();
        assert_eq!((applied.upserted, applied.unchanged), (0, 1));
        let query = RecordQuery {
            limit: 1,
            ..Default::default()
        };
        let stored = store.records(&query).unwrap().remove(0);
        assert_eq!(stored.fields["load"], 3.5);
        assert_eq!(
            stored.collected_at,
            rfc3339(0),
            "same state: tags and retention kept"
        );
    }

    #[test]
    fn removes_and_sweeps_leave_records_retained_but_not_live() {
        let (_dir, store) = store();
        store
            .apply(&batch(
                1,
                0,
                vec![record("a", 1, 0), record("b", 1, 0), record("c", 1, 0)],
                &[],
                1,
            ))
            .unwrap();
        let removed = store
            .apply(&batch(2, HOUR_MS, vec![], &["a", "missing"], 0))
            .unwrap();
        assert_eq!(removed.removed, 1);
        // A snapshot over seqs 3..=4 naming only c sweeps b.
        store
            .apply(&batch(3, 2 * HOUR_MS, vec![record("c", 1, 0)], &[], 0))
            .unwrap();
        let swept = store.apply(&batch(4, 2 * HOUR_MS, vec![], &[], 3)).unwrap();
        assert_eq!(swept.removed, 1);
        assert_eq!(
            live(&store).into_iter().map(|r| r.0).collect::<Vec<_>>(),
            ["c"]
        );

        let all = store
            .records(&RecordQuery {
                limit: 10,
                include_removed: true,
                ..Default::default()
            })
            .unwrap();
        let a = all.iter().find(|r| r.key == "a").unwrap();
        assert_eq!(a.removed_at.as_deref(), Some(rfc3339(HOUR_MS).as_str()));
        assert_eq!(a.category, "asset_basic_data");
        assert_eq!(
            a.retain_until,
            rfc3339(180 * 24 * HOUR_MS),
            "removal keeps the retention floor"
        );
        // A record that comes back is live again.
        store
            .apply(&batch(
                5,
                3 * HOUR_MS,
                vec![record("a", 1, 3 * HOUR_MS)],
                &[],
                0,
            ))
            .unwrap();
        assert_eq!(live(&store).len(), 2);
    }

    #[test]
    fn batches_for_unknown_nodes_store_nothing() {
        let (_dir, store) = store();
        let mut stray = batch(1, 0, vec![record("a", 1, 0)], &[], 0);
        stray.node_id = "never-said-hello".into();
        assert!(matches!(
            store.apply(&stray),
            Err(StoreError::UnknownNode(_))
        ));
        assert!(live(&store).is_empty());
    }

    #[test]
    fn queries_filter_by_node_kind_and_literal_substring() {
        let (_dir, store) = store();
        store
            .apply(&batch(
                1,
                0,
                vec![
                    record("openssl", 1, 0),
                    record("libssl3", 1, 0),
                    record("100%_x", 1, 0),
                ],
                &[],
                1,
            ))
            .unwrap();
        let find = |q: &str| {
            let query = RecordQuery {
                q: Some(q.into()),
                kind: Some("package".into()),
                node: Some("n1".into()),
                limit: 10,
                ..Default::default()
            };
            store
                .records(&query)
                .unwrap()
                .into_iter()
                .map(|r| r.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(find("SSL"), ["libssl3", "openssl"]);
        assert_eq!(find("%_"), ["100%_x"]);
        assert_eq!(store.nodes().unwrap()[0].record_counts["package"], 3);
        assert_eq!(store.nodes().unwrap()[0].last_applied_seq, 1);
    }

    #[test]
    fn reopening_keeps_data_and_refuses_newer_schemas() {
        let (dir, store) = store();
        store
            .apply(&batch(1, 0, vec![record("a", 1, 0)], &[], 1))
            .unwrap();
        drop(store);
        let path = dir.path().join("census.db");
        let reopened = SqliteStore::open(path.to_str().unwrap()).unwrap();
        assert_eq!(live(&reopened).len(), 1);
        reopened
            .writer()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(reopened);
        let error = SqliteStore::open(path.to_str().unwrap()).unwrap_err();
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }

    #[test]
    fn migrating_a_database_with_data_backs_it_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A database as an older collector left it: schema version 2, one node.
            let connection = Connection::open(&path).unwrap();
            for migration in &MIGRATIONS[..2] {
                connection.execute_batch(migration).unwrap();
            }
            connection.pragma_update(None, "user_version", 2).unwrap();
            connection
                .execute(
                    "INSERT INTO nodes (node_id, hostname, agent_id, agent_version, first_seen, last_seen)
                     VALUES ('old', 'h', 'a', 'v', 0, 0)",
                    [],
                )
                .unwrap();
        }
        let store = SqliteStore::open(path.to_str().unwrap()).unwrap();
        assert_eq!(store.nodes().unwrap().len(), 1);
        let backup = dir.path().join("old.db.pre-migration-v2.bak");
        let copy = Connection::open(&backup).unwrap();
        let version: i64 = copy
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 2);
        let nodes: i64 = copy
            .query_row("SELECT COUNT(*) FROM nodes", [], |row| row.get(0))
            .unwrap();
        assert_eq!(nodes, 1);
        // A fresh database has nothing to back up.
        SqliteStore::open(dir.path().join("new.db").to_str().unwrap()).unwrap();
        assert!(!dir.path().join("new.db.pre-migration-v0.bak").exists());
    }
}
