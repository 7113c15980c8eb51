//! gRPC ingest: the census.v1 `Sync` stream. Every batch is validated and tagged in
//! full before anything of it is stored; a bad batch ends the stream with a status
//! that names what was wrong, and stores nothing.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use census_proto::v1::census_server::Census;
use census_proto::v1::{
    Ack, AgentMessage, Batch, Checksums, CollectorMessage, DeliveryStats, Hello, Resync, Welcome,
    agent_message, collector_message,
};
use census_proto::{FINGERPRINT_LEN, Fields};
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::policy;
use crate::store::{
    Applied, BatchApply, Delivery, KindApply, NodeHello, Store, StoreError, TaggedRecord,
};

/// Longest record key or node id accepted.
pub const MAX_KEY_BYTES: usize = 1024;

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
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Ingest {
    /// `shutdown` turning true ends every open stream; a change of `config_changed`
    /// sends every connected agent its console configuration again.
    pub fn new(
        store: Arc<dyn Store>,
        shutdown: watch::Receiver<bool>,
        config_changed: watch::Receiver<u64>,
    ) -> Self {
        Ingest {
            store,
            streams: Arc::default(),
            next_stream: Default::default(),
            shutdown,
            config_changed,
        }
    }
}

#[tonic::async_trait]
impl Census for Ingest {
    type SyncStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
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
            outbound,
            peer,
        };
        tokio::spawn(stream.run(inbound));
        Ok(Response::new(ReceiverStream::new(outbound_rx)))
    }
}

struct StreamTask {
    store: Arc<dyn Store>,
    streams: OpenStreams,
    id: u64,
    shutdown: watch::Receiver<bool>,
    config_changed: watch::Receiver<u64>,
    outbound: mpsc::Sender<Result<CollectorMessage, Status>>,
    peer: String,
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
        let hello = validate_hello(hello)?;
        let node_id = hello.node_id.clone();
        *node = Some(node_id.clone());
        let mut replaced = self.register(&node_id);
        let now = Timestamp::now().as_millisecond();
        let last_applied_seq = blocking(&self.store, move |store| {
            let seq = store.hello(&hello, now)?;
            if let Some(stats) = reported {
                store.report_delivery(&hello.node_id, &delivery(&stats))?;
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
        loop {
            let message = tokio::select! {
                message = next(inbound) => Some(message?),
                Ok(()) = config_changed.changed() => None,
                _ = replaced.changed() => {
                    return Err(Status::aborted(format!("a newer stream for node {node_id} replaced this one")));
                }
                _ = shutdown.wait_for(|stop| *stop) => return Err(Status::unavailable("collector shutting down")),
            };
            let Some(message) = message else {
                self.push_config(&node_id, &mut sent_config).await?;
                continue;
            };
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
            let prepared = prepare_batch(&node_id, batch, Timestamp::now())?;
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
        let stored = blocking(&self.store, move |store| {
            if let Some(stats) = reported {
                store.report_delivery(&node, &delivery(&stats))?;
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

fn validate_hello(hello: Hello) -> Result<NodeHello, Status> {
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

/// Validates a batch and tags every record in it. Any problem refuses the whole batch.
pub fn prepare_batch(
    node_id: &str,
    batch: Batch,
    received_at: Timestamp,
) -> Result<BatchApply, Status> {
    let seq = batch.seq;
    let invalid = |message: String| Status::invalid_argument(format!("batch {seq}: {message}"));
    if seq == 0 {
        return Err(invalid("seq must be at least 1".into()));
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
