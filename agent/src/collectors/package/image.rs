//! Packages inside the node's container images, read from each image's export once
//! per agent (an image's content never changes under its id).
use census_proto::v1::Package;

use crate::collectors::{CollectError, Context};
use crate::image_contents::catalog_export;
use crate::runtime::docker;

/// Packages of every image Docker holds. An image that cannot be read costs a
/// warning naming it; the others are still reported.
pub fn gather(ctx: &Context) -> Result<Vec<Package>, CollectError> {
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
