//! CRI runtimes (containerd, CRI-O) through the Kubernetes Container Runtime Interface
//! over their unix socket: images with their configs, containers, pod sandboxes.
//! Read-only calls only.
use std::path::{Path, PathBuf};
use std::time::Duration;

use census_proto::cri::image_service_client::ImageServiceClient;
use census_proto::cri::runtime_service_client::RuntimeServiceClient;
use census_proto::cri::{
    ContainerStatusRequest, ContainerStatusResponse, Image, ImageSpec, ImageStatusRequest,
    ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, PodSandbox, StatusRequest,
    VersionRequest,
};
use tonic::transport::{Channel, Endpoint};

use super::{RuntimeError, block_on};

/// CRI sockets, in the order they are tried, with the runtime they belong to.
pub const CRI_SOCKETS: &[(&str, &str)] = &[
    ("/run/containerd/containerd.sock", "containerd"),
    ("/var/run/containerd/containerd.sock", "containerd"),
    ("/run/k3s/containerd/containerd.sock", "containerd"),
    ("/var/run/crio/crio.sock", "cri-o"),
    ("/run/crio/crio.sock", "cri-o"),
];

/// One image with its OCI config, when the runtime gave it.
#[derive(Debug, Clone)]
pub struct CriImage {
    pub image: Image,
    /// The image's OCI config (`imageSpec` of the verbose status).
    pub config: Option<serde_json::Value>,
}

/// One container with its status and its pid, when running.
#[derive(Debug, Clone)]
pub struct CriContainer {
    pub status: ContainerStatusResponse,
    pub pod_sandbox_id: String,
    pub pid: u32,
}

/// Everything the CRI collectors need, read once per scan.
#[derive(Debug, Clone, Default)]
pub struct CriInventory {
    /// The runtime's own name ("containerd", "cri-o").
    pub runtime: String,
    pub images: Vec<CriImage>,
    pub containers: Vec<CriContainer>,
    pub sandboxes: Vec<PodSandbox>,
    /// containerd's root directory (`containerdRootDir` of its verbose status), a
    /// host path holding the content store.
    pub containerd_root: Option<String>,
}

/// A channel to a gRPC server on a unix socket.
async fn channel(socket: &Path) -> Result<Channel, RuntimeError> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::try_from("http://localhost")
        .map_err(|e| RuntimeError::Cri(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| RuntimeError::Cri(format!("{}: {e}", socket.display())))
}

/// Lists the runtime's images (with configs), containers (with status) and sandboxes.
pub fn inventory(socket: &Path) -> Result<CriInventory, RuntimeError> {
    block_on(async {
        let channel = channel(socket).await?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let mut images_client = ImageServiceClient::new(channel);
        let status =
            |s: tonic::Status| RuntimeError::Cri(format!("{}: {}", socket.display(), s.message()));
        let version = runtime
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(status)?
            .into_inner();
        let listed = images_client
            .list_images(ListImagesRequest::default())
            .await
            .map_err(status)?
            .into_inner()
            .images;
        let mut images = Vec::with_capacity(listed.len());
        for image in listed {
            let request = ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.id.clone(),
                    ..Default::default()
                }),
                verbose: true,
            };
            let config = match images_client.image_status(request).await {
                Ok(response) => image_config(&response.into_inner().info),
                Err(_) => None,
            };
            images.push(CriImage { image, config });
        }
        let listed = runtime
            .list_containers(ListContainersRequest::default())
            .await
            .map_err(status)?
            .into_inner()
            .containers;
        let mut containers = Vec::with_capacity(listed.len());
        for container in listed {
            let request = ContainerStatusRequest {
                container_id: container.id.clone(),
                verbose: true,
            };
            // A container removed between listing and asking is simply gone.
            let Ok(response) = runtime.container_status(request).await else {
                continue;
            };
            let status = response.into_inner();
            let pid = verbose_info(&status.info)
                .and_then(|info| info.get("pid")?.as_u64())
                .unwrap_or(0) as u32;
            containers.push(CriContainer {
                status,
                pod_sandbox_id: container.pod_sandbox_id,
                pid,
            });
        }
        let sandboxes = runtime
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .map_err(status)?
            .into_inner()
            .items;
        // Only containerd reports its root; other runtimes (or an older containerd)
        // simply leave image contents unread.
        let containerd_root = match runtime.status(StatusRequest { verbose: true }).await {
            Ok(response) => containerd_root(&response.into_inner().info),
            Err(_) => None,
        };
        Ok(CriInventory {
            runtime: version.runtime_name,
            images,
            containers,
            sandboxes,
            containerd_root,
        })
    })?
}

/// The `info` document of a verbose status (containerd puts everything there).
fn verbose_info(info: &std::collections::BTreeMap<String, String>) -> Option<serde_json::Value> {
    serde_json::from_str(info.get("info")?).ok()
}

/// `containerdRootDir` from the `config` document of containerd's verbose status.
fn containerd_root(info: &std::collections::BTreeMap<String, String>) -> Option<String> {
    let config: serde_json::Value = serde_json::from_str(info.get("config")?).ok()?;
    let root = config.get("containerdRootDir")?.as_str()?;
    (!root.is_empty()).then(|| root.to_string())
}

fn image_config(info: &std::collections::BTreeMap<String, String>) -> Option<serde_json::Value> {
    verbose_info(info)?.get("imageSpec").cloned()
}

/// The CRI socket to use: `--runtime-socket` when it names a CRI runtime, else the
/// first of [`CRI_SOCKETS`] present under the host root.
pub fn socket(root: &crate::root::HostRoot, configured: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(socket) = configured {
        return super::is_socket(socket)
            .then(|| socket.clone())
            .filter(|s| !super::is_docker_socket(s));
    }
    CRI_SOCKETS
        .iter()
        .filter_map(|(path, _)| root.resolve(path).ok())
        .find(|p| super::is_socket(p))
}
