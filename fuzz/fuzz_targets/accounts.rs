//! /etc/passwd, /etc/group and /etc/shadow: host and container account databases.
#![no_main]
use census_agent::parse::{group, passwd, shadow};
use census_fuzz::{assert_skipped_lines_exist, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_lines_exist(&text, &passwd::parse(&text).skipped);
    assert_skipped_lines_exist(&text, &group::parse(&text).skipped);
    let shadow = shadow::parse(&text);
    assert_skipped_lines_exist(&text, &shadow.skipped);
});
