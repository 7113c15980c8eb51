//! systemd unit files, then the look-ups the collectors make on them.
#![no_main]
use census_agent::parse::systemd_unit;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let (unit, skipped) = systemd_unit::parse(&text);
    assert_skipped_within(lines(&text), &skipped);
    for (section, key) in [
        ("Service", "ExecStart"),
        ("Unit", "Description"),
        ("Install", "WantedBy"),
    ] {
        let _ = unit.get(section, key);
        let _ = unit.get_all(section, key);
        let _ = unit.has_section(section);
    }
    // Keys the file assigns, looked up by their own section and name: the first few
    // only, as each look-up scans the whole unit.
    let assigned = unit.sections.iter().flat_map(|section| {
        section
            .entries
            .iter()
            .map(move |(key, _)| (&section.name, key))
    });
    for (section, key) in assigned.take(64) {
        let all = unit.get_all(section, key);
        if let Some(last) = unit.get(section, key) {
            assert_eq!(all.last(), Some(&last), "get is the last of get_all");
        }
    }
});
