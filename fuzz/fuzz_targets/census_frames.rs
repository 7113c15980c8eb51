//! Frames an agent sends the collector: protobuf decoding, then the collector's
//! validation of a hello, and its validation and tagging of a batch before anything
//! of it is stored.
#![no_main]
use census_collector::ingest;
use census_proto::v1::{AgentMessage, agent_message};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = AgentMessage::decode(data) else {
        return;
    };
    if let Some(agent_message::Message::Hello(hello)) = &message.message {
        let node = hello.node_id.clone();
        if let Ok(accepted) = ingest::validate_hello(hello.clone()) {
            assert_eq!(
                accepted.node_id, node,
                "a hello is accepted for the node it names"
            );
            assert!(!node.is_empty() && node.len() <= ingest::MAX_KEY_BYTES);
        }
    }
    if let Some(agent_message::Message::Batch(batch)) = message.message {
        let kinds = batch.kinds.len();
        if let Ok(prepared) = ingest::prepare_batch("node-1", batch, jiff::Timestamp::UNIX_EPOCH) {
            assert_eq!(
                prepared.kinds.len(),
                kinds,
                "every kind of an accepted batch is kept"
            );
        }
    }
});
