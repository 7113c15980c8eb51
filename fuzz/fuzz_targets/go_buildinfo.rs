//! The build information embedded in Go executables, searched for in the whole file.
#![no_main]
use census_agent::parse::go_buildinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = go_buildinfo::find(data);
    let _ = go_buildinfo::parse_at(data);
});
