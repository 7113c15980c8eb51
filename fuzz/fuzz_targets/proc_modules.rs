//! /proc/modules.
#![no_main]
use census_agent::parse::proc_modules;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_within(lines(&text), &proc_modules::parse(&text).skipped);
});
