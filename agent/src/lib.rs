//! census-agent: fingerprints a node's assets (host, processes, ports, packages,
//! kernel modules, ...) and streams them to a census collector.
pub mod bench;
pub mod budget;
pub mod cache;
pub mod collectors;
pub mod delta;
pub mod enroll;
pub mod image_contents;
pub mod output;
pub mod parse;
pub mod redact;
pub mod root;
pub mod runtime;
pub mod scan;
pub mod spool;
pub mod state;
pub mod sync;

/// RFC 3339 (UTC) of a Unix time in seconds; empty when out of range.
pub fn rfc3339_secs(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// RFC 3339 (UTC, milliseconds) of a Unix time in milliseconds; empty when out of range.
pub fn rfc3339_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
