//! `/proc/PID/cgroup`: which container, if any, a process runs in, recognised from
//! the cgroup paths the container runtimes create (cgroup v1 and v2).

/// A container a process belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// `docker`, `containerd`, `cri-o` or `podman`.
    pub runtime: &'static str,
    /// The full 64-hex-digit container id.
    pub id: String,
}

/// What one cgroup path says.
enum Found {
    Container(ContainerRef),
    /// A runtime's monitor process (CRI-O's or podman's conmon): it serves a
    /// container but does not run inside it.
    Monitor,
}

/// The container of the process whose cgroup file this is, from the first line
/// (`hierarchy-id:controllers:path`) whose path names one. A container monitor
/// (`crio-conmon-<id>.scope`) is not its container: `None`.
///
/// Recognised, with `<id>` 64 lowercase hex digits: `/docker/<id>` and
/// `docker-<id>.scope` (docker); `cri-containerd-<id>.scope`, a bare `<id>` last
/// under a `kubepods` path, and `/<namespace>/<id>` (containerd); `crio-<id>.scope`
/// (cri-o); `libpod-<id>.scope` (podman). The kubelet's cgroupfs layout
/// (`/kubepods/<qos>/pod<uid>/<id>`) does not name the runtime: it is reported as
/// containerd, as is a docker `--cgroup-parent` of one component.
pub fn container_of(text: &str) -> Option<ContainerRef> {
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = line.splitn(3, ':');
        let (Some(_hierarchy), Some(_controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        match in_path(path.trim()) {
            Some(Found::Container(container)) => return Some(container),
            Some(Found::Monitor) => return None,
            None => {}
        }
    }
    None
}

/// Scans the path's components innermost first, so a container nested in
/// another's cgroup (docker-in-docker) is reported as the inner one.
fn in_path(path: &str) -> Option<Found> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let under_kubepods = components.iter().any(|c| c.starts_with("kubepods"));
    for (index, component) in components.iter().enumerate().rev() {
        if let Some(found) = in_component(component) {
            return Some(found);
        }
        if !is_container_id(component) {
            continue;
        }
        let parent = index.checked_sub(1).and_then(|i| components.get(i));
        let runtime = match parent {
            Some(&"docker") => "docker",
            _ if under_kubepods && index + 1 == components.len() => "containerd",
            // containerd's own layout without systemd: /<namespace>/<id>.
            Some(_) if components.len() == 2 => "containerd",
            _ => continue,
        };
        return Some(Found::Container(container(runtime, component)));
    }
    None
}

/// The systemd-scope (or runtime-prefixed cgroupfs) forms of one component.
fn in_component(component: &str) -> Option<Found> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    // Named explicitly so the scan stops at a monitor instead of reading on to
    // an outer cgroup or a later line.
    for monitor in ["crio-conmon-", "libpod-conmon-"] {
        if name.strip_prefix(monitor).is_some_and(is_container_id) {
            return Some(Found::Monitor);
        }
    }
    for (prefix, runtime) in [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ] {
        if let Some(id) = name.strip_prefix(prefix).filter(|id| is_container_id(id)) {
            return Some(Found::Container(container(runtime, id)));
        }
    }
    None
}

fn container(runtime: &'static str, id: &str) -> ContainerRef {
    ContainerRef {
        runtime,
        id: id.to_string(),
    }
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "3f4c2b1a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
    const POD: &str = "8d9f1c2e-6b4a-4f1e-9a3c-2b7d5e8f0a1c";
    const POD_SYSTEMD: &str = "8d9f1c2e_6b4a_4f1e_9a3c_2b7d5e8f0a1c";

    fn runtime(text: &str) -> Option<(&'static str, String)> {
        container_of(text).map(|c| (c.runtime, c.id))
    }

    fn found(runtime: &'static str) -> Option<(&'static str, String)> {
        Some((runtime, ID.to_string()))
    }

    #[test]
    fn docker_cgroupfs_v1() {
        let text = format!(
            "\
12:pids:/docker/{ID}
11:hugetlb:/docker/{ID}
10:net_cls,net_prio:/docker/{ID}
9:perf_event:/docker/{ID}
8:memory:/docker/{ID}
7:cpu,cpuacct:/docker/{ID}
6:freezer:/docker/{ID}
5:cpuset:/docker/{ID}
4:blkio:/docker/{ID}
3:devices:/docker/{ID}
2:rdma:/
1:name=systemd:/docker/{ID}
0::/system.slice/containerd.service
"
        );
        assert_eq!(runtime(&text), found("docker"));
    }

    #[test]
    fn docker_systemd_v2() {
        assert_eq!(
            runtime(&format!("0::/system.slice/docker-{ID}.scope\n")),
            found("docker")
        );
        // systemd running inside the container moves its own processes below.
        assert_eq!(
            runtime(&format!(
                "0::/system.slice/docker-{ID}.scope/init.scope\r\n"
            )),
            found("docker")
        );
        assert_eq!(
            runtime(&format!("0::/docker/{ID}/system.slice/cron.service")),
            found("docker")
        );
    }

    #[test]
    fn kubernetes_systemd_driver() {
        let burstable = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(runtime(&burstable), found("containerd"));
        let besteffort = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(runtime(&besteffort), found("containerd"));
        let guaranteed_v1 = format!(
            "11:memory:/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice/cri-containerd-{ID}.scope\n\
             1:name=systemd:/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(runtime(&guaranteed_v1), found("containerd"));
        let dockershim = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/docker-{ID}.scope"
        );
        assert_eq!(runtime(&dockershim), found("docker"));
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        let v1 = format!(
            "12:memory:/kubepods/besteffort/pod{POD}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{POD}/{ID}\n"
        );
        assert_eq!(runtime(&v1), found("containerd"));
        assert_eq!(
            runtime(&format!("0::/kubepods/burstable/pod{POD}/{ID}")),
            found("containerd")
        );
        assert_eq!(
            runtime(&format!("0::/kubepods/pod{POD}/{ID}")),
            found("containerd")
        );
        // The pause container's pod cgroup itself is no container.
        assert_eq!(runtime(&format!("0::/kubepods/besteffort/pod{POD}")), None);
        assert_eq!(
            runtime(&format!("0::/kubepods/burstable/pod{POD}/crio-{ID}")),
            found("cri-o")
        );
    }

    #[test]
    fn cri_o_and_its_monitor() {
        let container = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/crio-{ID}.scope"
        );
        assert_eq!(runtime(&container), found("cri-o"));
        let conmon = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(runtime(&conmon), None);
        assert_eq!(
            runtime(&format!("0::/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn podman_rootful_and_rootless() {
        assert_eq!(
            runtime(&format!("0::/machine.slice/libpod-{ID}.scope")),
            found("podman")
        );
        let rootless = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
        );
        assert_eq!(runtime(&rootless), found("podman"));
        assert_eq!(
            runtime(&format!("0::/libpod_parent/libpod-{ID}")),
            found("podman")
        );
    }

    #[test]
    fn containerd_namespaces() {
        assert_eq!(runtime(&format!("0::/default/{ID}")), found("containerd"));
        assert_eq!(runtime(&format!("0::/k8s.io/{ID}")), found("containerd"));
        let v1 = format!("4:memory:/moby/{ID}\n1:name=systemd:/moby/{ID}\n");
        assert_eq!(runtime(&v1), found("containerd"));
    }

    #[test]
    fn host_processes_are_in_no_container() {
        for text in [
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/system.slice/ssh.service\n",
            "0::/\n",
            "0::/init.scope\n",
            "12:pids:/user.slice/user-1000.slice/session-3.scope\n11:memory:/user.slice\n1:name=systemd:/user.slice/user-1000.slice/session-3.scope\n0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope\n",
            "",
        ] {
            assert_eq!(runtime(text), None, "{text:?}");
        }
    }

    #[test]
    fn near_misses_are_not_ids() {
        let upper = ID.to_uppercase();
        let short = &ID[..63];
        for text in [
            format!("0::/docker/{upper}"),
            format!("0::/docker/{short}"),
            format!("0::/docker/{ID}0"),
            format!("0::/system.slice/docker-{short}.scope"),
            format!("0::/system.slice/docker-{ID}.service"),
            format!("0::/a/b/{ID}"),
            format!("0::/{ID}"),
            format!("0:/docker/{ID}"),
        ] {
            assert_eq!(runtime(&text), None, "{text:?}");
        }
    }

    #[test]
    fn first_matching_line_wins() {
        let other = "a".repeat(64);
        let text =
            format!("2:cpu:/\n1:memory:/docker/{ID}\n0::/system.slice/docker-{other}.scope\n");
        assert_eq!(runtime(&text), found("docker"));
        // Docker-in-docker: the inner container is the process's own.
        let nested = format!("0::/docker/{other}/docker/{ID}");
        assert_eq!(runtime(&nested), found("docker"));
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        let garbage =
            String::from_utf8_lossy(&[0xff, b':', b':', b'/', 0x80, b'\n', b':', b'/', b'-', 0x00])
                .into_owned();
        assert_eq!(container_of(&garbage), None);
    }

    proptest! {
        #[test]
        fn never_panics(text in "([0-9a-f:/.\\-\n]|docker|scope|kubepods|crio|libpod|\\PC){0,300}") {
            let _ = container_of(&text);
        }
    }
}
