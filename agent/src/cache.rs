//! What the agent remembers between scans so that unchanged things are not recomputed:
//! executable hashes and Java archive contents (by device, inode, mtime and size) and
//! the previous CPU sample.
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::parse::go_buildinfo::{self, GoBuildInfo};

/// Executables larger than this are not hashed.
pub const MAX_EXE_BYTES: u64 = 1024 * 1024 * 1024;
/// Bytes kept after Go's build-info magic: enough for the module list of large programs.
const GO_BUILDINFO_WINDOW: usize = 512 * 1024;

/// What is known about one executable file.
#[derive(Debug)]
pub struct ExeInfo {
    pub sha256: String,
    /// Build information, when the file is a Go program (Go 1.18 or later).
    pub go: Option<GoBuildInfo>,
}

/// Identity of a file's content as far as the filesystem tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            size: meta.size(),
        }
    }
}

#[derive(Debug)]
struct Cached<T> {
    value: T,
    /// The last scan that used the entry.
    scan: u64,
}

/// Cross-scan memory of one agent.
#[derive(Debug, Default)]
pub struct ScanCache {
    scan: AtomicU64,
    exes: Mutex<HashMap<FileId, Cached<Arc<ExeInfo>>>>,
    archives: Mutex<HashMap<FileId, Cached<Arc<Vec<census_proto::v1::Package>>>>>,
    images: Mutex<HashMap<String, Cached<Arc<Vec<census_proto::v1::Package>>>>>,
    /// sysinfo's view, kept so CPU usage is measured between two scans.
    pub(crate) system: Mutex<Option<sysinfo::System>>,
}

impl ScanCache {
    /// Marks the start of a scan; entries not used since the previous scan are dropped,
    /// so the cache holds only what the host still runs.
    pub fn begin_scan(&self) {
        let scan = self.scan.fetch_add(1, Ordering::Relaxed) + 1;
        self.exes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.scan + 1 >= scan);
        self.archives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.scan + 1 >= scan);
    }

    /// Drops every cached entry (the agent is over its memory budget); the next scan
    /// computes them again.
    pub fn clear(&self) {
        self.exes.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.archives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Hash (and Go build info) of the executable at `path` (e.g. `/proc/PID/exe`),
    /// computed once per file content.
    pub fn exe(&self, path: &Path) -> io::Result<Arc<ExeInfo>> {
        let file = crate::root::open_regular(path)?;
        let id = FileId::of(&file.metadata()?);
        if id.size > MAX_EXE_BYTES {
            return Err(io::Error::other(format!(
                "larger than {MAX_EXE_BYTES} bytes"
            )));
        }
        self.remember(&self.exes, id, || hash_executable(file))
    }

    /// Packages of the Java archive at `path`, cataloged once per file content.
    pub fn archive(
        &self,
        path: &Path,
        catalog: impl FnOnce() -> io::Result<Vec<census_proto::v1::Package>>,
    ) -> io::Result<Arc<Vec<census_proto::v1::Package>>> {
        let id = FileId::of(&std::fs::metadata(path)?);
        self.remember(&self.archives, id, catalog)
    }

    /// Packages of the image `image_id`, cataloged once: an image's content never
    /// changes under its id.
    pub fn image(
        &self,
        image_id: &str,
        catalog: impl FnOnce() -> io::Result<Vec<census_proto::v1::Package>>,
    ) -> io::Result<Arc<Vec<census_proto::v1::Package>>> {
        self.remember(&self.images, image_id.to_string(), catalog)
    }

    fn remember<K: std::hash::Hash + Eq, T>(
        &self,
        map: &Mutex<HashMap<K, Cached<Arc<T>>>>,
        id: K,
        compute: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<Arc<T>> {
        let scan = self.scan.load(Ordering::Relaxed);
        if let Some(entry) = map.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
            entry.scan = scan;
            return Ok(entry.value.clone());
        }
        // Computed without the lock: hashing a large file must not stall other lookups.
        let value = Arc::new(compute()?);
        map.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Cached {
                value: value.clone(),
                scan,
            },
        );
        Ok(value)
    }
}

/// Streams the file once: SHA-256 of all of it, and the bytes following Go's
/// build-info magic if it appears.
fn hash_executable(mut file: File) -> io::Result<ExeInfo> {
    let magic = go_buildinfo::MAGIC;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    // The tail of the previous chunk, so a magic split across two reads is found.
    let mut carry: Vec<u8> = Vec::new();
    let mut capture: Option<Vec<u8>> = None;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        let chunk = &buffer[..read];
        hasher.update(chunk);
        match &mut capture {
            Some(window) if window.len() < GO_BUILDINFO_WINDOW => {
                let take = (GO_BUILDINFO_WINDOW - window.len()).min(chunk.len());
                window.extend_from_slice(&chunk[..take]);
            }
            Some(_) => {}
            None => {
                carry.extend_from_slice(chunk);
                if let Some(at) = find(&carry, magic) {
                    let end = carry.len().min(at + GO_BUILDINFO_WINDOW);
                    capture = Some(carry[at..end].to_vec());
                    carry = Vec::new();
                } else {
                    let keep = carry.len().min(magic.len() - 1);
                    carry.drain(..carry.len() - keep);
                }
            }
        }
    }
    Ok(ExeInfo {
        sha256: hex::encode(hasher.finalize()),
        go: capture.and_then(|window| go_buildinfo::parse_at(&window)),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(offset) = haystack.get(from..)?.iter().position(|b| *b == first) {
        let at = from + offset;
        if haystack.get(at..at + needle.len()) == Some(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_computed_once_per_file_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, b"hello").unwrap();
        let cache = ScanCache::default();
        cache.begin_scan();
        let first = cache.exe(&path).unwrap();
        assert_eq!(
            first.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(
            Arc::ptr_eq(&first, &cache.exe(&path).unwrap()),
            "second lookup hits the cache"
        );
        std::fs::write(&path, b"changed!").unwrap();
        assert_ne!(cache.exe(&path).unwrap().sha256, first.sha256);
    }

    #[test]
    fn entries_unused_for_a_scan_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, b"x").unwrap();
        let cache = ScanCache::default();
        cache.begin_scan();
        cache.exe(&path).unwrap();
        cache.begin_scan();
        assert_eq!(
            cache.exes.lock().unwrap().len(),
            1,
            "kept one scan after its last use"
        );
        cache.begin_scan();
        assert_eq!(cache.exes.lock().unwrap().len(), 0);
    }

    #[test]
    fn finds_a_magic_split_across_reads() {
        let mut content = vec![0u8; 64 * 1024 - 5];
        content.extend_from_slice(go_buildinfo::MAGIC);
        content.extend_from_slice(&[0u8; 100]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, &content).unwrap();
        // Not a valid build info (no version strings): found, then rejected by the parser.
        let info = hash_executable(File::open(&path).unwrap()).unwrap();
        assert!(info.go.is_none());
        assert_eq!(find(&content, go_buildinfo::MAGIC), Some(64 * 1024 - 5));
    }
}
