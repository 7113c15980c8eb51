//! Go modules compiled into the executables of running processes, from the build
//! information Go embeds (read while the executable is hashed, so it costs no extra read).
use std::collections::BTreeSet;

use census_proto::v1::Package;

use super::{Cataloger, purl};
use crate::collectors::{CollectError, Context};

#[derive(Debug)]
pub struct GoCataloger;

impl Cataloger for GoCataloger {
    fn ecosystem(&self) -> &'static str {
        "go"
    }

    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError> {
        let mut packages = Vec::new();
        let mut seen = BTreeSet::new();
        for process in ctx.processes()? {
            if process.exe.is_empty() || !seen.insert(process.exe.clone()) {
                continue;
            }
            let Ok(info) = ctx.cache.exe(&process.proc_path(ctx, "exe")) else {
                continue;
            };
            let Some(go) = &info.go else { continue };
            // The standard library's version is the toolchain's ("go1.22.5").
            let stdlib = go
                .go_version
                .strip_prefix("go")
                .map(|version| (String::from("stdlib"), version.to_string()));
            let modules = go
                .main
                .iter()
                .chain(go.deps.iter())
                .map(|m| (m.path.clone(), m.version.clone()))
                .chain(stdlib);
            for (path, version) in modules {
                // A main module built from a work tree has no version: "(devel)".
                if version.is_empty() || version == "(devel)" {
                    continue;
                }
                let (namespace, name) = match path.rsplit_once('/') {
                    Some((namespace, name)) => (Some(namespace), name),
                    None => (None, path.as_str()),
                };
                packages.push(Package {
                    ecosystem: "go".into(),
                    purl: purl("golang", namespace, name, &version, &[]),
                    name: path.clone(),
                    version,
                    status: "linked".into(),
                    location: process.exe.clone(),
                    ..Package::default()
                });
            }
        }
        Ok(packages)
    }
}
