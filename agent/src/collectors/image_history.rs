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
        let Some(inventory) = ctx.docker()? else {
            return Ok(Vec::new());
        };
        let mut observations = Vec::new();
        for image in &inventory.images {
            let Some(image_id) = image.inspect.id.as_deref() else {
                continue;
            };
            // The API lists the newest step first.
            for (index, step) in image.history.iter().rev().enumerate() {
                let body = ImageHistory {
                    image_id: image_id.to_string(),
                    index: index as u32,
                    created_by: step.created_by.clone(),
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
