//! Collectors: one per record kind, one file each, all reading the host through
//! [`Context::root`]. Adding a kind = a new file here + one line in [`registry`].
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use census_proto::v1::record::Body;

use crate::parse;
use crate::root::{HostRoot, ReadError};

pub mod host;
pub mod kernel_module;
pub mod listening_port;
pub mod package;
pub mod process;

/// Largest small text file (os-release, passwd, /proc tables) a collector reads.
pub(crate) const SMALL_FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// One observed asset: its identity on the node and its typed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub key: String,
    pub body: Body,
    pub fingerprint: [u8; census_proto::FINGERPRINT_LEN],
}

impl Observation {
    pub fn new(key: impl Into<String>, body: Body) -> Self {
        let fingerprint = body.fingerprint();
        Observation {
            key: key.into(),
            body,
            fingerprint,
        }
    }
}

/// Why a collector produced nothing at all. Per-item problems are warnings, not errors:
/// a collector that returns `Err` says "no information this round", which keeps the
/// kind's previous state instead of removing it.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file the collector cannot do without is unreadable.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A directory the collector walks is unreadable.
    #[error("cannot list {}: {source}", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One kind of asset.
pub trait Collector: Send + Sync {
    /// The record kind produced, e.g. `"process"`.
    fn kind(&self) -> &'static str;
    /// Observes every asset of this kind on the host.
    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError>;
}

/// Every collector, in the order a scan runs them.
pub fn registry() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(host::HostCollector),
        Box::new(process::ProcessCollector),
        Box::new(listening_port::ListeningPortCollector),
        Box::new(package::PackageCollector::default()),
        Box::new(kernel_module::KernelModuleCollector),
    ]
}

/// What collectors share during one scan: the host root and facts several of them need,
/// each read at most once.
#[derive(Debug)]
pub struct Context {
    pub root: HostRoot,
    os_release: OnceLock<BTreeMap<String, String>>,
    users: OnceLock<BTreeMap<u32, String>>,
    boot_time: OnceLock<Option<i64>>,
}

impl Context {
    pub fn new(root: HostRoot) -> Self {
        Context {
            root,
            os_release: OnceLock::new(),
            users: OnceLock::new(),
            boot_time: OnceLock::new(),
        }
    }

    /// os-release(5) of the host: /etc/os-release, else /usr/lib/os-release.
    pub fn os_release(&self) -> &BTreeMap<String, String> {
        self.os_release.get_or_init(|| {
            for path in ["/etc/os-release", "/usr/lib/os-release"] {
                if let Some(text) = self.read_optional(path) {
                    return parse::key_value::parse(&text)
                        .warn_skipped(&self.root.join(path))
                        .into_iter()
                        .collect();
                }
            }
            BTreeMap::new()
        })
    }

    /// User name of `uid` from the host's /etc/passwd; empty when unknown.
    pub fn user_name(&self, uid: u32) -> &str {
        let users = self.users.get_or_init(|| {
            let Some(text) = self.read_optional("/etc/passwd") else {
                return BTreeMap::new();
            };
            let entries = parse::passwd::parse(&text).warn_skipped(&self.root.join("/etc/passwd"));
            // First entry wins, as in getpwuid(3).
            let mut users = BTreeMap::new();
            for entry in entries {
                users.entry(entry.uid).or_insert(entry.name);
            }
            users
        });
        users.get(&uid).map(String::as_str).unwrap_or("")
    }

    /// Boot time (Unix seconds) from the `btime` line of /proc/stat.
    pub fn boot_time(&self) -> Option<i64> {
        *self.boot_time.get_or_init(|| {
            let path = self.root.join("/proc/stat");
            let text = match crate::root::read_limited(&path, SMALL_FILE_LIMIT) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(error) => {
                    tracing::warn!(%error, "cannot read boot time");
                    return None;
                }
            };
            let btime = text
                .lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|value| value.trim().parse().ok());
            if btime.is_none() {
                tracing::warn!(path = %path.display(), "no btime line");
            }
            btime
        })
    }

    /// Reads a small host file, resolving links inside the root. A missing file is
    /// `None` silently; any other failure is `None` with a warning naming the file.
    pub fn read_optional(&self, host_path: impl AsRef<Path>) -> Option<String> {
        match self.root.read_string(&host_path, SMALL_FILE_LIMIT) {
            Ok(text) => Some(text),
            Err(error) if error.is_not_found() => None,
            Err(error) => {
                tracing::warn!(%error, "skipping unreadable file");
                None
            }
        }
    }

    /// Like [`Context::read_optional`] for kernel files (/proc, /sys), joined without
    /// resolving links, first line trimmed.
    pub fn read_kernel_value(&self, host_path: &str) -> Option<String> {
        let path = self.root.join(host_path);
        match crate::root::read_limited(&path, SMALL_FILE_LIMIT) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).trim().to_string()),
            Err(error) if error.is_not_found() => None,
            Err(error) => {
                tracing::warn!(%error, "skipping unreadable kernel file");
                None
            }
        }
    }
}
