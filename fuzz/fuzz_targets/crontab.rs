//! System crontabs (with a user column) and user crontabs (without).
#![no_main]
use census_agent::parse::crontab;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    for system in [true, false] {
        assert_skipped_within(lines(&text), &crontab::parse(&text, system).skipped);
    }
});
