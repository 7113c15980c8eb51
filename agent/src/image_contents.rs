//! What is installed inside an image, read in one pass over its export (`docker save`:
//! a tar of layer tars and a manifest) without extracting anything to disk.
//!
//! Each layer contributes only what the package catalogers need (package databases,
//! metadata files, Java archives, os-release), parsed as it streams by, plus its
//! whiteouts. Once the manifest gives the layer order, the layers are squashed top
//! down: a file is visible unless an upper layer replaced it, deleted it (`.wh.NAME`)
//! or made a parent directory opaque (`.wh..wh..opq`). Links are never followed, and
//! paths that would leave the image root (`../`) are refused.
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek};

use census_proto::v1::Package;
use sha2::{Digest, Sha256};

use crate::collectors::package::{apk, dpkg, jar, npm, package_key, python, rpm};
use crate::parse;

/// Largest package database read from a layer (dpkg status, apk installed, rpmdb).
const MAX_DATABASE_BYTES: u64 = 256 * 1024 * 1024;
/// Largest metadata file (METADATA, package.json, os-release) read from a layer.
const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;
/// Java archives up to this size are read in memory; larger ones spill to an
/// unlinked temporary file while they are read.
const MAX_IN_MEMORY_ARCHIVE: u64 = 64 * 1024 * 1024;
/// Largest Java archive read at all.
const MAX_ARCHIVE_BYTES: u64 = 1024 * 1024 * 1024;

/// Why an image could not be cataloged at all.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading the image export: {0}")]
    Io(#[from] std::io::Error),
    #[error("the image export has no manifest.json")]
    NoManifest,
    #[error("malformed manifest.json: {0}")]
    Manifest(String),
    #[error("manifest names layer {0}, which the export does not hold")]
    MissingLayer(String),
    #[error("layer {path}: {error}")]
    LayerFile { path: String, error: std::io::Error },
    #[error("layer {0} is neither a tar nor a gzip-compressed tar")]
    UnsupportedLayer(String),
}

/// Something a layer holds that packages are made from.
#[derive(Debug)]
enum Finding {
    Dpkg(Vec<parse::dpkg::DpkgPackage>),
    Apk(Vec<parse::apk::ApkPackage>),
    Rpm(Vec<parse::rpm_header::RpmHeader>),
    /// Packages complete but for the image id (python, npm, jar).
    Packages(Vec<Package>),
    OsRelease(String),
}

/// What one layer contributes.
#[derive(Debug, Default)]
struct Layer {
    findings: Vec<(String, Finding)>,
    /// Paths deleted from lower layers.
    whiteouts: Vec<String>,
    /// Directories whose lower-layer content is hidden.
    opaque: Vec<String>,
}

/// Catalogs the packages of an image from its export stream.
pub fn catalog_export(export: impl Read, image_id: &str) -> Result<Vec<Package>, ImageError> {
    let mut archive = tar::Archive::new(export);
    let mut layers: BTreeMap<String, Layer> = BTreeMap::new();
    let mut manifest: Option<Vec<String>> = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path == "manifest.json" {
            let mut text = String::new();
            entry
                .by_ref()
                .take(MAX_METADATA_BYTES)
                .read_to_string(&mut text)?;
            manifest = Some(layer_order(&text)?);
        } else if (path.ends_with("layer.tar") || path.starts_with("blobs/"))
            && let Some(layer) = read_layer(&mut entry, &format!("{image_id}:{path}"))?
        {
            layers.insert(path, layer);
        }
    }
    let order = manifest.ok_or(ImageError::NoManifest)?;
    let mut stack = Vec::with_capacity(order.len());
    for path in &order {
        stack.push(
            layers
                .remove(path)
                .ok_or_else(|| ImageError::MissingLayer(path.clone()))?,
        );
    }
    Ok(packages(squash(stack), image_id))
}

/// Catalogs the packages of an image from its layer blobs, base first, each a tar or
/// a gzip-compressed tar (as containerd's content store holds them). `shown` names
/// each layer in warnings and errors.
pub fn catalog_layer_files(
    layers: &[(String, std::path::PathBuf)],
    image_id: &str,
) -> Result<Vec<Package>, ImageError> {
    let mut stack = Vec::with_capacity(layers.len());
    for (shown, path) in layers {
        let layer_error = |error| ImageError::LayerFile {
            path: shown.clone(),
            error,
        };
        let mut file = crate::root::open_regular(path).map_err(layer_error)?;
        let layer = read_layer(&mut file, &format!("{image_id}:{shown}"))
            .map_err(layer_error)?
            .ok_or_else(|| ImageError::UnsupportedLayer(shown.clone()))?;
        stack.push(layer);
    }
    Ok(packages(squash(stack), image_id))
}

/// Layer paths in stack order (base first) from the export's manifest.json.
fn layer_order(text: &str) -> Result<Vec<String>, ImageError> {
    let manifest: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ImageError::Manifest(e.to_string()))?;
    let layers = manifest
        .get(0)
        .and_then(|image| image.get("Layers"))
        .and_then(|layers| layers.as_array())
        .ok_or_else(|| ImageError::Manifest("no Layers list in its first entry".into()))?;
    layers
        .iter()
        .map(|layer| {
            layer
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ImageError::Manifest("a layer is not a string".into()))
        })
        .collect()
}

/// Reads one layer if the entry is a (possibly gzip-compressed) tar; other blobs
/// (image configs, OCI manifests) are not layers.
fn read_layer(entry: &mut impl Read, shown: &str) -> std::io::Result<Option<Layer>> {
    let mut head = [0u8; 512];
    let mut filled = 0;
    while filled < head.len() {
        let read = entry.read(&mut head[filled..])?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    let head = &head[..filled];
    let rest = std::io::Cursor::new(head.to_vec()).chain(entry);
    if head.starts_with(&[0x1f, 0x8b]) {
        return read_layer_tar(flate2::read::GzDecoder::new(rest), shown).map(Some);
    }
    let is_tar = head.get(257..262) == Some(b"ustar".as_slice());
    if is_tar {
        return read_layer_tar(rest, shown).map(Some);
    }
    Ok(None)
}

fn read_layer_tar(reader: impl Read, shown: &str) -> std::io::Result<Layer> {
    let mut layer = Layer::default();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(layer = %shown, %error, "stopping at a malformed layer entry");
                break;
            }
        };
        let raw = entry.path_bytes().into_owned();
        let Some(path) = clean_path(&String::from_utf8_lossy(&raw)) else {
            tracing::warn!(layer = %shown, path = %String::from_utf8_lossy(&raw), "skipping a layer entry whose path leaves the image root");
            continue;
        };
        if path.is_empty() {
            continue;
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            layer.opaque.push(dir.to_string());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            layer.whiteouts.push(if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            });
            continue;
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Some(want) = wanted(&path) else { continue };
        let size = entry.size();
        let shown_path = format!("{shown}:/{path}");
        if let Some(finding) = read_finding(&mut entry, want, size, &path, &shown_path) {
            layer.findings.push((path, finding));
        }
    }
    Ok(layer)
}

/// A layer path relative to the image root: `./a/b` and `/a/b` become `a/b`, the root
/// itself becomes `""`; a path with `..` is refused.
fn clean_path(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Dpkg,
    Apk,
    Rpm,
    Python,
    Npm,
    Jar,
    OsRelease,
}

/// Which catalogers care about a path.
fn wanted(path: &str) -> Option<Want> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let parent = path.rsplit('/').nth(1).unwrap_or("");
    match path {
        "var/lib/dpkg/status" => return Some(Want::Dpkg),
        "lib/apk/db/installed" => return Some(Want::Apk),
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => return Some(Want::Rpm),
        "etc/os-release" | "usr/lib/os-release" => return Some(Want::OsRelease),
        _ => {}
    }
    // Distroless images keep one status file per package.
    if path.starts_with("var/lib/dpkg/status.d/") && !name.contains('.') {
        return Some(Want::Dpkg);
    }
    if (name == "METADATA" && parent.ends_with(".dist-info"))
        || (name == "PKG-INFO" && parent.ends_with(".egg-info"))
    {
        return Some(Want::Python);
    }
    if name == "package.json" && path.contains("node_modules/") {
        let mut parents = path.rsplit('/').skip(1);
        let package_dir_parent = match parents.next() {
            Some(_) => parents.next().unwrap_or(""),
            None => "",
        };
        // node_modules/NAME/package.json or node_modules/@scope/NAME/package.json.
        let scoped_parent = path.rsplit('/').nth(3).unwrap_or("");
        if package_dir_parent == "node_modules"
            || (package_dir_parent.starts_with('@') && scoped_parent == "node_modules")
        {
            return Some(Want::Npm);
        }
    }
    if crate::collectors::package::discover::is_java_archive(name) {
        return Some(Want::Jar);
    }
    None
}

fn read_finding(
    entry: &mut impl Read,
    want: Want,
    size: u64,
    path: &str,
    shown: &str,
) -> Option<Finding> {
    let limit = match want {
        Want::Dpkg | Want::Apk | Want::Rpm => MAX_DATABASE_BYTES,
        Want::Jar => MAX_ARCHIVE_BYTES,
        Want::Python | Want::Npm | Want::OsRelease => MAX_METADATA_BYTES,
    };
    if size > limit {
        tracing::warn!(path = %shown, size, limit, "skipping a layer file larger than its limit");
        return None;
    }
    if want == Want::Jar {
        return read_archive(entry, size, path, shown).map(Finding::Packages);
    }
    let mut bytes = Vec::with_capacity(size as usize);
    if let Err(error) = entry.take(limit).read_to_end(&mut bytes) {
        tracing::warn!(path = %shown, %error, "cannot read layer file");
        return None;
    }
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    let location = format!(
        "/{}",
        path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
    );
    let warn =
        |reason: &str| tracing::warn!(path = %shown, %reason, "skipping malformed file in image");
    match want {
        Want::Dpkg => Some(Finding::Dpkg(
            parse::dpkg::parse_status(&text()).warn_skipped(std::path::Path::new(shown)),
        )),
        Want::Apk => Some(Finding::Apk(
            parse::apk::parse(&text()).warn_skipped(std::path::Path::new(shown)),
        )),
        Want::Rpm => match rpm::headers_from_bytes(&bytes, shown) {
            Ok(headers) => Some(Finding::Rpm(headers)),
            Err(reason) => {
                warn(&reason);
                None
            }
        },
        Want::Python => match parse::python_metadata::parse(&text()) {
            Ok(dist) => Some(Finding::Packages(vec![python::python_package(
                dist, location,
            )])),
            Err(reason) => {
                warn(&reason);
                None
            }
        },
        Want::Npm => match parse::npm_package::parse(&text()) {
            Ok(package) => Some(Finding::Packages(vec![npm::npm_package_record(
                package, location,
            )])),
            Err(reason) => {
                warn(&reason);
                None
            }
        },
        Want::OsRelease => Some(Finding::OsRelease(text())),
        Want::Jar => None,
    }
}

/// Catalogs a Java archive from a layer: in memory when small, through an unlinked
/// temporary file when large (zip needs random access).
fn read_archive(entry: &mut impl Read, size: u64, path: &str, shown: &str) -> Option<Vec<Package>> {
    let location = format!("/{path}");
    let result: std::io::Result<Vec<Package>> = (|| {
        let mut hasher = Sha256::new();
        if size <= MAX_IN_MEMORY_ARCHIVE {
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes)?;
            hasher.update(&bytes);
            let sha256 = hex::encode(hasher.finalize());
            Ok(jar::catalog_reader(
                std::io::Cursor::new(bytes),
                &location,
                shown,
                sha256,
            ))
        } else {
            let mut file = tempfile::tempfile()?;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = entry.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                std::io::Write::write_all(&mut file, &buffer[..read])?;
            }
            file.rewind()?;
            let sha256 = hex::encode(hasher.finalize());
            Ok(jar::catalog_reader(
                std::io::BufReader::new(file),
                &location,
                shown,
                sha256,
            ))
        }
    })();
    match result {
        Ok(packages) => Some(packages),
        Err(error) => {
            tracing::warn!(path = %shown, %error, "cannot read java archive in image");
            None
        }
    }
}

/// The findings visible in the squashed image, top layer first.
fn squash(stack: Vec<Layer>) -> Vec<(String, Finding)> {
    let mut visible = Vec::new();
    let mut covered: HashSet<String> = HashSet::new();
    let mut hidden: HashSet<String> = HashSet::new();
    for layer in stack.into_iter().rev() {
        let mut paths = Vec::new();
        for (path, finding) in layer.findings {
            if covered.contains(&path) || is_hidden(&path, &hidden) {
                continue;
            }
            paths.push(path.clone());
            visible.push((path, finding));
        }
        covered.extend(paths);
        hidden.extend(layer.whiteouts);
        hidden.extend(layer.opaque);
    }
    visible
}

/// Whether an upper layer deleted `path` or one of its directories (`""`, the root,
/// hides everything). Looking up each directory of the path, rather than comparing
/// with every deleted path, keeps images with many whiteouts and many package files
/// linear.
fn is_hidden(path: &str, hidden: &HashSet<String>) -> bool {
    hidden.contains("")
        || hidden.contains(path)
        || path
            .match_indices('/')
            .any(|(at, _)| path.get(..at).is_some_and(|dir| hidden.contains(dir)))
}

/// Package records of the visible findings, with the image's os-release for purls.
fn packages(visible: Vec<(String, Finding)>, image_id: &str) -> Vec<Package> {
    let os_text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|wanted| {
            visible.iter().find_map(|(path, finding)| match finding {
                Finding::OsRelease(text) if path == wanted => Some(text.clone()),
                _ => None,
            })
        });
    let os: BTreeMap<String, String> = os_text
        .map(|t| parse::key_value::parse(&t).items.into_iter().collect())
        .unwrap_or_default();
    let mut packages = Vec::new();
    for (_, finding) in visible {
        match finding {
            Finding::Dpkg(list) => packages.extend(
                list.into_iter()
                    .filter(|p| p.files_present())
                    .map(|p| dpkg::deb_package(p, &os)),
            ),
            Finding::Apk(list) => {
                packages.extend(list.into_iter().map(|p| apk::apk_package(p, &os)))
            }
            Finding::Rpm(list) => {
                packages.extend(list.into_iter().map(|h| rpm::rpm_package(h, &os)))
            }
            Finding::Packages(list) => packages.extend(list),
            Finding::OsRelease(_) => {}
        }
    }
    for package in &mut packages {
        package.image_id = image_id.to_string();
    }
    packages.sort_by_key(package_key);
    packages.dedup_by_key(|p| package_key(p));
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar from (path, content) pairs; content None makes a directory.
    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            match content {
                Some(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    header.set_mode(0o644);
                    append_raw_path(&mut builder, &mut header, path, bytes);
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    append_raw_path(&mut builder, &mut header, path, &[]);
                }
            }
        }
        builder.into_inner().unwrap()
    }

    /// Writes the path into the header as is (tar::Builder refuses `..`, a crafted
    /// export need not).
    fn append_raw_path(
        builder: &mut tar::Builder<Vec<u8>>,
        header: &mut tar::Header,
        path: &str,
        bytes: &[u8],
    ) {
        let name = &mut header.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(header, bytes).unwrap();
    }

    fn export(layers: &[Vec<u8>], extra: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut names = Vec::new();
        for (i, bytes) in layers.iter().enumerate() {
            let name = format!("{i:064x}/layer.tar");
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, &name, bytes.as_slice())
                .unwrap();
            names.push(name);
        }
        for (name, bytes) in extra {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            builder
                .append_data(&mut header, name, bytes.as_slice())
                .unwrap();
        }
        // docker save writes the manifest last.
        let manifest =
            serde_json::json!([{ "Config": "config.json", "RepoTags": ["t:1"], "Layers": names }])
                .to_string();
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, "manifest.json", manifest.as_bytes())
            .unwrap();
        builder.into_inner().unwrap()
    }

    const STATUS_V1: &[u8] =
        b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n\n\
        Package: curl\nStatus: install ok installed\nVersion: 7.88.1\nArchitecture: amd64\n";
    const STATUS_V2: &[u8] = b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\n";

    fn keys(packages: &[Package]) -> Vec<String> {
        packages
            .iter()
            .map(|p| format!("{} {}", package_key(p), p.version))
            .collect()
    }

    #[test]
    fn upper_layers_replace_and_delete_lower_files() {
        let base = layer(&[
            ("etc/", None),
            (
                "usr/lib/os-release",
                Some(b"ID=debian\nVERSION_ID=\"12\"\n"),
            ),
            ("var/lib/dpkg/status", Some(STATUS_V1)),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Some(b"Name: six\nVersion: 1.16.0\n"),
            ),
            (
                "srv/app/node_modules/left-pad/package.json",
                Some(br#"{"name":"left-pad","version":"1.3.0"}"#),
            ),
            (
                "srv/app/node_modules/@babel/core/package.json",
                Some(br#"{"name":"@babel/core","version":"7.0.0"}"#),
            ),
            (
                "srv/app/package.json",
                Some(br#"{"name":"app","version":"0.0.1"}"#),
            ),
        ]);
        let upgrade = layer(&[
            ("var/lib/dpkg/status", Some(STATUS_V2)),
            (
                "usr/lib/python3/dist-packages/.wh.six-1.16.0.dist-info",
                Some(b""),
            ),
            ("srv/app/node_modules/.wh..wh..opq", Some(b"")),
        ]);
        let image = export(&[base, upgrade], &[("config.json", b"{}".to_vec())]);
        let packages = catalog_export(image.as_slice(), "sha256:abc").unwrap();
        assert_eq!(
            keys(&packages),
            ["sha256:abc/deb/libc6/amd64 2.36-9+deb12u4"]
        );
        assert_eq!(packages[0].image_id, "sha256:abc");
        assert_eq!(
            packages[0].purl,
            "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn every_ecosystem_is_found_in_layers() {
        let base = layer(&[
            (
                "lib/apk/db/installed",
                Some(b"P:musl\nV:1.2.4-r2\nA:x86_64\n\n"),
            ),
            (
                "usr/lib/python3.11/site-packages/Flask-3.0.0.dist-info/METADATA",
                Some(b"Name: Flask\nVersion: 3.0.0\n"),
            ),
            (
                "srv/app/node_modules/@babel/core/package.json",
                Some(br#"{"name":"@babel/core","version":"7.0.0"}"#),
            ),
            (
                "srv/app/node_modules/express/package.json",
                Some(br#"{"name":"express","version":"4.18.2"}"#),
            ),
        ]);
        let packages = catalog_export(export(&[base], &[]).as_slice(), "sha256:def").unwrap();
        assert_eq!(
            keys(&packages),
            [
                "sha256:def/apk/musl/x86_64 1.2.4-r2",
                "sha256:def/npm/@babel/core@/srv/app/node_modules/@babel/core 7.0.0",
                "sha256:def/npm/express@/srv/app/node_modules/express 4.18.2",
                "sha256:def/python/Flask@/usr/lib/python3.11/site-packages/Flask-3.0.0.dist-info 3.0.0",
            ]
        );
    }

    #[test]
    fn escaping_paths_are_refused_and_unlisted_layers_are_an_error() {
        let evil = layer(&[
            ("../../etc/passwd", Some(b"root:x:0:0::/:/bin/sh\n")),
            ("var/lib/dpkg/status", Some(STATUS_V2)),
        ]);
        let packages = catalog_export(export(&[evil], &[]).as_slice(), "sha256:e").unwrap();
        assert_eq!(keys(&packages), ["sha256:e/deb/libc6/amd64 2.36-9+deb12u4"]);
        assert_eq!(clean_path("./a//b/"), Some("a/b".into()));
        assert_eq!(clean_path("a/../../b"), None);
        assert_eq!(clean_path("./"), Some(String::new()));

        let mut no_manifest = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_cksum();
        no_manifest
            .append_data(&mut header, "config.json", b"{}".as_slice())
            .unwrap();
        let error = catalog_export(no_manifest.into_inner().unwrap().as_slice(), "x").unwrap_err();
        assert!(matches!(error, ImageError::NoManifest), "{error}");
    }

    #[test]
    fn gzip_layers_are_read() {
        let plain = layer(&[("var/lib/dpkg/status", Some(STATUS_V2))]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let compressed = gz.finish().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(compressed.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, "blobs/sha256/aaaa", compressed.as_slice())
            .unwrap();
        let manifest = br#"[{"Config":"blobs/sha256/cccc","Layers":["blobs/sha256/aaaa"]}]"#;
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, "manifest.json", manifest.as_slice())
            .unwrap();
        let packages =
            catalog_export(builder.into_inner().unwrap().as_slice(), "sha256:g").unwrap();
        assert_eq!(packages.len(), 1);
    }

    #[test]
    fn layer_files_are_squashed_in_order_and_a_foreign_blob_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = layer(&[("var/lib/dpkg/status", Some(STATUS_V1))]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &layer(&[("var/lib/dpkg/status", Some(STATUS_V2))]))
            .unwrap();
        std::fs::write(dir.path().join("base"), base).unwrap();
        std::fs::write(dir.path().join("upper"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("zstd"), [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        let files = |names: &[&str]| -> Vec<(String, std::path::PathBuf)> {
            names
                .iter()
                .map(|n| (format!("sha256:{n}"), dir.path().join(n)))
                .collect()
        };
        let packages = catalog_layer_files(&files(&["base", "upper"]), "sha256:f").unwrap();
        assert_eq!(keys(&packages), ["sha256:f/deb/libc6/amd64 2.36-9+deb12u4"]);
        let packages = catalog_layer_files(&files(&["upper", "base"]), "sha256:f").unwrap();
        assert_eq!(packages.len(), 2, "the lower status is the visible one now");

        let error = catalog_layer_files(&files(&["base", "zstd"]), "sha256:f").unwrap_err();
        assert_eq!(
            error.to_string(),
            "layer sha256:zstd is neither a tar nor a gzip-compressed tar"
        );
        let error = catalog_layer_files(&files(&["gone"]), "sha256:f").unwrap_err();
        assert!(
            error.to_string().starts_with("layer sha256:gone: "),
            "{error}"
        );
    }

    #[test]
    fn many_whiteouts_over_many_package_files_take_linear_time() {
        // Found by scaling the fuzz inputs: every package file was compared with every
        // path deleted above it, and 8000 of each took over forty seconds.
        let count = 20_000;
        let manifests: Vec<(String, Vec<u8>)> = (0..count)
            .map(|i| {
                let path = format!("srv/app{i}/node_modules/p{i}/package.json");
                let json = format!(r#"{{"name":"p{i}","version":"1.0.0"}}"#);
                (path, json.into_bytes())
            })
            .collect();
        let whiteouts: Vec<String> = (0..count)
            .map(|i| format!("srv/app{}/.wh.node_modules", i * 2))
            .collect();
        let base = layer(
            &manifests
                .iter()
                .map(|(path, json)| (path.as_str(), Some(json.as_slice())))
                .collect::<Vec<_>>(),
        );
        let upper = layer(
            &whiteouts
                .iter()
                .map(|path| (path.as_str(), Some(&b""[..])))
                .collect::<Vec<_>>(),
        );
        let packages = catalog_export(export(&[base, upper], &[]).as_slice(), "sha256:w").unwrap();
        // The even apps lost their node_modules; the odd ones keep theirs.
        assert_eq!(packages.len(), count / 2);
        assert!(packages.iter().all(|p| {
            let app: usize = p.name.trim_start_matches('p').parse().unwrap();
            app % 2 == 1
        }));
        let mut hidden = HashSet::new();
        hidden.insert("a/b".to_string());
        assert!(is_hidden("a/b", &hidden));
        assert!(is_hidden("a/b/c/package.json", &hidden));
        assert!(!is_hidden("a/bc/package.json", &hidden));
        assert!(!is_hidden("a", &hidden));
        hidden.insert(String::new());
        assert!(is_hidden("x/y", &hidden));
    }

    #[test]
    fn wanted_paths() {
        assert_eq!(wanted("srv/a/node_modules/x/package.json"), Some(Want::Npm));
        assert_eq!(
            wanted("srv/a/node_modules/@s/x/package.json"),
            Some(Want::Npm)
        );
        assert_eq!(wanted("srv/a/node_modules/x/lib/package.json"), None);
        assert_eq!(wanted("srv/a/package.json"), None);
        assert_eq!(wanted("var/lib/dpkg/status.d/base"), Some(Want::Dpkg));
        assert_eq!(wanted("var/lib/dpkg/status.d/base.md5sums"), None);
        assert_eq!(wanted("opt/app/app.jar"), Some(Want::Jar));
    }
}
