//! Alpine's installed-package database, /lib/apk/db/installed.
#![no_main]
use census_agent::parse::apk;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_within(lines(&text), &apk::parse(&text).skipped);
});
