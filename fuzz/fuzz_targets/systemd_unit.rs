//! systemd unit files, then the look-ups the collectors make on them.
#![no_main]
use census_agent::parse::systemd_unit;
use census_fuzz::{assert_skipped_lines_exist, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let (unit, skipped) = systemd_unit::parse(&text);
    assert_skipped_lines_exist(&text, &skipped);
    for (section, key) in [("Service", "ExecStart"), ("Unit", "Description"), ("Install", "WantedBy")] {
        let _ = unit.get(section, key);
        let _ = unit.get_all(section, key);
        let _ = unit.has_section(section);
    }
    // Every key the file assigns, looked up by its own section and name.
    for section in &unit.sections {
        for (key, _) in &section.entries {
            let all = unit.get_all(&section.name, key);
            if let Some(last) = unit.get(&section.name, key) {
                assert_eq!(all.last(), Some(&last), "get is the last of get_all");
            }
        }
    }
});
