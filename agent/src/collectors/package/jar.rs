//! Java archives: jars on running JVMs' command lines and classpaths plus the archives
//! found under application roots, identified by pom.properties and MANIFEST.MF, with
//! nested archives (fat jars, wars, ears) reported as `outer.jar:inner.jar`.
//!
//! Archives are untrusted: depth, entry count and decompressed sizes are bounded, so
//! a zip bomb costs a warning, not the agent's memory.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use census_proto::v1::Package;
use sha2::{Digest, Sha256};

use super::discover::is_java_archive;
use super::{Cataloger, purl};
use crate::collectors::{CollectError, Context};
use crate::parse::{java_manifest, java_properties};

/// Nested archives are read this deep (outer.war:WEB-INF/lib/x.jar:inner.jar).
const MAX_DEPTH: usize = 2;
/// Entries of one archive considered, at most.
const MAX_ENTRIES: usize = 100_000;
/// Largest metadata entry (manifest, pom.properties) read.
const MAX_METADATA_BYTES: u64 = 1024 * 1024;
/// Largest nested archive read into memory.
const MAX_NESTED_BYTES: u64 = 64 * 1024 * 1024;
/// Decompressed bytes read from one top-level archive and everything inside it.
const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;
/// Largest top-level archive opened.
const MAX_ARCHIVE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug)]
pub struct JarCataloger;

impl Cataloger for JarCataloger {
    fn ecosystem(&self) -> &'static str {
        "jar"
    }

    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError> {
        let mut archives: BTreeSet<PathBuf> = ctx.discovered().archives.clone();
        archives.extend(jvm_classpath_archives(ctx));
        let mut packages = Vec::new();
        for archive in archives {
            let path = ctx.root.join(&archive);
            match ctx
                .cache
                .archive(&path, || catalog_archive(&path, &archive))
            {
                Ok(found) => packages.extend(found.iter().cloned()),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "skipping unreadable java archive")
                }
            }
        }
        Ok(packages)
    }
}

/// Catalogs one archive file and what it nests.
fn catalog_archive(path: &Path, host_path: &Path) -> std::io::Result<Vec<Package>> {
    let mut file = crate::root::open_regular(path)?;
    let size = file.metadata()?.len();
    if size > MAX_ARCHIVE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_ARCHIVE_BYTES} bytes"
        )));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let sha256 = hex::encode(hasher.finalize());
    file.rewind()?;
    let mut packages = Vec::new();
    let mut budget = MAX_TOTAL_BYTES;
    let archive = Archive {
        location: host_path.display().to_string(),
        shown: path.display().to_string(),
    };
    inspect(file, &archive, sha256, 0, &mut budget, &mut packages);
    Ok(packages)
}

/// Catalogs an archive read from anywhere (an image layer): `location` names it in
/// records, `shown` in warnings.
pub fn catalog_reader<R: Read + Seek>(
    reader: R,
    location: &str,
    shown: &str,
    sha256: String,
) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut budget = MAX_TOTAL_BYTES;
    let archive = Archive {
        location: location.to_string(),
        shown: shown.to_string(),
    };
    inspect(reader, &archive, sha256, 0, &mut budget, &mut packages);
    packages
}

/// Where an archive is: as the host names it (records) and as the agent opened it (warnings).
struct Archive {
    location: String,
    shown: String,
}

impl Archive {
    fn nested(&self, name: &str) -> Archive {
        Archive {
            location: format!("{}:{name}", self.location),
            shown: format!("{}:{name}", self.shown),
        }
    }
}

/// Reads one archive: its own identity, then its nested archives.
fn inspect<R: Read + Seek>(
    reader: R,
    archive_at: &Archive,
    sha256: String,
    depth: usize,
    budget: &mut u64,
    out: &mut Vec<Package>,
) {
    let location = archive_at.location.as_str();
    let shown = archive_at.shown.as_str();
    let mut archive = match zip::ZipArchive::new(reader) {
        Ok(archive) => archive,
        Err(error) => {
            tracing::warn!(path = %shown, %error, "skipping malformed java archive");
            return;
        }
    };
    if archive.len() > MAX_ENTRIES {
        tracing::warn!(path = %shown, entries = archive.len(), limit = MAX_ENTRIES, "only the first entries of a large archive are read");
    }
    let mut manifest = BTreeMap::new();
    let mut poms: Vec<BTreeMap<String, String>> = Vec::new();
    let mut nested = Vec::new();
    for index in 0..archive.len().min(MAX_ENTRIES) {
        let Ok(mut entry) = archive.by_index(index) else {
            continue;
        };
        if entry.is_dir() {
            continue;
        }
        let Ok(name) = entry.name().map(|n| n.into_owned()) else {
            continue;
        };
        let wanted = if name.eq_ignore_ascii_case("META-INF/MANIFEST.MF") {
            Wanted::Manifest
        } else if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            Wanted::Pom
        } else if depth < MAX_DEPTH && is_java_archive(&name) {
            Wanted::Nested
        } else {
            continue;
        };
        let limit = if wanted == Wanted::Nested {
            MAX_NESTED_BYTES
        } else {
            MAX_METADATA_BYTES
        };
        let bytes = match read_bounded(&mut entry, limit.min(*budget)) {
            Ok(bytes) => bytes,
            Err(reason) => {
                tracing::warn!(path = %format!("{shown}:{name}"), %reason, "skipping archive entry");
                continue;
            }
        };
        *budget = budget.saturating_sub(bytes.len() as u64);
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match wanted {
            Wanted::Manifest => {
                manifest = java_manifest::parse(&text()).items.into_iter().collect()
            }
            Wanted::Pom => poms.push(java_properties::parse(&text()).items.into_iter().collect()),
            Wanted::Nested => nested.push((name, bytes)),
        }
    }
    drop(archive);
    let file_name = location.rsplit([':', '/']).next().unwrap_or(location);
    out.push(identify(file_name, &manifest, &poms, location, sha256));
    for (name, bytes) in nested {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        inspect(
            std::io::Cursor::new(bytes),
            &archive_at.nested(&name),
            sha256,
            depth + 1,
            budget,
            out,
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Manifest,
    Pom,
    Nested,
}

/// Reads an entry fully if it decompresses to at most `limit` bytes.
fn read_bounded(entry: &mut impl Read, limit: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot decompress: {error}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(bytes)
}

/// Names an archive: the pom.properties matching the file name (or the only one), else
/// the manifest's implementation or bundle attributes, else the file name.
fn identify(
    file_name: &str,
    manifest: &BTreeMap<String, String>,
    poms: &[BTreeMap<String, String>],
    location: &str,
    sha256: String,
) -> Package {
    let stem = file_name
        .rsplit_once('.')
        .map(|(stem, _)| stem)
        .unwrap_or(file_name);
    let pom = poms
        .iter()
        .find(|pom| {
            pom.get("artifactId")
                .is_some_and(|id| stem.starts_with(id.as_str()))
        })
        .or(if poms.len() == 1 { poms.first() } else { None });
    let attribute = |names: &[&str]| names.iter().find_map(|n| manifest.get(*n)).cloned();
    let (from_file_name, from_file_version) = split_file_name(stem);
    let (group, name, version) = match pom {
        Some(pom) => (
            pom.get("groupId").cloned().unwrap_or_default(),
            pom.get("artifactId")
                .cloned()
                .unwrap_or_else(|| from_file_name.clone()),
            pom.get("version").cloned().unwrap_or_default(),
        ),
        None => (
            attribute(&["Implementation-Vendor-Id"]).unwrap_or_default(),
            attribute(&[
                "Implementation-Title",
                "Bundle-SymbolicName",
                "Specification-Title",
            ])
            .map(|title| {
                title
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .filter(|title| !title.is_empty())
            .unwrap_or_else(|| from_file_name.clone()),
            attribute(&[
                "Implementation-Version",
                "Bundle-Version",
                "Specification-Version",
            ])
            .unwrap_or(from_file_version),
        ),
    };
    let namespace = (!group.is_empty()).then_some(group.as_str());
    Package {
        ecosystem: "jar".into(),
        purl: purl("maven", namespace, &name, &version, &[]),
        source_name: group.clone(),
        name,
        version,
        status: "present".into(),
        location: location.to_string(),
        sha256,
        license: attribute(&["Bundle-License"]).unwrap_or_default(),
        ..Package::default()
    }
}

/// `commons-lang3-3.12.0` -> ("commons-lang3", "3.12.0"): the version starts at the
/// first `-` followed by a digit.
fn split_file_name(stem: &str) -> (String, String) {
    let bytes = stem.as_bytes();
    let split = (0..bytes.len())
        .find(|&i| bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
    match split {
        Some(i) => (stem[..i].to_string(), stem[i + 1..].to_string()),
        None => (stem.to_string(), String::new()),
    }
}

/// Archives named by running JVMs: `-jar FILE` and `-cp`/`-classpath`/`--class-path`
/// entries (a `dir/*` entry is every jar in dir), relative to the process's cwd.
fn jvm_classpath_archives(ctx: &Context) -> Vec<PathBuf> {
    let Ok(processes) = ctx.processes() else {
        return Vec::new();
    };
    let mut archives = Vec::new();
    for process in processes
        .iter()
        .filter(|p| p.comm == "java" || p.exe.ends_with("/java"))
    {
        let cwd = std::fs::read_link(process.proc_path(ctx, "cwd"))
            .unwrap_or_else(|_| PathBuf::from("/"));
        let mut entries = Vec::new();
        let mut args = process.cmdline.iter().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-jar" => entries.extend(args.next().cloned()),
                "-cp" | "-classpath" | "--class-path" => {
                    entries.extend(
                        args.next()
                            .into_iter()
                            .flat_map(|cp| cp.split(':').map(str::to_string)),
                    );
                }
                _ => {
                    if let Some(cp) = arg.strip_prefix("--class-path=") {
                        entries.extend(cp.split(':').map(str::to_string));
                    }
                }
            }
        }
        for entry in entries.into_iter().filter(|e| !e.is_empty()) {
            let path = cwd.join(&entry);
            if let Some(dir) = entry.strip_suffix("/*").map(|d| cwd.join(d)) {
                let Ok(listing) = std::fs::read_dir(ctx.root.join(&dir)) else {
                    continue;
                };
                archives.extend(
                    listing
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|name| is_java_archive(name))
                        .map(|name| dir.join(name)),
                );
            } else if is_java_archive(&entry) {
                archives.push(path);
            }
        }
    }
    archives
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;
    use std::io::Write;

    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buffer = std::io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            writer.start_file(*name, options).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap();
        buffer.into_inner()
    }

    #[test]
    fn identifies_jars_and_nested_jars() {
        let inner = zip(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\n"),
            (
                "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
                b"#Created by Maven\ngroupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n",
            ),
        ]);
        let bare = zip(&[(
            "META-INF/MANIFEST.MF",
            b"Manifest-Version: 1.0\nImplementation-Title: Bare Lib\nImplementation-Version: 0.9\n",
        )]);
        let outer = zip(&[
            (
                "META-INF/MANIFEST.MF",
                b"Manifest-Version: 1.0\nStart-Class: com.example.App\n",
            ),
            ("BOOT-INF/lib/log4j-core-2.14.1.jar", &inner),
            ("BOOT-INF/lib/bare.jar", &bare),
            ("BOOT-INF/classes/app.properties", b"x=1"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("opt/app")).unwrap();
        std::fs::write(dir.path().join("opt/app/shop-1.4.2.jar"), &outer).unwrap();

        let packages = JarCataloger
            .catalog(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        let summary: Vec<_> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.location.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("shop", "1.4.2", "/opt/app/shop-1.4.2.jar"),
                (
                    "log4j-core",
                    "2.14.1",
                    "/opt/app/shop-1.4.2.jar:BOOT-INF/lib/log4j-core-2.14.1.jar"
                ),
                (
                    "Bare Lib",
                    "0.9",
                    "/opt/app/shop-1.4.2.jar:BOOT-INF/lib/bare.jar"
                ),
            ]
        );
        assert_eq!(
            packages[1].purl,
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
        );
        assert_eq!(packages[0].sha256, hex::encode(Sha256::digest(&outer)));
        assert_eq!(packages[1].sha256, hex::encode(Sha256::digest(&inner)));
    }

    #[test]
    fn bombs_and_garbage_cost_a_warning_not_memory() {
        let zeros = vec![0u8; (MAX_METADATA_BYTES + 1) as usize];
        let bomb = zip(&[
            ("META-INF/MANIFEST.MF", &zeros),
            ("lib/garbage.jar", b"not a zip at all"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("opt")).unwrap();
        std::fs::write(dir.path().join("opt/bomb-1.0.jar"), &bomb).unwrap();
        std::fs::write(
            dir.path().join("opt/truncated.jar"),
            &bomb[..bomb.len() / 2],
        )
        .unwrap();
        let packages = JarCataloger
            .catalog(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        let names: Vec<_> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        // The oversized manifest is skipped; the jar is still named by its file name.
        assert_eq!(names, [("bomb", "1.0")]);
    }

    #[test]
    fn file_names_split_at_the_version() {
        assert_eq!(
            split_file_name("commons-lang3-3.12.0"),
            ("commons-lang3".into(), "3.12.0".into())
        );
        assert_eq!(
            split_file_name("guava-31.1-jre"),
            ("guava".into(), "31.1-jre".into())
        );
        assert_eq!(
            split_file_name("bootstrap"),
            ("bootstrap".into(), String::new())
        );
    }
}
