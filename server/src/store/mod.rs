//! Storage of nodes and tagged records. One trait, one file per backend.
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::calendar::Calendar;
use crate::console::ConfigItem;
use crate::policy::{Rule, Tags};

pub mod sqlite;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The `--db` URL names no backend census has.
    #[error("unsupported database URL {0:?}: expected sqlite:PATH")]
    UnsupportedUrl(String),
    /// The database was written by a newer census with a schema this one does not know.
    #[error("database {path} has schema version {found}, newer than this collector's {supported}")]
    SchemaTooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    /// A batch arrived for a node that never said Hello.
    #[error("unknown node {0:?}: a stream must start with Hello")]
    UnknownNode(String),
    /// The database engine failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// What a request names does not exist (node, cluster, hold, records).
    #[error("{0}")]
    NotFound(String),
    /// A request conflicts with what is stored: a hosting service already terminated,
    /// a deadline before the retention floor.
    #[error("{0}")]
    Conflict(String),
    /// The node's hosting service was terminated: its agent may no longer write.
    #[error("node {node} was terminated at {at} ({service}); its records are archived")]
    Terminated {
        node: String,
        service: String,
        at: String,
    },
    /// A backup could not be written.
    #[error("cannot back up to {path}: {reason}")]
    Backup { path: String, reason: String },
}

/// A node introducing itself at the start of a stream.
#[derive(Debug, Clone)]
pub struct NodeHello {
    pub node_id: String,
    pub hostname: String,
    pub agent_id: String,
    pub agent_version: String,
    /// Kubernetes cluster the node belongs to, if any.
    pub cluster: Option<String>,
}

/// A record ready to store: validated and tagged.
#[derive(Debug, Clone)]
pub struct TaggedRecord {
    pub key: String,
    pub fingerprint: Vec<u8>,
    /// The record's fields as a JSON object.
    pub fields: String,
    pub observed_at_ms: i64,
    /// Tags for this state of the record; kept as they are when the stored record
    /// already has the same fingerprint.
    pub tags: Tags,
}

/// Changes to one kind within a batch.
#[derive(Debug, Clone)]
pub struct KindApply {
    pub kind: String,
    pub upserts: Vec<TaggedRecord>,
    pub removes: Vec<String>,
    /// Non-zero: records of the kind last upserted before this seq are removed.
    pub complete_from_seq: u64,
}

/// One agent batch, validated and tagged.
#[derive(Debug, Clone)]
pub struct BatchApply {
    pub node_id: String,
    pub seq: u64,
    pub kinds: Vec<KindApply>,
    pub received_at_ms: i64,
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The batch's seq was already applied: nothing was done.
    pub duplicate: bool,
    /// Records inserted or changed.
    pub upserted: usize,
    /// Upserts whose fingerprint was already stored.
    pub unchanged: usize,
    /// Records that left the node (removes and complete-kind sweeps).
    pub removed: usize,
}

/// A node as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeSummary {
    pub id: String,
    pub hostname: String,
    pub agent_id: String,
    pub agent_version: String,
    pub first_seen: String,
    pub last_seen: String,
    pub last_applied_seq: u64,
    /// Live (not removed) records per kind.
    pub record_counts: BTreeMap<String, u64>,
    /// The agent's delivery counters as last reported.
    pub delivery: Delivery,
    pub cluster: Option<String>,
    /// When its hosting service was terminated; its records are then archived.
    pub terminated_at: Option<String>,
    /// The agent's resource use against its budget, as last reported.
    pub health: Option<serde_json::Value>,
}

/// An agent's delivery counters (what it shed, found damaged, or resent whole) and
/// the kinds the collector asked it to resend after a checksum mismatch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub shed_batches: u64,
    pub shed_changes: u64,
    pub corrupt_records: u64,
    pub spooled_batches: u64,
    pub spooled_bytes: u64,
    pub resyncs: u64,
    /// Kinds found to differ by checksum, counted by the collector.
    pub checksum_mismatches: u64,
}

/// Filters of `GET /api/v1/records`.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    pub node: Option<String>,
    pub kind: Option<String>,
    /// Substring of the key or of the fields' JSON, case-insensitive for ASCII.
    pub q: Option<String>,
    pub limit: u32,
    pub offset: u32,
    /// Also return records that have left their node but are still retained.
    pub include_removed: bool,
    /// Query the archive tier (records of terminated hosting services) instead.
    pub archived: bool,
}

/// A stored record as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredRecord {
    pub node: String,
    pub kind: String,
    pub key: String,
    pub fingerprint: String,
    pub fields: serde_json::Value,
    pub observed_at: String,
    pub category: String,
    pub policy: String,
    pub collected_at: String,
    pub retain_until: String,
    pub delete_by: Option<String>,
    pub hosting_service: String,
    pub legal_hold: bool,
    /// When the record left its node; `None` while it is there.
    pub removed_at: Option<String>,
    /// The rule that set `delete_by`.
    pub delete_rule: Option<String>,
}

/// Records a retention request applies to: a hosting service (`node:ID`,
/// `cluster:NAME` or `feature` for console configuration), optionally one kind, and
/// optionally one key of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub hosting_service: String,
    pub kind: Option<String>,
    pub key: Option<String>,
}

/// What a termination did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TerminationOutcome {
    pub hosting_service: String,
    pub at: String,
    /// Nodes terminated with it (the node itself, or every node of a cluster).
    pub nodes: Vec<String>,
    /// Records given a deadline (moved to the archive tier, for asset data).
    pub records: u64,
    pub earliest_delete_by: Option<String>,
    pub latest_delete_by: Option<String>,
}

/// What a deletion request did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeletionOutcome {
    pub id: i64,
    pub rule: Rule,
    pub at: String,
    pub records: u64,
    pub earliest_delete_by: Option<String>,
    pub latest_delete_by: Option<String>,
}

/// A legal hold: while set, the records in its scope are not deleted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hold {
    pub id: i64,
    pub hosting_service: String,
    pub kind: Option<String>,
    pub reason: String,
    pub set_at: String,
    pub cleared_at: Option<String>,
    /// Records the hold covers now.
    pub records: u64,
}

/// Records due for deletion, grouped by hosting service, category and rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DueGroup {
    pub hosting_service: String,
    pub category: String,
    pub rule: String,
    pub policy: String,
    /// `live`, `archive` or `console`.
    pub tier: String,
    pub records: u64,
    /// Of those, records a legal hold keeps.
    pub held: u64,
    pub earliest_delete_by: String,
    pub latest_delete_by: String,
}

/// A purge run's settings.
#[derive(Debug, Clone, Copy)]
pub struct PurgeOptions {
    /// The purge's notion of now: nothing retained until later is deleted.
    pub now: Timestamp,
    /// Records whose deadline falls within this of `now` go too, so a purge scheduled
    /// every `horizon` deletes before deadlines, not after.
    pub horizon: SignedDuration,
    /// Count what would go; delete nothing, write no audit.
    pub dry_run: bool,
}

/// One audit entry: what a purge run deleted under one rule, policy, category and
/// hosting service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub rule: String,
    pub policy: String,
    pub category: String,
    pub hosting_service: String,
    pub deleted: u64,
    /// Due records a legal hold kept.
    pub held: u64,
    /// Deleted more than a minute after their deadline.
    pub late: u64,
    pub earliest_delete_by: Option<String>,
    pub latest_delete_by: Option<String>,
}

/// A purge run and its audit entries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PurgeRun {
    /// `None` for a dry run (nothing written).
    pub id: Option<i64>,
    pub ran_at: String,
    pub as_of: String,
    pub horizon_secs: i64,
    pub dry_run: bool,
    pub deleted: u64,
    pub held: u64,
    pub late: u64,
    /// Node rows removed once all their records were gone.
    pub nodes_removed: u64,
    pub entries: Vec<AuditEntry>,
}

/// A census store. Calls block: async callers run them on the blocking pool.
pub trait Store: Send + Sync + 'static {
    /// Registers or refreshes a node; returns the last batch seq applied for it.
    fn hello(&self, hello: &NodeHello, now_ms: i64) -> Result<u64, StoreError>;
    /// Applies a batch atomically and idempotently.
    fn apply(&self, batch: &BatchApply) -> Result<Applied, StoreError>;
    fn nodes(&self) -> Result<Vec<NodeSummary>, StoreError>;
    fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError>;
    /// Checks the store answers (health checks).
    fn ping(&self) -> Result<(), StoreError>;
    /// Records the agent's reported delivery counters (all but `checksum_mismatches`).
    fn report_delivery(&self, node_id: &str, delivery: &Delivery) -> Result<(), StoreError>;
    /// Count and digest of the live records of each of `kinds` for the node.
    fn checksums(
        &self,
        node_id: &str,
        kinds: &[String],
    ) -> Result<BTreeMap<String, census_proto::KindDigest>, StoreError>;
    /// Adds `count` kinds found to differ to the node's counters.
    fn count_mismatches(&self, node_id: &str, count: u64) -> Result<(), StoreError>;

    /// Terminates a hosting service (`node:ID`, `cluster:NAME` or `feature`) at `at`:
    /// its records get their deadline under the matching rule, and asset data moves to
    /// the archive tier. Nothing changes when it fails.
    fn terminate(
        &self,
        hosting_service: &str,
        at: Timestamp,
        calendar: &Calendar,
        now: Timestamp,
    ) -> Result<TerminationOutcome, StoreError>;
    /// Records a deletion request made at `at` for the records in `scope`; `requested`
    /// is the deadline the requester asks for, refused when the floor forbids it.
    fn request_deletion(
        &self,
        scope: &Scope,
        at: Timestamp,
        requested: Option<Timestamp>,
        calendar: &Calendar,
        now: Timestamp,
    ) -> Result<DeletionOutcome, StoreError>;
    /// Sets a legal hold on the records in `scope` (its key is ignored).
    fn set_hold(&self, scope: &Scope, reason: &str, now: Timestamp) -> Result<Hold, StoreError>;
    /// Clears a legal hold; records no other hold covers may be deleted again.
    fn clear_hold(&self, id: i64, now: Timestamp) -> Result<Hold, StoreError>;
    fn holds(&self) -> Result<Vec<Hold>, StoreError>;
    /// Records whose deadline is at or before `before`.
    fn due(&self, before: Timestamp) -> Result<Vec<DueGroup>, StoreError>;
    /// The earliest deadline of a record no legal hold keeps.
    fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Deletes, for real and in batches, every record whose deadline has come (see
    /// [`PurgeOptions`]) and no legal hold keeps; writes the audit entries.
    fn purge(&self, options: &PurgeOptions) -> Result<PurgeRun, StoreError>;
    /// Purge runs, newest first, with their entries.
    fn audit(&self, limit: u32) -> Result<Vec<PurgeRun>, StoreError>;
    /// Writes a consistent copy of the database to `to` while it stays in use.
    fn backup(&self, to: &std::path::Path) -> Result<(), StoreError>;
    /// Checks the database's integrity.
    fn verify(&self) -> Result<(), StoreError>;

    /// Creates or replaces a console configuration item (fields already validated);
    /// returns it and whether it is new.
    fn put_config(
        &self,
        kind: &str,
        key: &str,
        fields: &serde_json::Value,
        now: Timestamp,
    ) -> Result<(ConfigItem, bool), StoreError>;
    /// Console configuration items, deleted ones included (they carry `deleted_at`).
    fn config_items(
        &self,
        kind: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<ConfigItem>, StoreError>;
    /// Stores a new credential for a node; refuses a terminated node.
    fn enroll(&self, credential: &NewCredential, now: Timestamp) -> Result<(), StoreError>;
    /// A credential by its public id.
    fn credential(&self, id: &str) -> Result<Option<CredentialInfo>, StoreError>;
    /// Credentials, newest first; of one node when `node` is given.
    fn credentials(&self, node: Option<&str>) -> Result<Vec<CredentialInfo>, StoreError>;
    /// Marks a credential used now.
    fn credential_used(&self, id: &str, now: Timestamp) -> Result<(), StoreError>;
    /// Revokes a credential: its agent is refused from now on and told to re-enroll.
    fn revoke_credential(
        &self,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<CredentialInfo, StoreError>;
    /// Records the agent's reported resource use (JSON).
    fn report_health(&self, node_id: &str, health: &serde_json::Value) -> Result<(), StoreError>;
    /// Alarm webhook calls due now.
    fn pending_alarms(&self, now: Timestamp, limit: u32) -> Result<Vec<Alarm>, StoreError>;
    /// Records a webhook call's outcome.
    fn alarm_attempted(
        &self,
        id: i64,
        result: Result<(), String>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}

/// A credential to store at enrollment.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: String,
    pub secret_sha256: [u8; 32],
    pub node_id: String,
    pub agent_id: String,
    pub hostname: String,
    /// The enrolling peer's address.
    pub enrolled_from: String,
    /// Label of the enrollment secret used.
    pub enrollment_secret: String,
}

/// A stored credential, as listed by the API (never its secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialInfo {
    pub id: String,
    pub node_id: String,
    pub agent_id: String,
    pub hostname: String,
    pub enrolled_at: String,
    pub enrolled_from: String,
    /// Label (SHA-256 prefix) of the enrollment secret it was issued for.
    pub enrollment_secret: String,
    pub last_used: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    #[serde(skip)]
    pub secret_sha256: Vec<u8>,
}

/// A queued alarm webhook call.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub id: i64,
    /// The alarm setting's key.
    pub alarm: String,
    pub url: String,
    /// JSON body.
    pub payload: String,
    pub attempts: u32,
}

/// Opens the store a `--db` URL names: `sqlite:PATH`.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    let path = sqlite_path(url).ok_or_else(|| StoreError::UnsupportedUrl(url.to_string()))?;
    Ok(Box::new(sqlite::SqliteStore::open(path)?))
}

/// The file of a `sqlite:PATH` URL.
pub fn sqlite_path(url: &str) -> Option<&str> {
    match url.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => Some(path.strip_prefix("//").unwrap_or(path)),
        _ => None,
    }
}

/// RFC 3339 of milliseconds since the Unix epoch.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}
