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
        let headers = headers(&connection, &path.display().to_string()).map_err(sqlite_error)?;
        let os = ctx.os_release();
        Ok(headers
            .into_iter()
            .map(|header| rpm_package(header, os))
            .collect())
    }
}

/// Every package header of an rpm database, without the gpg-pubkey pseudo-packages
/// (imported signing keys); malformed headers are skipped with a warning naming `shown`.
pub fn headers(
    connection: &Connection,
    shown: &str,
) -> rusqlite::Result<Vec<rpm_header::RpmHeader>> {
    let mut statement = connection.prepare("SELECT hnum, blob FROM Packages")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    let mut headers = Vec::new();
    for row in rows {
        let (hnum, blob) = row?;
        match rpm_header::parse(&blob) {
            Ok(header) if header.name == "gpg-pubkey" => {}
            Ok(header) => headers.push(header),
            Err(reason) => {
                tracing::warn!(path = %shown, hnum, %reason, "skipping malformed rpm header")
            }
        }
    }
    Ok(headers)
}

/// The headers of an rpm database held in memory (an image layer's rpmdb.sqlite).
pub fn headers_from_bytes(bytes: &[u8], shown: &str) -> Result<Vec<rpm_header::RpmHeader>, String> {
    let mut connection = Connection::open_in_memory().map_err(|e| e.to_string())?;
    connection
        .deserialize_read_exact(rusqlite::MAIN_DB, bytes, bytes.len(), true)
        .map_err(|e| format!("not an SQLite database: {e}"))?;
    headers(&connection, shown).map_err(|e| e.to_string())
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

/// An RPM package record from its header and the system's os-release.
pub fn rpm_package(
    header: rpm_header::RpmHeader,
    os: &std::collections::BTreeMap<String, String>,
) -> Package {
    let namespace = os.get("ID").map(String::as_str).unwrap_or("rpm");
    let distro = os.get("VERSION_ID").map(|v| format!("{namespace}-{v}"));
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
    qualifiers.extend(distro.map(|d| ("distro", d)));
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
