//! RPM header blobs as rpmdb.sqlite stores them, and the SOURCERPM names they carry.
#![no_main]
use census_agent::parse::rpm_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = rpm_header::parse(data) {
        assert!(!header.name.is_empty(), "a parsed header always has a NAME");
        let _ = rpm_header::source_name(&header.source_rpm);
    }
    let _ = rpm_header::source_name(&String::from_utf8_lossy(data));
});
