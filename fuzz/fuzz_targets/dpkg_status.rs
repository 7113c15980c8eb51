//! dpkg's status database, /var/lib/dpkg/status (and distroless status.d files).
#![no_main]
use census_agent::parse::dpkg;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let parsed = dpkg::parse_status(&text);
    assert_skipped_within(lines(&text), &parsed.skipped);
    for package in &parsed.items {
        let _ = package.files_present();
    }
});
