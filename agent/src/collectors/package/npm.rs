//! npm packages: every `package.json` inside `node_modules` directories (global and
//! per application), nested dependencies included.
use std::path::Path;

use census_proto::v1::Package;

use super::{Cataloger, purl};
use crate::collectors::{CollectError, Context};
use crate::parse::npm_package;

const PACKAGE_JSON_LIMIT: u64 = 4 * 1024 * 1024;
/// Nesting of node_modules inside packages, at most.
const MAX_DEPTH: usize = 16;
/// Packages read per scan, at most.
const MAX_PACKAGES: usize = 100_000;

#[derive(Debug)]
pub struct NpmCataloger;

impl Cataloger for NpmCataloger {
    fn ecosystem(&self) -> &'static str {
        "npm"
    }

    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError> {
        let mut packages = Vec::new();
        for dir in &ctx.discovered().node_modules {
            walk(ctx, dir, 0, &mut packages);
        }
        if packages.len() >= MAX_PACKAGES {
            tracing::warn!(
                packages = MAX_PACKAGES,
                "npm cataloging stopped at its package budget"
            );
        }
        Ok(packages)
    }
}

/// Reads the packages of one node_modules directory (`name/` and `@scope/name/`).
fn walk(ctx: &Context, node_modules: &Path, depth: usize, packages: &mut Vec<Package>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(ctx.root.join(node_modules)) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        if name.starts_with('.') {
            continue;
        }
        if name.starts_with('@') {
            let scope = node_modules.join(&name);
            let Ok(scoped) = std::fs::read_dir(ctx.root.join(&scope)) else {
                continue;
            };
            let mut inner: Vec<String> = scoped
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            inner.sort();
            for package in inner {
                read_package(ctx, &scope.join(package), depth, packages);
            }
        } else {
            read_package(ctx, &node_modules.join(name), depth, packages);
        }
    }
}

fn read_package(ctx: &Context, dir: &Path, depth: usize, packages: &mut Vec<Package>) {
    if packages.len() >= MAX_PACKAGES {
        return;
    }
    // pnpm and `npm link` install packages as symlinks: read them, never walk into them.
    let linked =
        std::fs::symlink_metadata(ctx.root.join(dir)).is_ok_and(|m| m.file_type().is_symlink());
    let manifest = dir.join("package.json");
    let text = match ctx.root.read_string(&manifest, PACKAGE_JSON_LIMIT) {
        Ok(text) => text,
        Err(error) if error.is_not_found() => return,
        Err(error) => {
            tracing::warn!(%error, "skipping unreadable package.json");
            return;
        }
    };
    match npm_package::parse(&text) {
        Ok(package) => packages.push(npm_package_record(package, dir.display().to_string())),
        Err(reason) => {
            tracing::warn!(path = %ctx.root.join(&manifest).display(), %reason, "skipping malformed package.json");
        }
    }
    if !linked {
        walk(ctx, &dir.join("node_modules"), depth + 1, packages);
    }
}

/// An npm package record from its package.json, found in directory `location`.
pub fn npm_package_record(package: npm_package::NpmPackage, location: String) -> Package {
    let (namespace, name) = match package.name.split_once('/') {
        Some((scope, name)) if scope.starts_with('@') => (Some(scope), name),
        _ => (None, package.name.as_str()),
    };
    Package {
        ecosystem: "npm".into(),
        purl: purl("npm", namespace, name, &package.version, &[]),
        name: package.name.clone(),
        version: package.version,
        license: package.license,
        status: "installed".into(),
        location,
        ..Package::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn catalogs_nested_and_scoped_packages() {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |path: &str, text: &str| crate::collectors::write_fixture(dir.path(), path, text);
        write(
            "srv/app/node_modules/express/package.json",
            r#"{"name":"express","version":"4.18.2","license":"MIT"}"#,
        );
        write(
            "srv/app/node_modules/express/node_modules/debug/package.json",
            r#"{"name":"debug","version":"2.6.9"}"#,
        );
        write(
            "srv/app/node_modules/@babel/core/package.json",
            r#"{"name":"@babel/core","version":"7.23.0","license":{"type":"MIT"}}"#,
        );
        write("srv/app/node_modules/broken/package.json", "{ not json");
        write("srv/app/node_modules/.bin/express", "");
        std::os::unix::fs::symlink(
            "/srv/app/node_modules",
            dir.path()
                .join("srv/app/node_modules/express/node_modules/loop"),
        )
        .unwrap();

        let packages = NpmCataloger
            .catalog(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        let summary: Vec<_> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.purl.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("@babel/core", "pkg:npm/%40babel/core@7.23.0"),
                ("express", "pkg:npm/express@4.18.2"),
                ("debug", "pkg:npm/debug@2.6.9"),
            ]
        );
        assert_eq!(
            packages[2].location,
            "/srv/app/node_modules/express/node_modules/debug"
        );
        assert_eq!(packages[0].license, "MIT");
    }
}
