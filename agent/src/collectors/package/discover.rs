//! One bounded walk of the places applications live, finding what the location-based
//! catalogers read: Python site-packages, node_modules and Java archives.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::collectors::Context;

/// Where applications and language runtimes install packages.
pub const SEARCH_ROOTS: &[&str] = &[
    "/usr/lib",
    "/usr/lib64",
    "/usr/local",
    "/usr/share/java",
    "/opt",
    "/srv",
    "/app",
    "/var/www",
    "/var/lib",
    "/home",
    "/root",
];
/// Depth below a root (/root/.pyenv/versions/3.11/lib/python3.11/site-packages is 6).
const MAX_DEPTH: usize = 7;
/// Directory entries looked at per scan, at most.
const MAX_ENTRIES: usize = 300_000;

/// Hidden directories that hold packages; other hidden directories (caches, VCS,
/// toolchains) are not walked.
const HIDDEN_ALLOWED: &[&str] = &[
    ".local",
    ".pyenv",
    ".nvm",
    ".npm-global",
    ".virtualenvs",
    ".venv",
];

/// Directories never walked: kernel and device trees, container runtimes' storage
/// (images are cataloged from the runtime), databases' data, documentation.
const SKIP: &[&str] = &[
    "/usr/lib/modules",
    "/usr/lib/firmware",
    "/usr/lib/debug",
    "/usr/local/src",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/lib/containers",
    "/var/lib/postgresql",
    "/var/lib/mysql",
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/lib/rpm",
];

/// What the walk found, as host paths.
#[derive(Debug, Default, Clone)]
pub struct Discovered {
    /// `site-packages` and `dist-packages` directories.
    pub python_dirs: BTreeSet<PathBuf>,
    /// Top-level `node_modules` directories (nested ones are the npm cataloger's).
    pub node_modules: BTreeSet<PathBuf>,
    /// `.jar`, `.war` and `.ear` files.
    pub archives: BTreeSet<PathBuf>,
    /// Whether the walk stopped at [`MAX_ENTRIES`].
    pub truncated: bool,
}

/// Walks [`SEARCH_ROOTS`] and the configured package directories without following symlinks.
pub fn discover(ctx: &Context) -> Discovered {
    let mut found = Discovered::default();
    let mut budget = MAX_ENTRIES;
    let roots = SEARCH_ROOTS
        .iter()
        .map(PathBuf::from)
        .chain(ctx.package_dirs.iter().cloned());
    for root in roots {
        walk(ctx, &root, 0, &mut budget, &mut found);
    }
    if found.truncated {
        tracing::warn!(
            entries = MAX_ENTRIES,
            "package discovery stopped at its entry budget"
        );
    }
    found
}

fn walk(ctx: &Context, host_dir: &Path, depth: usize, budget: &mut usize, found: &mut Discovered) {
    if depth > MAX_DEPTH || SKIP.iter().any(|skip| host_dir == Path::new(skip)) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(ctx.root.join(host_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            found.truncated = true;
            return;
        }
        *budget -= 1;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let host_path = host_dir.join(&name);
        if file_type.is_dir() {
            match name.as_str() {
                "site-packages" | "dist-packages" => {
                    found.python_dirs.insert(host_path);
                }
                "node_modules" => {
                    found.node_modules.insert(host_path);
                }
                "__pycache__" | "proc" | "sys" | "dev" => {}
                _ if name.starts_with('.') && !HIDDEN_ALLOWED.contains(&name.as_str()) => {}
                _ => walk(ctx, &host_path, depth + 1, budget, found),
            }
        } else if file_type.is_file() && is_java_archive(&name) {
            found.archives.insert(host_path);
        }
    }
}

/// `.jar`, `.war`, `.ear` (any case).
pub fn is_java_archive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jar", ".war", ".ear"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn finds_package_places_without_following_links_or_hidden_caches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in [
            "usr/lib/python3/dist-packages/requests-2.28.1.dist-info",
            "root/.pyenv/versions/3.11.7/lib/python3.11/site-packages",
            "root/.cargo/registry/src/site-packages",
            "opt/app/node_modules/express",
            "opt/app/node_modules/express/node_modules/debug",
            "var/lib/docker/overlay2/x/site-packages",
            "srv/shop/webapps",
        ] {
            std::fs::create_dir_all(root.join(path)).unwrap();
        }
        std::fs::write(root.join("srv/shop/webapps/shop.war"), b"PK").unwrap();
        std::fs::write(root.join("opt/app/lib.JAR"), b"PK").unwrap();
        std::os::unix::fs::symlink("/", root.join("opt/loop")).unwrap();
        std::fs::create_dir_all(root.join("data/apps/lib")).unwrap();
        std::fs::write(root.join("data/apps/lib/extra-2.0.jar"), b"PK").unwrap();

        let mut ctx = test_context(HostRoot::new(root));
        ctx.package_dirs = std::sync::Arc::new(vec![PathBuf::from("/data/apps")]);
        let found = discover(&ctx);
        let paths = |set: &BTreeSet<PathBuf>| {
            set.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(&found.python_dirs),
            [
                "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages",
                "/usr/lib/python3/dist-packages"
            ]
        );
        assert_eq!(paths(&found.node_modules), ["/opt/app/node_modules"]);
        assert_eq!(
            paths(&found.archives),
            [
                "/data/apps/lib/extra-2.0.jar",
                "/opt/app/lib.JAR",
                "/srv/shop/webapps/shop.war"
            ]
        );
        assert!(!found.truncated);
    }
}
