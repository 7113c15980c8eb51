//! Shell-style KEY=value files: os-release, also read from image layers.
#![no_main]
use census_agent::parse::key_value;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_within(lines(&text), &key_value::parse(&text).skipped);
});
