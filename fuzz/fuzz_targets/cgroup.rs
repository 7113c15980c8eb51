//! /proc/PID/cgroup, from which a process's container is recognized.
#![no_main]
use census_agent::parse::cgroup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cgroup::container_of(&census_fuzz::text(data));
});
