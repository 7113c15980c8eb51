//! Per-agent credentials: stored by public id with the SHA-256 of their secret.
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::super::{CredentialInfo, NewCredential, StoreError, rfc3339};

const COLUMNS: &str =
    "id, node_id, agent_id, hostname, enrolled_at, enrolled_from, enrollment_secret,
    last_used, revoked_at, revoked_reason, secret_sha256";

fn info(row: &Row<'_>) -> rusqlite::Result<CredentialInfo> {
    Ok(CredentialInfo {
        id: row.get(0)?,
        node_id: row.get(1)?,
        agent_id: row.get(2)?,
        hostname: row.get(3)?,
        enrolled_at: rfc3339(row.get(4)?),
        enrolled_from: row.get(5)?,
        enrollment_secret: row.get(6)?,
        last_used: row.get::<_, Option<i64>>(7)?.map(rfc3339),
        revoked_at: row.get::<_, Option<i64>>(8)?.map(rfc3339),
        revoked_reason: row.get(9)?,
        secret_sha256: row.get(10)?,
    })
}

pub(super) fn enroll(
    connection: &Connection,
    credential: &NewCredential,
    now: Timestamp,
) -> Result<(), StoreError> {
    connection.execute(
        "INSERT INTO credentials (id, secret_sha256, node_id, agent_id, hostname, enrolled_at,
            enrolled_from, enrollment_secret)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            credential.id,
            credential.secret_sha256.as_slice(),
            credential.node_id,
            credential.agent_id,
            credential.hostname,
            now.as_millisecond(),
            credential.enrolled_from,
            credential.enrollment_secret
        ],
    )?;
    Ok(())
}

pub(super) fn credential(
    connection: &Connection,
    id: &str,
) -> Result<Option<CredentialInfo>, StoreError> {
    Ok(connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM credentials WHERE id = ?1"))?
        .query_row([id], info)
        .optional()?)
}

pub(super) fn credentials(
    connection: &Connection,
    node: Option<&str>,
) -> Result<Vec<CredentialInfo>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM credentials WHERE (?1 IS NULL OR node_id = ?1)
         ORDER BY enrolled_at DESC, id"
    ))?;
    let rows = statement.query_map([node], info)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn used(connection: &Connection, id: &str, now: Timestamp) -> Result<(), StoreError> {
    connection.execute(
        "UPDATE credentials SET last_used = ?1 WHERE id = ?2",
        params![now.as_millisecond(), id],
    )?;
    Ok(())
}

pub(super) fn revoke(
    connection: &mut Connection,
    id: &str,
    reason: &str,
    now: Timestamp,
) -> Result<CredentialInfo, StoreError> {
    let transaction = connection.transaction()?;
    let existing = credential(&transaction, id)?
        .ok_or_else(|| StoreError::NotFound(format!("no credential {id:?}")))?;
    if let Some(at) = existing.revoked_at {
        return Err(StoreError::Conflict(format!(
            "credential {id} was already revoked at {at}"
        )));
    }
    transaction.execute(
        "UPDATE credentials SET revoked_at = ?1, revoked_reason = ?2 WHERE id = ?3",
        params![now.as_millisecond(), reason, id],
    )?;
    let revoked = credential(&transaction, id)?
        .ok_or_else(|| StoreError::NotFound(format!("no credential {id:?}")))?;
    transaction.commit()?;
    Ok(revoked)
}
