//! HTTP JSON API: health, nodes, tagged records, and the retention lifecycle.
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::{ApiTokens, Role, SecretsFile};
use crate::calendar::Calendar;
use crate::policy;
use crate::store::{RecordQuery, Store, StoreError};

mod config;
mod credentials;
mod retention;

/// Records returned when `limit` is not given, and the most one request may ask for.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Working days for console configuration deadlines.
    pub calendar: Arc<Calendar>,
    /// Bumped on every console configuration change: connected agents get theirs.
    pub config_changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Wakes the scheduled purge: deadlines changed.
    pub purge_wake: Arc<tokio::sync::Notify>,
    /// Bearer tokens and their roles; without them only `/healthz` answers.
    pub tokens: Option<Arc<SecretsFile<ApiTokens>>>,
    /// Bumped on every credential revocation: open streams check theirs.
    pub revoked: Arc<tokio::sync::watch::Sender<u64>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("calendar", &self.calendar)
            .finish_non_exhaustive()
    }
}

impl FromRef<AppState> for Arc<dyn Store> {
    fn from_ref(state: &AppState) -> Self {
        state.store.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/credentials", get(credentials::list))
        .route("/api/v1/credentials/{id}/revoke", post(credentials::revoke))
        .route("/healthz", get(healthz))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/records", get(records))
        // Admin: the retention lifecycle.
        .route("/api/v1/terminations", post(retention::terminate))
        .route(
            "/api/v1/deletion-requests",
            post(retention::request_deletion),
        )
        .route(
            "/api/v1/legal-holds",
            get(retention::holds).post(retention::set_hold),
        )
        .route("/api/v1/legal-holds/{id}", delete(retention::clear_hold))
        .route("/api/v1/retention/due", get(retention::due))
        .route("/api/v1/retention/audit", get(retention::audit))
        .route("/api/v1/retention/policy", get(retention::policy))
        // Admin: console configuration data.
        .route("/api/v1/config", get(config::list))
        .route(
            "/api/v1/config/{kind}",
            get(config::list_kind).post(config::create),
        )
        .route(
            "/api/v1/config/{kind}/{key}",
            get(config::get_item)
                .put(config::put)
                .delete(config::delete),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .with_state(state)
}

/// Every route but `/healthz` needs a bearer token: reads need a read-only or admin
/// token, changes (POST, PUT, DELETE) an admin token.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let needed = if request.method() == Method::GET || request.method() == Method::HEAD {
        Role::Read
    } else {
        Role::Admin
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let role = match (presented, &state.tokens) {
        (Some(token), Some(tokens)) => tokens.get().role(token),
        _ => None,
    };
    match role {
        None => {
            let message = match presented {
                None => "this API needs a bearer token (Authorization: Bearer TOKEN)",
                Some(_) => "the bearer token is not accepted",
            };
            tracing::info!(method = %request.method(), path = request.uri().path(), "api request refused: {message}");
            let mut response = ApiError(StatusCode::UNAUTHORIZED, message.into()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
        Some(role) if role < needed => {
            tracing::info!(method = %request.method(), path = request.uri().path(), "api request refused: read-only token on an admin route");
            ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "{} {} needs an admin token; the token presented is read-only",
                    request.method(),
                    request.uri().path()
                ),
            )
            .into_response()
        }
        Some(_) => next.run(request).await,
    }
}

/// An API error: a status and a message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, message.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => ApiError(StatusCode::NOT_FOUND, message),
            StoreError::Conflict(message) => ApiError(StatusCode::CONFLICT, message),
            error => {
                tracing::error!(%error, "store error");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("store error: {error}"),
                )
            }
        }
    }
}

async fn run<T: Send + 'static>(
    store: Arc<dyn Store>,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|error| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store task failed: {error}"),
            )
        })?
        .map_err(ApiError::from)
}

async fn healthz(State(store): State<Arc<dyn Store>>) -> Result<&'static str, ApiError> {
    run(store, |store| store.ping()).await?;
    Ok("ok\n")
}

async fn nodes(State(store): State<Arc<dyn Store>>) -> Result<Json<serde_json::Value>, ApiError> {
    let nodes = run(store, |store| store.nodes()).await?;
    Ok(Json(serde_json::json!({ "nodes": nodes })))
}

/// Query string of `GET /api/v1/records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordParams {
    /// Node id.
    node: Option<String>,
    /// Record kind, e.g. `process`.
    kind: Option<String>,
    /// Substring of the key or fields.
    q: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
    /// Include records that left their node but are still retained.
    #[serde(default)]
    include_removed: bool,
    /// Query the archive tier: records of terminated hosting services awaiting deletion.
    #[serde(default)]
    archived: bool,
}

async fn records(
    State(store): State<Arc<dyn Store>>,
    params: Result<Query<RecordParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) =
        params.map_err(|rejection| ApiError(StatusCode::BAD_REQUEST, rejection.body_text()))?;
    if let Some(kind) = &params.kind
        && policy::category(kind).is_none()
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown kind {kind:?}"),
        ));
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let query = RecordQuery {
        node: params.node.filter(|n| !n.is_empty()),
        kind: params.kind.filter(|k| !k.is_empty()),
        q: params.q.filter(|q| !q.is_empty()),
        limit,
        offset: params.offset.unwrap_or(0),
        include_removed: params.include_removed,
        archived: params.archived,
    };
    let records = run(store, move |store| store.records(&query)).await?;
    Ok(Json(serde_json::json!({ "records": records })))
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}
