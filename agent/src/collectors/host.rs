//! `host`: basic information of the server (name, identity, OS, kernel, hardware).
use census_proto::v1::{Host, record::Body};

use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct HostCollector;

impl Collector for HostCollector {
    fn kind(&self) -> &'static str {
        "host"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let os = ctx.os_release();
        let os_field = |name: &str| os.get(name).cloned().unwrap_or_default();
        let machine_id = ctx
            .read_optional("/etc/machine-id")
            .or_else(|| ctx.read_optional("/var/lib/dbus/machine-id"))
            .map(|id| id.trim().to_string())
            .unwrap_or_default();
        let (cpu_count, cpu_brand, memory_total_bytes) = hardware();
        let host = Host {
            hostname: hostname(ctx),
            machine_id: machine_id.clone(),
            os_id: os_field("ID"),
            os_name: os_field("NAME"),
            os_version: os_field("VERSION_ID"),
            os_pretty_name: os_field("PRETTY_NAME"),
            kernel_release: ctx
                .read_kernel_value("/proc/sys/kernel/osrelease")
                .unwrap_or_default(),
            kernel_version: ctx
                .read_kernel_value("/proc/sys/kernel/version")
                .unwrap_or_default(),
            arch: std::env::consts::ARCH.to_string(),
            boot_time: ctx.boot_time().map(crate::rfc3339_secs).unwrap_or_default(),
            cpu_count,
            cpu_brand,
            memory_total_bytes,
            sys_vendor: ctx
                .read_kernel_value("/sys/class/dmi/id/sys_vendor")
                .unwrap_or_default(),
            product_name: ctx
                .read_kernel_value("/sys/class/dmi/id/product_name")
                .unwrap_or_default(),
        };
        let key = if machine_id.is_empty() {
            "host".to_string()
        } else {
            machine_id
        };
        Ok(vec![Observation::new(key, Body::Host(host))])
    }
}

/// The node's name: the kernel's (UTS) hostname, else /etc/hostname.
pub fn hostname(ctx: &Context) -> String {
    ctx.read_kernel_value("/proc/sys/kernel/hostname")
        .filter(|name| !name.is_empty())
        .or_else(|| {
            ctx.read_optional("/etc/hostname")
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_default()
}

/// CPU count and model and total memory, from the running kernel via sysinfo.
fn hardware() -> (u32, String, u64) {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let refresh = RefreshKind::nothing()
        .with_cpu(CpuRefreshKind::nothing())
        .with_memory(MemoryRefreshKind::nothing().with_ram());
    let system = match System::new_with_specifics(refresh) {
        Ok(system) => system,
        Err(error) => {
            tracing::warn!(%error, "cannot read CPU and memory totals");
            return (0, String::new(), 0);
        }
    };
    let cpus = system.cpus();
    let brand = cpus
        .first()
        .map(|cpu| cpu.brand().trim().to_string())
        .unwrap_or_default();
    (cpus.len() as u32, brand, system.total_memory())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn reads_identity_through_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |path: &str, text: &str| crate::collectors::write_fixture(dir.path(), path, text);
        write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        write(
            "usr/lib/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        );
        std::os::unix::fs::symlink("../usr/lib/os-release", dir.path().join("etc/os-release"))
            .unwrap();
        write("etc/hostname", "fixture-node\n");
        write("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        write("proc/stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n");

        let ctx = test_context(HostRoot::new(dir.path()));
        let observations = HostCollector.collect(&ctx).unwrap();
        assert_eq!(observations.len(), 1);
        assert_eq!(observations[0].key, "0123456789abcdef0123456789abcdef");
        let Body::Host(host) = &observations[0].body else {
            panic!("not a host")
        };
        assert_eq!(host.hostname, "fixture-node");
        assert_eq!(host.os_id, "debian");
        assert_eq!(host.os_version, "12");
        assert_eq!(host.kernel_release, "6.1.0-18-amd64");
        assert_eq!(host.boot_time, "2023-11-14T22:13:20Z");
        assert_eq!(
            host.kernel_version, "",
            "missing optional files are empty, not errors"
        );
    }
}
