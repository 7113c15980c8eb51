//! /proc/net/{tcp,tcp6,udp,udp6}.
#![no_main]
use census_agent::parse::proc_net;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_within(lines(&text), &proc_net::parse(&text).skipped);
});
