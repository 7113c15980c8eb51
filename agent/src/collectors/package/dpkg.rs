//! Debian packages from dpkg's status database.
use census_proto::v1::Package;

use super::{Cataloger, purl};
use crate::collectors::{CollectError, Context};
use crate::parse::dpkg::{DpkgPackage, parse_status};
use std::collections::BTreeMap;

const STATUS_PATH: &str = "/var/lib/dpkg/status";
/// The status file of a large host is a few MB; refuse anything absurd.
const STATUS_LIMIT: u64 = 256 * 1024 * 1024;

#[derive(Debug)]
pub struct DpkgCataloger;

impl Cataloger for DpkgCataloger {
    fn ecosystem(&self) -> &'static str {
        "deb"
    }

    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError> {
        let text = match ctx.root.read_string(STATUS_PATH, STATUS_LIMIT) {
            Ok(text) => text,
            Err(error) if error.is_not_found() => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let os = ctx.os_release();
        let packages = parse_status(&text)
            .warn_skipped(&ctx.root.join(STATUS_PATH))
            .into_iter()
            .filter(|p| p.files_present())
            .map(|p| deb_package(p, os))
            .collect();
        Ok(packages)
    }
}

/// A Debian package record from its status paragraph and the system's os-release.
pub fn deb_package(p: DpkgPackage, os: &BTreeMap<String, String>) -> Package {
    let namespace = os.get("ID").map(String::as_str).unwrap_or("debian");
    let distro = match os.get("VERSION_ID") {
        Some(version) => format!("{namespace}-{version}"),
        None => namespace.to_string(),
    };
    let mut qualifiers = vec![("arch", p.arch.clone())];
    if p.source_name != p.name {
        qualifiers.push(("upstream", p.source_name.clone()));
    }
    qualifiers.push(("distro", distro));
    Package {
        ecosystem: "deb".to_string(),
        purl: purl("deb", Some(namespace), &p.name, &p.version, &qualifiers),
        name: p.name,
        version: p.version,
        arch: p.arch,
        source_name: p.source_name,
        source_version: p.source_version,
        status: p.status,
        maintainer: p.maintainer,
        installed_size_bytes: p.installed_size_kib * 1024,
        ..Package::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn catalogs_installed_packages_with_purls() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("var/lib/dpkg/status"),
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n\n\
             Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n",
        )
        .unwrap();
        let ctx = test_context(HostRoot::new(dir.path()));
        let packages = DpkgCataloger.catalog(&ctx).unwrap();
        assert_eq!(packages.len(), 1);
        assert_eq!(
            packages[0].purl,
            "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&upstream=glibc&distro=debian-12"
        );
        assert_eq!(super::super::package_key(&packages[0]), "deb/libc6/amd64");
    }

    #[test]
    fn a_host_without_dpkg_has_no_deb_packages() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_context(HostRoot::new(dir.path()));
        assert_eq!(DpkgCataloger.catalog(&ctx).unwrap(), vec![]);
    }
}
