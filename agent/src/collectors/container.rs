//! `container`: the containers of the node's runtime, with their Kubernetes identity
//! when the kubelet created them.
use std::collections::BTreeMap;

use bollard::models::ContainerInspectResponse;
use census_proto::v1::{Container, record::Body};

use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct ContainerCollector;

/// Labels the kubelet sets on the containers it creates.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

impl Collector for ContainerCollector {
    fn kind(&self) -> &'static str {
        "container"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut containers = Vec::new();
        if let Some(inventory) = ctx.docker()? {
            containers.extend(
                inventory
                    .containers
                    .iter()
                    .filter_map(|inspect| docker_container(ctx, inspect)),
            );
        }
        if let Some(inventory) = ctx.cri()? {
            containers.extend(
                inventory
                    .containers
                    .iter()
                    .filter_map(|c| cri_container(inventory, c)),
            );
        }
        Ok(containers
            .into_iter()
            .map(|mut container| {
                container.labels = ctx.redactor.labels(std::mem::take(&mut container.labels));
                Observation::new(container.id.clone(), Body::Container(container))
            })
            .collect())
    }
}

fn docker_container(ctx: &Context, inspect: &ContainerInspectResponse) -> Option<Container> {
    let id = inspect.id.clone()?;
    let config = inspect.config.as_ref();
    let state = inspect.state.as_ref();
    let labels: BTreeMap<String, String> = config
        .and_then(|c| c.labels.clone())
        .map(|labels| labels.into_iter().collect())
        .unwrap_or_default();
    let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
    let mut ports: Vec<String> = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .flat_map(|(port, bindings)| match bindings.as_deref() {
                    Some(bindings) if !bindings.is_empty() => bindings
                        .iter()
                        .map(|b| {
                            let ip = b.host_ip.as_deref().unwrap_or_default();
                            let host_port = b.host_port.as_deref().unwrap_or_default();
                            format!("{ip}:{host_port}->{port}")
                        })
                        .collect(),
                    _ => vec![port.clone()],
                })
                .collect()
        })
        .unwrap_or_default();
    ports.sort();
    let mounts = inspect
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let mode = if m.rw.unwrap_or(true) { "rw" } else { "ro" };
            format!(
                "{}:{}:{mode}",
                m.source.as_deref().unwrap_or_default(),
                m.destination.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let mut command: Vec<String> = inspect.path.iter().cloned().collect();
    command.extend(inspect.args.iter().flatten().cloned());
    // Docker reports never-started containers as started at year 1.
    let started = state
        .and_then(|s| s.started_at.clone())
        .filter(|t| !t.starts_with("0001-"))
        .unwrap_or_default();
    Some(Container {
        id,
        name: inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        runtime: "docker".into(),
        image_id: inspect.image.clone().unwrap_or_default(),
        image_ref: config.and_then(|c| c.image.clone()).unwrap_or_default(),
        state: state
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        created: inspect.created.clone().unwrap_or_default(),
        started,
        ports,
        mounts,
        privileged: inspect
            .host_config
            .as_ref()
            .and_then(|h| h.privileged)
            .unwrap_or(false),
        pid: state.and_then(|s| s.pid).unwrap_or_default().max(0) as u32,
        restart_count: inspect.restart_count.unwrap_or_default().max(0) as u32,
        command: ctx.redactor.args(&command).join(" "),
        pod_name: label(POD_NAME_LABEL),
        pod_namespace: label(POD_NAMESPACE_LABEL),
        pod_uid: label(POD_UID_LABEL),
        container_name: label(CONTAINER_NAME_LABEL),
        status: state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        labels,
    })
}

fn cri_container(
    inventory: &crate::runtime::cri::CriInventory,
    container: &crate::runtime::cri::CriContainer,
) -> Option<Container> {
    use census_proto::cri::ContainerState;
    let status = container.status.status.as_ref()?;
    let sandbox = inventory
        .sandboxes
        .iter()
        .find(|s| s.id == container.pod_sandbox_id);
    let labels: BTreeMap<String, String> = status.labels.clone().into_iter().collect();
    let from_labels_or = |label: &str, fallback: Option<&String>| {
        labels.get(label).or(fallback).cloned().unwrap_or_default()
    };
    let metadata = sandbox.and_then(|s| s.metadata.as_ref());
    let state = match ContainerState::try_from(status.state) {
        Ok(ContainerState::ContainerCreated) => "created",
        Ok(ContainerState::ContainerRunning) => "running",
        Ok(ContainerState::ContainerExited) => "exited",
        _ => "unknown",
    };
    let nanos = |ns: i64| {
        if ns > 0 {
            jiff::Timestamp::from_nanosecond(i128::from(ns))
                .map(|t| t.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        }
    };
    Some(Container {
        id: status.id.clone(),
        name: status
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        runtime: inventory.runtime.clone(),
        image_id: if status.image_id.is_empty() {
            status.image_ref.clone()
        } else {
            status.image_id.clone()
        },
        image_ref: status
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        state: state.into(),
        created: nanos(status.created_at),
        started: nanos(status.started_at),
        ports: Vec::new(),
        mounts: status
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{}:{}:{}",
                    m.host_path,
                    m.container_path,
                    if m.readonly { "ro" } else { "rw" }
                )
            })
            .collect(),
        privileged: false,
        pid: container.pid,
        restart_count: status.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
        command: String::new(),
        pod_name: from_labels_or(POD_NAME_LABEL, metadata.map(|m| &m.name)),
        pod_namespace: from_labels_or(POD_NAMESPACE_LABEL, metadata.map(|m| &m.namespace)),
        pod_uid: from_labels_or(POD_UID_LABEL, metadata.map(|m| &m.uid)),
        container_name: from_labels_or(
            CONTAINER_NAME_LABEL,
            status.metadata.as_ref().map(|m| &m.name),
        ),
        status: status.reason.clone(),
        labels,
    })
}
