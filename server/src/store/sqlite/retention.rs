//! The retention lifecycle in SQLite: terminations (and the archive tier), deletion
//! requests, legal holds, the purge and its audit. Every operation is one transaction:
//! a refused request changes nothing.
use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, named_params};

use crate::calendar::Calendar;
use crate::policy::{FEATURE, Rule, node_service};
use crate::store::{
    AuditEntry, DeletionOutcome, DueGroup, Hold, PurgeOptions, PurgeRun, Scope, StoreError,
    TerminationOutcome, rfc3339,
};

/// Tables that hold tagged data, and what the API calls each tier.
const TIERS: [(&str, &str); 3] = [
    ("records", "live"),
    ("archived_records", "archive"),
    ("console_config", "console"),
];

/// A deletion this soon after its deadline is on time: the purge wakes at each
/// deadline, and a deadline equal to the retention floor cannot be met earlier.
pub const LATE_TOLERANCE_MS: i64 = 60_000;

/// Rows deleted per purge transaction, so ingest is never blocked for long.
const PURGE_BATCH: usize = 500;

/// Columns `records` and `archived_records` share.
const RECORD_COLUMNS: &str = "node_id, kind, key, fingerprint, fields, observed_at, seq, removed_at, category, \
     policy, collected_at, retain_until, delete_by, hosting_service, legal_hold, delete_rule";

/// Rows of `table` in a scope, as an SQL condition over `:service`, `:kind`, `:key`.
const IN_SCOPE: &str = "hosting_service = :service AND (:kind IS NULL OR kind = :kind) AND (:key IS NULL OR key = :key)";

/// A hosting service as requests name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    Node(String),
    Cluster(String),
    Feature,
}

impl Service {
    pub fn parse(text: &str) -> Option<Service> {
        match text.split_once(':') {
            Some(("node", id)) if !id.is_empty() => Some(Service::Node(id.to_string())),
            Some(("cluster", name)) if !name.is_empty() => Some(Service::Cluster(name.to_string())),
            None if text == FEATURE => Some(Service::Feature),
            _ => None,
        }
    }
}

fn unknown_service(text: &str) -> StoreError {
    StoreError::NotFound(format!(
        "unknown hosting service {text:?}: expected node:ID, cluster:NAME or {FEATURE}"
    ))
}

/// The hosting services of stored rows a request names: a node's, every node's of a
/// cluster, or the feature's (console configuration).
fn services(tx: &Transaction<'_>, text: &str) -> Result<Vec<String>, StoreError> {
    match Service::parse(text).ok_or_else(|| unknown_service(text))? {
        Service::Feature => Ok(vec![FEATURE.to_string()]),
        Service::Node(id) => {
            let known = tx
                .query_row("SELECT 1 FROM nodes WHERE node_id = ?1", [&id], |_| Ok(()))
                .optional()?
                .is_some();
            let archived = tx
                .query_row(
                    "SELECT 1 FROM archived_records WHERE node_id = ?1 LIMIT 1",
                    [&id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !known && !archived {
                return Err(StoreError::NotFound(format!(
                    "unknown node {id:?}: no agent of that node ever connected"
                )));
            }
            Ok(vec![node_service(&id)])
        }
        Service::Cluster(name) => {
            let mut statement =
                tx.prepare_cached("SELECT node_id FROM nodes WHERE cluster = ?1 ORDER BY node_id")?;
            let nodes = statement
                .query_map([&name], |row| row.get::<_, String>(0))?
                .map(|node| node.map(|node| node_service(&node)))
                .collect::<Result<Vec<_>, _>>()?;
            if nodes.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "unknown cluster {name:?}: no node of it ever connected"
                )));
            }
            Ok(nodes)
        }
    }
}

fn tables_of(service: &str) -> &'static [&'static str] {
    if service == FEATURE {
        &["console_config"]
    } else {
        &["records", "archived_records"]
    }
}

/// Gives the rows of `table` in scope the deadline `rule` sets at `base`, capped at
/// `cap`, where it is earlier than the one they have.
fn set_deadlines(
    tx: &Transaction<'_>,
    table: &str,
    scope: &Scope,
    rule: Rule,
    base: Timestamp,
    cap: Option<Timestamp>,
) -> Result<usize, StoreError> {
    let due = "MIN(MAX(:base, retain_until), :cap)";
    let sql = format!(
        "UPDATE {table} SET
            delete_rule = CASE WHEN delete_by IS NULL OR {due} < delete_by THEN :rule ELSE delete_rule END,
            delete_by = CASE WHEN delete_by IS NULL OR {due} < delete_by THEN {due} ELSE delete_by END
         WHERE {IN_SCOPE}"
    );
    Ok(tx.prepare_cached(&sql)?.execute(named_params! {
        ":base": base.as_millisecond(),
        ":cap": cap.map_or(i64::MAX, |t| t.as_millisecond()),
        ":rule": rule.as_str(),
        ":service": scope.hosting_service,
        ":kind": scope.kind,
        ":key": scope.key,
    })?)
}

/// Earliest and latest deadline and count of the rows in scope.
fn deadlines(
    tx: &Transaction<'_>,
    scope: &Scope,
) -> Result<(u64, Option<i64>, Option<i64>), StoreError> {
    let mut count = 0;
    let (mut earliest, mut latest): (Option<i64>, Option<i64>) = (None, None);
    for table in tables_of(&scope.hosting_service) {
        let sql = format!(
            "SELECT COUNT(*), MIN(delete_by), MAX(delete_by) FROM {table} WHERE {IN_SCOPE}"
        );
        let (n, low, high): (i64, Option<i64>, Option<i64>) = tx.prepare_cached(&sql)?.query_row(
            named_params! {":service": scope.hosting_service, ":kind": scope.kind, ":key": scope.key},
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        count += n as u64;
        earliest = earliest.into_iter().chain(low).min();
        latest = latest.into_iter().chain(high).max();
    }
    Ok((count, earliest, latest))
}

pub fn terminate(
    connection: &mut Connection,
    hosting_service: &str,
    at: Timestamp,
    calendar: &Calendar,
    now: Timestamp,
) -> Result<TerminationOutcome, StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(previous) = tx
        .query_row(
            "SELECT at FROM terminations WHERE hosting_service = ?1",
            [hosting_service],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
    {
        return Err(StoreError::Conflict(format!(
            "{hosting_service} was already terminated at {}",
            rfc3339(previous)
        )));
    }
    let rule = match Service::parse(hosting_service) {
        Some(Service::Feature) => Rule::FeatureTerminated,
        Some(_) => Rule::HostingServiceTerminated,
        None => return Err(unknown_service(hosting_service)),
    };
    let base = rule.base(at, calendar);
    let mut nodes = Vec::new();
    let (mut records, mut earliest, mut latest) = (0, None, None);
    for service in services(&tx, hosting_service)? {
        // A node terminated on its own before its cluster keeps its own deadlines.
        if service != hosting_service
            && tx
                .query_row(
                    "SELECT 1 FROM terminations WHERE hosting_service = ?1",
                    [&service],
                    |_| Ok(()),
                )
                .optional()?
                .is_some()
        {
            continue;
        }
        let scope = Scope {
            hosting_service: service.clone(),
            kind: None,
            key: None,
        };
        for table in tables_of(&service) {
            set_deadlines(&tx, table, &scope, rule, base, None)?;
        }
        if let Some(node) = service.strip_prefix("node:") {
            // Between termination and deletion, asset data leaves the live tables.
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO archived_records ({RECORD_COLUMNS}, archived_at)
                     SELECT {RECORD_COLUMNS}, ?2 FROM records WHERE node_id = ?1"
                ),
                rusqlite::params![node, now.as_millisecond()],
            )?;
            tx.execute("DELETE FROM records WHERE node_id = ?1", [node])?;
            if service != hosting_service {
                tx.execute(
                    "INSERT INTO terminations (hosting_service, at, recorded_at, via) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![service, at.as_millisecond(), now.as_millisecond(), hosting_service],
                )?;
            }
            nodes.push(node.to_string());
        }
        let (count, low, high) = deadlines(&tx, &scope)?;
        records += count;
        earliest = earliest.into_iter().chain(low).min();
        latest = latest.into_iter().chain(high).max();
    }
    tx.execute(
        "INSERT INTO terminations (hosting_service, at, recorded_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![hosting_service, at.as_millisecond(), now.as_millisecond()],
    )?;
    tx.commit()?;
    tracing::info!(hosting_service, %at, records, "hosting service terminated");
    Ok(TerminationOutcome {
        hosting_service: hosting_service.to_string(),
        at: rfc3339(at.as_millisecond()),
        nodes,
        records,
        earliest_delete_by: earliest.map(rfc3339),
        latest_delete_by: latest.map(rfc3339),
    })
}

pub fn request_deletion(
    connection: &mut Connection,
    scope: &Scope,
    at: Timestamp,
    requested: Option<Timestamp>,
    calendar: &Calendar,
    now: Timestamp,
) -> Result<DeletionOutcome, StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rule = if scope.hosting_service == FEATURE {
        Rule::ConsoleDeletionRequest
    } else {
        Rule::AssetDeletionRequest
    };
    let scopes: Vec<Scope> = services(&tx, &scope.hosting_service)?
        .into_iter()
        .map(|service| Scope {
            hosting_service: service,
            ..scope.clone()
        })
        .collect();
    let mut matched = 0;
    let mut floor: Option<i64> = None;
    for scope in &scopes {
        for table in tables_of(&scope.hosting_service) {
            let sql = format!("SELECT COUNT(*), MAX(retain_until) FROM {table} WHERE {IN_SCOPE}");
            let (n, high): (i64, Option<i64>) = tx.prepare_cached(&sql)?.query_row(
                named_params! {":service": scope.hosting_service, ":kind": scope.kind, ":key": scope.key},
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            matched += n;
            floor = floor.into_iter().chain(high).max();
        }
    }
    if matched == 0 {
        return Err(StoreError::NotFound(format!(
            "no records of {} match{}{}",
            scope.hosting_service,
            scope
                .kind
                .as_ref()
                .map(|k| format!(" kind {k:?}"))
                .unwrap_or_default(),
            scope
                .key
                .as_ref()
                .map(|k| format!(" key {k:?}"))
                .unwrap_or_default(),
        )));
    }
    if let (Some(requested), Some(floor)) = (requested, floor)
        && requested.as_millisecond() < floor
    {
        return Err(StoreError::Conflict(format!(
            "deletion by {requested} would break the retention floor: records of {} are retained until {} \
             (policy {}: asset basic data is kept 180 days after collection)",
            scope.hosting_service,
            rfc3339(floor),
            crate::policy::POLICY
        )));
    }
    let base = rule.base(at, calendar);
    let (mut earliest, mut latest) = (None, None);
    for scope in &scopes {
        for table in tables_of(&scope.hosting_service) {
            set_deadlines(&tx, table, scope, rule, base, requested)?;
        }
        if rule == Rule::ConsoleDeletionRequest {
            // Configuration a user asked to delete no longer applies.
            tx.prepare_cached(&format!(
                "UPDATE console_config SET deleted_at = :at WHERE deleted_at IS NULL AND {IN_SCOPE}"
            ))?
            .execute(named_params! {
                ":at": at.as_millisecond(),
                ":service": scope.hosting_service, ":kind": scope.kind, ":key": scope.key,
            })?;
        }
        let (_, low, high) = deadlines(&tx, scope)?;
        earliest = earliest.into_iter().chain(low).min();
        latest = latest.into_iter().chain(high).max();
    }
    tx.execute(
        "INSERT INTO deletion_requests (hosting_service, kind, key, rule, at, requested_delete_by, recorded_at, records)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        rusqlite::params![
            scope.hosting_service,
            scope.kind,
            scope.key,
            rule.as_str(),
            at.as_millisecond(),
            requested.map(|t| t.as_millisecond()),
            now.as_millisecond(),
            matched
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    tracing::info!(id, hosting_service = %scope.hosting_service, records = matched, "deletion requested");
    Ok(DeletionOutcome {
        id,
        rule,
        at: rfc3339(at.as_millisecond()),
        records: matched as u64,
        earliest_delete_by: earliest.map(rfc3339),
        latest_delete_by: latest.map(rfc3339),
    })
}

/// Sets `legal_hold` on the rows in `service`/`kind` from the active holds.
fn refresh_holds(
    tx: &Transaction<'_>,
    service: &str,
    kind: Option<&str>,
) -> Result<u64, StoreError> {
    let mut covered = 0;
    for table in tables_of(service) {
        let sql = format!(
            "UPDATE {table} SET legal_hold = EXISTS (
                SELECT 1 FROM legal_holds h WHERE h.cleared_at IS NULL
                  AND h.hosting_service = {table}.hosting_service AND (h.kind IS NULL OR h.kind = {table}.kind))
             WHERE hosting_service = :service AND (:kind IS NULL OR kind = :kind)"
        );
        tx.prepare_cached(&sql)?
            .execute(named_params! {":service": service, ":kind": kind})?;
        let count: i64 = tx.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE hosting_service = ?1 AND (?2 IS NULL OR kind = ?2) AND legal_hold = 1"),
            rusqlite::params![service, kind],
            |row| row.get(0),
        )?;
        covered += count as u64;
    }
    Ok(covered)
}

fn hold_row(tx: &Transaction<'_>, id: i64) -> Result<Option<Hold>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT id, hosting_service, kind, reason, set_at, cleared_at FROM legal_holds WHERE id = ?1",
            [id],
            |row| {
                Ok(Hold {
                    id: row.get(0)?,
                    hosting_service: row.get(1)?,
                    kind: row.get(2)?,
                    reason: row.get(3)?,
                    set_at: rfc3339(row.get(4)?),
                    cleared_at: row.get::<_, Option<i64>>(5)?.map(rfc3339),
                    records: 0,
                })
            },
        )
        .optional()?)
}

pub fn set_hold(
    connection: &mut Connection,
    scope: &Scope,
    reason: &str,
    now: Timestamp,
) -> Result<Hold, StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let services = services(&tx, &scope.hosting_service)?;
    if services.len() != 1 || services[0] != scope.hosting_service {
        return Err(StoreError::Conflict(format!(
            "a legal hold is set on one node (node:ID) or on {FEATURE}, not on {}",
            scope.hosting_service
        )));
    }
    tx.execute(
        "INSERT INTO legal_holds (hosting_service, kind, reason, set_at) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            scope.hosting_service,
            scope.kind,
            reason,
            now.as_millisecond()
        ],
    )?;
    let id = tx.last_insert_rowid();
    let records = refresh_holds(&tx, &scope.hosting_service, scope.kind.as_deref())?;
    let mut hold = hold_row(&tx, id)?
        .ok_or_else(|| StoreError::Corrupt(format!("legal hold {id} vanished")))?;
    hold.records = records;
    tx.commit()?;
    tracing::info!(id, hosting_service = %scope.hosting_service, records, "legal hold set");
    Ok(hold)
}

pub fn clear_hold(
    connection: &mut Connection,
    id: i64,
    now: Timestamp,
) -> Result<Hold, StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut hold =
        hold_row(&tx, id)?.ok_or_else(|| StoreError::NotFound(format!("no legal hold {id}")))?;
    if let Some(cleared) = &hold.cleared_at {
        return Err(StoreError::Conflict(format!(
            "legal hold {id} was already cleared at {cleared}"
        )));
    }
    tx.execute(
        "UPDATE legal_holds SET cleared_at = ?2 WHERE id = ?1",
        rusqlite::params![id, now.as_millisecond()],
    )?;
    refresh_holds(&tx, &hold.hosting_service, hold.kind.as_deref())?;
    hold.cleared_at = Some(now.to_string());
    tx.commit()?;
    tracing::info!(id, hosting_service = %hold.hosting_service, "legal hold cleared");
    Ok(hold)
}

pub fn holds(connection: &Connection) -> Result<Vec<Hold>, StoreError> {
    let tx = connection.unchecked_transaction()?;
    let ids = tx
        .prepare("SELECT id FROM legal_holds ORDER BY id")?
        .query_map([], |row| row.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut holds = Vec::new();
    for id in ids {
        let Some(mut hold) = hold_row(&tx, id)? else {
            continue;
        };
        if hold.cleared_at.is_none() {
            for table in tables_of(&hold.hosting_service) {
                let count: i64 = tx.query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE hosting_service = ?1 AND (?2 IS NULL OR kind = ?2)"),
                    rusqlite::params![hold.hosting_service, hold.kind],
                    |row| row.get(0),
                )?;
                hold.records += count as u64;
            }
        }
        holds.push(hold);
    }
    Ok(holds)
}

pub fn due(connection: &Connection, before: Timestamp) -> Result<Vec<DueGroup>, StoreError> {
    let tx = connection.unchecked_transaction()?;
    let mut groups = Vec::new();
    for (table, tier) in TIERS {
        let sql = format!(
            "SELECT hosting_service, category, COALESCE(delete_rule, ''), policy, COUNT(*), SUM(legal_hold),
                    MIN(delete_by), MAX(delete_by)
             FROM {table} WHERE delete_by IS NOT NULL AND delete_by <= ?1
             GROUP BY 1, 2, 3, 4 ORDER BY 7"
        );
        let mut statement = tx.prepare(&sql)?;
        let rows = statement.query_map([before.as_millisecond()], |row| {
            Ok(DueGroup {
                hosting_service: row.get(0)?,
                category: row.get(1)?,
                rule: row.get(2)?,
                policy: row.get(3)?,
                tier: tier.to_string(),
                records: row.get::<_, i64>(4)? as u64,
                held: row.get::<_, i64>(5)? as u64,
                earliest_delete_by: rfc3339(row.get(6)?),
                latest_delete_by: rfc3339(row.get(7)?),
            })
        })?;
        for group in rows {
            groups.push(group?);
        }
    }
    Ok(groups)
}

pub fn next_deadline(connection: &Connection) -> Result<Option<Timestamp>, StoreError> {
    let mut earliest: Option<i64> = None;
    for (table, _) in TIERS {
        let low: Option<i64> = connection.query_row(
            &format!("SELECT MIN(delete_by) FROM {table} WHERE legal_hold = 0"),
            [],
            |row| row.get(0),
        )?;
        earliest = earliest.into_iter().chain(low).min();
    }
    Ok(earliest.and_then(|ms| Timestamp::from_millisecond(ms).ok()))
}

/// Audit figures of one (rule, policy, category, hosting service).
#[derive(Default)]
struct Tally {
    deleted: u64,
    held: u64,
    late: u64,
    earliest: Option<i64>,
    latest: Option<i64>,
}

type TallyKey = (String, String, String, String);

pub fn purge(connection: &mut Connection, options: &PurgeOptions) -> Result<PurgeRun, StoreError> {
    let ran_at = Timestamp::now();
    let now = options.now.as_millisecond();
    let limit = options
        .now
        .saturating_add(options.horizon)
        .unwrap_or(Timestamp::MAX)
        .as_millisecond();
    let mut tallies: BTreeMap<TallyKey, Tally> = BTreeMap::new();
    let due_condition = "delete_by IS NOT NULL AND delete_by <= :limit AND retain_until <= :now";
    // Due but held: counted and reported, never deleted.
    for (table, _) in TIERS {
        let sql = format!(
            "SELECT COALESCE(delete_rule, ''), policy, category, hosting_service, COUNT(*)
             FROM {table} WHERE {due_condition} AND legal_hold = 1 GROUP BY 1, 2, 3, 4"
        );
        let mut statement = connection.prepare(&sql)?;
        let mut rows = statement.query(named_params! {":limit": limit, ":now": now})?;
        while let Some(row) = rows.next()? {
            let key = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            tallies.entry(key).or_default().held += row.get::<_, i64>(4)? as u64;
        }
    }
    for (table, _) in TIERS {
        let select =
            format!(
            "SELECT rowid, COALESCE(delete_rule, ''), policy, category, hosting_service, delete_by
             FROM {table} WHERE {due_condition} AND legal_hold = 0 LIMIT {}",
            if options.dry_run { i64::MAX } else { PURGE_BATCH as i64 }
        );
        loop {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let batch: Vec<(i64, TallyKey, i64)> = tx
                .prepare_cached(&select)?
                .query_map(named_params! {":limit": limit, ":now": now}, |row| {
                    Ok((
                        row.get(0)?,
                        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?),
                        row.get(5)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            if !options.dry_run {
                let mut delete =
                    tx.prepare_cached(&format!("DELETE FROM {table} WHERE rowid = ?1"))?;
                for (rowid, _, _) in &batch {
                    delete.execute([rowid])?;
                }
            }
            let done = options.dry_run || batch.len() < PURGE_BATCH;
            for (_, key, delete_by) in batch {
                let tally = tallies.entry(key).or_default();
                tally.deleted += 1;
                if delete_by < now - LATE_TOLERANCE_MS {
                    tally.late += 1;
                }
                tally.earliest = Some(tally.earliest.map_or(delete_by, |e| e.min(delete_by)));
                tally.latest = Some(tally.latest.map_or(delete_by, |l| l.max(delete_by)));
            }
            tx.commit()?;
            if done {
                break;
            }
        }
    }
    let entries: Vec<AuditEntry> = tallies
        .into_iter()
        .map(
            |((rule, policy, category, hosting_service), tally)| AuditEntry {
                rule,
                policy,
                category,
                hosting_service,
                deleted: tally.deleted,
                held: tally.held,
                late: tally.late,
                earliest_delete_by: tally.earliest.map(rfc3339),
                latest_delete_by: tally.latest.map(rfc3339),
            },
        )
        .collect();
    let sum = |f: fn(&AuditEntry) -> u64| entries.iter().map(f).sum::<u64>();
    let mut run = PurgeRun {
        id: None,
        ran_at: ran_at.to_string(),
        as_of: options.now.to_string(),
        horizon_secs: options.horizon.as_secs(),
        dry_run: options.dry_run,
        deleted: sum(|e| e.deleted),
        held: sum(|e| e.held),
        late: sum(|e| e.late),
        nodes_removed: 0,
        entries,
    };
    if options.dry_run {
        return Ok(run);
    }
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // A terminated node whose records are all gone leaves no trace but the audit.
    run.nodes_removed = tx.execute(
        "DELETE FROM nodes WHERE
            EXISTS (SELECT 1 FROM terminations t WHERE t.hosting_service = 'node:' || nodes.node_id)
            AND NOT EXISTS (SELECT 1 FROM records r WHERE r.node_id = nodes.node_id)
            AND NOT EXISTS (SELECT 1 FROM archived_records a WHERE a.node_id = nodes.node_id)",
        [],
    )? as u64;
    tx.execute(
        "INSERT INTO purge_runs (ran_at, as_of, horizon_secs, deleted, held, late, nodes_removed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            ran_at.as_millisecond(),
            now,
            run.horizon_secs,
            run.deleted as i64,
            run.held as i64,
            run.late as i64,
            run.nodes_removed as i64
        ],
    )?;
    let id = tx.last_insert_rowid();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO retention_audit (run_id, rule, policy, category, hosting_service, deleted, held, late,
                earliest_delete_by, latest_delete_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for entry in &run.entries {
            insert.execute(rusqlite::params![
                id,
                entry.rule,
                entry.policy,
                entry.category,
                entry.hosting_service,
                entry.deleted as i64,
                entry.held as i64,
                entry.late as i64,
                parse_ms(&entry.earliest_delete_by),
                parse_ms(&entry.latest_delete_by),
            ])?;
        }
    }
    tx.commit()?;
    run.id = Some(id);
    checkpoint(connection)?;
    tracing::info!(
        run = id,
        deleted = run.deleted,
        held = run.held,
        late = run.late,
        "purge done"
    );
    Ok(run)
}

fn parse_ms(text: &Option<String>) -> Option<i64> {
    text.as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| t.as_millisecond())
}

/// Moves the write-ahead log into the database and truncates it, so deleted content
/// (zeroed in the database by `secure_delete`) leaves no copy in the log either.
fn checkpoint(connection: &Connection) -> Result<(), StoreError> {
    for _ in 0..50 {
        let busy: i64 =
            connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tracing::warn!(
        "write-ahead log still in use by readers: it is truncated at the next checkpoint"
    );
    Ok(())
}

pub fn audit(connection: &Connection, limit: u32) -> Result<Vec<PurgeRun>, StoreError> {
    let tx = connection.unchecked_transaction()?;
    let mut runs: Vec<PurgeRun> = tx
        .prepare(
            "SELECT id, ran_at, as_of, horizon_secs, deleted, held, late, nodes_removed
             FROM purge_runs ORDER BY id DESC LIMIT ?1",
        )?
        .query_map([limit], |row| {
            Ok(PurgeRun {
                id: Some(row.get(0)?),
                ran_at: rfc3339(row.get(1)?),
                as_of: rfc3339(row.get(2)?),
                horizon_secs: row.get(3)?,
                dry_run: false,
                deleted: row.get::<_, i64>(4)? as u64,
                held: row.get::<_, i64>(5)? as u64,
                late: row.get::<_, i64>(6)? as u64,
                nodes_removed: row.get::<_, i64>(7)? as u64,
                entries: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut entries = tx.prepare(
        "SELECT rule, policy, category, hosting_service, deleted, held, late, earliest_delete_by, latest_delete_by
         FROM retention_audit WHERE run_id = ?1 ORDER BY rule, hosting_service",
    )?;
    for run in &mut runs {
        run.entries = entries
            .query_map([run.id], |row| {
                Ok(AuditEntry {
                    rule: row.get(0)?,
                    policy: row.get(1)?,
                    category: row.get(2)?,
                    hosting_service: row.get(3)?,
                    deleted: row.get::<_, i64>(4)? as u64,
                    held: row.get::<_, i64>(5)? as u64,
                    late: row.get::<_, i64>(6)? as u64,
                    earliest_delete_by: row.get::<_, Option<i64>>(7)?.map(rfc3339),
                    latest_delete_by: row.get::<_, Option<i64>>(8)?.map(rfc3339),
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(runs)
}

/// The termination that stops `node` (or its cluster) from writing, if any.
pub fn termination_of(
    connection: &Connection,
    node: &str,
    cluster: Option<&str>,
) -> Result<Option<(String, i64)>, StoreError> {
    let cluster = cluster.map(|c| format!("cluster:{c}"));
    Ok(connection
        .query_row(
            "SELECT hosting_service, at FROM terminations WHERE hosting_service = ?1 OR hosting_service = ?2
             ORDER BY at LIMIT 1",
            rusqlite::params![node_service(node), cluster],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?)
}
