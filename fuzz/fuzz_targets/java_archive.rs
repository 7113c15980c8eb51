//! Java archives (jar, war, ear) with nested archives, as found on hosts and in images.
#![no_main]
use census_agent::collectors::package::jar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jar::catalog_reader(
        std::io::Cursor::new(data),
        "/app/fuzz.jar",
        "fuzz.jar",
        String::new(),
    );
});
