//! Agent credentials: listed by anyone with a token, revoked by an admin. A revoked
//! credential's open stream ends at once and its agent is told to enroll again.
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use jiff::Timestamp;
use serde::Deserialize;

use super::{ApiError, AppState, run};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    node: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let credentials = run(state.store, move |store| {
        store.credentials(params.node.as_deref().filter(|n| !n.is_empty()))
    })
    .await?;
    Ok(Json(serde_json::json!({ "credentials": credentials })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    reason: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Revocation>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let reason = body.reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "reason: say why the credential is revoked",
        ));
    }
    let revoked = run(state.store.clone(), move |store| {
        store.revoke_credential(&id, &reason, Timestamp::now())
    })
    .await?;
    state.revoked.send_modify(|generation| *generation += 1);
    tracing::warn!(credential = %revoked.id, node = %revoked.node_id, reason = ?revoked.revoked_reason, "credential revoked");
    Ok(Json(serde_json::json!({ "credential": revoked })))
}
