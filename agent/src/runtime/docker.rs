//! Docker Engine through bollard: images with their histories, containers, image
//! exports and the event stream.
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ImageHistoryResponseItem, ImageInspect};
use bollard::query_parameters::{EventsOptions, ListContainersOptions, ListImagesOptions};
use futures_util::StreamExt;

use super::{RuntimeError, block_on};

/// Seconds a Docker API call may take.
const TIMEOUT_SECS: u64 = 120;

/// One image as Docker describes it.
#[derive(Debug, Clone)]
pub struct DockerImage {
    pub inspect: ImageInspect,
    /// Newest step first, as the API returns it.
    pub history: Vec<ImageHistoryResponseItem>,
}

/// Everything the Docker collectors need, read once per scan.
#[derive(Debug, Clone, Default)]
pub struct DockerInventory {
    pub images: Vec<DockerImage>,
    pub containers: Vec<ContainerInspectResponse>,
}

/// Connects to the daemon behind `socket`, agreeing on an API version it speaks.
pub async fn connect(socket: &Path) -> Result<Docker, RuntimeError> {
    let docker = Docker::connect_with_unix(
        &socket.to_string_lossy(),
        TIMEOUT_SECS,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| RuntimeError::Docker(format!("{}: {e}", socket.display())))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| RuntimeError::Docker(format!("{}: {e}", socket.display())))
}

/// Lists and inspects every image and container.
pub fn inventory(socket: &Path) -> Result<DockerInventory, RuntimeError> {
    block_on(async {
        let docker = connect(socket).await?;
        let error = |e: bollard::errors::Error| RuntimeError::Docker(e.to_string());
        let summaries = docker
            .list_images(Some(ListImagesOptions {
                all: false,
                ..Default::default()
            }))
            .await
            .map_err(error)?;
        let mut images = Vec::with_capacity(summaries.len());
        for summary in summaries {
            // An image removed between listing and inspecting is simply gone.
            let Ok(inspect) = docker.inspect_image(&summary.id).await else {
                continue;
            };
            let history = docker.image_history(&summary.id).await.unwrap_or_default();
            images.push(DockerImage { inspect, history });
        }
        let listed = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(error)?;
        let mut containers = Vec::with_capacity(listed.len());
        for container in listed {
            let Some(id) = container.id else { continue };
            if let Ok(inspect) = docker.inspect_container(&id, None).await {
                containers.push(inspect);
            }
        }
        Ok(DockerInventory { images, containers })
    })?
}

/// Streams `docker save IMAGE` into `consume` as a blocking reader, without holding
/// more than a few chunks in memory.
pub fn export<T>(
    socket: &Path,
    image: &str,
    consume: impl FnOnce(&mut dyn std::io::Read) -> T,
) -> Result<T, RuntimeError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<std::io::Result<bytes::Bytes>>(8);
    let socket = socket.to_path_buf();
    let image = image.to_string();
    // The export runs on its own thread and runtime, feeding the reader as it is read.
    let producer = std::thread::spawn(move || {
        let result = block_on(async {
            let docker = match connect(&socket).await {
                Ok(docker) => docker,
                Err(error) => {
                    let _ = sender.send(Err(std::io::Error::other(error.to_string())));
                    return;
                }
            };
            let mut stream = docker.export_image(&image);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                let failed = chunk.is_err();
                if sender.send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        if let Err(error) = result {
            tracing::warn!(%error, "image export failed");
        }
    });
    let mut reader = ChannelReader {
        receiver,
        current: bytes::Bytes::new(),
    };
    let output = consume(&mut reader);
    drop(reader);
    let _ = producer.join();
    Ok(output)
}

/// A blocking reader over chunks arriving on a channel.
struct ChannelReader {
    receiver: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.recv() {
                Ok(chunk) => self.current = chunk?,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Watches image and container events, calling `changed` for each, until the
/// stream ends or fails.
pub async fn watch(socket: &Path, mut changed: impl FnMut(&str, &str)) -> Result<(), RuntimeError> {
    let docker = connect(socket).await?;
    let filters = std::collections::HashMap::from([(
        "type".to_string(),
        vec!["image".to_string(), "container".to_string()],
    )]);
    let mut events = docker.events(Some(EventsOptions {
        filters: Some(filters),
        ..Default::default()
    }));
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| RuntimeError::Docker(e.to_string()))?;
        let kind = event.typ.map(|t| t.to_string()).unwrap_or_default();
        changed(&kind, event.action.as_deref().unwrap_or_default());
    }
    Ok(())
}

/// How long to let a burst of events settle before scanning.
pub const EVENT_SETTLE: Duration = Duration::from_millis(500);
