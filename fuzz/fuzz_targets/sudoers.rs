//! /etc/sudoers and the files it includes.
#![no_main]
use census_agent::parse::sudoers;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_within(lines(&text), &sudoers::parse(&text).skipped);
});
