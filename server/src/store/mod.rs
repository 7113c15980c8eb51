//! Storage of nodes and tagged records. One trait, one file per backend.
use std::collections::BTreeMap;

use crate::policy::Tags;

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
}

/// A node introducing itself at the start of a stream.
#[derive(Debug, Clone)]
pub struct NodeHello {
    pub node_id: String,
    pub hostname: String,
    pub agent_id: String,
    pub agent_version: String,
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
}

/// Opens the store a `--db` URL names: `sqlite:PATH`.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    match url.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => {
            let path = path.strip_prefix("//").unwrap_or(path);
            Ok(Box::new(sqlite::SqliteStore::open(path)?))
        }
        _ => Err(StoreError::UnsupportedUrl(url.to_string())),
    }
}

/// RFC 3339 of milliseconds since the Unix epoch.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}
