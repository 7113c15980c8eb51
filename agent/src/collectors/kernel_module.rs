//! `kernel_module`: loaded kernel modules from /proc/modules.
use census_proto::v1::{KernelModule, record::Body};

use super::{CollectError, Collector, Context, Observation, SMALL_FILE_LIMIT};
use crate::parse::proc_modules;

#[derive(Debug)]
pub struct KernelModuleCollector;

impl Collector for KernelModuleCollector {
    fn kind(&self) -> &'static str {
        "kernel_module"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let path = ctx.root.join("/proc/modules");
        let text = match crate::root::read_limited(&path, SMALL_FILE_LIMIT) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // A kernel built without loadable modules has no /proc/modules.
            Err(error) if error.is_not_found() => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let observations = proc_modules::parse(&text)
            .warn_skipped(&path)
            .into_iter()
            .map(|m| {
                let body = KernelModule {
                    name: m.name.clone(),
                    size: m.size,
                    used_by: m.used_by,
                    state: m.state,
                    taints: m.taints,
                    refcount: m.refcount,
                };
                Observation::new(m.name, Body::KernelModule(body))
            })
            .collect();
        Ok(observations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn reads_modules_and_skips_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/modules"),
            "ext4 1003520 2 - Live 0x0\ngarbage\nvboxdrv 532480 2 vboxnetadp, Live 0x0 (OE)\n",
        )
        .unwrap();
        let observations = KernelModuleCollector
            .collect(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        let keys: Vec<_> = observations.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["ext4", "vboxdrv"]);
    }
}
