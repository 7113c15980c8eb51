//! Python distribution metadata (*.dist-info/METADATA, *.egg-info/PKG-INFO).
#![no_main]
use census_agent::parse::python_metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = python_metadata::parse(&census_fuzz::text(data));
});
