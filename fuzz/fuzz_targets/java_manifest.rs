//! META-INF/MANIFEST.MF of Java archives.
#![no_main]
use census_agent::parse::java_manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = java_manifest::parse(&census_fuzz::text(data));
});
