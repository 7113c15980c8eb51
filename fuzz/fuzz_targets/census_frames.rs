//! Frames an agent sends the collector: protobuf decoding, then the collector's
//! validation and tagging of a batch before anything of it is stored.
#![no_main]
use census_collector::ingest;
use census_proto::v1::{AgentMessage, agent_message};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = AgentMessage::decode(data) else {
        return;
    };
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
