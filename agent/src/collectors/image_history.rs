//! `image_history`: how each image was built, one record per step, oldest first.
use census_proto::v1::{ImageHistory, record::Body};

use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct ImageHistoryCollector;

impl Collector for ImageHistoryCollector {
    fn kind(&self) -> &'static str {
        "image_history"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut observations = Vec::new();
        let docker = ctx.docker()?;
        if let Some(inventory) = ctx.cri()? {
            // An image Docker also holds gets its (sized) history from Docker.
            let in_docker = |id: &str| {
                docker.is_some_and(|d| d.images.iter().any(|i| i.inspect.id.as_deref() == Some(id)))
            };
            for image in inventory.images.iter().filter(|i| !in_docker(&i.image.id)) {
                observations.extend(cri_history(image, &ctx.redactor));
            }
        }
        let Some(inventory) = docker else {
            return Ok(observations);
        };
        for image in &inventory.images {
            let Some(image_id) = image.inspect.id.as_deref() else {
                continue;
            };
            // The API lists the newest step first.
            for (index, step) in image.history.iter().rev().enumerate() {
                let body = ImageHistory {
                    image_id: image_id.to_string(),
                    index: index as u32,
                    created_by: ctx.redactor.command(&step.created_by),
                    created: crate::rfc3339_secs(step.created),
                    size_bytes: step.size.max(0) as u64,
                    empty_layer: step.size == 0,
                    comment: step.comment.clone(),
                    tags: step.tags.clone(),
                };
                observations.push(Observation::new(
                    format!("{image_id}/{index}"),
                    Body::ImageHistory(body),
                ));
            }
        }
        Ok(observations)
    }
}

/// History from an OCI image config (`history`: created, created_by, empty_layer).
/// `created_by` is redacted: build steps carry `ENV`, `ARG` and `RUN` lines.
fn cri_history(
    image: &crate::runtime::cri::CriImage,
    redactor: &crate::redact::Redactor,
) -> Vec<Observation> {
    let image_id = &image.image.id;
    let steps = image
        .config
        .as_ref()
        .and_then(|c| c.get("history"))
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let text = |name: &str| {
                step.get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let body = ImageHistory {
                image_id: image_id.clone(),
                index: index as u32,
                created_by: redactor.command(&text("created_by")),
                created: text("created"),
                // OCI configs do not record layer sizes.
                size_bytes: 0,
                empty_layer: step
                    .get("empty_layer")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                comment: text("comment"),
                tags: Vec::new(),
            };
            Observation::new(format!("{image_id}/{index}"), Body::ImageHistory(body))
        })
        .collect()
}
