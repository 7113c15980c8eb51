//! META-INF/MANIFEST.MF of Java archives.
#![no_main]
use census_agent::parse::java_manifest;
use census_fuzz::{assert_skipped_within, java_lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_within(java_lines(&text), &java_manifest::parse(&text).skipped);
});
