//! package.json files under node_modules.
#![no_main]
use census_agent::parse::npm_package;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = npm_package::parse(&census_fuzz::text(data));
});
