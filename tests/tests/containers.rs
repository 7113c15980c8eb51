//! Containers and images against the machine's Docker Engine and a private containerd:
//! images built here (no registry), fields compared with docker's and ctr's own views.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use census_tests::{
    Collector, ImageGuard, Running, binary, command_output, docker_build, node_id, run_measured,
    scan_json, wait_for,
};
use serde_json::Value;

/// A tag no other test uses.
fn unique(name: &str) -> String {
    format!(
        "census-test/{name}:{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    )
}

/// Removes an image when dropped.
/// A `FROM scratch` image holding Debian's busybox-static, with labels and a few
/// metadata-only steps.
fn busybox_image() -> Result<(ImageGuard, String)> {
    let busybox = Path::new("/bin/busybox");
    ensure!(
        busybox.exists(),
        "/bin/busybox missing: tests/run installs Debian's busybox-static"
    );
    let dir = tempfile::tempdir()?;
    std::fs::copy(busybox, dir.path().join("busybox"))?;
    let tag = unique("busybox");
    // A label of its own, first, makes every step of the build (and the image id) this
    // test's alone: removing it cannot pull a cached step from under another test.
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nLABEL org.census.build={tag}\nCOPY busybox /bin/busybox\nLABEL org.census.test=busybox maintainer=census\n\
             ENV PATH=/bin\nCMD [\"/bin/busybox\", \"sleep\", \"600\"]\n"
        ),
    )?;
    docker_build(dir.path(), &tag)
}

fn docker_json(args: &[&str]) -> Result<Value> {
    Ok(serde_json::from_str(&command_output("docker", args)?)?)
}

fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

#[test]
fn docker_images_and_histories_equal_docker_inspect() -> Result<()> {
    let (guard, id) = busybox_image()?;
    let (records, _) = scan_json(&["--only", "image,image_history"])?;
    let image = of_kind(&records, "image")
        .into_iter()
        .find(|r| r["key"] == id.as_str())
        .with_context(|| format!("image {id} not reported"))?;
    let fields = &image["fields"];
    let inspect = docker_json(&["image", "inspect", &id])?;
    let inspect = &inspect[0];
    assert_eq!(fields["id"], inspect["Id"]);
    assert_eq!(fields["runtime"], "docker");
    assert_eq!(fields["size_bytes"], inspect["Size"]);
    assert_eq!(fields["os"], inspect["Os"]);
    assert_eq!(fields["arch"], inspect["Architecture"]);
    assert_eq!(fields["created"], inspect["Created"]);
    assert_eq!(fields["author"], inspect["Author"]);
    assert_eq!(fields["labels"], inspect["Config"]["Labels"]);
    assert_eq!(
        fields["layers"],
        inspect["RootFS"]["Layers"]
            .as_array()
            .map(|l| l.len())
            .unwrap_or(0)
    );
    let tag = &guard.0;
    assert_eq!(
        fields["references"],
        serde_json::json!([format!("docker.io/{tag}")])
    );
    let (name, version) = tag.split_once(':').context("tag")?;
    assert_eq!(fields["name"], name);
    assert_eq!(fields["tags"], serde_json::json!([version]));
    assert_eq!(
        (
            fields["repository"].as_str(),
            fields["repository_type"].as_str()
        ),
        (Some("docker.io"), Some("docker_hub"))
    );

    // docker history lists the newest step first; census numbers them from the oldest.
    let history = command_output(
        "docker",
        &[
            "history",
            "--human=false",
            "--no-trunc",
            "--format",
            "{{.CreatedAt}}\t{{.Size}}\t{{.CreatedBy}}",
            &id,
        ],
    )?;
    let expected: Vec<(String, u64, String)> = history
        .lines()
        .rev()
        .map(|line| {
            let mut parts = line.splitn(3, '\t');
            let created = parts.next().unwrap_or_default().to_string();
            let size = parts.next().unwrap_or_default().parse().unwrap_or(u64::MAX);
            (created, size, parts.next().unwrap_or_default().to_string())
        })
        .collect();
    let mut steps: Vec<&Value> = of_kind(&records, "image_history")
        .into_iter()
        .filter(|r| r["fields"]["image_id"] == id.as_str())
        .collect();
    steps.sort_by_key(|r| r["fields"]["index"].as_u64());
    ensure!(
        steps.len() == expected.len() && steps.len() >= 4,
        "{} steps vs docker's {}",
        steps.len(),
        expected.len()
    );
    for (step, (created, size, created_by)) in steps.iter().zip(&expected) {
        let f = &step["fields"];
        assert_eq!(f["created_by"], created_by.as_str());
        assert_eq!(f["size_bytes"], *size);
        assert_eq!(f["empty_layer"], *size == 0);
        let ours: jiff::Timestamp = f["created"].as_str().context("created")?.parse()?;
        let theirs: jiff::Timestamp = created
            .parse()
            .with_context(|| format!("docker CreatedAt {created:?}"))?;
        assert_eq!(ours.as_second(), theirs.as_second());
    }
    Ok(())
}

/// A Debian root filesystem made with debootstrap once per target dir and reused.
fn debootstrap_root() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debootstrap-bookworm");
    let lock =
        std::fs::File::create(Path::new(env!("CARGO_TARGET_TMPDIR")).join("debootstrap.lock"))?;
    lock.lock()?;
    if !root.join("var/lib/dpkg/status").exists() {
        let staging = root.with_extension("partial");
        let _ = std::fs::remove_dir_all(&staging);
        let output = Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&staging)
            .arg("http://deb.debian.org/debian")
            .output()
            .context("cannot run debootstrap: tests/run installs Debian's debootstrap")?;
        ensure!(
            output.status.success(),
            "debootstrap failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&staging, &root)?;
    }
    Ok(root)
}

/// The debootstrap root imported into Docker as a one-layer image.
fn debian_image(root: &Path) -> Result<(ImageGuard, String)> {
    let tag = unique("debian");
    let guard = ImageGuard(tag.clone());
    let tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()?;
    let import = Command::new("docker")
        .args(["import", "-", &tag])
        .stdin(tar.stdout.context("tar stdout")?)
        .output()?;
    ensure!(
        import.status.success(),
        "docker import failed: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let id = String::from_utf8(import.stdout)?.trim().to_string();
    Ok((guard, id))
}

/// Installed packages of a root as `dpkg-query --admindir` lists them: "name version arch".
fn dpkg_packages(root: &Path) -> Result<BTreeSet<String>> {
    let admindir = format!("--admindir={}", root.join("var/lib/dpkg").display());
    let listing = command_output(
        "dpkg-query",
        &[
            &admindir,
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\n",
        ],
    )?;
    let dpkg: BTreeSet<String> = listing
        .lines()
        .filter(|l| !l.starts_with("config-files") && !l.starts_with("not-installed"))
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
        .collect();
    ensure!(
        dpkg.len() > 50,
        "debootstrap root lists only {} packages",
        dpkg.len()
    );
    Ok(dpkg)
}

/// The scan's packages inside image `id` equal dpkg's list for the root it was made
/// from, and are keyed under the image.
fn ensure_image_packages_equal_dpkg(records: &[Value], id: &str, root: &Path) -> Result<()> {
    let agent: BTreeSet<String> = records
        .iter()
        .filter(|r| r["kind"] == "package" && r["fields"]["image_id"] == id)
        .map(|r| {
            let f = &r["fields"];
            format!(
                "{} {} {}",
                f["name"].as_str().unwrap_or(""),
                f["version"].as_str().unwrap_or(""),
                f["arch"].as_str().unwrap_or("")
            )
        })
        .collect();
    let dpkg = dpkg_packages(root)?;
    let missing: Vec<_> = dpkg.difference(&agent).collect();
    let phantom: Vec<_> = agent.difference(&dpkg).collect();
    ensure!(
        missing.is_empty() && phantom.is_empty(),
        "image {id}: missing: {missing:?}; extra: {phantom:?}"
    );
    let key = records
        .iter()
        .find(|r| r["fields"]["image_id"] == id && r["fields"]["name"] == "libc6")
        .context("libc6 in image")?;
    ensure!(
        key["key"]
            .as_str()
            .is_some_and(|k| k.starts_with(&format!("{id}/deb/libc6/"))),
        "{key}"
    );
    Ok(())
}

#[test]
fn packages_inside_an_imported_debian_image_equal_its_dpkg_database() -> Result<()> {
    let root = debootstrap_root()?;
    let (guard, id) = debian_image(&root)?;
    let (records, _) = scan_json(&["--only", "package"])?;
    ensure_image_packages_equal_dpkg(&records, &id, &root)?;
    drop(guard);
    Ok(())
}

#[test]
fn a_kubelet_style_container_carries_its_pod_and_its_processes_link_to_it() -> Result<()> {
    let (_image, id) = busybox_image()?;
    let name = format!("census-test-{}", std::process::id());
    let run = Command::new("docker")
        .args(["run", "-d", "--name", &name, "-p", "127.0.0.1::8080"])
        .args([
            "--label",
            "io.kubernetes.pod.name=shop-7d9f-x2k",
            "--label",
            "io.kubernetes.pod.namespace=prod",
        ])
        .args([
            "--label",
            "io.kubernetes.container.name=web",
            "--label",
            "io.kubernetes.pod.uid=1b2c3d",
        ])
        .args([&id, "/bin/busybox", "sleep", "600"])
        .output()?;
    ensure!(
        run.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    struct ContainerGuard(String);
    impl Drop for ContainerGuard {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
        }
    }
    let container_id = String::from_utf8(run.stdout)?.trim().to_string();
    let _container = ContainerGuard(container_id.clone());
    let inspect = docker_json(&["inspect", &container_id])?;
    let pid = inspect[0]["State"]["Pid"].as_u64().context("pid")?;

    let (records, _) = scan_json(&["--only", "container,process"])?;
    let container = of_kind(&records, "container")
        .into_iter()
        .find(|r| r["key"] == container_id.as_str())
        .with_context(|| format!("container {container_id} not reported"))?;
    let f = &container["fields"];
    assert_eq!(f["name"], name.as_str());
    assert_eq!(f["state"], "running");
    assert_eq!(f["image_id"], id.as_str());
    assert_eq!(f["pid"], pid);
    assert_eq!(f["pod_name"], "shop-7d9f-x2k");
    assert_eq!(f["pod_namespace"], "prod");
    assert_eq!(f["container_name"], "web");
    assert_eq!(f["pod_uid"], "1b2c3d");
    assert_eq!(f["privileged"], false);
    let ports = f["ports"].as_array().context("ports")?;
    ensure!(
        ports.iter().any(|p| p
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:") && p.ends_with("->8080/tcp"))),
        "{ports:?}"
    );
    let process = of_kind(&records, "process")
        .into_iter()
        .find(|r| r["fields"]["pid"] == pid)
        .with_context(|| format!("container process {pid} not reported"))?;
    assert_eq!(process["fields"]["container_id"], container_id.as_str());
    assert_eq!(process["fields"]["container_runtime"], "docker");
    Ok(())
}

/// Debian's containerd with its CRI plugin, on a private socket and state directory.
struct PrivateContainerd {
    _process: Running,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrivateContainerd {
    fn start() -> Result<Self> {
        ensure!(
            Path::new("/usr/bin/containerd").exists(),
            "containerd missing: tests/run installs Debian's containerd"
        );
        let dir = tempfile::Builder::new().prefix("ctd").tempdir_in("/tmp")?;
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\"]\n\
                 [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"native\"\n",
                d = dir.path().display(),
                s = socket.display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("containerd.log"))?;
        let process = Running::group(
            Command::new("/usr/bin/containerd")
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log),
            "containerd",
        )?;
        wait_for(Duration::from_secs(30), "containerd's socket", || {
            Ok(socket.exists().then_some(()))
        })?;
        Ok(PrivateContainerd {
            _process: process,
            socket,
            _dir: dir,
        })
    }

    fn ctr(&self, args: &[&str]) -> Result<String> {
        let socket = self.socket.display().to_string();
        let mut all = vec!["--address", socket.as_str(), "-n", "k8s.io"];
        all.extend_from_slice(args);
        command_output("ctr", &all)
    }
}

#[test]
fn containerd_images_listed_through_cri_equal_ctr() -> Result<()> {
    let (guard, id) = busybox_image()?;
    let containerd = PrivateContainerd::start()?;
    let archive = tempfile::NamedTempFile::new()?;
    let archive_path = archive.path().display().to_string();
    command_output("docker", &["save", "-o", &archive_path, &guard.0])?;
    containerd.ctr(&["images", "import", "--snapshotter", "native", &archive_path])?;
    // ctr lists one row per reference: the tag and the image id.
    let refs: Vec<String> = containerd
        .ctr(&["images", "ls", "-q"])?
        .lines()
        .map(str::to_string)
        .collect();
    ensure!(refs.contains(&id), "ctr does not list {id}: {refs:?}");
    let ctr_tags: Vec<&String> = refs.iter().filter(|r| !r.starts_with("sha256:")).collect();

    let socket = containerd.socket.display().to_string();
    let (records, stderr) =
        scan_json(&["--only", "image,image_history", "--runtime-socket", &socket])?;
    let images = of_kind(&records, "image");
    ensure!(
        images.len() == 1,
        "expected the one imported image through CRI, got {images:?}\n{stderr}"
    );
    let f = &images[0]["fields"];
    assert_eq!(f["id"], id.as_str());
    assert_eq!(f["runtime"], "containerd");
    let references: Vec<&str> = f["references"]
        .as_array()
        .context("references")?
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(
        references,
        ctr_tags.iter().map(|t| t.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(f["labels"]["org.census.test"], "busybox");
    let steps = of_kind(&records, "image_history").len();
    ensure!(steps >= 4, "history through CRI has {steps} steps");
    Ok(())
}

/// containerd's images are read from the layer blobs of its content store: the same
/// debootstrap image, saved from Docker and imported into a private containerd, yields
/// exactly dpkg's packages through the CRI socket alone.
#[test]
fn packages_inside_a_containerd_image_equal_its_dpkg_database() -> Result<()> {
    let root = debootstrap_root()?;
    let (guard, id) = debian_image(&root)?;
    let containerd = PrivateContainerd::start()?;
    let archive = tempfile::NamedTempFile::new()?;
    let archive_path = archive.path().display().to_string();
    command_output("docker", &["save", "-o", &archive_path, &guard.0])?;
    containerd.ctr(&["images", "import", "--snapshotter", "native", &archive_path])?;
    drop(guard);
    let socket = containerd.socket.display().to_string();
    let (records, stderr) = scan_json(&["--only", "package", "--runtime-socket", &socket])?;
    ensure!(
        !stderr.contains("cannot catalog image contents"),
        "the containerd image was not cataloged:\n{stderr}"
    );
    ensure_image_packages_equal_dpkg(&records, &id, &root)
}

/// A crafted export: escaping paths, links out of the root and in a loop, an oversized
/// package database and a zip-bomb jar. The scan finishes in bounded memory and warns,
/// naming the layer and the path.
#[test]
fn a_crafted_image_archive_costs_warnings_not_the_agent() -> Result<()> {
    use std::io::Write;
    let mut layer = tar::Builder::new(Vec::new());
    let entry = |builder: &mut tar::Builder<Vec<u8>>,
                 path: &str,
                 kind: tar::EntryType,
                 link: Option<&str>,
                 data: &[u8]|
     -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        let name = &mut header.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            header.set_link_name(link)?;
        }
        header.set_cksum();
        builder.append(&header, data)?;
        Ok(())
    };
    entry(
        &mut layer,
        "../../../../tmp/census-escape",
        tar::EntryType::Regular,
        None,
        b"escaped",
    )?;
    entry(
        &mut layer,
        "etc/os-release",
        tar::EntryType::Symlink,
        Some("/etc/hostname"),
        b"",
    )?;
    entry(
        &mut layer,
        "loop/a",
        tar::EntryType::Symlink,
        Some("b"),
        b"",
    )?;
    entry(
        &mut layer,
        "loop/b",
        tar::EntryType::Symlink,
        Some("a"),
        b"",
    )?;
    entry(
        &mut layer,
        "usr/lib/os-release",
        tar::EntryType::Regular,
        None,
        b"ID=debian\nVERSION_ID=12\n",
    )?;
    let status =
        b"Package: survivor\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n";
    entry(
        &mut layer,
        "var/lib/dpkg/status",
        tar::EntryType::Regular,
        None,
        status,
    )?;
    // 300 MB of zeros as an npm manifest: over every limit, compressed to almost nothing.
    let mut huge = tar::Header::new_gnu();
    huge.set_size(300 * 1024 * 1024);
    huge.set_mode(0o644);
    huge.set_cksum();
    layer.append_data(
        &mut huge,
        "srv/app/node_modules/huge/package.json",
        std::io::Read::take(std::io::repeat(0), 300 * 1024 * 1024),
    )?;
    // A jar whose manifest inflates to a gigabyte.
    let mut bomb = std::io::Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut bomb);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        writer.start_file("META-INF/MANIFEST.MF", options)?;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            writer.write_all(&zeros)?;
        }
        writer.finish()?;
    }
    let bomb = bomb.into_inner();
    entry(
        &mut layer,
        "opt/app/bomb-1.0.jar",
        tar::EntryType::Regular,
        None,
        &bomb,
    )?;
    let layer = layer.into_inner()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer)?;
    let layer = gz.finish()?;

    let mut export = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(layer.len() as u64);
    header.set_cksum();
    export.append_data(&mut header, "blobs/sha256/layer0", layer.as_slice())?;
    let manifest = br#"[{"Config":"blobs/sha256/config","RepoTags":["crafted:1"],"Layers":["blobs/sha256/layer0"]}]"#;
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_cksum();
    export.append_data(&mut header, "manifest.json", manifest.as_slice())?;
    let archive = tempfile::NamedTempFile::new()?;
    std::fs::write(archive.path(), export.into_inner()?)?;

    let measured = run_measured(
        Command::new(binary("census-agent"))
            .args(["scan-image", "--format", "json", "--archive"])
            .arg(archive.path()),
        Duration::from_secs(120),
    )?;
    ensure!(
        measured.status.success(),
        "scan-image failed: {}",
        measured.stderr
    );
    ensure!(
        !Path::new("/tmp/census-escape").exists(),
        "a layer path escaped the image root"
    );
    let records: Vec<Value> = measured
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = records
        .iter()
        .filter_map(|r| r["fields"]["name"].as_str())
        .collect();
    assert_eq!(names, ["survivor", "bomb"], "{records:?}");
    ensure!(
        measured.peak_rss_kib < 200 * 1024,
        "peak RSS {} KiB",
        measured.peak_rss_kib
    );
    let layer_name = "blobs/sha256/layer0";
    for (path, message) in [
        ("../../../../tmp/census-escape", "leaves the image root"),
        (
            "/srv/app/node_modules/huge/package.json",
            "larger than its limit",
        ),
        (
            "/opt/app/bomb-1.0.jar:META-INF/MANIFEST.MF",
            "decompresses to more than",
        ),
    ] {
        let warned = measured.stderr.lines().any(|l| {
            l.contains("WARN") && l.contains(layer_name) && l.contains(path) && l.contains(message)
        });
        ensure!(
            warned,
            "no warning {message:?} naming {layer_name} and {path} in:\n{}",
            measured.stderr
        );
    }
    Ok(())
}

/// The daemon reports a new container at once, from Docker's events, not at its next
/// interval.
#[test]
fn docker_events_reach_the_collector_before_the_next_interval() -> Result<()> {
    let (_image, id) = busybox_image()?;
    let collector = Collector::start()?;
    let node = node_id("events");
    let state = tempfile::tempdir()?;
    let _agent = Running::group(
        Command::new(binary("census-agent"))
            .args([
                "run",
                "--interval",
                "3600",
                "--only",
                "container,image",
                "--collector",
                &collector.grpc_url(),
                "--node-id",
                &node,
            ])
            .args(collector.agent_args())
            .arg("--state-dir")
            .arg(state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "census-agent",
    )?;
    // The first (full) round has landed once the image is there.
    wait_for(Duration::from_secs(60), "the first sync", || {
        Ok(collector
            .api
            .records(&node, "image")?
            .iter()
            .any(|r| r["key"] == id.as_str())
            .then_some(()))
    })?;
    let name = format!("census-events-{}", std::process::id());
    let run = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            &id,
            "/bin/busybox",
            "sleep",
            "600",
        ])
        .output()?;
    let container_id = String::from_utf8(run.stdout)?.trim().to_string();
    let cleanup = || {
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    };
    if !run.status.success() {
        cleanup();
        bail!(
            "docker run failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let arrived = wait_for(
        Duration::from_secs(30),
        "the new container, long before the 1 h interval",
        || {
            Ok(collector
                .api
                .records(&node, "container")?
                .into_iter()
                .find(|r| r["key"] == container_id.as_str()))
        },
    );
    cleanup();
    let container = arrived?;
    assert_eq!(container["fields"]["state"], "running");
    // And its removal, from the destroy event.
    wait_for(
        Duration::from_secs(30),
        "the removed container to leave",
        || {
            Ok((!collector
                .api
                .records(&node, "container")?
                .iter()
                .any(|r| r["key"] == container_id.as_str()))
            .then_some(()))
        },
    )?;
    Ok(())
}
