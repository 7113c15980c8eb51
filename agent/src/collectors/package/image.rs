//! Packages inside the node's container images, read once per agent (an image's
//! content never changes under its id): Docker's from each image's export stream,
//! containerd's from the layer blobs of its content store.
use std::collections::{HashMap, HashSet};

use census_proto::v1::Package;

use crate::collectors::{CollectError, Context};
use crate::image_contents::{catalog_export, catalog_layer_files};
use crate::runtime::content_store::{ContentStore, Manifest};
use crate::runtime::docker;

/// Packages of every image Docker and containerd hold. An image that cannot be read
/// costs a warning naming it; the others are still reported.
pub fn gather(ctx: &Context) -> Result<Vec<Package>, CollectError> {
    let mut seen = HashSet::new();
    let mut packages = docker_images(ctx, &mut seen)?;
    packages.extend(containerd_images(ctx, &seen)?);
    Ok(packages)
}

fn docker_images(ctx: &Context, seen: &mut HashSet<String>) -> Result<Vec<Package>, CollectError> {
    let Some(inventory) = ctx.docker()? else {
        return Ok(Vec::new());
    };
    let Some(socket) = ctx.docker_socket() else {
        return Ok(Vec::new());
    };
    let mut packages = Vec::new();
    for image in &inventory.images {
        let Some(id) = image.inspect.id.as_deref() else {
            continue;
        };
        seen.insert(id.to_string());
        let cataloged = ctx.cache.image(id, || {
            let started = std::time::Instant::now();
            let result = docker::export(&socket, id, |reader| catalog_export(reader, id))
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .map_err(|e| std::io::Error::other(e.to_string()));
            tracing::debug!(image = id, elapsed = ?started.elapsed(), ok = result.is_ok(), "image cataloged");
            result
        });
        match cataloged {
            Ok(found) => packages.extend(found.iter().cloned()),
            Err(error) => tracing::warn!(image = id, %error, "cannot catalog image contents"),
        }
    }
    Ok(packages)
}

/// A content store with its manifests by config digest.
struct Indexed {
    store: ContentStore,
    manifests: HashMap<String, Manifest>,
}

/// Images of containerd's CRI namespace not already read through Docker. The content
/// store's manifests are indexed only when some image is not cached yet.
fn containerd_images(ctx: &Context, seen: &HashSet<String>) -> Result<Vec<Package>, CollectError> {
    let Some(inventory) = ctx.cri()? else {
        return Ok(Vec::new());
    };
    let images: Vec<&str> = inventory
        .images
        .iter()
        .map(|image| image.image.id.as_str())
        .filter(|id| !id.is_empty() && !seen.contains(*id))
        .collect();
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let Some(containerd_root) = inventory.containerd_root.as_deref() else {
        tracing::debug!(runtime = %inventory.runtime, "the CRI runtime names no content store; image contents are not read");
        return Ok(Vec::new());
    };
    let mut indexed: Option<Result<Indexed, String>> = None;
    let mut packages = Vec::new();
    for id in images {
        let cataloged = ctx.cache.image(id, || {
            let Indexed { store, manifests } = indexed
                .get_or_insert_with(|| {
                    let store = ContentStore::open(&ctx.root, containerd_root)
                        .map_err(|e| format!("containerd content store: {e}"))?;
                    let manifests = store.manifests();
                    Ok(Indexed { store, manifests })
                })
                .as_ref()
                .map_err(|e| std::io::Error::other(e.clone()))?;
            let manifest = manifests.get(id).ok_or_else(|| {
                std::io::Error::other("no manifest in the content store names this image")
            })?;
            let layers = manifest
                .layers
                .iter()
                .map(|layer| Ok((layer.digest.clone(), store.blob(&layer.digest)?)))
                .collect::<std::io::Result<Vec<_>>>()?;
            let started = std::time::Instant::now();
            let result = catalog_layer_files(&layers, id)
                .map_err(|e| std::io::Error::other(format!("manifest {}: {e}", manifest.digest)));
            tracing::debug!(image = id, elapsed = ?started.elapsed(), ok = result.is_ok(), "image cataloged");
            result
        });
        match cataloged {
            Ok(found) => packages.extend(found.iter().cloned()),
            Err(error) => tracing::warn!(image = id, %error, "cannot catalog image contents"),
        }
    }
    Ok(packages)
}
