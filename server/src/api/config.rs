//! Admin routes of Console Configuration Data: create, read, update and delete items;
//! a change reaches connected agents at once. Deleting is a deletion request: the item
//! stops applying now and is purged within 30 working days.
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;

use super::{ApiError, AppState, run};
use crate::console::validate;
use crate::policy::{CONSOLE_KINDS, FEATURE};
use crate::store::Scope;

fn console_kind(kind: &str) -> Result<(), ApiError> {
    if CONSOLE_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "unknown console configuration kind {kind:?}: expected one of {}",
                CONSOLE_KINDS.join(", ")
            ),
        ))
    }
}

fn valid_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 200 || key.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::bad_request(format!(
            "key {key:?} must be 1 to 200 characters, without '/' or control characters"
        )));
    }
    Ok(())
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let items = run(state.store, |store| store.config_items(None, None)).await?;
    let active: Vec<_> = items
        .into_iter()
        .filter(|i| i.deleted_at.is_none())
        .collect();
    Ok(Json(serde_json::json!({ "items": active })))
}

pub async fn list_kind(
    State(state): State<AppState>,
    kind: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kind = path(kind)?;
    console_kind(&kind)?;
    let items = run(state.store, move |store| {
        store.config_items(Some(&kind), None)
    })
    .await?;
    let active: Vec<_> = items
        .into_iter()
        .filter(|i| i.deleted_at.is_none())
        .collect();
    Ok(Json(serde_json::json!({ "items": active })))
}

pub async fn get_item(
    State(state): State<AppState>,
    item: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (kind, key) = path(item)?;
    console_kind(&kind)?;
    let (k, q) = (kind.clone(), key.clone());
    let items = run(state.store, move |store| {
        store.config_items(Some(&k), Some(&q))
    })
    .await?;
    let item = items
        .into_iter()
        .next()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no {kind} item {key:?}")))?;
    Ok(Json(serde_json::json!(item)))
}

async fn store_item(
    state: AppState,
    kind: String,
    key: String,
    fields: serde_json::Value,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    console_kind(&kind)?;
    valid_key(&key)?;
    validate(&kind, &fields).map_err(ApiError::unprocessable)?;
    let now = Timestamp::now();
    let (item, created) = run(state.store, move |store| {
        store.put_config(&kind, &key, &fields, now)
    })
    .await?;
    state.config_changed.send_modify(|version| *version += 1);
    tracing::info!(
        kind = item.kind,
        key = item.key,
        version = item.version,
        "console configuration stored"
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(serde_json::json!(item))))
}

/// `PUT /api/v1/config/{kind}/{key}`: creates or replaces the item.
pub async fn put(
    State(state): State<AppState>,
    item: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (kind, key) = path(item)?;
    let Json(fields) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    store_item(state, kind, key, fields).await
}

/// `POST /api/v1/config/{kind}`: creates an item under a new key.
pub async fn create(
    State(state): State<AppState>,
    kind: Result<Path<String>, PathRejection>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let kind = path(kind)?;
    let Json(fields) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let key = format!("{:016x}", fastrand::u64(..));
    store_item(state, kind, key, fields).await
}

/// `DELETE /api/v1/config/{kind}/{key}`: a deletion request made now.
pub async fn delete(
    State(state): State<AppState>,
    item: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (kind, key) = path(item)?;
    console_kind(&kind)?;
    let scope = Scope {
        hosting_service: FEATURE.to_string(),
        kind: Some(kind),
        key: Some(key),
    };
    let now = Timestamp::now();
    let calendar = state.calendar.clone();
    let outcome = run(state.store, move |store| {
        store.request_deletion(&scope, now, None, &calendar, now)
    })
    .await?;
    state.config_changed.send_modify(|version| *version += 1);
    Ok(Json(serde_json::json!(outcome)))
}
