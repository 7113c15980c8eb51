//! Apache httpd configuration files (web_service / web_site collectors).
#![no_main]
use census_agent::parse::apache_conf;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    assert_skipped_within(lines(&text), &apache_conf::parse(&text).skipped);
});
