//! One inventory pass: runs the selected collectors in turn over a host root.
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::ScanCache;
use crate::collectors::{CollectError, Collector, Context, Observation};
use crate::redact::Redactor;
use crate::root::HostRoot;

/// What one collector produced during a scan.
#[derive(Debug)]
pub struct KindScan {
    pub kind: &'static str,
    pub result: Result<Vec<Observation>, CollectError>,
    pub elapsed: Duration,
}

/// The outcome of one scan.
#[derive(Debug)]
pub struct Scan {
    /// Milliseconds since the Unix epoch when the scan started.
    pub observed_at_ms: i64,
    pub kinds: Vec<KindScan>,
}

impl Scan {
    /// Kinds whose collector failed outright, with the error.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &CollectError)> {
        self.kinds
            .iter()
            .filter_map(|k| k.result.as_ref().err().map(|e| (k.kind, e)))
    }
}

/// Which kinds to collect: all of them, or the named subset (`--only`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection(Option<Vec<String>>);

impl Selection {
    /// Checks `--only` names against the collectors there are.
    pub fn new(
        only: Option<Vec<String>>,
        collectors: &[Box<dyn Collector>],
    ) -> Result<Self, String> {
        if let Some(names) = &only {
            let known: Vec<&str> = collectors.iter().map(|c| c.kind()).collect();
            if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
                return Err(format!(
                    "unknown kind {unknown:?} in --only (known: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(Selection(only))
    }

    /// The subset of `names` that are `known` kinds (in `known`'s order, each once), and
    /// the names that are not; no selection when none of them is known.
    pub fn of_known(names: &[String], known: &[&str]) -> (Option<Selection>, Vec<String>) {
        let selected: Vec<String> = known
            .iter()
            .filter(|k| names.iter().any(|n| n == *k))
            .map(|k| k.to_string())
            .collect();
        let mut unknown: Vec<String> = Vec::new();
        for name in names {
            if !known.contains(&name.as_str()) && !unknown.contains(name) {
                unknown.push(name.clone());
            }
        }
        let selection = (!selected.is_empty()).then_some(Selection(Some(selected)));
        (selection, unknown)
    }

    /// This selection narrowed to `kinds`.
    pub fn intersect(&self, kinds: &[&str]) -> Selection {
        let names = kinds
            .iter()
            .filter(|k| self.includes(k))
            .map(|k| k.to_string())
            .collect();
        Selection(Some(names))
    }

    /// Whether `kind` is collected.
    pub fn includes(&self, kind: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == kind))
    }
}

/// `all`, or the selected kinds separated by commas (as `--only` takes them).
impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("all"),
            Some(names) => f.write_str(&names.join(",")),
        }
    }
}

/// Scans a host root with a set of collectors, keeping the agent's cache and
/// redaction key from one scan to the next.
pub struct Scanner {
    pub root: HostRoot,
    pub collectors: Vec<Box<dyn Collector>>,
    pub selection: Selection,
    pub cache: Arc<ScanCache>,
    pub redactor: Arc<Redactor>,
    /// Extra directories searched for python, npm and java packages.
    pub package_dirs: Arc<Vec<std::path::PathBuf>>,
    /// Container runtime socket to use instead of discovering one.
    pub runtime_socket: Option<std::path::PathBuf>,
    /// Paces collectors to the agent's CPU budget (none for one-shot scans).
    pub governor: Option<Arc<crate::budget::Governor>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = self.collectors.iter().map(|c| c.kind()).collect();
        f.debug_struct("Scanner")
            .field("root", &self.root)
            .field("collectors", &kinds)
            .field("selection", &self.selection)
            .finish()
    }
}

impl Scanner {
    /// Every registered collector, `--only` applied.
    pub fn new(
        root: HostRoot,
        only: Option<Vec<String>>,
        redactor: Redactor,
    ) -> Result<Self, String> {
        let collectors = crate::collectors::registry();
        let selection = Selection::new(only, &collectors)?;
        Ok(Scanner {
            root,
            collectors,
            selection,
            cache: Arc::default(),
            redactor: Arc::new(redactor),
            package_dirs: Arc::default(),
            runtime_socket: None,
            governor: None,
        })
    }

    /// Uses this container runtime socket instead of discovering one.
    /// Paces every collector to `governor`'s CPU budget.
    pub fn with_governor(mut self, governor: Arc<crate::budget::Governor>) -> Self {
        self.governor = Some(governor);
        self
    }

    pub fn with_runtime_socket(mut self, socket: Option<std::path::PathBuf>) -> Self {
        self.runtime_socket = socket;
        self
    }

    /// Also searches these host directories for python, npm and java packages.
    pub fn with_package_dirs(mut self, dirs: Vec<std::path::PathBuf>) -> Self {
        self.package_dirs = Arc::new(dirs);
        self
    }

    /// The Docker Engine socket scans use, if the node has one.
    pub fn docker_socket(&self) -> Option<std::path::PathBuf> {
        crate::runtime::docker_socket(&self.root, self.runtime_socket.as_ref())
    }

    /// A context for one scan.
    pub fn context(&self) -> Context {
        self.cache.begin_scan();
        let mut ctx = Context::new(self.root.clone(), self.cache.clone(), self.redactor.clone());
        ctx.package_dirs = self.package_dirs.clone();
        ctx.runtime_socket = self.runtime_socket.clone();
        ctx
    }

    /// Runs every selected collector once.
    pub fn scan(&self) -> Scan {
        self.scan_selected(&self.selection)
    }

    /// Runs the collectors `selection` names once.
    pub fn scan_selected(&self, selection: &Selection) -> Scan {
        let observed_at_ms = jiff::Timestamp::now().as_millisecond();
        let ctx = self.context();
        let kinds = self
            .collectors
            .iter()
            .filter(|c| selection.includes(c.kind()))
            .map(|collector| {
                let started = Instant::now();
                let cpu = crate::budget::thread_cpu();
                let result = collector
                    .collect(&ctx)
                    .map(|observations| unique_keys(collector.kind(), observations));
                let elapsed = started.elapsed();
                if let Some(governor) = &self.governor {
                    governor.pace(crate::budget::thread_cpu().saturating_sub(cpu));
                }
                if let Err(error) = &result {
                    tracing::warn!(kind = collector.kind(), %error, "collector failed");
                }
                KindScan {
                    kind: collector.kind(),
                    result,
                    elapsed,
                }
            })
            .collect();
        Scan {
            observed_at_ms,
            kinds,
        }
    }
}

/// Keeps the first observation of each key: a key names one record of its kind, and
/// two records under one key would overwrite each other at the collector.
fn unique_keys(kind: &str, observations: Vec<Observation>) -> Vec<Observation> {
    let mut seen = std::collections::HashSet::new();
    observations
        .into_iter()
        .filter(|o| {
            let first = seen.insert(o.key.clone());
            if !first {
                tracing::warn!(kind, key = %o.key, "dropping a second record with the same key");
            }
            first
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use census_proto::v1::KernelModule;
    use census_proto::v1::record::Body;

    #[test]
    fn of_known_keeps_known_kinds_in_registry_order() {
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let known = ["host", "process", "package"];
        let (selection, unknown) = Selection::of_known(
            &names(&["package", "nope", "host", "package", "nope"]),
            &known,
        );
        let selection = selection.expect("known kinds were named");
        assert_eq!(selection.to_string(), "host,package");
        assert!(selection.includes("package") && !selection.includes("process"));
        assert_eq!(unknown, names(&["nope"]));

        let (selection, unknown) = Selection::of_known(&names(&["nope"]), &known);
        assert_eq!(selection, None);
        assert_eq!(unknown, names(&["nope"]));
        assert_eq!(Selection::default().to_string(), "all");
    }

    #[test]
    fn duplicate_keys_keep_the_first_record() {
        let module = |size| {
            Observation::new(
                "ext4",
                Body::KernelModule(KernelModule {
                    size,
                    ..Default::default()
                }),
            )
        };
        let kept = unique_keys("kernel_module", vec![module(1), module(2)]);
        assert_eq!(kept, vec![module(1)]);
    }
}
