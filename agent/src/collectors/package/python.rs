//! Python distributions: `*.dist-info/METADATA` and `*.egg-info` in every site-packages
//! or dist-packages directory found on the host or used by a running interpreter.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use census_proto::v1::Package;

use super::{Cataloger, purl};
use crate::collectors::{CollectError, Context};
use crate::parse::python_metadata;

/// Metadata headers come first; the description after them can be large.
const METADATA_PREFIX: u64 = 256 * 1024;

#[derive(Debug)]
pub struct PythonCataloger;

impl Cataloger for PythonCataloger {
    fn ecosystem(&self) -> &'static str {
        "python"
    }

    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError> {
        let mut dirs: BTreeSet<PathBuf> = ctx.discovered().python_dirs.clone();
        dirs.extend(interpreter_dirs(ctx));
        let mut packages = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(ctx.root.join(&dir)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for name in names {
                let location = dir.join(&name);
                let metadata = if name.ends_with(".dist-info") {
                    location.join("METADATA")
                } else if name.ends_with(".egg-info") {
                    let as_dir = location.join("PKG-INFO");
                    if ctx.root.join(&as_dir).is_file() {
                        as_dir
                    } else {
                        location.clone()
                    }
                } else {
                    continue;
                };
                if let Some(package) = read_distribution(ctx, &metadata, &location) {
                    packages.push(package);
                }
            }
        }
        Ok(packages)
    }
}

fn read_distribution(ctx: &Context, metadata: &Path, location: &Path) -> Option<Package> {
    let path = ctx.root.join(metadata);
    let bytes = match crate::root::read_prefix(&path, METADATA_PREFIX) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "skipping unreadable python metadata");
            return None;
        }
    };
    match python_metadata::parse(&String::from_utf8_lossy(&bytes)) {
        Ok(dist) => Some(python_package(dist, location.display().to_string())),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "skipping malformed python metadata");
            None
        }
    }
}

/// A Python package record from its metadata, found at `location`.
pub fn python_package(dist: python_metadata::PythonDist, location: String) -> Package {
    Package {
        ecosystem: "python".into(),
        purl: purl("pypi", None, &normalize(&dist.name), &dist.version, &[]),
        name: dist.name,
        version: dist.version,
        license: dist.license,
        status: "installed".into(),
        location,
        ..Package::default()
    }
}

/// PEP 503 normalized name: lowercase, runs of `-`, `_`, `.` as one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// site-packages of running interpreters: `PREFIX/lib/pythonX.Y/site-packages` where
/// the executable is `PREFIX/bin/python...` (virtualenvs, pyenv, /opt installs).
fn interpreter_dirs(ctx: &Context) -> Vec<PathBuf> {
    let Ok(processes) = ctx.processes() else {
        return Vec::new();
    };
    let prefixes: BTreeSet<PathBuf> = processes
        .iter()
        .filter(|p| {
            p.comm.starts_with("python")
                || p.exe
                    .rsplit('/')
                    .next()
                    .is_some_and(|e| e.starts_with("python"))
        })
        .filter_map(|p| Path::new(&p.exe).parent()?.parent().map(Path::to_path_buf))
        .collect();
    let mut dirs = Vec::new();
    for prefix in prefixes {
        let lib = prefix.join("lib");
        let Ok(entries) = std::fs::read_dir(ctx.root.join(&lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with("python") {
                dirs.push(lib.join(&name).join("site-packages"));
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn catalogs_dist_info_and_egg_info() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("usr/lib/python3/dist-packages");
        std::fs::create_dir_all(site.join("Requests-2.28.1.dist-info")).unwrap();
        std::fs::write(
            site.join("Requests-2.28.1.dist-info/METADATA"),
            "Metadata-Version: 2.1\r\nName: requests\r\nVersion: 2.28.1\r\nLicense: Apache 2.0\r\n\r\nlong description",
        )
        .unwrap();
        std::fs::create_dir_all(site.join("Zope.Interface-5.5.egg-info")).unwrap();
        std::fs::write(
            site.join("Zope.Interface-5.5.egg-info/PKG-INFO"),
            "Name: zope.interface\nVersion: 5.5\n",
        )
        .unwrap();
        std::fs::write(
            site.join("six-1.16.0.egg-info"),
            "Metadata-Version: 1.1\nName: six\nVersion: 1.16.0\n",
        )
        .unwrap();
        std::fs::create_dir_all(site.join("broken-1.0.dist-info")).unwrap();
        std::fs::write(site.join("broken-1.0.dist-info/METADATA"), "Version: 1.0\n").unwrap();

        let packages = PythonCataloger
            .catalog(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        let summary: Vec<_> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.purl.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("requests", "2.28.1", "pkg:pypi/requests@2.28.1"),
                ("zope.interface", "5.5", "pkg:pypi/zope-interface@5.5"),
                ("six", "1.16.0", "pkg:pypi/six@1.16.0"),
            ]
        );
        assert_eq!(
            packages[0].location,
            "/usr/lib/python3/dist-packages/Requests-2.28.1.dist-info"
        );
        assert_eq!(packages[0].license, "Apache 2.0");
    }
}
