//! Admin routes of the retention lifecycle: terminations, deletion requests, legal
//! holds; and what anyone may check: deadlines due, the purge audit, the policy.
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;

use super::{ApiError, AppState, run};
use crate::policy::{self, CONSOLE_KINDS, Category, FEATURE, POLICY, Rule};
use crate::store::sqlite::Service;
use crate::store::{Scope, Store};

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(body)| body)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// An RFC 3339 instant from field `name`.
fn instant(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    text.parse().map_err(|error| {
        ApiError::bad_request(format!(
            "{name}: {text:?} is not an RFC 3339 timestamp (e.g. 2026-11-24T10:00:00Z): {error}"
        ))
    })
}

/// An instant that must already have happened.
fn past(name: &str, text: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    let at = instant(name, text)?;
    if at > now {
        return Err(ApiError::unprocessable(format!(
            "{name} {at} is in the future (now is {now}): only what has happened is recorded"
        )));
    }
    Ok(at)
}

fn service(text: &str) -> Result<Service, ApiError> {
    Service::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "hosting_service: {text:?} is not node:ID, cluster:NAME or {FEATURE}"
        ))
    })
}

/// A kind that exists and belongs to the hosting service's category.
fn kind_for(service: &Service, kind: &Option<String>) -> Result<(), ApiError> {
    let Some(kind) = kind else { return Ok(()) };
    let expected = match service {
        Service::Feature => Category::ConsoleConfigurationData,
        _ => Category::AssetBasicData,
    };
    match policy::category(kind) {
        None => Err(ApiError::bad_request(format!(
            "kind: unknown kind {kind:?}"
        ))),
        Some(category) if category != expected => Err(ApiError::bad_request(format!(
            "kind: {kind:?} is {}, not data of this hosting service ({})",
            category.as_str(),
            expected.as_str()
        ))),
        Some(_) => Ok(()),
    }
}

/// `POST /api/v1/terminations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminationBody {
    /// `node:ID`, `cluster:NAME`, or `feature` (the console configuration feature).
    hosting_service: String,
    /// When the use of the hosting service ended (RFC 3339, not in the future).
    at: String,
}

pub async fn terminate(
    State(state): State<AppState>,
    request: Result<Json<TerminationBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request = body(request)?;
    let now = Timestamp::now();
    service(&request.hosting_service)?;
    let at = past("at", &request.at, now)?;
    let calendar = state.calendar.clone();
    let outcome = run(state.store, move |store| {
        store.terminate(&request.hosting_service, at, &calendar, now)
    })
    .await?;
    state.config_changed.send_modify(|version| *version += 1);
    state.purge_wake.notify_one();
    Ok((StatusCode::CREATED, Json(serde_json::json!(outcome))))
}

/// `POST /api/v1/deletion-requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionBody {
    /// `node:ID`, `cluster:NAME` (asset data) or `feature` (console configuration).
    hosting_service: String,
    /// Only records of this kind.
    kind: Option<String>,
    /// Only the record (or console configuration item) with this key; needs `kind`.
    key: Option<String>,
    /// When the deletion was requested (RFC 3339); now when absent.
    at: Option<String>,
    /// The deadline the requester needs; refused when the retention floor forbids it.
    delete_by: Option<String>,
}

pub async fn request_deletion(
    State(state): State<AppState>,
    request: Result<Json<DeletionBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request = body(request)?;
    let now = Timestamp::now();
    let target = service(&request.hosting_service)?;
    kind_for(&target, &request.kind)?;
    if request.key.is_some() && request.kind.is_none() {
        return Err(ApiError::bad_request("key: a key needs its kind"));
    }
    let at = match &request.at {
        Some(text) => past("at", text, now)?,
        None => now,
    };
    let requested = match &request.delete_by {
        Some(text) => {
            let requested = instant("delete_by", text)?;
            if requested < at {
                return Err(ApiError::unprocessable(format!(
                    "delete_by {requested} is before the request itself ({at})"
                )));
            }
            Some(requested)
        }
        None => None,
    };
    let scope = Scope {
        hosting_service: request.hosting_service,
        kind: request.kind,
        key: request.key,
    };
    let calendar = state.calendar.clone();
    let console = scope.hosting_service == FEATURE;
    let outcome = run(state.store, move |store| {
        store.request_deletion(&scope, at, requested, &calendar, now)
    })
    .await?;
    if console {
        state.config_changed.send_modify(|version| *version += 1);
    }
    state.purge_wake.notify_one();
    Ok((StatusCode::CREATED, Json(serde_json::json!(outcome))))
}

/// `POST /api/v1/legal-holds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// `node:ID` or `feature`.
    hosting_service: String,
    /// Only records of this kind.
    kind: Option<String>,
    /// Why the data must be kept (case, ticket).
    reason: String,
}

pub async fn set_hold(
    State(state): State<AppState>,
    request: Result<Json<HoldBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request = body(request)?;
    let target = service(&request.hosting_service)?;
    kind_for(&target, &request.kind)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason: a legal hold needs a reason"));
    }
    let scope = Scope {
        hosting_service: request.hosting_service,
        kind: request.kind,
        key: None,
    };
    let now = Timestamp::now();
    let hold = run(state.store, move |store| {
        store.set_hold(&scope, &request.reason, now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!(hold))))
}

pub async fn clear_hold(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(id) = id.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let now = Timestamp::now();
    let hold = run(state.store, move |store| store.clear_hold(id, now)).await?;
    state.purge_wake.notify_one();
    Ok(Json(serde_json::json!(hold)))
}

pub async fn holds(
    State(store): State<Arc<dyn Store>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let holds = run(store, |store| store.holds()).await?;
    Ok(Json(serde_json::json!({ "legal_holds": holds })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueParams {
    /// Deadlines at or before this instant (RFC 3339); now when absent.
    before: Option<String>,
}

pub async fn due(
    State(store): State<Arc<dyn Store>>,
    params: Result<Query<DueParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let before = match &params.before {
        Some(text) => instant("before", text)?,
        None => Timestamp::now(),
    };
    let groups = run(store, move |store| store.due(before)).await?;
    let records: u64 = groups.iter().map(|g| g.records).sum();
    let held: u64 = groups.iter().map(|g| g.held).sum();
    Ok(Json(serde_json::json!({
        "before": before.to_string(),
        "records": records,
        "held": held,
        "due": groups,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Most recent runs to return (default 100).
    limit: Option<u32>,
}

pub async fn audit(
    State(store): State<Arc<dyn Store>>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let limit = params.limit.unwrap_or(100).clamp(1, 10_000);
    let runs = run(store, move |store| store.audit(limit)).await?;
    Ok(Json(serde_json::json!({ "purge_runs": runs })))
}

/// The rule set records are tagged under, as auditors read it.
pub async fn policy(State(state): State<AppState>) -> Json<serde_json::Value> {
    let rules: Vec<_> = Rule::ALL
        .iter()
        .map(|rule| {
            serde_json::json!({
                "rule": rule.as_str(),
                "category": rule.category().as_str(),
                "text": rule.text(),
            })
        })
        .collect();
    let holidays: Vec<String> = state.calendar.holidays().map(|d| d.to_string()).collect();
    Json(serde_json::json!({
        "policy": POLICY,
        "asset_basic_data": {
            "kinds": policy::ASSET_KINDS,
            "retain_days": 180,
            "termination_grace_days": 30,
        },
        "console_configuration_data": {
            "kinds": CONSOLE_KINDS,
            "deletion_request_working_days": policy::CONSOLE_DELETION_WORKING_DAYS,
            "feature_termination_months": policy::FEATURE_TERMINATION_MONTHS,
        },
        "rules": rules,
        "calendar": { "weekends": ["Saturday", "Sunday"], "holidays": holidays, "time_zone": "UTC" },
    }))
}
