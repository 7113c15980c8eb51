//! gRPC ingest: the census.v1 `Sync` stream. Every batch is validated and tagged in
//! full before anything of it is stored; a bad batch ends the stream with a status
//! that names what was wrong, and stores nothing.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use census_proto::v1::census_server::Census;
use census_proto::v1::{
    Ack, AgentHealth, AgentMessage, Batch, Checksums, CollectorMessage, DeliveryStats,
    EnrollRequest, EnrollResponse, Hello, Resync, Welcome, agent_message, collector_message,
};
use census_proto::{FINGERPRINT_LEN, Fields};
use jiff::Timestamp;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Credential, EnrollmentSecrets, SecretsFile};
use crate::policy;
use crate::store::{
    Applied, BatchApply, CredentialInfo, Delivery, KindApply, NewCredential, NodeHello, Store,
    StoreError, TaggedRecord,
};

/// Longest record key or node id accepted.
pub const MAX_KEY_BYTES: usize = 1024;

/// What one agent may send: refusals name the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded census.v1 message.
    pub max_frame_bytes: usize,
    /// Upserts plus removes in one batch.
    pub max_batch_changes: usize,
    /// Longest string anywhere in a record's fields.
    pub max_string_bytes: usize,
    /// Sustained bytes per second per agent (each message counts at least 1 KiB).
    pub rate_bytes_per_sec: u64,
    /// Bytes an agent may send at once above its rate (an initial sync).
    pub rate_burst_bytes: u64,
    /// Agent streams open at once.
    pub max_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: census_proto::MAX_MESSAGE_BYTES,
            max_batch_changes: 10_000,
            max_string_bytes: 256 * 1024,
            rate_bytes_per_sec: 8 * 1024 * 1024,
            rate_burst_bytes: 512 * 1024 * 1024,
            max_streams: 10_000,
        }
    }
}

/// Smallest cost of one message against an agent's rate.
const MESSAGE_COST_BYTES: u64 = 1024;

/// A token bucket of bytes.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// The gRPC side's security settings.
#[derive(Debug, Default)]
pub struct Gate {
    /// Enrollment secrets; without them, no agent can enroll.
    pub enrollment: Option<SecretsFile<EnrollmentSecrets>>,
    pub limits: Limits,
}

/// Open streams by node id: the stream's id and the sender that ends it. A new stream
/// for a node replaces (ends) the previous one, as after an agent restart.
type OpenStreams = Arc<Mutex<HashMap<String, (u64, watch::Sender<bool>)>>>;

/// The `Census` gRPC service.
pub struct Ingest {
    store: Arc<dyn Store>,
    streams: OpenStreams,
    next_stream: std::sync::atomic::AtomicU64,
    shutdown: watch::Receiver<bool>,
    config_changed: watch::Receiver<u64>,
    revoked: watch::Receiver<u64>,
    gate: Arc<Gate>,
    permits: Arc<Semaphore>,
    rates: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Ingest {
    /// `shutdown` turning true ends every open stream; a change of `config_changed`
    /// sends every connected agent its console configuration again; a change of
    /// `revoked` makes every open stream check its credential again.
    pub fn new(
        store: Arc<dyn Store>,
        shutdown: watch::Receiver<bool>,
        config_changed: watch::Receiver<u64>,
        revoked: watch::Receiver<u64>,
        gate: Gate,
    ) -> Self {
        Ingest {
            store,
            streams: Arc::default(),
            next_stream: Default::default(),
            shutdown,
            config_changed,
            revoked,
            permits: Arc::new(Semaphore::new(gate.limits.max_streams)),
            gate: Arc::new(gate),
            rates: Arc::default(),
        }
    }

    /// The credential a call presents, checked against the store.
    async fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        peer: &str,
    ) -> Result<CredentialInfo, Status> {
        let presented = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let Some(presented) = presented else {
            tracing::warn!(%peer, "sync refused: no credential");
            return Err(Status::unauthenticated(
                "no credential: enroll first (census-agent run --enrollment-secret-file FILE)",
            ));
        };
        let Some(credential) = Credential::parse(presented.trim()) else {
            tracing::warn!(%peer, "sync refused: malformed credential");
            return Err(reenroll("malformed credential: enroll again"));
        };
        let id = credential.id.clone();
        let stored = blocking(&self.store, move |store| store.credential(&id)).await?;
        match stored {
            Some(stored) if credential.matches(&stored.secret_sha256) => {
                if let Some(at) = &stored.revoked_at {
                    tracing::warn!(%peer, credential = %stored.id, node = %stored.node_id, "sync refused: credential revoked");
                    return Err(reenroll(&format!(
                        "credential {} was revoked at {at}: enroll again",
                        stored.id
                    )));
                }
                Ok(stored)
            }
            _ => {
                tracing::warn!(%peer, credential = %credential.id, "sync refused: unknown credential");
                Err(reenroll(&format!(
                    "unknown credential {}: enroll again",
                    credential.id
                )))
            }
        }
    }
}

/// UNAUTHENTICATED, telling the agent to enroll again.
fn reenroll(message: &str) -> Status {
    let mut status = Status::unauthenticated(message);
    status.metadata_mut().insert(
        census_proto::REENROLL_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

#[tonic::async_trait]
impl Census for Ingest {
    type SyncStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let peer = peer_of(&request);
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = self.gate.limits.max_streams, "sync refused: too many streams");
            return Err(Status::resource_exhausted(format!(
                "the collector is at its limit of {} concurrent agent streams; retry later",
                self.gate.limits.max_streams
            )));
        };
        let credential = self.authenticate(request.metadata(), &peer).await?;
        let inbound = request.into_inner();
        let (outbound, outbound_rx) = mpsc::channel(4);
        let stream = StreamTask {
            store: self.store.clone(),
            streams: self.streams.clone(),
            id: self
                .next_stream
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            shutdown: self.shutdown.clone(),
            config_changed: self.config_changed.clone(),
            revoked: self.revoked.clone(),
            limits: self.gate.limits,
            rates: self.rates.clone(),
            credential,
            outbound,
            peer,
            _permit: permit,
        };
        tokio::spawn(stream.run(inbound));
        Ok(Response::new(ReceiverStream::new(outbound_rx)))
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = peer_of(&request);
        let request = request.into_inner();
        let Some(secrets) = &self.gate.enrollment else {
            tracing::warn!(%peer, node = %request.node_id, "enrollment refused: no enrollment secrets configured");
            return Err(Status::unauthenticated(
                "this collector accepts no enrollment (it runs without --enrollment-secrets)",
            ));
        };
        let Some(label) = secrets.get().check(&request.enrollment_secret) else {
            tracing::warn!(%peer, node = %request.node_id, "enrollment refused: secret not accepted");
            return Err(Status::unauthenticated("enrollment secret not accepted"));
        };
        for (field, value) in [
            ("node_id", &request.node_id),
            ("agent_id", &request.agent_id),
            ("hostname", &request.hostname),
        ] {
            if value.len() > MAX_KEY_BYTES {
                return Err(Status::invalid_argument(format!(
                    "enrollment {field} is longer than {MAX_KEY_BYTES} bytes"
                )));
            }
        }
        if request.node_id.is_empty() {
            return Err(Status::invalid_argument("enrollment has an empty node_id"));
        }
        let credential = Credential::generate().map_err(|error| {
            Status::internal(format!("no randomness for a credential: {error}"))
        })?;
        let new = NewCredential {
            id: credential.id.clone(),
            secret_sha256: credential.secret_sha256(),
            node_id: request.node_id.clone(),
            agent_id: request.agent_id,
            hostname: request.hostname,
            enrolled_from: peer.clone(),
            enrollment_secret: label.clone(),
        };
        blocking(&self.store, move |store| {
            store.enroll(&new, Timestamp::now())
        })
        .await?;
        tracing::info!(%peer, node = %request.node_id, credential = %credential.id, enrollment_secret = %label, "agent enrolled");
        Ok(Response::new(EnrollResponse {
            credential: credential.token(),
            credential_id: credential.id,
        }))
    }
}

fn peer_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}

struct StreamTask {
    store: Arc<dyn Store>,
    streams: OpenStreams,
    id: u64,
    shutdown: watch::Receiver<bool>,
    config_changed: watch::Receiver<u64>,
    revoked: watch::Receiver<u64>,
    limits: Limits,
    rates: Arc<Mutex<HashMap<String, Bucket>>>,
    credential: CredentialInfo,
    outbound: mpsc::Sender<Result<CollectorMessage, Status>>,
    peer: String,
    /// Held while the stream is open: counts against `Limits::max_streams`.
    _permit: OwnedSemaphorePermit,
}

impl StreamTask {
    async fn run(self, mut inbound: Streaming<AgentMessage>) {
        let mut node_id = None;
        let result = self.serve(&mut inbound, &mut node_id).await;
        if let Some(node_id) = &node_id {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            if streams.get(node_id).is_some_and(|(id, _)| *id == self.id) {
                streams.remove(node_id);
            }
        }
        match result {
            Ok(()) => tracing::info!(peer = %self.peer, node = ?node_id, "stream closed by agent"),
            Err(status) => {
                tracing::warn!(peer = %self.peer, node = ?node_id, code = ?status.code(), message = status.message(), "stream ended");
                let _ = self.outbound.send(Err(status)).await;
            }
        }
    }

    async fn serve(
        &self,
        inbound: &mut Streaming<AgentMessage>,
        node: &mut Option<String>,
    ) -> Result<(), Status> {
        let hello = match next(inbound).await? {
            Some(agent_message::Message::Hello(hello)) => hello,
            Some(agent_message::Message::Batch(batch)) => {
                return Err(Status::failed_precondition(format!(
                    "batch {} before hello: a stream must start with Hello",
                    batch.seq
                )));
            }
            Some(agent_message::Message::Checksums(_)) => {
                return Err(Status::failed_precondition(
                    "checksums before hello: a stream must start with Hello",
                ));
            }
            None => return Ok(()),
        };
        let reported = hello.delivery;
        let health = hello.health;
        let hello = validate_hello(hello)?;
        if hello.node_id != self.credential.node_id {
            tracing::warn!(
                peer = %self.peer,
                credential = %self.credential.id,
                bound_to = %self.credential.node_id,
                claimed = %hello.node_id,
                "stream refused: hello names another node than its credential"
            );
            return Err(Status::permission_denied(format!(
                "credential {} is bound to node {:?}; it cannot write node {:?}",
                self.credential.id, self.credential.node_id, hello.node_id
            )));
        }
        let node_id = hello.node_id.clone();
        *node = Some(node_id.clone());
        let mut replaced = self.register(&node_id);
        let now = Timestamp::now().as_millisecond();
        let credential = self.credential.id.clone();
        let last_applied_seq = blocking(&self.store, move |store| {
            let seq = store.hello(&hello, now)?;
            store.credential_used(&credential, Timestamp::now())?;
            if let Some(stats) = reported {
                store.report_delivery(&hello.node_id, &delivery(&stats))?;
            }
            if let Some(health) = health {
                store.report_health(&hello.node_id, &health_json(&health))?;
            }
            Ok(seq)
        })
        .await?;
        self.send(collector_message::Message::Welcome(Welcome {
            last_applied_seq,
            collector_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
        .await?;
        tracing::info!(peer = %self.peer, node = %node_id, last_applied_seq, "agent connected");

        let mut config_changed = self.config_changed.clone();
        config_changed.mark_unchanged();
        let mut sent_config = crate::console::NodeConfig::default();
        self.push_config(&node_id, &mut sent_config).await?;
        let mut shutdown = self.shutdown.clone();
        let mut revoked = self.revoked.clone();
        revoked.mark_unchanged();
        loop {
            let mut check_credential = false;
            let message = tokio::select! {
                message = next(inbound) => Some(message?),
                Ok(()) = config_changed.changed() => None,
                Ok(()) = revoked.changed() => {
                    check_credential = true;
                    None
                }
                _ = replaced.changed() => {
                    return Err(Status::aborted(format!("a newer stream for node {node_id} replaced this one")));
                }
                _ = shutdown.wait_for(|stop| *stop) => return Err(Status::unavailable("collector shutting down")),
            };
            if check_credential {
                self.still_valid().await?;
                continue;
            }
            let Some(message) = message else {
                self.push_config(&node_id, &mut sent_config).await?;
                continue;
            };
            if let Some(message) = &message {
                self.charge(&node_id, message)?;
            }
            let batch = match message {
                None => return Ok(()),
                Some(agent_message::Message::Batch(batch)) => batch,
                Some(agent_message::Message::Checksums(checksums)) => {
                    let resync = self.verify(&node_id, checksums).await?;
                    self.send(collector_message::Message::Resync(resync))
                        .await?;
                    continue;
                }
                Some(agent_message::Message::Hello(_)) => {
                    return Err(Status::failed_precondition("a second hello on one stream"));
                }
            };
            let seq = batch.seq;
            let prepared = prepare_batch_within(&node_id, batch, Timestamp::now(), &self.limits)?;
            let applied: Applied =
                blocking(&self.store, move |store| store.apply(&prepared)).await?;
            tracing::debug!(node = %node_id, seq, ?applied, "batch applied");
            self.send(collector_message::Message::Ack(Ack { seq }))
                .await?;
        }
    }

    /// Compares the agent's per-kind checksums with the stored live records: the
    /// answer names the kinds that differ (none when all agree).
    async fn verify(&self, node_id: &str, checksums: Checksums) -> Result<Resync, Status> {
        for kind in &checksums.kinds {
            if !census_proto::KINDS.contains(&kind.kind.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "checksums for unknown kind {:?}",
                    kind.kind
                )));
            }
        }
        let kinds: Vec<String> = checksums.kinds.iter().map(|k| k.kind.clone()).collect();
        let node = node_id.to_string();
        let reported = checksums.delivery;
        let health = checksums.health;
        let stored = blocking(&self.store, move |store| {
            if let Some(stats) = reported {
                store.report_delivery(&node, &delivery(&stats))?;
            }
            if let Some(health) = health {
                store.report_health(&node, &health_json(&health))?;
            }
            store.checksums(&node, &kinds)
        })
        .await?;
        let differing: Vec<String> = checksums
            .kinds
            .iter()
            .filter(|k| {
                stored
                    .get(&k.kind)
                    .is_none_or(|d| d.count != k.count || d.digest != k.digest)
            })
            .map(|k| k.kind.clone())
            .collect();
        if !differing.is_empty() {
            tracing::warn!(node = %node_id, seq = checksums.seq, kinds = ?differing, "checksums differ: asking for a resync");
            let node = node_id.to_string();
            let count = differing.len() as u64;
            blocking(&self.store, move |store| {
                store.count_mismatches(&node, count)
            })
            .await?;
        }
        Ok(Resync {
            seq: checksums.seq,
            kinds: differing,
        })
    }

    /// Sends the node its console configuration when it differs from what was sent.
    async fn push_config(
        &self,
        node_id: &str,
        sent: &mut crate::console::NodeConfig,
    ) -> Result<(), Status> {
        let items = blocking(&self.store, |store| store.config_items(None, None)).await?;
        let config = crate::console::node_config(node_id, &items);
        if config.version == 0 || config == *sent {
            return Ok(());
        }
        self.send(collector_message::Message::Config(
            census_proto::v1::Config {
                version: config.version,
                interval_secs: config.interval_secs,
                enabled_kinds: config.enabled_kinds.clone(),
            },
        ))
        .await?;
        tracing::info!(node = %node_id, version = config.version, interval_secs = config.interval_secs, kinds = ?config.enabled_kinds, "console configuration sent");
        *sent = config;
        Ok(())
    }

    /// Ends the stream when its credential was revoked meanwhile.
    async fn still_valid(&self) -> Result<(), Status> {
        let id = self.credential.id.clone();
        let stored = blocking(&self.store, move |store| store.credential(&id)).await?;
        match stored.and_then(|c| c.revoked_at) {
            None => Ok(()),
            Some(at) => {
                tracing::warn!(peer = %self.peer, credential = %self.credential.id, node = %self.credential.node_id, "open stream ended: credential revoked");
                Err(reenroll(&format!(
                    "credential {} was revoked at {at}: enroll again",
                    self.credential.id
                )))
            }
        }
    }

    /// Counts a message against the node's rate; refuses it when over.
    fn charge(&self, node_id: &str, message: &agent_message::Message) -> Result<(), Status> {
        let cost = (message.encoded_len() as u64).max(MESSAGE_COST_BYTES) as f64;
        let (rate, burst) = (
            self.limits.rate_bytes_per_sec as f64,
            self.limits.rate_burst_bytes as f64,
        );
        let now = std::time::Instant::now();
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = rates.entry(node_id.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens < cost {
            tracing::warn!(peer = %self.peer, node = %node_id, rate = self.limits.rate_bytes_per_sec, burst = self.limits.rate_burst_bytes, "stream ended: over the per-agent rate");
            return Err(Status::resource_exhausted(format!(
                "node {node_id} is over its rate limit of {} bytes/s (burst {} bytes); slow down",
                self.limits.rate_bytes_per_sec, self.limits.rate_burst_bytes
            )));
        }
        bucket.tokens -= cost;
        Ok(())
    }

    /// Registers this stream as the node's current one, ending any previous stream.
    fn register(&self, node_id: &str) -> watch::Receiver<bool> {
        let (sender, receiver) = watch::channel(false);
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, previous)) = streams.insert(node_id.to_string(), (self.id, sender)) {
            let _ = previous.send(true);
        }
        receiver
    }

    async fn send(&self, message: collector_message::Message) -> Result<(), Status> {
        self.outbound
            .send(Ok(CollectorMessage {
                message: Some(message),
            }))
            .await
            .map_err(|_| Status::cancelled("agent went away"))
    }
}

/// The next message, with a decoding failure reported as a malformed frame.
async fn next(
    inbound: &mut Streaming<AgentMessage>,
) -> Result<Option<agent_message::Message>, Status> {
    match inbound.message().await {
        Ok(None) => Ok(None),
        Ok(Some(AgentMessage {
            message: Some(message),
        })) => Ok(Some(message)),
        Ok(Some(AgentMessage { message: None })) => Err(Status::invalid_argument(
            "malformed census.v1 frame: an AgentMessage with neither hello nor batch",
        )),
        Err(status)
            if status.code() == tonic::Code::Internal
                || status.code() == tonic::Code::InvalidArgument =>
        {
            Err(Status::invalid_argument(format!(
                "malformed census.v1 frame: {}",
                status.message()
            )))
        }
        Err(status) => Err(status),
    }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|error| Status::internal(format!("store task failed: {error}")))?
        .map_err(|error| match error {
            StoreError::Terminated { .. } => {
                tracing::warn!(%error, "write from a terminated node refused");
                Status::failed_precondition(error.to_string())
            }
            error => {
                tracing::error!(%error, "store error");
                Status::unavailable(format!("store error: {error}"))
            }
        })
}

fn delivery(stats: &DeliveryStats) -> Delivery {
    Delivery {
        shed_batches: stats.shed_batches,
        shed_changes: stats.shed_changes,
        corrupt_records: stats.corrupt_records,
        spooled_batches: stats.spooled_batches,
        spooled_bytes: stats.spooled_bytes,
        resyncs: stats.resyncs,
        checksum_mismatches: 0,
    }
}

fn health_json(health: &AgentHealth) -> serde_json::Value {
    serde_json::json!({
        "cpu_millicores": health.cpu_millicores,
        "rss_bytes": health.rss_bytes,
        "cpu_budget_millicores": health.cpu_budget_millicores,
        "memory_budget_bytes": health.memory_budget_bytes,
        "cpu_over_budget": health.cpu_over_budget,
        "memory_over_budget": health.memory_over_budget,
    })
}

/// Checks the first message of a stream: the node it names.
pub fn validate_hello(hello: Hello) -> Result<NodeHello, Status> {
    if hello.node_id.is_empty() {
        return Err(Status::invalid_argument("hello has an empty node_id"));
    }
    if hello.node_id.len() > MAX_KEY_BYTES {
        return Err(Status::invalid_argument(format!(
            "hello node_id is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(NodeHello {
        node_id: hello.node_id,
        hostname: hello.hostname,
        agent_id: hello.agent_id,
        agent_version: hello.agent_version,
        cluster: Some(hello.cluster).filter(|c| !c.is_empty()),
    })
}

/// [`prepare_batch_within`] the default limits.
pub fn prepare_batch(
    node_id: &str,
    batch: Batch,
    received_at: Timestamp,
) -> Result<BatchApply, Status> {
    prepare_batch_within(node_id, batch, received_at, &Limits::default())
}

/// Validates a batch and tags every record in it. Any problem refuses the whole batch.
pub fn prepare_batch_within(
    node_id: &str,
    batch: Batch,
    received_at: Timestamp,
    limits: &Limits,
) -> Result<BatchApply, Status> {
    let seq = batch.seq;
    let invalid = |message: String| Status::invalid_argument(format!("batch {seq}: {message}"));
    if seq == 0 {
        return Err(invalid("seq must be at least 1".into()));
    }
    let changes: usize = batch
        .kinds
        .iter()
        .map(|k| k.upserts.len() + k.removes.len())
        .sum();
    if changes > limits.max_batch_changes {
        return Err(Status::resource_exhausted(format!(
            "batch {seq}: {changes} changes, more than the limit of {} per batch",
            limits.max_batch_changes
        )));
    }
    let hosting_service = policy::node_service(node_id);
    let mut kinds = Vec::with_capacity(batch.kinds.len());
    for changes in batch.kinds {
        let kind = changes.kind;
        if kind.is_empty() {
            return Err(invalid("a kind entry has an empty kind name".into()));
        }
        let tags = policy::tag(&kind, received_at, &hosting_service)
            .map_err(|error| invalid(error.to_string()))?;
        if !census_proto::KINDS.contains(&kind.as_str()) {
            return Err(invalid(format!(
                "record kind {kind:?} is known to the policy but not carried by census.v1 (known: {})",
                census_proto::KINDS.join(", ")
            )));
        }
        if changes.complete_from_seq > seq {
            return Err(invalid(format!(
                "kind {kind}: complete_from_seq {} is after the batch's seq",
                changes.complete_from_seq
            )));
        }
        let mut upserts = Vec::with_capacity(changes.upserts.len());
        for record in changes.upserts {
            check_key(&kind, &record.key).map_err(invalid)?;
            let body = record.body.ok_or_else(|| {
                invalid(format!(
                    "{kind} record {:?} has no body this collector can read (newer agent?)",
                    record.key
                ))
            })?;
            if body.kind() != kind {
                return Err(invalid(format!(
                    "record {:?} is listed under kind {kind:?} but carries a {:?} body",
                    record.key,
                    body.kind()
                )));
            }
            if record.fingerprint.len() != FINGERPRINT_LEN {
                return Err(invalid(format!(
                    "{kind} record {:?} has a {}-byte fingerprint, expected {FINGERPRINT_LEN}",
                    record.key,
                    record.fingerprint.len()
                )));
            }
            let fields = serde_json::to_string(&Fields(&body))
                .map_err(|error| invalid(format!("{kind} record {:?}: {error}", record.key)))?;
            // No string is longer than the whole encoding: look closer only then.
            if fields.len() > limits.max_string_bytes
                && let Ok(value) = serde_json::from_str::<serde_json::Value>(&fields)
                && let Some((field, len)) = longest_string_over(&value, limits.max_string_bytes)
            {
                return Err(Status::resource_exhausted(format!(
                    "batch {seq}: {kind} record {:?} field {field:?} is {len} bytes, more than the limit of {}",
                    record.key, limits.max_string_bytes
                )));
            }
            upserts.push(TaggedRecord {
                key: record.key,
                fingerprint: record.fingerprint,
                fields,
                observed_at_ms: record.observed_at_ms,
                tags: tags.clone(),
            });
        }
        for key in &changes.removes {
            check_key(&kind, key).map_err(invalid)?;
        }
        kinds.push(KindApply {
            kind,
            upserts,
            removes: changes.removes,
            complete_from_seq: changes.complete_from_seq,
        });
    }
    Ok(BatchApply {
        node_id: node_id.to_string(),
        seq,
        kinds,
        received_at_ms: received_at.as_millisecond(),
    })
}

/// The first string (by its field name) longer than `max` bytes in `value`.
fn longest_string_over(value: &serde_json::Value, max: usize) -> Option<(String, usize)> {
    fn walk(value: &serde_json::Value, name: &str, max: usize) -> Option<(String, usize)> {
        match value {
            serde_json::Value::String(s) if s.len() > max => Some((name.to_string(), s.len())),
            serde_json::Value::Array(items) => items.iter().find_map(|v| walk(v, name, max)),
            serde_json::Value::Object(fields) => {
                fields.iter().find_map(|(key, v)| walk(v, key, max))
            }
            _ => None,
        }
    }
    walk(value, "", max)
}

fn check_key(kind: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("a {kind} record has an empty key"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("a {kind} key is longer than {MAX_KEY_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use census_proto::v1::record::Body;
    use census_proto::v1::{KernelModule, KindChanges, Process, Record};

    fn record(key: &str, body: Body) -> Record {
        Record {
            key: key.into(),
            fingerprint: body.fingerprint().to_vec(),
            observed_at_ms: 1,
            body: Some(body),
        }
    }

    fn batch(kind: &str, records: Vec<Record>) -> Batch {
        Batch {
            seq: 3,
            kinds: vec![KindChanges {
                kind: kind.into(),
                upserts: records,
                ..Default::default()
            }],
        }
    }

    fn error(batch: Batch) -> String {
        let status = prepare_batch("n1", batch, Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_string()
    }

    #[test]
    fn valid_records_are_tagged() {
        let body = Body::Process(Process {
            pid: 42,
            ..Default::default()
        });
        let at: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let prepared =
            prepare_batch("n1", batch("process", vec![record("42@1", body)]), at).unwrap();
        let tagged = &prepared.kinds[0].upserts[0];
        assert_eq!(tagged.tags.category, policy::Category::AssetBasicData);
        assert_eq!(tagged.tags.collected_at, at);
        assert_eq!(tagged.tags.hosting_service, "node:n1");
        assert!(
            tagged.fields.starts_with(r#"{"pid":42,"#),
            "{}",
            tagged.fields
        );
    }

    #[test]
    fn unknown_kinds_are_named() {
        assert_eq!(
            error(batch("frobnicator", vec![])),
            "batch 3: unknown record kind \"frobnicator\": policy dpsa-tcss-2023-04-03/v1 has no category for it"
        );
    }

    #[test]
    fn mismatched_missing_and_malformed_records_are_refused() {
        let module = Body::KernelModule(KernelModule::default());
        assert!(
            error(batch("process", vec![record("x", module.clone())]))
                .contains("carries a \"kernel_module\" body")
        );
        let mut bodiless = record("x", module.clone());
        bodiless.body = None;
        assert!(error(batch("kernel_module", vec![bodiless])).contains("no body"));
        let mut short = record("x", module.clone());
        short.fingerprint.truncate(5);
        assert!(error(batch("kernel_module", vec![short])).contains("5-byte fingerprint"));
        assert!(error(batch("kernel_module", vec![record("", module)])).contains("empty key"));
        let mut zero = batch("kernel_module", vec![]);
        zero.seq = 0;
        assert!(error(zero).contains("seq must be at least 1"));
        assert!(error(batch("cluster", vec![])).contains("not carried by census.v1"));
    }
}
