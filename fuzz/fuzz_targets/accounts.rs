//! /etc/passwd, /etc/group and /etc/shadow: host and container account databases.
#![no_main]
use census_agent::parse::{group, passwd, shadow};
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let lines = lines(&text);
    assert_skipped_within(lines, &passwd::parse(&text).skipped);
    assert_skipped_within(lines, &group::parse(&text).skipped);
    assert_skipped_within(lines, &shadow::parse(&text).skipped);
});
