//! `resource_usage`: load, CPU, memory and disk use of the host, via sysinfo. Every
//! value is volatile: the record is refreshed each interval and fingerprints ignore it.
use census_proto::v1::{DiskUsage, ResourceUsage, record::Body};
use sysinfo::{Disks, System};

use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct ResourceUsageCollector;

impl Collector for ResourceUsageCollector {
    fn kind(&self) -> &'static str {
        "resource_usage"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let sysinfo_error =
            |error: sysinfo::Error| CollectError::Source(format!("sysinfo: {error}"));
        let mut cached = ctx.cache.system.lock().unwrap_or_else(|p| p.into_inner());
        // CPU use is measured between two refreshes: from the previous scan to this one.
        let previous_sample = cached.is_some();
        let system = match cached.as_mut() {
            Some(system) => system,
            None => cached.insert(System::new().map_err(sysinfo_error)?),
        };
        system.refresh_memory();
        system.refresh_cpu_usage();
        let load = System::load_average().map_err(sysinfo_error)?;
        let disks = Disks::new_with_refreshed_list().map_err(sysinfo_error)?;
        let usage = ResourceUsage {
            cpu_usage_percent: previous_sample.then(|| f64::from(system.global_cpu_usage())),
            load_1: load.one,
            load_5: load.five,
            load_15: load.fifteen,
            memory_total_bytes: system.total_memory(),
            memory_used_bytes: system.used_memory(),
            memory_available_bytes: system.available_memory(),
            swap_total_bytes: system.total_swap(),
            swap_used_bytes: system.used_swap(),
            uptime_secs: System::uptime().unwrap_or_default(),
            process_count: ctx.processes().map(|p| p.len() as u32).unwrap_or_default(),
            disks: disks
                .iter()
                .filter(|disk| disk.total_space() > 0)
                .map(|disk| DiskUsage {
                    mount_point: disk.mount_point().display().to_string(),
                    device: disk.name().to_string_lossy().into_owned(),
                    file_system: disk.file_system().to_string_lossy().into_owned(),
                    total_bytes: disk.total_space(),
                    available_bytes: disk.available_space(),
                })
                .collect(),
        };
        Ok(vec![Observation::new(
            "resource_usage",
            Body::ResourceUsage(usage),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn cpu_use_appears_from_the_second_scan_and_the_fingerprint_never_moves() {
        let ctx = test_context(HostRoot::new("/"));
        let first = ResourceUsageCollector.collect(&ctx).unwrap().remove(0);
        let Body::ResourceUsage(usage) = &first.body else {
            panic!("not resource usage")
        };
        assert_eq!(usage.cpu_usage_percent, None);
        assert!(
            usage.memory_total_bytes > 0 && usage.memory_used_bytes <= usage.memory_total_bytes
        );
        assert!(usage.process_count > 0);
        std::thread::sleep(std::time::Duration::from_millis(250));
        let second = ResourceUsageCollector.collect(&ctx).unwrap().remove(0);
        let Body::ResourceUsage(usage) = &second.body else {
            panic!("not resource usage")
        };
        let cpu = usage.cpu_usage_percent.expect("cpu use on the second scan");
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert_eq!(first.fingerprint, second.fingerprint);
    }
}
