//! Alpine packages from apk's database (`/lib/apk/db/installed`).
use census_proto::v1::Package;

use super::{Cataloger, purl};
use crate::collectors::{CollectError, Context};
use crate::parse::apk;
use std::collections::BTreeMap;

const DATABASE: &str = "/lib/apk/db/installed";
const DATABASE_LIMIT: u64 = 256 * 1024 * 1024;

#[derive(Debug)]
pub struct ApkCataloger;

impl Cataloger for ApkCataloger {
    fn ecosystem(&self) -> &'static str {
        "apk"
    }

    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError> {
        let text = match ctx.root.read_string(DATABASE, DATABASE_LIMIT) {
            Ok(text) => text,
            Err(error) if error.is_not_found() => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let os = ctx.os_release();
        Ok(apk::parse(&text)
            .warn_skipped(&ctx.root.join(DATABASE))
            .into_iter()
            .map(|p| apk_package(p, os))
            .collect())
    }
}

/// An Alpine package record from its database block and the system's os-release.
pub fn apk_package(p: apk::ApkPackage, os: &BTreeMap<String, String>) -> Package {
    let namespace = os.get("ID").map(String::as_str).unwrap_or("alpine");
    let mut qualifiers = vec![("arch", p.arch.clone())];
    if !p.origin.is_empty() && p.origin != p.name {
        qualifiers.push(("upstream", p.origin.clone()));
    }
    qualifiers.extend(
        os.get("VERSION_ID")
            .map(|v| ("distro", format!("{namespace}-{v}"))),
    );
    Package {
        ecosystem: "apk".into(),
        purl: purl("apk", Some(namespace), &p.name, &p.version, &qualifiers),
        source_name: if p.origin.is_empty() {
            p.name.clone()
        } else {
            p.origin
        },
        source_version: p.version.clone(),
        status: "installed".into(),
        name: p.name,
        version: p.version,
        arch: p.arch,
        maintainer: p.maintainer,
        installed_size_bytes: p.installed_size,
        license: p.license,
        ..Package::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn catalogs_alpine_packages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/apk/db")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/os-release"),
            "ID=alpine\nVERSION_ID=3.19.1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("lib/apk/db/installed"),
            "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:407278\nI:651264\nT:the musl c library\nL:MIT\no:musl\nm:Natanael Copa <ncopa@alpinelinux.org>\nF:lib\nR:libc.musl-x86_64.so.1\n\n\
             P:ssl_client\nV:3.1.4-r5\nA:x86_64\nI:14336\nL:GPL-2.0-only\no:busybox\n\n",
        )
        .unwrap();
        let packages = ApkCataloger
            .catalog(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        assert_eq!(packages.len(), 2);
        assert_eq!(
            packages[0].purl,
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1"
        );
        assert_eq!(packages[1].source_name, "busybox");
        assert_eq!(
            packages[1].purl,
            "pkg:apk/alpine/ssl_client@3.1.4-r5?arch=x86_64&upstream=busybox&distro=alpine-3.19.1"
        );
        assert_eq!(packages[0].installed_size_bytes, 651264);
    }
}
