//! Collectors: one per record kind, one file each, all reading the host through
//! [`Context::root`]. Adding a kind = a new file here + one line in [`registry`].
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use census_proto::v1::record::Body;

use crate::cache::ScanCache;
use crate::parse;
use crate::parse::group::GroupEntry;
use crate::parse::passwd::PasswdEntry;
use crate::parse::sudoers::SudoRule;
use crate::redact::Redactor;
use crate::root::{HostRoot, ReadError};

pub mod account;
pub mod container;
pub mod database;
pub mod environment_variable;
pub mod group;
pub mod host;
pub mod image;
pub mod image_history;
pub mod kernel_module;
pub mod listening_port;
pub mod package;
pub mod process;
pub mod resource_usage;
pub mod scheduled_task;
pub mod services;
pub mod startup_service;
pub mod systemd;
pub mod web_application;
pub mod web_framework;
pub mod web_service;
pub mod web_site;

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
    /// A fact this kind is derived from could not be gathered.
    #[error("{0}")]
    Source(String),
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
        Box::new(package::PackageCollector),
        Box::new(kernel_module::KernelModuleCollector),
        Box::new(resource_usage::ResourceUsageCollector),
        Box::new(environment_variable::EnvironmentVariableCollector),
        Box::new(account::AccountCollector),
        Box::new(group::GroupCollector),
        Box::new(startup_service::StartupServiceCollector),
        Box::new(scheduled_task::ScheduledTaskCollector),
        Box::new(database::DatabaseCollector),
        Box::new(web_service::WebServiceCollector),
        Box::new(web_framework::WebFrameworkCollector),
        Box::new(web_site::WebSiteCollector),
        Box::new(web_application::WebApplicationCollector),
        Box::new(image::ImageCollector),
        Box::new(image_history::ImageHistoryCollector),
        Box::new(container::ContainerCollector),
    ]
}

/// What collectors share during one scan: the host root, the agent's cache and
/// redactor, and facts several kinds are derived from, each gathered at most once.
#[derive(Debug)]
pub struct Context {
    pub root: HostRoot,
    pub cache: Arc<ScanCache>,
    pub redactor: Arc<Redactor>,
    /// Directories searched for python, npm and java packages besides the usual roots.
    pub package_dirs: Arc<Vec<PathBuf>>,
    /// The container runtime socket to use instead of discovering one (`--runtime-socket`).
    pub runtime_socket: Option<PathBuf>,
    os_release: OnceLock<BTreeMap<String, String>>,
    users: OnceLock<Vec<PasswdEntry>>,
    groups: OnceLock<Vec<GroupEntry>>,
    sudoers: OnceLock<Sudoers>,
    boot_time: OnceLock<Option<i64>>,
    processes: OnceLock<Result<Vec<process::ProcessInfo>, String>>,
    listeners: OnceLock<Result<Vec<listening_port::Listener>, String>>,
    packages: OnceLock<Result<Vec<census_proto::v1::Package>, String>>,
    discovered: OnceLock<package::discover::Discovered>,
    docker: OnceLock<Result<Option<crate::runtime::docker::DockerInventory>, String>>,
    cri: OnceLock<Result<Option<crate::runtime::cri::CriInventory>, String>>,
    image_packages: OnceLock<Result<Vec<census_proto::v1::Package>, String>>,
}

impl Context {
    pub fn new(root: HostRoot, cache: Arc<ScanCache>, redactor: Arc<Redactor>) -> Self {
        Context {
            root,
            cache,
            redactor,
            package_dirs: Arc::default(),
            runtime_socket: None,
            os_release: OnceLock::new(),
            users: OnceLock::new(),
            groups: OnceLock::new(),
            sudoers: OnceLock::new(),
            boot_time: OnceLock::new(),
            processes: OnceLock::new(),
            listeners: OnceLock::new(),
            packages: OnceLock::new(),
            discovered: OnceLock::new(),
            docker: OnceLock::new(),
            cri: OnceLock::new(),
            image_packages: OnceLock::new(),
        }
    }

    /// The host's user-space processes (see [`process::gather`]).
    pub fn processes(&self) -> Result<&[process::ProcessInfo], CollectError> {
        shared(&self.processes, || process::gather(self))
    }

    /// The host's listening sockets with their owners (see [`listening_port::gather`]).
    pub fn listeners(&self) -> Result<&[listening_port::Listener], CollectError> {
        shared(&self.listeners, || listening_port::gather(self))
    }

    /// Installed packages of every ecosystem (see [`package::gather`]).
    pub fn packages(&self) -> Result<&[census_proto::v1::Package], CollectError> {
        shared(&self.packages, || package::gather(self))
    }

    /// The socket of the node's Docker Engine, if it has one.
    pub fn docker_socket(&self) -> Option<PathBuf> {
        crate::runtime::docker_socket(&self.root, self.runtime_socket.as_ref())
    }

    /// Docker's images and containers; `None` on a node without Docker.
    pub fn docker(&self) -> Result<Option<&crate::runtime::docker::DockerInventory>, CollectError> {
        let inventory = self.docker.get_or_init(|| {
            let Some(socket) = self.docker_socket() else {
                return Ok(None);
            };
            crate::runtime::docker::inventory(&socket)
                .map(Some)
                .map_err(|e| e.to_string())
        });
        match inventory {
            Ok(inventory) => Ok(inventory.as_ref()),
            Err(error) => Err(CollectError::Source(error.clone())),
        }
    }

    /// The CRI runtime's images, containers and sandboxes; `None` on a node without one.
    pub fn cri(&self) -> Result<Option<&crate::runtime::cri::CriInventory>, CollectError> {
        let inventory = self.cri.get_or_init(|| {
            let Some(socket) =
                crate::runtime::cri::socket(&self.root, self.runtime_socket.as_ref())
            else {
                return Ok(None);
            };
            crate::runtime::cri::inventory(&socket)
                .map(Some)
                .map_err(|e| e.to_string())
        });
        match inventory {
            Ok(inventory) => Ok(inventory.as_ref()),
            Err(error) => Err(CollectError::Source(error.clone())),
        }
    }

    /// Packages inside the node's images, each image read once per agent (by image id).
    pub fn image_packages(&self) -> Result<&[census_proto::v1::Package], CollectError> {
        shared(&self.image_packages, || package::image::gather(self))
    }

    /// Python, npm and Java package locations (see [`package::discover`]).
    pub fn discovered(&self) -> &package::discover::Discovered {
        self.discovered
            .get_or_init(|| package::discover::discover(self))
    }

    /// The host's /etc/passwd entries.
    pub fn users(&self) -> &[PasswdEntry] {
        self.users
            .get_or_init(|| match self.read_optional("/etc/passwd") {
                Some(text) => {
                    parse::passwd::parse(&text).warn_skipped(&self.root.join("/etc/passwd"))
                }
                None => Vec::new(),
            })
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

    /// The host's /etc/group entries.
    pub fn groups(&self) -> &[GroupEntry] {
        self.groups
            .get_or_init(|| match self.read_optional("/etc/group") {
                Some(text) => {
                    parse::group::parse(&text).warn_skipped(&self.root.join("/etc/group"))
                }
                None => Vec::new(),
            })
    }

    /// Every rule of /etc/sudoers and the files it includes.
    pub fn sudo_rules(&self) -> &[SudoRule] {
        &self.sudoers().rules
    }

    /// User_Alias definitions of the sudoers files: alias -> members.
    pub fn sudo_user_aliases(&self) -> &BTreeMap<String, Vec<String>> {
        &self.sudoers().user_aliases
    }

    fn sudoers(&self) -> &Sudoers {
        self.sudoers.get_or_init(|| load_sudoers(self))
    }

    /// A numeric setting of /etc/login.defs (`UID_MIN 1000`).
    pub fn login_defs_number(&self, name: &str) -> Option<u32> {
        self.read_optional("/etc/login.defs")?
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some(name))
                    .then(|| words.next()?.parse().ok())
                    .flatten()
            })
    }

    /// User name of `uid` from the host's /etc/passwd (first entry wins, as in
    /// getpwuid(3)); empty when unknown.
    pub fn user_name(&self, uid: u32) -> &str {
        self.users()
            .iter()
            .find(|user| user.uid == uid)
            .map(|user| user.name.as_str())
            .unwrap_or("")
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

/// sudoers rules and user aliases, gathered across included files.
#[derive(Debug, Default)]
struct Sudoers {
    rules: Vec<SudoRule>,
    user_aliases: BTreeMap<String, Vec<String>>,
}

/// How deep sudoers includes may nest (sudo itself stops at 128; real setups use 1).
const MAX_SUDOERS_DEPTH: usize = 8;

/// Reads /etc/sudoers and what it includes: `@include`/`#include` files (relative to
/// the including file's directory) and `@includedir`/`#includedir` directories, whose
/// files are read in name order, skipping names that end in `~` or contain a `.`, as sudo does.
fn load_sudoers(ctx: &Context) -> Sudoers {
    let mut sudoers = Sudoers::default();
    let mut pending = vec![(PathBuf::from("/etc/sudoers"), 0)];
    let mut seen = std::collections::BTreeSet::new();
    while let Some((path, depth)) = pending.pop() {
        if depth > MAX_SUDOERS_DEPTH || !seen.insert(path.clone()) {
            continue;
        }
        let Some(text) = ctx.read_optional(&path) else {
            continue;
        };
        let parsed = parse::sudoers::parse(&text);
        for skipped in &parsed.skipped {
            tracing::warn!(path = %ctx.root.join(&path).display(), line = skipped.line, reason = %skipped.reason, "skipped malformed input");
        }
        sudoers.rules.extend(parsed.rules);
        sudoers.user_aliases.extend(parsed.user_aliases);
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/etc"));
        let mut included = Vec::new();
        for include in parsed.includes {
            let target = base.join(&include.path);
            if !include.directory {
                included.push(target);
                continue;
            }
            let Ok(dir) = ctx.root.resolve(&target).and_then(std::fs::read_dir) else {
                continue;
            };
            let mut names: Vec<String> = dir
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| !name.ends_with('~') && !name.contains('.'))
                .collect();
            names.sort();
            included.extend(names.into_iter().map(|name| target.join(name)));
        }
        // Read in order: the stack pops the last pushed first.
        pending.extend(included.into_iter().rev().map(|p| (p, depth + 1)));
    }
    sudoers
}

/// A fact gathered once per scan and shared by every collector derived from it.
fn shared<T>(
    cell: &OnceLock<Result<Vec<T>, String>>,
    gather: impl FnOnce() -> Result<Vec<T>, CollectError>,
) -> Result<&[T], CollectError> {
    cell.get_or_init(|| gather().map_err(|error| error.to_string()))
        .as_deref()
        .map_err(|error| CollectError::Source(error.clone()))
}

/// Writes `text` to `path` under a fixture root, creating its directories.
#[cfg(test)]
pub(crate) fn write_fixture(root: &std::path::Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A context over a fixture root, with a fresh cache and a fixed redaction key.
#[cfg(test)]
pub(crate) fn test_context(root: HostRoot) -> Context {
    Context::new(root, Arc::default(), Arc::new(Redactor::new([1; 32])))
}
