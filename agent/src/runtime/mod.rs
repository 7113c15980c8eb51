//! Container runtimes of the node: which sockets exist and what they hold. A node with
//! no runtime socket simply has no container or image records.
use std::path::PathBuf;

use crate::root::HostRoot;

pub mod content_store;
pub mod cri;
pub mod docker;

/// Docker Engine sockets, in the order they are tried.
pub const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

/// A runtime could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("docker: {0}")]
    Docker(String),
    #[error("cri: {0}")]
    Cri(String),
    #[error("cannot start an async runtime: {0}")]
    Runtime(String),
}

/// The Docker socket to use: `--runtime-socket` when it is one, else the first of
/// [`DOCKER_SOCKETS`] present under the host root (links resolved inside it).
pub fn docker_socket(root: &HostRoot, configured: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(socket) = configured {
        return is_socket(socket)
            .then(|| socket.clone())
            .filter(|_| is_docker_socket(socket));
    }
    DOCKER_SOCKETS
        .iter()
        .filter_map(|s| root.resolve(s).ok())
        .find(|p| is_socket(p))
}

/// Docker's socket is named after it (docker.sock); any other configured socket is
/// taken for a CRI runtime's.
pub(crate) fn is_docker_socket(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .contains("docker")
}

pub(crate) fn is_socket(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Runs a future to completion from synchronous collector code: on a runtime of its
/// own (the collectors run on blocking threads, outside any async context).
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, RuntimeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Runtime(e.to_string()))?;
    Ok(runtime.block_on(future))
}
