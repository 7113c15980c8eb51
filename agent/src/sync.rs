//! `census-agent run`: scans on an interval and streams changes to the collector over
//! one census.v1 `Sync` stream, reconnecting with backoff when the stream breaks.
//!
//! Each new stream starts with a snapshot of every kind; afterwards only changes
//! travel. A batch counts as delivered once the collector acks it.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use census_proto::MAX_MESSAGE_BYTES;
use census_proto::v1::census_client::CensusClient;
use census_proto::v1::{AgentMessage, Hello, Welcome, agent_message, collector_message};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::collectors;
use crate::delta::{Acked, Limits, plan_round};
use crate::redact::Redactor;
use crate::root::HostRoot;
use crate::scan::{Scanner, Selection};
use crate::state::{StateDir, StateError};

/// How long the agent waits for the collector's Welcome or an Ack.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Settings of `census-agent run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Collector gRPC URL, e.g. `http://collector:7701`.
    pub collector: String,
    pub interval: Duration,
    /// Sync once and exit.
    pub once: bool,
    pub state_dir: PathBuf,
    pub host_root: PathBuf,
    /// Overrides the host's machine-id as node id.
    pub node_id: Option<String>,
    pub only: Option<Vec<String>>,
    /// Extra directories searched for python, npm and java packages.
    pub package_dirs: Vec<PathBuf>,
    /// Container runtime socket to use instead of discovering one.
    pub runtime_socket: Option<PathBuf>,
}

/// Why a run or one of its sessions stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The options cannot work (bad URL, unknown kind, no node id).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    State(#[from] StateError),
    /// The collector cannot be reached.
    #[error("cannot connect to collector {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The collector ended the stream with an error status.
    #[error("collector refused: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The collector closed the stream.
    #[error("collector closed the stream")]
    Closed,
    /// The collector did not answer in time.
    #[error("no {0} from collector within {1:?}")]
    Timeout(&'static str, Duration),
    /// The collector sent something out of protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Identity the agent presents in Hello.
#[derive(Debug, Clone)]
struct Identity {
    agent_id: String,
    node_id: String,
    hostname: String,
}

/// Runs until `--once` completes or, without it, forever (callers race it against a
/// shutdown signal).
pub async fn run(options: RunOptions) -> Result<(), SyncError> {
    Endpoint::from_shared(options.collector.clone()).map_err(|error| {
        SyncError::Config(format!(
            "invalid --collector URL {:?}: {error}",
            options.collector
        ))
    })?;
    let state = StateDir::open(&options.state_dir)?;
    let redactor = Redactor::new(state.redaction_key()?);
    let scanner = Scanner::new(
        HostRoot::new(&options.host_root),
        options.only.clone(),
        redactor,
    )
    .map_err(SyncError::Config)?;
    let scanner = Arc::new(scanner);
    let identity = identity(&options, &scanner, &state)?;
    tracing::info!(
        node_id = %identity.node_id,
        agent_id = %identity.agent_id,
        collector = %options.collector,
        "agent starting"
    );

    let mut runtime_events = watch_runtime_events(&scanner);
    let mut backoff = BACKOFF_FIRST;
    loop {
        let mut welcomed = false;
        let result = session(
            &options,
            &state,
            &identity,
            &scanner,
            &mut runtime_events,
            &mut welcomed,
        )
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(error) if options.once => return Err(error),
            Err(error @ (SyncError::Config(_) | SyncError::State(_))) => return Err(error),
            Err(error) => {
                if welcomed {
                    backoff = BACKOFF_FIRST;
                }
                let jittered = backoff.mul_f64(0.8 + fastrand::f64() * 0.4);
                tracing::warn!(%error, retry_in = ?jittered, "sync stream ended");
                sleep(jittered).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn identity(
    options: &RunOptions,
    scanner: &Scanner,
    state: &StateDir,
) -> Result<Identity, SyncError> {
    let ctx = scanner.context();
    let node_id = match &options.node_id {
        Some(id) => id.clone(),
        None => ctx
            .read_optional("/etc/machine-id")
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                SyncError::Config(format!(
                    "no node id: {} is missing or empty; pass --node-id",
                    scanner.root.join("/etc/machine-id").display()
                ))
            })?,
    };
    Ok(Identity {
        agent_id: state.agent_id()?,
        node_id,
        hostname: collectors::host::hostname(&ctx),
    })
}

/// One stream: Hello/Welcome, then a snapshot, then changes every interval.
async fn session(
    options: &RunOptions,
    state: &StateDir,
    identity: &Identity,
    scanner: &Arc<Scanner>,
    runtime_events: &mut mpsc::Receiver<()>,
    welcomed: &mut bool,
) -> Result<(), SyncError> {
    let channel = Endpoint::from_shared(options.collector.clone())
        .map_err(|error| SyncError::Config(error.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|source| SyncError::Connect {
            url: options.collector.clone(),
            source,
        })?;
    let mut client = CensusClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (outbound, outbound_rx) = mpsc::channel::<AgentMessage>(2);
    let last_acked_seq = state.last_acked_seq()?;
    let hello = Hello {
        agent_id: identity.agent_id.clone(),
        node_id: identity.node_id.clone(),
        hostname: identity.hostname.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        last_acked_seq,
    };
    send(&outbound, agent_message::Message::Hello(hello)).await?;
    let mut inbound = client
        .sync(ReceiverStream::new(outbound_rx))
        .await?
        .into_inner();
    let welcome: Welcome = match reply(&mut inbound, "welcome").await? {
        collector_message::Message::Welcome(welcome) => welcome,
        other => {
            return Err(SyncError::Protocol(format!(
                "expected welcome, got {other:?}"
            )));
        }
    };
    *welcomed = true;
    let mut next_seq = last_acked_seq.max(welcome.last_applied_seq) + 1;
    tracing::info!(
        last_applied_seq = welcome.last_applied_seq,
        "connected to collector"
    );

    let mut acked: Option<Acked> = None;
    let mut interval_end = Instant::now();
    // None: a full scan; Some: only the kinds a runtime event may have changed.
    let mut partial: Option<Selection> = None;
    loop {
        if partial.is_none() {
            interval_end = Instant::now() + options.interval;
        }
        let scan = {
            let scanner = scanner.clone();
            let selection = partial.take();
            tokio::task::spawn_blocking(move || match selection {
                Some(selection) => scanner.scan_selected(&selection),
                None => scanner.scan(),
            })
            .await
            .map_err(|error| SyncError::Protocol(format!("scan task failed: {error}")))?
        };
        let round = plan_round(acked.as_ref(), &scan, next_seq, Limits::default());
        let (batches, changes) = (
            round.batches.len(),
            round.batches.iter().map(batch_changes).sum::<usize>(),
        );
        for batch in round.batches {
            let seq = batch.seq;
            send(&outbound, agent_message::Message::Batch(batch)).await?;
            match reply(&mut inbound, "ack").await? {
                collector_message::Message::Ack(ack) if ack.seq == seq => {}
                other => {
                    return Err(SyncError::Protocol(format!(
                        "expected ack of batch {seq}, got {other:?}"
                    )));
                }
            }
            state.set_last_acked_seq(seq)?;
            next_seq = seq + 1;
        }
        let snapshot = acked.is_none();
        acked = Some(round.next);
        tracing::info!(snapshot, batches, changes, "sync round acked");
        if options.once {
            // End the request stream and let the collector close its side.
            drop(outbound);
            let _ = timeout(Duration::from_secs(5), inbound.message()).await;
            return Ok(());
        }
        // Sleep out the interval, noticing at once if the collector goes away, and
        // rescanning containers and images as soon as the runtime reports a change.
        loop {
            tokio::select! {
                _ = sleep_until(interval_end) => break,
                message = inbound.message() => match message? {
                    None => return Err(SyncError::Closed),
                    Some(message) => tracing::warn!(?message, "unexpected message from collector"),
                },
                Some(()) = runtime_events.recv() => {
                    // Let a burst (pull, create, start) settle into one scan.
                    sleep(crate::runtime::docker::EVENT_SETTLE).await;
                    while runtime_events.try_recv().is_ok() {}
                    partial = Some(scanner.selection.intersect(RUNTIME_KINDS));
                    tracing::debug!("runtime event: rescanning containers and images");
                    break;
                }
            }
        }
    }
}

/// Kinds a container runtime event can change.
const RUNTIME_KINDS: &[&str] = &["image", "image_history", "container", "package", "process"];

/// Forwards Docker's image and container events (coalesced) to the sync loop,
/// reconnecting with backoff; a node without Docker never sends any.
fn watch_runtime_events(scanner: &Scanner) -> mpsc::Receiver<()> {
    let (sender, receiver) = mpsc::channel(1);
    let Some(socket) = scanner.docker_socket() else {
        return receiver;
    };
    tokio::spawn(async move {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let result = crate::runtime::docker::watch(&socket, |kind, action| {
                tracing::debug!(kind, action, "docker event");
                // A full channel already holds a wake-up: nothing is lost by dropping this one.
                let _ = sender.try_send(());
            })
            .await;
            if sender.is_closed() {
                return;
            }
            if let Err(error) = result {
                tracing::debug!(%error, retry_in = ?backoff, "docker events stream ended");
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
    receiver
}

fn batch_changes(batch: &census_proto::v1::Batch) -> usize {
    batch
        .kinds
        .iter()
        .map(|k| k.upserts.len() + k.removes.len())
        .sum()
}

async fn send(
    outbound: &mpsc::Sender<AgentMessage>,
    message: agent_message::Message,
) -> Result<(), SyncError> {
    outbound
        .send(AgentMessage {
            message: Some(message),
        })
        .await
        .map_err(|_| SyncError::Closed)
}

async fn reply(
    inbound: &mut tonic::Streaming<census_proto::v1::CollectorMessage>,
    what: &'static str,
) -> Result<collector_message::Message, SyncError> {
    match timeout(REPLY_TIMEOUT, inbound.message()).await {
        Err(_) => Err(SyncError::Timeout(what, REPLY_TIMEOUT)),
        Ok(Err(status)) => Err(status.into()),
        Ok(Ok(None)) => Err(SyncError::Closed),
        Ok(Ok(Some(message))) => message
            .message
            .ok_or_else(|| SyncError::Protocol(format!("empty message where {what} was expected"))),
    }
}
