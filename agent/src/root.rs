//! Access to the host filesystem through a root directory (`/`, or the host's root
//! mounted elsewhere as in a DaemonSet), with symlinks resolved inside that root.
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Largest number of symlinks followed while resolving one path (as Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Why a file under the host root could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is larger than the collector is willing to read.
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
}

impl ReadError {
    /// Whether the file simply does not exist (a normal condition for optional sources).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// The host filesystem as seen from the agent.
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into() }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Whether the root is the agent's own `/`, where the kernel resolves links for us.
    fn is_slash(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `host_path` (an absolute path on the host, e.g. `/proc/net/tcp`) under the root,
    /// joined lexically: no symlink is followed. For /proc and /sys, whose links
    /// describe the kernel's view rather than the filesystem's.
    pub fn join(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let relative: PathBuf = host_path
            .as_ref()
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        self.root.join(relative)
    }

    /// `host_path` under the root with every symlink resolved as if the root were `/`:
    /// absolute targets restart at the root and `..` never climbs above it.
    pub fn resolve(&self, host_path: impl AsRef<Path>) -> io::Result<PathBuf> {
        if self.is_slash() {
            return Ok(self.join(host_path));
        }
        let mut resolved: Vec<std::ffi::OsString> = Vec::new();
        let mut pending: Vec<std::ffi::OsString> = components_reversed(host_path.as_ref());
        let mut links_followed = 0;
        while let Some(part) = pending.pop() {
            if part == OsStr::new("..") {
                resolved.pop();
                continue;
            }
            let candidate = self
                .root
                .join(resolved.iter().collect::<PathBuf>())
                .join(&part);
            match std::fs::symlink_metadata(&candidate) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links_followed += 1;
                    if links_followed > MAX_SYMLINKS {
                        return Err(io::Error::other(format!(
                            "too many levels of symbolic links resolving {}",
                            host_path.as_ref().display()
                        )));
                    }
                    let target = std::fs::read_link(&candidate)?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    pending.extend(components_reversed(&target));
                }
                // A missing component: keep it, the caller's open reports NotFound.
                Ok(_) | Err(_) => resolved.push(part),
            }
        }
        Ok(self.root.join(resolved.iter().collect::<PathBuf>()))
    }

    /// Host paths matching `pattern`, whose components may hold `*` and `?` wildcards
    /// (`/etc/nginx/sites-enabled/*`), sorted; a pattern without wildcards names itself
    /// when it exists. Symlinks resolve inside the root.
    pub fn glob(&self, pattern: impl AsRef<Path>) -> Vec<PathBuf> {
        let mut matches = vec![PathBuf::from("/")];
        for component in pattern.as_ref().components() {
            let Component::Normal(part) = component else {
                continue;
            };
            let part = part.to_string_lossy();
            let mut next = Vec::new();
            for base in matches {
                if !part.contains(['*', '?']) {
                    next.push(base.join(part.as_ref()));
                    continue;
                }
                let Ok(entries) = self.resolve(&base).and_then(std::fs::read_dir) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| !name.starts_with('.') && wildcard_match(&part, name))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|name| base.join(name)));
            }
            matches = next;
        }
        matches.retain(|path| self.resolve(path).is_ok_and(|p| p.exists()));
        matches
    }

    /// Reads a whole file of at most `limit` bytes, symlinks resolved inside the root.
    pub fn read(&self, host_path: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, ReadError> {
        let path = self.resolve(&host_path).map_err(|source| ReadError::Io {
            path: self.join(&host_path),
            source,
        })?;
        read_limited(&path, limit)
    }

    /// [`HostRoot::read`] decoded as UTF-8, invalid sequences replaced.
    pub fn read_string(
        &self,
        host_path: impl AsRef<Path>,
        limit: u64,
    ) -> Result<String, ReadError> {
        self.read(host_path, limit)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Reads at most `limit` bytes of `path`; a longer file is an error rather than a truncated read.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io_error = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = open_regular(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}

/// The first `limit` bytes of `path` (all of it when shorter).
pub fn read_prefix(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens a regular file for reading; anything else (a FIFO that would block forever,
/// a device, a directory) is an error.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    File::open(path)
}

/// Shell-style match of `*` (any run) and `?` (one character).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (pattern, name): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), name.chars().collect());
    let (mut p, mut n, mut star, mut mark) = (0, 0, None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn components_reversed(path: &Path) -> Vec<std::ffi::OsString> {
    let mut parts: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("usr/lib/os-release"), "ID=debian\n").unwrap();
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn relative_links_resolve_inside_the_root() {
        let (dir, root) = fixture();
        symlink("../usr/lib/os-release", dir.path().join("etc/os-release")).unwrap();
        assert_eq!(
            root.read_string("/etc/os-release", 100).unwrap(),
            "ID=debian\n"
        );
    }

    #[test]
    fn absolute_links_restart_at_the_root() {
        let (dir, root) = fixture();
        symlink("/usr/lib/os-release", dir.path().join("etc/os-release")).unwrap();
        assert_eq!(
            root.resolve("/etc/os-release").unwrap(),
            dir.path().join("usr/lib/os-release")
        );
    }

    #[test]
    fn dot_dot_never_climbs_above_the_root() {
        let (dir, root) = fixture();
        symlink(
            "../../../../../../etc/passwd",
            dir.path().join("etc/escape"),
        )
        .unwrap();
        assert_eq!(
            root.resolve("/etc/escape").unwrap(),
            dir.path().join("etc/passwd")
        );
        assert!(root.read("/etc/escape", 100).unwrap_err().is_not_found());
    }

    #[test]
    fn link_loops_are_an_error_not_a_hang() {
        let (dir, root) = fixture();
        symlink("b", dir.path().join("etc/a")).unwrap();
        symlink("a", dir.path().join("etc/b")).unwrap();
        let error = root.read("/etc/a", 100).unwrap_err();
        assert!(error.to_string().contains("too many levels"), "{error}");
    }

    #[test]
    fn globs_expand_inside_the_root() {
        let (dir, root) = fixture();
        for name in ["default", "shop.conf", "blog.conf", ".hidden.conf"] {
            std::fs::write(dir.path().join("etc").join(name), "").unwrap();
        }
        let found = |pattern: &str| {
            root.glob(pattern)
                .into_iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(found("/etc/*.conf"), ["/etc/blog.conf", "/etc/shop.conf"]);
        assert_eq!(found("/etc/defaul?"), ["/etc/default"]);
        assert_eq!(found("/usr/*/os-release"), ["/usr/lib/os-release"]);
        assert!(found("/etc/missing").is_empty());
        assert!(wildcard_match("php*-fpm", "php8.2-fpm") && !wildcard_match("*.conf", "conf"));
    }

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let (dir, root) = fixture();
        let fifo = dir.path().join("etc/hostname");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let error = root.read("/etc/hostname", 100).unwrap_err().to_string();
        assert!(
            error.contains("not a regular file") && error.contains("etc/hostname"),
            "{error}"
        );
        assert!(
            root.read("/etc", 100)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let (_dir, root) = fixture();
        let error = root.read("/usr/lib/os-release", 4).unwrap_err();
        assert!(
            matches!(error, ReadError::TooLarge { limit: 4, .. }),
            "{error}"
        );
    }
}
