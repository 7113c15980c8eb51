//! Console configuration items and the alarm outbox in SQLite.
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::console::{AlarmSetting, ConfigItem};
use crate::policy::{self, FEATURE, POLICY, Rule};
use crate::store::{Alarm, StoreError, TaggedRecord, rfc3339};

/// Attempts before an alarm is given up.
pub const ALARM_ATTEMPTS: i64 = 10;

const ITEM_COLUMNS: &str = "kind, key, fields, version, category, policy, collected_at, retain_until, delete_by, \
     delete_rule, hosting_service, legal_hold, updated_at, deleted_at";

fn item(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ConfigItem, String)> {
    Ok((
        ConfigItem {
            kind: row.get(0)?,
            key: row.get(1)?,
            fields: serde_json::Value::Null,
            version: row.get::<_, i64>(3)? as u64,
            category: row.get(4)?,
            policy: row.get(5)?,
            collected_at: rfc3339(row.get(6)?),
            retain_until: rfc3339(row.get(7)?),
            delete_by: row.get::<_, Option<i64>>(8)?.map(rfc3339),
            delete_rule: row.get(9)?,
            hosting_service: row.get(10)?,
            legal_hold: row.get(11)?,
            updated_at: rfc3339(row.get(12)?),
            deleted_at: row.get::<_, Option<i64>>(13)?.map(rfc3339),
        },
        row.get(2)?,
    ))
}

pub fn items(
    connection: &Connection,
    kind: Option<&str>,
    key: Option<&str>,
) -> Result<Vec<ConfigItem>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM console_config
         WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR key = ?2) ORDER BY kind, key"
    ))?;
    let rows = statement.query_map(params![kind, key], item)?;
    rows.map(|row| {
        let (mut item, fields) = row?;
        item.fields = serde_json::from_str(&fields).map_err(|error| {
            StoreError::Corrupt(format!(
                "console configuration {}/{}: {error}",
                item.kind, item.key
            ))
        })?;
        Ok(item)
    })
    .collect()
}

/// Creates or replaces an item; returns it and whether it was new (or deleted before).
pub fn put(
    connection: &mut Connection,
    kind: &str,
    key: &str,
    fields: &serde_json::Value,
    now: Timestamp,
) -> Result<(ConfigItem, bool), StoreError> {
    let tags =
        policy::tag(kind, now, FEATURE).map_err(|error| StoreError::Conflict(error.to_string()))?;
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existed = tx
        .query_row(
            "SELECT deleted_at IS NULL FROM console_config WHERE kind = ?1 AND key = ?2",
            params![kind, key],
            |row| row.get::<_, bool>(0),
        )
        .optional()?
        == Some(true);
    // After the feature's termination, everything of it goes by the same deadline.
    let feature_deadline = tx
        .query_row(
            "SELECT at FROM terminations WHERE hosting_service = ?1",
            [FEATURE],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .and_then(|at| Timestamp::from_millisecond(at).ok())
        .map(|at| {
            policy::deadline(
                Rule::FeatureTerminated,
                at,
                tags.retain_until,
                &crate::calendar::Calendar::weekends_only(),
            )
        });
    tx.execute(
        "INSERT INTO console_config (kind, key, node_id, fields, version, category, policy, collected_at,
            retain_until, delete_by, delete_rule, hosting_service, legal_hold, updated_at, deleted_at)
         VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(version), 0) + 1 FROM console_config), ?5, ?6, ?7, ?8, ?9, ?10, ?11,
            EXISTS (SELECT 1 FROM legal_holds h WHERE h.cleared_at IS NULL AND h.hosting_service = ?11
                AND (h.kind IS NULL OR h.kind = ?1)),
            ?7, NULL)
         ON CONFLICT (kind, key) DO UPDATE SET
            node_id = excluded.node_id, fields = excluded.fields, version = excluded.version,
            collected_at = excluded.collected_at, retain_until = excluded.retain_until,
            delete_by = excluded.delete_by, delete_rule = excluded.delete_rule,
            updated_at = excluded.updated_at, deleted_at = NULL",
        params![
            kind,
            key,
            fields.get("node").and_then(|n| n.as_str()),
            fields.to_string(),
            tags.category.as_str(),
            POLICY,
            now.as_millisecond(),
            tags.retain_until.as_millisecond(),
            feature_deadline.map(|t| t.as_millisecond()),
            feature_deadline.map(|_| Rule::FeatureTerminated.as_str()),
            FEATURE,
        ],
    )?;
    let (mut stored, text) = tx.query_row(
        &format!("SELECT {ITEM_COLUMNS} FROM console_config WHERE kind = ?1 AND key = ?2"),
        params![kind, key],
        item,
    )?;
    stored.fields =
        serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    tx.commit()?;
    Ok((stored, !existed))
}

pub fn pending_alarms(
    connection: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<Alarm>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, alarm_key, url, payload, attempts FROM alarm_outbox
         WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = statement.query_map(params![now.as_millisecond(), limit], |row| {
        Ok(Alarm {
            id: row.get(0)?,
            alarm: row.get(1)?,
            url: row.get(2)?,
            payload: row.get(3)?,
            attempts: row.get::<_, i64>(4)? as u32,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records a delivery attempt: delivered, or retried later with exponential backoff
/// until `ALARM_ATTEMPTS` is reached.
pub fn alarm_attempted(
    connection: &Connection,
    id: i64,
    result: Result<(), String>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let now_ms = now.as_millisecond();
    match result {
        Ok(()) => {
            connection.execute(
                "UPDATE alarm_outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![id, now_ms],
            )?;
        }
        Err(error) => {
            connection.execute(
                "UPDATE alarm_outbox SET attempts = attempts + 1, last_error = ?2,
                    next_at = ?3 + MIN(300000, 1000 * (1 << MIN(attempts, 12))),
                    failed_at = CASE WHEN attempts + 1 >= ?4 THEN ?3 END
                 WHERE id = ?1",
                params![id, error, now_ms, ALARM_ATTEMPTS],
            )?;
        }
    }
    Ok(())
}

/// Active alarm settings, by key.
pub fn alarm_settings(tx: &Connection) -> Result<Vec<(String, AlarmSetting)>, StoreError> {
    let mut statement = tx.prepare_cached(
        "SELECT key, fields FROM console_config WHERE kind = 'alarm_setting' AND deleted_at IS NULL",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut settings = Vec::new();
    for row in rows {
        let (key, fields) = row?;
        match serde_json::from_str::<AlarmSetting>(&fields) {
            Ok(setting) => settings.push((key, setting)),
            Err(error) => tracing::warn!(%error, alarm = key, "unreadable alarm setting skipped"),
        }
    }
    Ok(settings)
}

/// Queues a webhook call for each alarm a new record matches.
pub fn raise_alarms(
    tx: &Connection,
    alarms: &[&(String, AlarmSetting)],
    node: &str,
    kind: &str,
    record: &TaggedRecord,
    at_ms: i64,
) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO alarm_outbox (alarm_key, url, payload, created_at, next_at) VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    for (key, alarm) in alarms {
        if let Some(pattern) = &alarm.pattern
            && !record.key.contains(pattern.as_str())
            && !record.fields.contains(pattern.as_str())
        {
            continue;
        }
        let fields: serde_json::Value =
            serde_json::from_str(&record.fields).unwrap_or(serde_json::Value::Null);
        let payload = serde_json::json!({
            "alarm": key,
            "event": "new_record",
            "node": node,
            "kind": kind,
            "key": record.key,
            "fields": fields,
            "observed_at": rfc3339(record.observed_at_ms),
            "category": record.tags.category.as_str(),
        });
        insert.execute(params![key, alarm.webhook, payload.to_string(), at_ms])?;
        tracing::info!(alarm = key, node, kind, key = record.key, "alarm raised");
    }
    Ok(())
}
