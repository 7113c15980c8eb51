//! RPM packages from rpm's SQLite database (`rpmdb.sqlite`, RHEL 9, Fedora 33+, SUSE).
use std::path::Path;

use census_proto::v1::Package;
use rusqlite::{Connection, OpenFlags};

use super::{Cataloger, purl};
use crate::collectors::{CollectError, Context};
use crate::parse::rpm_header;

/// Where rpm keeps its SQLite database.
const DATABASES: &[&str] = &[
    "/var/lib/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
];
/// Berkeley DB databases of older distributions, which census does not read.
const LEGACY_DATABASES: &[&str] = &["/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages"];

#[derive(Debug)]
pub struct RpmCataloger;

impl Cataloger for RpmCataloger {
    fn ecosystem(&self) -> &'static str {
        "rpm"
    }

    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError> {
        let Some(host_path) = DATABASES
            .iter()
            .find(|p| ctx.root.resolve(p).is_ok_and(|p| p.is_file()))
        else {
            if let Some(legacy) = LEGACY_DATABASES
                .iter()
                .find(|p| ctx.root.resolve(p).is_ok_and(|p| p.is_file()))
            {
                tracing::warn!(path = %ctx.root.join(legacy).display(), "Berkeley DB rpm databases are not read");
            }
            return Ok(Vec::new());
        };
        let path = ctx
            .root
            .resolve(host_path)
            .map_err(|source| CollectError::List {
                path: ctx.root.join(host_path),
                source,
            })?;
        let sqlite_error =
            |error: rusqlite::Error| CollectError::Source(format!("{}: {error}", path.display()));
        let connection = open_read_only(&path).map_err(sqlite_error)?;
        let mut statement = connection
            .prepare("SELECT hnum, blob FROM Packages")
            .map_err(sqlite_error)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .map_err(sqlite_error)?;
        let os = ctx.os_release();
        let namespace = os
            .get("ID")
            .map(String::as_str)
            .unwrap_or("rpm")
            .to_string();
        let distro = os.get("VERSION_ID").map(|v| format!("{namespace}-{v}"));
        let mut packages = Vec::new();
        for row in rows {
            let (hnum, blob) = row.map_err(sqlite_error)?;
            let header = match rpm_header::parse(&blob) {
                Ok(header) => header,
                Err(reason) => {
                    tracing::warn!(path = %path.display(), hnum, %reason, "skipping malformed rpm header");
                    continue;
                }
            };
            // Imported signing keys are stored as packages named gpg-pubkey.
            if header.name == "gpg-pubkey" {
                continue;
            }
            packages.push(package(header, &namespace, distro.as_deref()));
        }
        Ok(packages)
    }
}

/// Opens read-only without writing a lock or WAL index next to the host's database.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(path, flags).or_else(|_| {
        // A read-only mount cannot hold the -shm file: read the file as it is.
        let uri = format!("file:{}?immutable=1", path.display());
        Connection::open_with_flags(uri, flags)
    })
}

fn package(header: rpm_header::RpmHeader, namespace: &str, distro: Option<&str>) -> Package {
    let version = format!("{}-{}", header.version, header.release);
    let evr = match header.epoch {
        Some(epoch) => format!("{epoch}:{version}"),
        None => version.clone(),
    };
    let mut qualifiers = vec![("arch", header.arch.clone())];
    if let Some(epoch) = header.epoch {
        qualifiers.push(("epoch", epoch.to_string()));
    }
    let source_name = rpm_header::source_name(&header.source_rpm)
        .unwrap_or(&header.name)
        .to_string();
    if source_name != header.name {
        qualifiers.push(("upstream", header.source_rpm.clone()));
    }
    qualifiers.extend(distro.map(|d| ("distro", d.to_string())));
    Package {
        ecosystem: "rpm".into(),
        purl: purl("rpm", Some(namespace), &header.name, &version, &qualifiers),
        name: header.name,
        version: evr,
        arch: header.arch,
        source_name,
        source_version: version,
        status: "installed".into(),
        maintainer: header.vendor,
        installed_size_bytes: header.size,
        license: header.license,
        ..Package::default()
    }
}
