//! `census-collector serve`: the gRPC ingest and the HTTP API over one store.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use census_proto::MAX_MESSAGE_BYTES;
use census_proto::v1::census_server::CensusServer;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::AppState;
use crate::auth::{ApiTokens, EnrollmentSecrets, SecretsFile};
use crate::calendar::Calendar;
use crate::ingest::{Gate, Ingest, Limits};
use crate::store::{self, PurgeOptions, Store};
use crate::tls::TlsFiles;

/// Shortest pause between scheduled purges.
const MIN_PURGE_PAUSE: Duration = Duration::from_secs(1);
/// How long open streams and requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `sqlite:PATH`.
    pub db: String,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Working days for console configuration deadlines.
    pub calendar: Calendar,
    /// Time between scheduled purges; `None` disables them.
    pub purge_interval: Option<Duration>,
    /// TLS on both ports; `None` serves plain text (local development only).
    pub tls: Option<TlsFiles>,
    /// File of enrollment secrets agents exchange for credentials.
    pub enrollment_secrets: Option<std::path::PathBuf>,
    /// File of HTTP API bearer tokens and their roles.
    pub api_tokens: Option<std::path::PathBuf>,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("http server: {0}")]
    Http(std::io::Error),
    /// A TLS or secrets file cannot be used.
    #[error("{0}")]
    Config(String),
}

/// Serves until `shutdown` resolves. Prints one `listening grpc=ADDR http=ADDR` line on
/// stdout once both ports accept connections (with port 0, the ports chosen).
pub async fn serve(
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let enrollment = options
        .enrollment_secrets
        .as_deref()
        .map(|path| SecretsFile::open(path, EnrollmentSecrets::parse))
        .transpose()
        .map_err(ServeError::Config)?;
    let tokens = options
        .api_tokens
        .as_deref()
        .map(|path| SecretsFile::open(path, ApiTokens::parse))
        .transpose()
        .map_err(ServeError::Config)?;
    let grpc_tls = options
        .tls
        .as_ref()
        .map(TlsFiles::grpc)
        .transpose()
        .map_err(ServeError::Config)?;
    let http_tls = options
        .tls
        .as_ref()
        .map(TlsFiles::http)
        .transpose()
        .map_err(ServeError::Config)?;
    let store: Arc<dyn Store> = {
        let db = options.db.clone();
        tokio::task::spawn_blocking(move || store::open(&db))
            .await
            .map_err(|error| ServeError::Http(std::io::Error::other(error)))??
            .into()
    };
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let grpc_listener = bind(options.grpc_addr).await?;
    let http_listener = bind(options.http_addr).await?;
    let grpc_addr = grpc_listener.local_addr().map_err(ServeError::Http)?;
    let http_addr = http_listener.local_addr().map_err(ServeError::Http)?;

    let (stop, stopped) = watch::channel(false);
    let (config_changed, config_watch) = watch::channel(0u64);
    let (revoked, revoked_watch) = watch::channel(0u64);
    let limits = options.limits;
    let gate = Gate { enrollment, limits };
    let service = CensusServer::new(Ingest::new(
        store.clone(),
        stopped.clone(),
        config_watch,
        revoked_watch,
        gate,
    ))
    .max_decoding_message_size(limits.max_frame_bytes)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut grpc = tonic::transport::Server::builder();
    if let Some(tls) = grpc_tls {
        grpc = grpc.tls_config(tls)?;
    }
    let grpc = grpc
        // A connection carries one agent's stream (and its enrollment): a few are
        // plenty, and every stream counts against `max_streams` besides.
        .max_concurrent_streams(Some(8))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            wait_stop(stopped.clone()),
        );
    let state = AppState {
        store: store.clone(),
        calendar: Arc::new(options.calendar.clone()),
        config_changed: Arc::new(config_changed),
        purge_wake: Arc::new(Notify::new()),
        tokens: tokens.map(Arc::new),
        revoked: Arc::new(revoked),
    };
    tokio::spawn(crate::alarms::deliver(store.clone(), stopped.clone()));
    let purge_wake = state.purge_wake.clone();
    let router = crate::api::router(state);
    let http: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match http_tls {
        Some(config) => Box::pin(crate::tls::serve_https(
            http_listener,
            router,
            config,
            stopped.clone(),
        )),
        None => Box::pin(
            axum::serve(http_listener, router)
                .with_graceful_shutdown(wait_stop(stopped.clone()))
                .into_future(),
        ),
    };
    if let Some(interval) = options.purge_interval {
        tokio::spawn(scheduled_purges(
            store.clone(),
            options.db.clone(),
            interval,
            purge_wake,
            stopped,
        ));
    }

    println!("listening grpc={grpc_addr} http={http_addr}");
    tracing::info!(%grpc_addr, %http_addr, db = %options.db, tls = options.tls.is_some(), mutual_tls = options.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "collector serving");
    if options.tls.is_none() {
        tracing::warn!(
            "serving plain text (--insecure-plaintext): credentials and records cross the network unencrypted"
        );
    }

    let grpc = tokio::spawn(grpc);
    let http = tokio::spawn(http);
    shutdown.await;
    tracing::info!("collector stopping");
    let _ = stop.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, async { (grpc.await, http.await) }).await {
        Ok((grpc, http)) => {
            if let Ok(result) = grpc {
                result?;
            }
            if let Ok(result) = http {
                result.map_err(ServeError::Http)?;
            }
        }
        Err(_) => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period")
        }
    }
    Ok(())
}

/// Purges every `interval` (deleting what falls due before the next run), and also
/// wakes at the earliest deadline and whenever a retention request changed deadlines.
async fn scheduled_purges(
    store: Arc<dyn Store>,
    db: String,
    interval: Duration,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let horizon = jiff::SignedDuration::try_from(interval).unwrap_or(jiff::SignedDuration::ZERO);
    loop {
        let (store_now, db) = (store.clone(), db.clone());
        let result = tokio::task::spawn_blocking(move || {
            let options = PurgeOptions {
                now: jiff::Timestamp::now(),
                horizon,
                dry_run: false,
            };
            let purged = crate::purge::purge(store_now.as_ref(), &db, options, false)?;
            Ok::<_, store::StoreError>((purged, store_now.next_deadline()?))
        })
        .await;
        let mut pause = interval;
        match result {
            Ok(Ok((purged, next))) => {
                if purged.run.deleted > 0 || purged.run.held > 0 {
                    tracing::info!(
                        deleted = purged.run.deleted,
                        held = purged.run.held,
                        late = purged.run.late,
                        "scheduled purge done"
                    );
                }
                if let Some(next) = next {
                    let until = jiff::Timestamp::now().duration_until(next);
                    let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
                    pause = pause.min(until.max(MIN_PURGE_PAUSE));
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "scheduled purge failed"),
            Err(error) => tracing::error!(%error, "scheduled purge task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

async fn wait_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
