//! census.v1 messages built by hand, and one Sync stream driven with them, for tests
//! that speak to the collector as an agent (or as something pretending to be one).
use std::time::Duration;

use anyhow::Result;
use census_proto::v1::census_client::CensusClient;
use census_proto::v1::record::Body;
use census_proto::v1::{
    AgentMessage, Batch, CollectorMessage, Hello, KernelModule, KindChanges, Record, agent_message,
    collector_message,
};
use tonic::Status;

use crate::{Collector, authorized, enroll, node_id};

pub fn hello(node: &str) -> AgentMessage {
    AgentMessage {
        message: Some(agent_message::Message::Hello(Hello {
            agent_id: "0123456789abcdef0123456789abcdef".into(),
            node_id: node.into(),
            hostname: "census-tests".into(),
            agent_version: "test".into(),
            last_acked_seq: 0,
            delivery: None,
            cluster: String::new(),
            health: None,
        })),
    }
}

/// A batch of kernel module records named `keys`, listed under `kind`.
pub fn batch(seq: u64, kind: &str, keys: &[&str]) -> AgentMessage {
    let upserts = keys
        .iter()
        .map(|key| {
            let body = Body::KernelModule(KernelModule {
                name: key.to_string(),
                size: 4096,
                state: "Live".into(),
                ..Default::default()
            });
            Record {
                key: key.to_string(),
                fingerprint: body.fingerprint().to_vec(),
                observed_at_ms: 1,
                body: Some(body),
            }
        })
        .collect();
    AgentMessage {
        message: Some(agent_message::Message::Batch(Batch {
            seq,
            kinds: vec![KindChanges {
                kind: kind.into(),
                upserts,
                removes: vec![],
                complete_from_seq: 0,
            }],
        })),
    }
}

/// The seqs the collector acked.
pub fn acked(replies: &[CollectorMessage]) -> Vec<u64> {
    replies
        .iter()
        .filter_map(|r| match &r.message {
            Some(collector_message::Message::Ack(ack)) => Some(ack.seq),
            _ => None,
        })
        .collect()
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Sends `messages` on one Sync stream presenting `credential` (none when `None`),
/// ends it, and collects the replies and the final status (`None` when the collector
/// closed the stream normally).
pub async fn exchange_as(
    collector: &Collector,
    credential: Option<&str>,
    messages: Vec<AgentMessage>,
) -> Result<(Vec<CollectorMessage>, Option<Status>)> {
    let mut client = CensusClient::connect(collector.grpc_url()).await?;
    let stream = tokio_stream::iter(messages);
    let request = match credential {
        Some(credential) => authorized(stream, credential),
        None => tonic::Request::new(stream),
    };
    let mut inbound = match client.sync(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok((Vec::new(), Some(status))),
    };
    let mut replies = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), inbound.message()).await? {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) => return Ok((replies, None)),
            Err(status) => return Ok((replies, Some(status))),
        }
    }
}

/// [`exchange_as`] with a credential enrolled for the node the stream's hello names
/// (a fresh node when there is no hello).
pub async fn exchange(
    collector: &Collector,
    messages: Vec<AgentMessage>,
) -> Result<(Vec<CollectorMessage>, Option<Status>)> {
    let node = messages
        .iter()
        .find_map(|m| match &m.message {
            Some(agent_message::Message::Hello(hello)) => Some(hello.node_id.clone()),
            _ => None,
        })
        .filter(|node| !node.is_empty())
        .unwrap_or_else(|| node_id("no-hello"));
    let credential = enroll(collector, &node).await?;
    exchange_as(collector, Some(&credential), messages).await
}
