//! containerd's content store, read from the node's file system: image manifests and
//! the layer blobs they name, under `ROOT/io.containerd.content.v1.content/blobs/ALG/HEX`.
//!
//! CRI gives an image's id (its config digest) but not its manifest, so the store's
//! small JSON blobs are read once per scan to map config digests to layer lists.
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::root::HostRoot;

/// The content store's directory under containerd's root.
const CONTENT_DIR: &str = "io.containerd.content.v1.content/blobs";
/// Manifests are small; a larger blob is a layer.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The layer blobs of one image manifest, base first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Digest of the manifest itself.
    pub digest: String,
    /// Layer digests with their media types.
    pub layers: Vec<Layer>,
}

/// One layer blob a manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub media_type: String,
}

/// A content store under the host root.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
}

impl ContentStore {
    /// The store of the containerd whose root directory (`containerdRootDir`, a host
    /// path) is `containerd_root`.
    pub fn open(root: &HostRoot, containerd_root: &str) -> std::io::Result<Self> {
        let blobs = root.resolve(Path::new(containerd_root).join(CONTENT_DIR))?;
        if !blobs.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not a directory", blobs.display()),
            ));
        }
        Ok(ContentStore { blobs })
    }

    /// The path of the blob `digest` (`ALG:HEX`); a digest that is not of that form
    /// (it could name a path outside the store) is refused.
    pub fn blob(&self, digest: &str) -> std::io::Result<PathBuf> {
        let invalid = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("malformed digest {digest:?}"),
            )
        };
        let (algorithm, hex) = digest.split_once(':').ok_or_else(invalid)?;
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !algorithm_ok || !hex_ok {
            return Err(invalid());
        }
        Ok(self.blobs.join(algorithm).join(hex))
    }

    /// Every image manifest in the store (OCI or Docker schema 2), by the digest of
    /// the image config it names. Blobs that cannot be read are skipped with a warning.
    pub fn manifests(&self) -> HashMap<String, Manifest> {
        let mut manifests = HashMap::new();
        let Ok(algorithms) = std::fs::read_dir(&self.blobs) else {
            return manifests;
        };
        for algorithm in algorithms.flatten() {
            let Ok(blobs) = std::fs::read_dir(algorithm.path()) else {
                continue;
            };
            let algorithm = algorithm.file_name().to_string_lossy().into_owned();
            for blob in blobs.flatten() {
                let small = blob
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.len() <= MAX_MANIFEST_BYTES);
                if !small {
                    continue;
                }
                let path = blob.path();
                match read_manifest(&path) {
                    Ok(Some((config, layers))) => {
                        let digest = format!("{algorithm}:{}", blob.file_name().to_string_lossy());
                        manifests.insert(config, Manifest { digest, layers });
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot read a content store blob")
                    }
                }
            }
        }
        manifests
    }
}

/// The config digest and layers of a blob that is an image manifest; `None` for any
/// other blob (layers, configs, indexes).
fn read_manifest(path: &Path) -> std::io::Result<Option<(String, Vec<Layer>)>> {
    let mut file = crate::root::open_regular(path)?;
    let mut first = [0u8; 1];
    if file.read(&mut first)? == 0 || first[0] != b'{' {
        return Ok(None);
    }
    let mut text = vec![b'{'];
    file.take(MAX_MANIFEST_BYTES).read_to_end(&mut text)?;
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return Ok(None);
    };
    Ok(manifest_layers(&value))
}

/// The config digest and `(digest, media type)` of each layer, if `value` is a manifest.
fn manifest_layers(value: &serde_json::Value) -> Option<(String, Vec<Layer>)> {
    let config = value.get("config")?.get("digest")?.as_str()?.to_string();
    let layers = value
        .get("layers")?
        .as_array()?
        .iter()
        .map(|layer| {
            let digest = layer.get("digest")?.as_str()?.to_string();
            let media_type = layer
                .get("mediaType")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            Some(Layer { digest, media_type })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((config, layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_their_config_and_layers_in_order() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": "sha256:c0", "size": 10},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:l1"},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:l2"}
            ]
        });
        let (config, layers) = manifest_layers(&manifest).unwrap();
        assert_eq!(config, "sha256:c0");
        let layers: Vec<(&str, &str)> = layers
            .iter()
            .map(|l| (l.digest.as_str(), l.media_type.as_str()))
            .collect();
        assert_eq!(
            layers,
            [
                ("sha256:l1", "application/vnd.oci.image.layer.v1.tar+gzip"),
                ("sha256:l2", "application/vnd.oci.image.layer.v1.tar")
            ]
        );
        let index = serde_json::json!({"manifests": [{"digest": "sha256:m"}]});
        assert!(manifest_layers(&index).is_none());
        let config = serde_json::json!({"rootfs": {"diff_ids": []}, "config": {}});
        assert!(manifest_layers(&config).is_none());
    }

    #[test]
    fn blob_paths_stay_inside_the_store() {
        let store = ContentStore {
            blobs: PathBuf::from("/store/blobs"),
        };
        let hex = "a".repeat(64);
        assert_eq!(
            store.blob(&format!("sha256:{hex}")).unwrap(),
            PathBuf::from(format!("/store/blobs/sha256/{hex}"))
        );
        for bad in [
            "sha256:../../etc/passwd",
            "../x:0123456789abcdef0123456789abcdef",
            "sha256",
            "sha256:abc",
            "SHA256:0123456789abcdef0123456789abcdef",
            ":0123456789abcdef0123456789abcdef",
        ] {
            let error = store.blob(bad).unwrap_err();
            assert!(
                error.to_string().contains("malformed digest"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_store_is_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir
            .path()
            .join("ctd/io.containerd.content.v1.content/blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let manifest = r#"{"schemaVersion":2,"config":{"digest":"sha256:cfg"},"layers":[{"digest":"sha256:one","mediaType":"t"}]}"#;
        std::fs::write(blobs.join("m1"), manifest).unwrap();
        std::fs::write(blobs.join("layer"), [0x1f, 0x8b, 0, 0]).unwrap();
        std::fs::write(blobs.join("bad"), "{not json").unwrap();
        let store = ContentStore::open(&HostRoot::new(dir.path()), "/ctd").unwrap();
        let manifests = store.manifests();
        assert_eq!(manifests.len(), 1);
        let found = &manifests["sha256:cfg"];
        assert_eq!(found.digest, "sha256:m1");
        assert_eq!(
            found.layers,
            [Layer {
                digest: "sha256:one".into(),
                media_type: "t".into()
            }]
        );
        let missing = ContentStore::open(&HostRoot::new(dir.path()), "/nowhere").unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
