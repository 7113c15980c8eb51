//! `census-agent run`: scans on an interval and delivers the changes to the collector
//! over one census.v1 `Sync` stream at a time.
//!
//! Two tasks share the delivery state. The scan loop plans each round against the
//! planned state (what the collector holds once everything spooled is applied) and
//! writes its batches to the disk spool; it keeps scanning while the collector is
//! away. The sender connects (with backoff and jitter), learns from Welcome where
//! the collector stands, replays the spool in order with a bounded window of
//! unacked batches, removes each batch once acked, and, once everything is acked,
//! sends per-kind checksums; a kind the collector disagrees on is sent whole again.
//! The collector's console configuration (interval, enabled kinds) reaches the scan
//! loop through a watch channel of [`Settings`] and takes effect at once.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use census_proto::MAX_MESSAGE_BYTES;
use census_proto::v1::census_client::CensusClient;
use census_proto::v1::{
    AgentMessage, Checksums, Config, DeliveryStats, Hello, Welcome, agent_message,
    collector_message,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::budget::{self, Budget, Governor};
use crate::enroll::{self, CredentialFile, Transport};

use crate::collectors;
use crate::delta::{Limits, Planned, plan_round};
use crate::redact::Redactor;
use crate::root::HostRoot;
use crate::scan::{Scan, Scanner, Selection};
use crate::spool::Spool;
use crate::state::{Counters, StateDir, StateError};

/// How long the agent waits for the collector's Welcome or an Ack.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Batches sent and not yet acked, at most.
const WINDOW: usize = 8;
/// Rounds of checksums a one-shot run repairs before it gives up.
const ONCE_REPAIRS: usize = 3;
/// Longest wait for the answer to a keepalive ping.
const KEEPALIVE_TIMEOUT_MAX: Duration = Duration::from_secs(20);
/// Default bound of the disk spool.
pub const DEFAULT_SPOOL_BYTES: u64 = 256 * 1024 * 1024;
/// Longest interval the console can set (366 days): keeps the next scan's deadline
/// representable.
pub const MAX_CONSOLE_INTERVAL_SECS: u64 = 366 * 24 * 60 * 60;

/// Settings of `census-agent run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Collector gRPC URL, e.g. `http://collector:7701`.
    pub collector: String,
    /// Time between full scans unless the console sets another.
    pub interval: Duration,
    /// Sync once and exit.
    pub once: bool,
    pub state_dir: PathBuf,
    pub host_root: PathBuf,
    /// Overrides the host's machine-id as node id.
    pub node_id: Option<String>,
    /// Kinds scanned (all when `None`) unless the console enables others.
    pub only: Option<Vec<String>>,
    /// Kubernetes cluster the node belongs to, reported in Hello.
    pub cluster: Option<String>,
    /// Extra directories searched for python, npm and java packages.
    pub package_dirs: Vec<PathBuf>,
    /// Container runtime socket to use instead of discovering one.
    pub runtime_socket: Option<PathBuf>,
    /// Bound of the disk spool in bytes.
    pub spool_max_bytes: u64,
    /// HTTP/2 ping interval on the stream; a ping unanswered within the same time
    /// (at most 20 s) ends the stream, so a cut connection is noticed.
    pub keepalive: Duration,
    /// TLS (or, explicitly, plain text) to the collector.
    pub transport: Transport,
    /// The enrollment secret, exchanged for a credential when the agent has none.
    pub enrollment_secret_file: Option<PathBuf>,
    /// CPU and memory the agent may use.
    pub budget: Budget,
    /// Scheduling priority (`nice`) the agent lowers itself to.
    pub nice: i32,
}

/// Time between the watchdog's checks of the agent's own CPU and memory use.
const WATCHDOG_PERIOD: Duration = Duration::from_secs(10);

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
    /// The stream ended with an error status: the collector's, or the transport's
    /// when the connection broke.
    #[error("stream failed with status {}: {}", .0.code(), .0.message())]
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
    cluster: String,
}

/// The scan settings in force: the agent's own flags, overridden by the console
/// configuration the collector sent last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Time between full scans.
    pub interval: Duration,
    /// Kinds scanned.
    pub selection: Selection,
    /// Version of the console configuration applied; `None` before the first.
    pub config_version: Option<u64>,
}

/// What applying a console configuration gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedConfig {
    /// The settings in force from now on.
    pub settings: Settings,
    /// Names in `enabled_kinds` that are no kind this agent collects; ignored.
    pub unknown_kinds: Vec<String>,
    /// `enabled_kinds` named kinds, none of them known: the agent's own selection stays.
    pub kept_own_selection: bool,
}

impl Settings {
    /// The settings `config` gives on top of the agent's own (`own`, from its flags).
    /// Each field is taken from `own` when the console leaves it unset (interval 0,
    /// no enabled kinds), never from an earlier configuration, so clearing a console
    /// setting restores the flag. `known_kinds` are the kinds the agent can collect.
    pub fn with_config(own: &Settings, config: &Config, known_kinds: &[&str]) -> AppliedConfig {
        let interval = match config.interval_secs {
            0 => own.interval,
            secs => Duration::from_secs(secs.clamp(1, MAX_CONSOLE_INTERVAL_SECS)),
        };
        let (selection, unknown_kinds) = Selection::of_known(&config.enabled_kinds, known_kinds);
        let kept_own_selection = !config.enabled_kinds.is_empty() && selection.is_none();
        AppliedConfig {
            settings: Settings {
                interval,
                selection: selection.unwrap_or_else(|| own.selection.clone()),
                config_version: Some(config.version),
            },
            unknown_kinds,
            kept_own_selection,
        }
    }
}

/// Runs until `--once` completes or, without it, forever (callers race it against a
/// shutdown signal).
pub async fn run(options: RunOptions) -> Result<(), SyncError> {
    options
        .transport
        .endpoint(&options.collector)
        .map_err(SyncError::Config)?;
    if let Some(path) = &options.enrollment_secret_file {
        enroll::enrollment_secret(path).map_err(SyncError::Config)?;
    }
    if let Err(error) = budget::lower_priority(options.nice) {
        tracing::warn!(%error, nice = options.nice, "cannot lower the agent's priority");
    }
    let governor = Arc::new(Governor::new(options.budget));
    let state = StateDir::open(&options.state_dir)?;
    let credentials = CredentialFile::new(state.path());
    let redactor = Redactor::new(state.redaction_key()?);
    let scanner = Scanner::new(
        HostRoot::new(&options.host_root),
        options.only.clone(),
        redactor,
    )
    .map_err(SyncError::Config)?
    .with_package_dirs(options.package_dirs.clone())
    .with_runtime_socket(options.runtime_socket.clone())
    .with_governor(governor.clone());
    let scanner = Arc::new(scanner);
    tokio::spawn(watchdog(governor.clone(), scanner.clone()));
    let own = Settings {
        interval: options.interval,
        selection: scanner.selection.clone(),
        config_version: None,
    };
    let known_kinds: Vec<&'static str> = scanner.collectors.iter().map(|c| c.kind()).collect();
    let (settings, settings_rx) = watch::channel(own.clone());
    let identity = identity(&options, &scanner, &state)?;
    let delivery = Arc::new(Mutex::new(Delivery::open(state, options.spool_max_bytes)?));
    {
        let delivery = lock(&delivery);
        tracing::info!(
            node_id = %identity.node_id,
            agent_id = %identity.agent_id,
            cluster = %identity.cluster,
            collector = %options.collector,
            spooled_batches = delivery.spool.len(),
            planned_kinds = delivery.planned.kinds.len(),
            "agent starting"
        );
    }

    let wake = Arc::new(Notify::new());
    let (triggers, trigger_rx) = mpsc::channel::<Vec<String>>(16);
    let runtime_events = watch_runtime_events(&scanner);
    let mut producer = tokio::spawn(produce(
        scanner.clone(),
        delivery.clone(),
        wake.clone(),
        trigger_rx,
        runtime_events,
        settings_rx,
        options.once,
    ));
    let link = Link {
        options: &options,
        identity: &identity,
        delivery: &delivery,
        wake: &wake,
        triggers: &triggers,
        own: &own,
        known_kinds: &known_kinds,
        settings: &settings,
        credentials: &credentials,
        governor: &governor,
    };
    let mut backoff = BACKOFF_FIRST;
    loop {
        let mut welcomed = false;
        let result = tokio::select! {
            result = link.session(&mut welcomed) => result,
            ended = &mut producer => match ended {
                Ok(Ok(())) => Err(SyncError::Protocol("the scan loop ended".into())),
                Ok(Err(error)) => Err(error),
                Err(error) => Err(SyncError::Protocol(format!("scan loop failed: {error}"))),
            },
        };
        if let Err(SyncError::Status(status)) = &result
            && status
                .metadata()
                .contains_key(census_proto::REENROLL_METADATA)
        {
            credentials.forget()?;
            if options.enrollment_secret_file.is_none() {
                return Err(SyncError::Config(format!(
                    "the collector refused this agent's credential ({}) and there is no --enrollment-secret-file to enroll again with",
                    status.message()
                )));
            }
            tracing::warn!(
                reason = status.message(),
                "credential refused: enrolling again"
            );
        }
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

/// Checks the agent's own CPU and memory use every [`WATCHDOG_PERIOD`]: scans slow
/// down while it is over its CPU budget, and caches are dropped while it is over its
/// memory budget.
async fn watchdog(governor: Arc<Governor>, scanner: Arc<Scanner>) {
    let mut ticks = tokio::time::interval(WATCHDOG_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        governor.check();
        if governor.over_memory() {
            scanner.cache.clear();
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
        cluster: options.cluster.clone().unwrap_or_default(),
    })
}

/// The delivery state both tasks share: planned state, spool, counters.
struct Delivery {
    state: StateDir,
    planned: Planned,
    spool: Spool,
    counters: Counters,
    last_acked_seq: u64,
    /// Rounds spooled (or shed) so far.
    rounds: u64,
}

fn lock(delivery: &Mutex<Delivery>) -> MutexGuard<'_, Delivery> {
    delivery.lock().unwrap_or_else(|p| p.into_inner())
}

impl Delivery {
    fn open(state: StateDir, spool_max_bytes: u64) -> Result<Self, StateError> {
        let last_acked_seq = state.last_acked_seq()?;
        let mut spool = Spool::open(state.spool_dir(), spool_max_bytes)?;
        // Acked before a crash, not yet removed.
        spool.remove_through(last_acked_seq);
        Ok(Delivery {
            planned: state.planned(),
            counters: state.counters(),
            spool,
            last_acked_seq,
            rounds: 0,
            state,
        })
    }

    /// Seqs only grow: above everything spooled and everything acked.
    fn next_seq(&self) -> u64 {
        self.spool.last_seq().unwrap_or(0).max(self.last_acked_seq) + 1
    }

    fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            shed_batches: self.counters.shed_batches,
            shed_changes: self.counters.shed_changes,
            corrupt_records: self.counters.corrupt_records,
            spooled_batches: self.spool.len() as u64,
            spooled_bytes: self.spool.bytes(),
            resyncs: self.counters.resyncs,
        }
    }

    /// Plans a round against the planned state and spools it. A round that does not
    /// fit is shed whole: counted, logged, and every kind is sent whole next time.
    fn spool_round(&mut self, scan: &Scan) -> Result<(), StateError> {
        self.rounds += 1;
        let round = plan_round(
            Some(&self.planned),
            scan,
            self.next_seq(),
            Limits::default(),
        );
        if round.batches.is_empty() {
            return Ok(());
        }
        match self.spool.append(&round.batches)? {
            Ok(()) => {
                if round.next != self.planned {
                    self.state.set_planned(&round.next)?;
                    self.planned = round.next;
                }
            }
            Err(full) => {
                let changes: usize = round.batches.iter().map(batch_changes).sum();
                self.counters.shed_batches += round.batches.len() as u64;
                self.counters.shed_changes += changes as u64;
                tracing::warn!(
                    %full,
                    batches = round.batches.len(),
                    changes,
                    shed_batches = self.counters.shed_batches,
                    shed_changes = self.counters.shed_changes,
                    "spool full: this round is shed; every kind is sent whole once there is room"
                );
                self.state.set_counters(&self.counters)?;
                self.forget(&[])?;
            }
        }
        Ok(())
    }

    /// Forgets kinds (all when empty) so the next round sends them whole.
    fn forget(&mut self, kinds: &[String]) -> Result<(), StateError> {
        self.planned.forget(kinds);
        self.counters.resyncs += 1;
        self.state.set_counters(&self.counters)?;
        self.state.set_planned(&self.planned)
    }

    fn acked(&mut self, seq: u64) -> Result<(), StateError> {
        self.state.set_last_acked_seq(seq)?;
        self.last_acked_seq = seq;
        self.spool.remove_through(seq);
        Ok(())
    }

    /// Reconciles with where the collector stands. True when every kind must be sent
    /// whole again.
    fn welcome(&mut self, last_applied: u64) -> Result<bool, StateError> {
        let ours = self.last_acked_seq.max(self.spool.last_seq().unwrap_or(0));
        if last_applied > ours {
            // The collector applied batches this state dir never wrote (it was lost or
            // replaced): continue above them and send everything whole.
            tracing::warn!(
                last_applied,
                ours,
                "the collector is ahead of this agent's state: resyncing every kind"
            );
            self.spool.clear();
            self.acked(last_applied)?;
            self.forget(&[])?;
            return Ok(true);
        }
        if last_applied < self.last_acked_seq {
            // The collector lost batches it had acked (a restored or new database).
            tracing::warn!(
                last_applied,
                last_acked = self.last_acked_seq,
                "the collector lost acked batches: resyncing every kind"
            );
            self.forget(&[])?;
            return Ok(true);
        }
        self.acked(last_applied)?;
        Ok(false)
    }
}

/// The scan loop: a round every interval, a partial one on runtime events, a resync
/// round when the sender asks for kinds to be sent whole, and one as soon as the
/// settings change their interval or kinds (the interval then counts from there).
/// Kinds no longer selected are not scanned, and a round plans only the kinds it
/// scanned, so their records stay at the collector as last sent.
async fn produce(
    scanner: Arc<Scanner>,
    delivery: Arc<Mutex<Delivery>>,
    wake: Arc<Notify>,
    mut triggers: mpsc::Receiver<Vec<String>>,
    mut runtime_events: mpsc::Receiver<()>,
    mut settings: watch::Receiver<Settings>,
    once: bool,
) -> Result<(), SyncError> {
    let mut current = settings.borrow_and_update().clone();
    let mut next_full = Instant::now();
    let mut first = true;
    loop {
        // None: a full scan; Some: only the kinds a runtime event may have changed.
        let selection: Option<Selection> = if std::mem::take(&mut first) {
            None
        } else if once {
            match triggers.recv().await {
                Some(kinds) => {
                    lock(&delivery).forget(&kinds)?;
                    None
                }
                None => return Ok(()),
            }
        } else {
            tokio::select! {
                _ = sleep_until(next_full) => None,
                Some(kinds) = triggers.recv() => {
                    lock(&delivery).forget(&kinds)?;
                    None
                }
                Some(()) = runtime_events.recv() => {
                    // Let a burst (pull, create, start) settle into one scan.
                    sleep(crate::runtime::docker::EVENT_SETTLE).await;
                    while runtime_events.try_recv().is_ok() {}
                    tracing::debug!("runtime event: rescanning containers and images");
                    Some(current.selection.intersect(RUNTIME_KINDS))
                }
                Ok(()) = settings.changed() => {
                    let changed = settings.borrow_and_update().clone();
                    let rescan = changed.interval != current.interval
                        || changed.selection != current.selection;
                    current = changed;
                    if !rescan {
                        continue;
                    }
                    tracing::debug!(
                        interval = ?current.interval,
                        kinds = %current.selection,
                        "scan settings changed: scanning now"
                    );
                    None
                }
            }
        };
        let selection = match selection {
            Some(selection) => selection,
            None => {
                next_full = Instant::now() + current.interval;
                current.selection.clone()
            }
        };
        let scan = {
            let scanner = scanner.clone();
            tokio::task::spawn_blocking(move || scanner.scan_selected(&selection))
                .await
                .map_err(|error| SyncError::Protocol(format!("scan task failed: {error}")))?
        };
        {
            let mut delivery = lock(&delivery);
            delivery.spool_round(&scan)?;
            tracing::debug!(
                spooled_batches = delivery.spool.len(),
                spooled_bytes = delivery.spool.bytes(),
                "round spooled"
            );
        }
        wake.notify_one();
    }
}

/// What the sender works with.
struct Link<'a> {
    options: &'a RunOptions,
    identity: &'a Identity,
    delivery: &'a Arc<Mutex<Delivery>>,
    wake: &'a Notify,
    triggers: &'a mpsc::Sender<Vec<String>>,
    /// Settings from the agent's own flags, the base of every console configuration.
    own: &'a Settings,
    /// Kinds the agent can collect.
    known_kinds: &'a [&'static str],
    /// Settings in force, watched by the scan loop.
    settings: &'a watch::Sender<Settings>,
    credentials: &'a CredentialFile,
    governor: &'a Governor,
}

impl Link<'_> {
    /// One stream: Hello/Welcome, then the spool replayed in order and checksums once
    /// everything is acked. Returns (one-shot runs only) once the collector agrees.
    async fn session(&self, welcomed: &mut bool) -> Result<(), SyncError> {
        let options = self.options;
        let channel = options
            .transport
            .endpoint(&options.collector)
            .map_err(SyncError::Config)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(options.keepalive)
            .keep_alive_timeout(options.keepalive.min(KEEPALIVE_TIMEOUT_MAX))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|source| SyncError::Connect {
                url: options.collector.clone(),
                source,
            })?;
        let mut bearer: MetadataValue<Ascii> =
            format!("Bearer {}", self.credential(channel.clone()).await?)
                .parse()
                .map_err(|_| {
                    SyncError::Config(format!(
                        "{} holds a credential that is not ASCII",
                        self.credentials.path().display()
                    ))
                })?;
        bearer.set_sensitive(true);
        let mut client =
            CensusClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
                Ok(request)
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let (outbound, outbound_rx) = mpsc::channel::<AgentMessage>(2);
        let hello = {
            let delivery = lock(self.delivery);
            Hello {
                agent_id: self.identity.agent_id.clone(),
                node_id: self.identity.node_id.clone(),
                hostname: self.identity.hostname.clone(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                last_acked_seq: delivery.last_acked_seq,
                delivery: Some(delivery.stats()),
                cluster: self.identity.cluster.clone(),
                health: Some(self.governor.health()),
            }
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
        let (resync, mut sent_through) = {
            let mut delivery = lock(self.delivery);
            let resync = delivery.welcome(welcome.last_applied_seq)?;
            (resync, delivery.last_acked_seq)
        };
        tracing::info!(
            last_applied_seq = welcome.last_applied_seq,
            "connected to collector"
        );
        if resync {
            let _ = self.triggers.send(Vec::new()).await;
        }

        let mut in_flight: VecDeque<u64> = VecDeque::new();
        // Rounds covered by the last checksums sent, and whether they are answered.
        let mut checked_rounds = 0;
        let mut awaiting_verdict = false;
        let mut verified = false;
        let mut repairs = 0;
        let mut reply_deadline: Option<Instant> = None;
        loop {
            // Fill the window from the spool, oldest first.
            while in_flight.len() < WINDOW {
                let next = lock(self.delivery).spool.seqs_after(sent_through).next();
                let Some(seq) = next else { break };
                let batch = self.read_spooled(seq).await?;
                let changes = batch_changes(&batch);
                send(&outbound, agent_message::Message::Batch(batch)).await?;
                tracing::debug!(seq, changes, "batch sent");
                sent_through = seq;
                in_flight.push_back(seq);
            }
            // Checksums once everything is acked and a round was spooled since the last.
            if in_flight.is_empty() && !awaiting_verdict {
                let checksums = {
                    let delivery = lock(self.delivery);
                    (delivery.spool.is_empty() && delivery.rounds > checked_rounds).then(|| {
                        checked_rounds = delivery.rounds;
                        Checksums {
                            seq: delivery.last_acked_seq,
                            kinds: delivery.planned.checksums(),
                            delivery: Some(delivery.stats()),
                            health: Some(self.governor.health()),
                        }
                    })
                };
                if let Some(checksums) = checksums {
                    send(&outbound, agent_message::Message::Checksums(checksums)).await?;
                    awaiting_verdict = true;
                    verified = false;
                }
            }
            if options.once && verified {
                // End the request stream and let the collector close its side.
                drop(outbound);
                let _ = timeout(Duration::from_secs(5), inbound.message()).await;
                return Ok(());
            }
            // The collector owes a reply: it must come within REPLY_TIMEOUT of the
            // last message received (or of the first request it owes).
            let waiting_for_reply = !in_flight.is_empty() || awaiting_verdict;
            if !waiting_for_reply {
                reply_deadline = None;
            } else if reply_deadline.is_none() {
                reply_deadline = Some(Instant::now() + REPLY_TIMEOUT);
            }
            let deadline = reply_deadline.unwrap_or_else(|| Instant::now() + BACKOFF_MAX);
            tokio::select! {
                message = inbound.message() => {
                    reply_deadline = None;
                    self.received(message?, &mut in_flight, &mut awaiting_verdict, &mut verified, &mut repairs).await?;
                }
                _ = sleep_until(deadline), if waiting_for_reply => {
                    return Err(SyncError::Timeout("ack", REPLY_TIMEOUT));
                }
                _ = self.wake.notified() => {}
            }
        }
    }

    /// The agent's credential: the stored one, or a new one from enrollment.
    async fn credential(&self, channel: Channel) -> Result<String, SyncError> {
        let node_id = &self.identity.node_id;
        if let Some(credential) = self.credentials.load(node_id)? {
            return Ok(credential);
        }
        let Some(secret_file) = &self.options.enrollment_secret_file else {
            return Err(SyncError::Config(format!(
                "no credential for node {node_id} in {} and no --enrollment-secret-file to enroll with",
                self.credentials.path().display()
            )));
        };
        let secret = enroll::enrollment_secret(secret_file).map_err(SyncError::Config)?;
        let credential = enroll::enroll(
            channel,
            secret,
            node_id,
            &self.identity.agent_id,
            &self.identity.hostname,
        )
        .await?;
        self.credentials.save(node_id, &credential)?;
        Ok(credential)
    }

    /// Handles one message from the collector.
    async fn received(
        &self,
        message: Option<census_proto::v1::CollectorMessage>,
        in_flight: &mut VecDeque<u64>,
        awaiting_verdict: &mut bool,
        verified: &mut bool,
        repairs: &mut usize,
    ) -> Result<(), SyncError> {
        let message = message
            .ok_or(SyncError::Closed)?
            .message
            .ok_or_else(|| SyncError::Protocol("an empty message from the collector".into()))?;
        match message {
            collector_message::Message::Ack(ack) => {
                if in_flight.front() != Some(&ack.seq) {
                    return Err(SyncError::Protocol(format!(
                        "ack of batch {} while the oldest unacked is {:?}",
                        ack.seq,
                        in_flight.front()
                    )));
                }
                in_flight.pop_front();
                lock(self.delivery).acked(ack.seq)?;
            }
            collector_message::Message::Resync(resync) if *awaiting_verdict => {
                *awaiting_verdict = false;
                if resync.kinds.is_empty() {
                    *verified = true;
                    tracing::debug!(
                        seq = resync.seq,
                        "collector state agrees with the checksums"
                    );
                } else {
                    *repairs += 1;
                    if self.options.once && *repairs > ONCE_REPAIRS {
                        return Err(SyncError::Protocol(format!(
                            "collector state still differs after {ONCE_REPAIRS} resyncs: {:?}",
                            resync.kinds
                        )));
                    }
                    tracing::warn!(seq = resync.seq, kinds = ?resync.kinds, "collector state differs: resending these kinds whole");
                    let _ = self.triggers.send(resync.kinds).await;
                }
            }
            collector_message::Message::Config(config) => self.configure(&config),
            other => {
                return Err(SyncError::Protocol(format!(
                    "unexpected message from collector: {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// Applies the console configuration: the scan loop picks up the new settings at
    /// once. A one-shot run keeps its own flags, so what it syncs does not depend on
    /// when the configuration arrives.
    fn configure(&self, config: &Config) {
        let version = config.version;
        if self.options.once {
            tracing::info!(version, "one-shot run: console configuration not applied");
            return;
        }
        if self.settings.borrow().config_version == Some(version) {
            tracing::debug!(version, "console configuration already applied");
            return;
        }
        let applied = Settings::with_config(self.own, config, self.known_kinds);
        if !applied.unknown_kinds.is_empty() {
            tracing::warn!(
                version,
                kinds = ?applied.unknown_kinds,
                "console configuration enables unknown kinds: ignored"
            );
        }
        if applied.kept_own_selection {
            tracing::warn!(
                version,
                kinds = %applied.settings.selection,
                "console configuration enables no known kind: keeping the agent's own selection"
            );
        }
        tracing::info!(
            version,
            interval_secs = applied.settings.interval.as_secs(),
            kinds = %applied.settings.selection,
            "console configuration applied"
        );
        self.settings.send_replace(applied.settings);
    }

    /// A spooled batch; damaged entries are counted and every kind is resent whole.
    async fn read_spooled(&self, seq: u64) -> Result<census_proto::v1::Batch, SyncError> {
        let spooled = {
            let mut delivery = lock(self.delivery);
            let spooled = delivery.spool.read(seq)?;
            if spooled.corrupt > 0 {
                delivery.counters.corrupt_records += spooled.corrupt;
                tracing::warn!(
                    seq,
                    corrupt = spooled.corrupt,
                    total = delivery.counters.corrupt_records,
                    path = %delivery.spool.dir().display(),
                    "spooled batch has damaged entries: skipped; every kind is resent whole"
                );
            }
            spooled
        };
        if spooled.corrupt > 0 {
            let _ = self.triggers.send(Vec::new()).await;
        }
        Ok(spooled.batch)
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

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["host", "process", "package", "account", "group"];

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn selection(kinds: &[&str]) -> Selection {
        Selection::of_known(&names(kinds), KNOWN)
            .0
            .expect("known kinds")
    }

    fn own() -> Settings {
        Settings {
            interval: Duration::from_secs(60),
            selection: selection(&["process", "package"]),
            config_version: None,
        }
    }

    fn config(version: u64, interval_secs: u64, kinds: &[&str]) -> Config {
        Config {
            version,
            interval_secs,
            enabled_kinds: names(kinds),
        }
    }

    #[test]
    fn console_configuration_overrides_the_flags() {
        let applied = Settings::with_config(&own(), &config(3, 5, &["account", "host"]), KNOWN);
        assert_eq!(
            applied,
            AppliedConfig {
                settings: Settings {
                    interval: Duration::from_secs(5),
                    selection: selection(&["host", "account"]),
                    config_version: Some(3),
                },
                unknown_kinds: vec![],
                kept_own_selection: false,
            }
        );
        assert_eq!(applied.settings.selection.to_string(), "host,account");
    }

    #[test]
    fn unset_console_fields_keep_the_flags() {
        let applied = Settings::with_config(&own(), &config(4, 0, &[]), KNOWN);
        assert_eq!(
            applied.settings,
            Settings {
                config_version: Some(4),
                ..own()
            }
        );
        assert!(applied.unknown_kinds.is_empty() && !applied.kept_own_selection);
    }

    #[test]
    fn unknown_kinds_are_ignored() {
        let applied = Settings::with_config(&own(), &config(1, 0, &["bogus", "account"]), KNOWN);
        assert_eq!(applied.settings.selection, selection(&["account"]));
        assert_eq!(applied.unknown_kinds, names(&["bogus"]));
        assert!(!applied.kept_own_selection);

        let applied = Settings::with_config(&own(), &config(2, 0, &["bogus", "other"]), KNOWN);
        assert_eq!(applied.settings.selection, own().selection);
        assert_eq!(applied.unknown_kinds, names(&["bogus", "other"]));
        assert!(applied.kept_own_selection);
    }

    #[test]
    fn console_intervals_are_clamped() {
        let applied = Settings::with_config(&own(), &config(1, 1, &[]), KNOWN);
        assert_eq!(applied.settings.interval, Duration::from_secs(1));
        let applied = Settings::with_config(&own(), &config(1, u64::MAX, &[]), KNOWN);
        assert_eq!(
            applied.settings.interval,
            Duration::from_secs(MAX_CONSOLE_INTERVAL_SECS)
        );
    }

    /// Waits (at most 10 s) until the scan loop has spooled `rounds` rounds.
    async fn wait_rounds(delivery: &Mutex<Delivery>, rounds: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(delivery).rounds < rounds {
            assert!(
                Instant::now() < deadline,
                "round {rounds} was not spooled within 10 s"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Removes of `kind` in the spooled batches.
    fn spooled_removes(delivery: &Mutex<Delivery>, kind: &str) -> Vec<String> {
        let delivery = lock(delivery);
        delivery
            .spool
            .seqs_after(0)
            .flat_map(|seq| delivery.spool.read(seq).expect("spooled batch").batch.kinds)
            .filter(|changes| changes.kind == kind)
            .flat_map(|changes| changes.removes)
            .collect()
    }

    #[tokio::test]
    async fn the_scan_loop_follows_the_settings_at_once() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join("etc"))?;
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )?;
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nalice:x:1000:\n")?;
        let state_dir = tempfile::tempdir()?;
        let scanner = Scanner::new(
            HostRoot::new(root.path()),
            Some(names(&["account", "group"])),
            Redactor::new([7; 32]),
        )
        .map_err(anyhow::Error::msg)?;
        let scanner = Arc::new(scanner);
        let delivery = Arc::new(Mutex::new(Delivery::open(
            StateDir::open(state_dir.path())?,
            DEFAULT_SPOOL_BYTES,
        )?));
        let own = Settings {
            interval: Duration::from_secs(3600),
            selection: scanner.selection.clone(),
            config_version: None,
        };
        let (settings, settings_rx) = watch::channel(own.clone());
        let (_triggers, trigger_rx) = mpsc::channel(1);
        let (_events, events_rx) = mpsc::channel(1);
        let producer = tokio::spawn(produce(
            scanner,
            delivery.clone(),
            Arc::new(Notify::new()),
            trigger_rx,
            events_rx,
            settings_rx,
            false,
        ));
        wait_rounds(&delivery, 1).await;
        assert_eq!(lock(&delivery).planned.kinds["group"].len(), 2);

        // The group collector is disabled, then a group goes: nothing is removed.
        std::fs::write(root.path().join("etc/group"), "root:x:0:\n")?;
        settings.send_replace(Settings {
            selection: selection(&["account"]),
            config_version: Some(1),
            ..own.clone()
        });
        wait_rounds(&delivery, 2).await;
        assert!(spooled_removes(&delivery, "group").is_empty());
        assert_eq!(lock(&delivery).planned.kinds["group"].len(), 2);

        // Enabled again, it is scanned at once and sends what changed meanwhile.
        settings.send_replace(Settings {
            selection: selection(&["account", "group"]),
            config_version: Some(2),
            ..own.clone()
        });
        wait_rounds(&delivery, 3).await;
        assert_eq!(spooled_removes(&delivery, "group").len(), 1);
        assert_eq!(lock(&delivery).planned.kinds["group"].len(), 1);

        // A shorter interval cuts the pending hour-long sleep short.
        settings.send_replace(Settings {
            interval: Duration::from_secs(1),
            config_version: Some(3),
            ..own.clone()
        });
        wait_rounds(&delivery, 5).await;
        producer.abort();
        Ok(())
    }
}
