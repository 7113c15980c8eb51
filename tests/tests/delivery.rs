//! Delivery that loses nothing, with the real binaries: the collector and the agent
//! killed with SIGKILL mid-sync, the collector away while the node changes, a spool
//! filled to its bound, a collector database damaged behind the agent's back, the
//! network between an agent and its collector in containers cut. Every
//! test ends comparing the collector's live state for the node with a fresh
//! `census-agent scan` of the same root: zero missing, zero phantom records.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use census_tests::{
    ADMIN_TOKEN, Api, Collector, ENROLLMENT_SECRET, ImageGuard, Running, SYNTHETIC_KINDS,
    SyntheticHost, binary, command_output, docker_build, node_id, triple, wait_for,
};

/// The collector's live records of the node, every page.
fn live(api: &Api, node: &str) -> Result<BTreeSet<(String, String, String)>> {
    let mut all = BTreeSet::new();
    let mut offset = 0;
    loop {
        let page = api.records_where(&format!("node={node}&limit=10000&offset={offset}"))?;
        all.extend(page.iter().map(triple));
        if page.len() < 10_000 {
            return Ok(all);
        }
        offset += page.len();
    }
}

/// Waits until the collector holds exactly what a fresh scan finds; `logs` says what
/// the agent and the collector logged, should it not.
fn converged(
    api: &Api,
    node: &str,
    host: &SyntheticHost,
    timeout: Duration,
    logs: impl FnOnce() -> String,
) -> Result<()> {
    let expected = host.scanned()?;
    ensure!(expected.len() > 10, "the scan found only {expected:?}");
    let mut last = String::new();
    let result = wait_for(timeout, "the collector to converge on the scan", || {
        let Ok(stored) = live(api, node) else {
            return Ok(None);
        };
        if stored == expected {
            return Ok(Some(()));
        }
        let missing: Vec<_> = expected.difference(&stored).take(3).collect();
        let phantom: Vec<_> = stored.difference(&expected).take(3).collect();
        last = format!(
            "{} missing (e.g. {missing:?}), {} phantom (e.g. {phantom:?}) of {}",
            expected.difference(&stored).count(),
            stored.difference(&expected).count(),
            expected.len()
        );
        Ok(None)
    });
    result.with_context(|| format!("{last}\n{}", logs()))
}

/// The last lines of a log, newest first.
fn tail(log: &str, lines: usize) -> String {
    let newest: Vec<&str> = log.lines().rev().take(lines).collect();
    newest.join("\n")
}

/// The node's delivery counters as the collector reports them.
fn delivery(collector: &Collector, node: &str) -> Result<serde_json::Value> {
    let nodes = collector.api.get("/api/v1/nodes")?;
    nodes["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == node))
        .map(|n| n["delivery"].clone())
        .with_context(|| format!("node {node} not listed: {nodes}"))
}

fn pause(min_ms: u64, max_ms: u64) {
    std::thread::sleep(Duration::from_millis(fastrand::u64(min_ms..max_ms)));
}

struct Fixture {
    host: SyntheticHost,
    collector: Collector,
    node: String,
    state: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(test: &str, packages: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Fixture {
            host: SyntheticHost::new(packages)?,
            collector: Collector::start()?,
            node: node_id(test),
            state: dir.path().join("state"),
            log: dir.path().join("agent.log"),
            _dir: dir,
        })
    }

    fn agent(&self, extra: &[&str]) -> Result<Running> {
        self.host.agent(
            &self.collector.grpc_url(),
            &self.collector.agent_args(),
            &self.state,
            &self.node,
            &self.log,
            extra,
        )
    }

    fn converged(&self, timeout: Duration) -> Result<()> {
        converged(&self.collector.api, &self.node, &self.host, timeout, || {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            format!(
                "agent log (last lines, newest first):\n{}\ncollector log:\n{}",
                tail(&log, 15),
                self.collector.log()
            )
        })
    }

    /// Live records of the node now, or 0 while the collector is away.
    fn stored_count(&self) -> usize {
        live(&self.collector.api, &self.node)
            .map(|l| l.len())
            .unwrap_or(0)
    }
}

/// The node's last applied seq and live record count, from the nodes API; `None`
/// while the collector is away or before the node's first Hello.
fn progress(collector: &Collector, node: &str) -> Option<(u64, u64)> {
    let nodes = collector.api.get("/api/v1/nodes").ok()?;
    let found = nodes["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == node)?;
    let records = found["record_counts"]
        .as_object()?
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    Some((found["last_applied_seq"].as_u64()?, records))
}

#[test]
fn the_collector_killed_20_times_during_a_large_initial_sync() -> Result<()> {
    let mut fx = Fixture::new("collector-kill", 150_000)?;
    let total = fx.host.scanned()?.len() as u64;
    let _agent = fx.agent(&[])?;
    let mut applied = 0;
    let mut kills = Vec::new();
    for _ in 0..20 {
        // Each kill lands as soon as this connection has applied more.
        let (seq, records) = wait_for(Duration::from_secs(60), "the sync to progress", || {
            Ok(progress(&fx.collector, &fx.node).filter(|(seq, _)| *seq > applied))
        })
        .with_context(|| {
            let log = std::fs::read_to_string(&fx.log).unwrap_or_default();
            format!(
                "after kills {kills:?}; agent log, newest first:\n{}",
                tail(&log, 12)
            )
        })?;
        fx.collector.kill();
        applied = seq;
        kills.push(records);
        pause(0, 200);
        fx.collector.start_again()?;
    }
    let mid_sync = kills.iter().filter(|r| **r < total).count();
    ensure!(
        mid_sync == 20,
        "only {mid_sync} of 20 kills landed before the initial sync of {total} records completed: {kills:?}"
    );
    fx.converged(Duration::from_secs(120))?;
    let counters = delivery(&fx.collector, &fx.node)?;
    assert_eq!(counters["shed_changes"], 0, "{counters}");
    Ok(())
}

#[test]
fn the_agent_killed_20_times_mid_send_while_the_node_changes() -> Result<()> {
    let fx = Fixture::new("agent-kill", 30_000)?;
    for round in 0..20 {
        let mut agent = fx.agent(&[])?;
        pause(200, 900);
        agent.kill();
        if round % 4 == 3 {
            fx.host.generation(round)?;
        }
    }
    let _agent = fx.agent(&[])?;
    fx.converged(Duration::from_secs(120))?;
    Ok(())
}

#[test]
fn changes_made_while_the_collector_is_down_arrive_when_it_returns() -> Result<()> {
    let mut fx = Fixture::new("collector-down", 3_000)?;
    let _agent = fx.agent(&[])?;
    fx.converged(Duration::from_secs(60))?;
    fx.collector.kill();
    fx.host.generation(1)?;
    std::thread::sleep(Duration::from_secs(3));
    fx.host.generation(2)?;
    // The agent kept scanning: its rounds wait in the spool.
    let spool = fx.state.join("spool");
    wait_for(
        Duration::from_secs(20),
        "rounds spooled during the outage",
        || {
            let files = std::fs::read_dir(&spool)?.count();
            Ok((files >= 2).then_some(()))
        },
    )?;
    fx.collector.start_again()?;
    fx.converged(Duration::from_secs(60))?;
    wait_for(Duration::from_secs(20), "the spool to drain", || {
        Ok((std::fs::read_dir(&spool)?.count() == 0).then_some(()))
    })?;
    Ok(())
}

#[test]
fn a_full_spool_sheds_reports_it_and_the_node_converges_after() -> Result<()> {
    // A snapshot of 4,000 packages spools to about 1 MB; each generation changes
    // about a quarter of them. 1.5 MB holds the snapshot but not a few rounds of changes.
    let mut fx = Fixture::new("spool-full", 4_000)?;
    let _agent = fx.agent(&["--spool-max-bytes", "1500000"])?;
    fx.converged(Duration::from_secs(60))?;
    fx.collector.kill();
    for g in 1..=8 {
        fx.host.generation(g)?;
        std::thread::sleep(Duration::from_millis(1_300));
    }
    fx.collector.start_again()?;
    fx.converged(Duration::from_secs(90))?;
    let counters = wait_for(Duration::from_secs(20), "shedding to be reported", || {
        let counters = delivery(&fx.collector, &fx.node)?;
        Ok((counters["shed_changes"].as_u64() > Some(0)).then_some(counters))
    })?;
    ensure!(
        counters["shed_batches"].as_u64() > Some(0) && counters["resyncs"].as_u64() > Some(0),
        "{counters}"
    );
    let log = std::fs::read_to_string(&fx.log)?;
    ensure!(log.contains("spool full"), "no shedding logged:\n{log}");
    Ok(())
}

#[test]
fn records_lost_by_the_collector_come_back_through_checksums() -> Result<()> {
    let fx = Fixture::new("checksums", 1_000)?;
    let _agent = fx.agent(&[])?;
    fx.converged(Duration::from_secs(60))?;
    // Damage the collector's state behind the agent's back: rows gone, one altered.
    let db = rusqlite::Connection::open(&fx.collector.db)?;
    db.busy_timeout(Duration::from_secs(10))?;
    let deleted = db.execute(
        "DELETE FROM records WHERE node_id = ?1 AND kind = 'package' AND key LIKE 'deb/census-synthetic-1%'",
        [&fx.node],
    )?;
    ensure!(deleted > 100, "deleted only {deleted} rows");
    db.execute(
        "UPDATE records SET fingerprint = zeroblob(32) WHERE node_id = ?1 AND kind = 'account' AND key = 'root'",
        [&fx.node],
    )?;
    drop(db);
    ensure!(fx.stored_count() < fx.host.scanned()?.len());
    fx.converged(Duration::from_secs(30))?;
    let counters = delivery(&fx.collector, &fx.node)?;
    ensure!(
        counters["checksum_mismatches"].as_u64() >= Some(2),
        "{counters}"
    );
    Ok(())
}

/// A user-defined Docker network with a census collector and a census agent, each in
/// a container of its own: a `FROM scratch` image with the host's binaries and
/// libraries mounted read-only (no registry is needed). Removed on drop.
struct Cut {
    network: String,
    collector: String,
    agent: String,
    /// Removed once the containers and network are (fields drop after `drop`).
    image: ImageGuard,
    api: Api,
}

/// Host directories the binaries' dynamic libraries live in.
const LIBRARY_DIRS: [&str; 4] = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"];
const CUT_GRPC_PORT: u16 = 7701;

impl Cut {
    fn start(tag: &str) -> Result<Self> {
        let image = format!("census-cut-{tag}:1");
        let context = tempfile::tempdir()?;
        std::fs::write(context.path().join("README"), "census network-cut test\n")?;
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM scratch\nLABEL org.census.build={tag}\nCOPY README /README\n"),
        )?;
        let (image, _) = docker_build(context.path(), &image)?;
        let cut = Cut {
            network: format!("census-cut-{tag}"),
            collector: format!("census-cut-{tag}-collector"),
            agent: format!("census-cut-{tag}-agent"),
            image,
            api: Api {
                http: String::new(),
                token: Some(ADMIN_TOKEN.into()),
                tls: None,
            },
        };
        command_output("docker", &["network", "create", &cut.network])?;
        Ok(cut)
    }

    /// `docker run -d` of a census binary on the network, with the libraries, the
    /// binaries and `mounts` (host, container, mode) bind-mounted.
    fn run(&self, name: &str, mounts: &[(&Path, &str, &str)], command: &[&str]) -> Result<()> {
        let bin = binary("census-agent");
        let bin_dir = bin.parent().context("binary dir")?;
        let mut run = Command::new("docker");
        run.args(["run", "-d", "--name", name, "--network", &self.network])
            .args(["--tmpfs", "/tmp", "-e", "RUST_LOG=census_agent=debug,info"]);
        for dir in LIBRARY_DIRS.iter().filter(|d| Path::new(d).exists()) {
            run.args(["-v", &format!("{dir}:{dir}:ro")]);
        }
        run.args(["-v", &format!("{}:/census:ro", bin_dir.display())]);
        for (host, container, mode) in mounts {
            run.args(["-v", &format!("{}:{container}:{mode}", host.display())]);
        }
        let output = run.arg(&self.image.0).args(command).output()?;
        ensure!(
            output.status.success(),
            "docker run {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    fn start_collector(&mut self, data: &Path) -> Result<()> {
        let grpc = format!("0.0.0.0:{CUT_GRPC_PORT}");
        std::fs::write(
            data.join("enrollment-secrets"),
            format!("{ENROLLMENT_SECRET}\n"),
        )?;
        std::fs::write(data.join("api-tokens"), format!("admin {ADMIN_TOKEN}\n"))?;
        let command = [
            "/census/census-collector",
            "serve",
            "--db",
            "sqlite:/data/census.db",
            "--grpc-addr",
            &grpc,
            "--http-addr",
            "0.0.0.0:7700",
            "--insecure-plaintext",
            "--enrollment-secrets",
            "/data/enrollment-secrets",
            "--api-tokens",
            "/data/api-tokens",
        ];
        self.run(&self.collector, &[(data, "/data", "rw")], &command)?;
        // The test reaches the HTTP API at the container's address on the bridge.
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.network
        );
        let ip = command_output("docker", &["inspect", "-f", &format, &self.collector])?;
        self.api.http = format!("{}:7700", ip.trim());
        wait_for(
            Duration::from_secs(30),
            "the collector container to serve",
            || {
                Ok(self
                    .api
                    .get_raw("/healthz")
                    .ok()
                    .filter(|(status, _)| *status == 200))
            },
        )
        .with_context(|| self.logs())?;
        Ok(())
    }

    fn start_agent(&self, root: &Path, state: &Path, node: &str) -> Result<()> {
        let collector = format!("http://{}:{CUT_GRPC_PORT}", self.collector);
        std::fs::write(
            state.join("enrollment-secret"),
            format!("{ENROLLMENT_SECRET}\n"),
        )?;
        let command = [
            "/census/census-agent",
            "run",
            "--collector",
            &collector,
            "--insecure-plaintext",
            "--enrollment-secret-file",
            "/state/enrollment-secret",
            "--interval",
            "1",
            "--keepalive",
            "2",
            "--host-root",
            "/host",
            "--state-dir",
            "/state",
            "--node-id",
            node,
            "--only",
            SYNTHETIC_KINDS,
            "--runtime-socket",
            "/nonexistent/runtime.sock",
        ];
        self.run(
            &self.agent,
            &[(root, "/host", "ro"), (state, "/state", "rw")],
            &command,
        )
    }

    /// Cuts the agent's container off the network, or connects it again.
    fn agent_network(&self, connected: bool) -> Result<()> {
        let verb = if connected { "connect" } else { "disconnect" };
        command_output("docker", &["network", verb, &self.network, &self.agent])?;
        Ok(())
    }

    fn log(container: &str) -> String {
        Command::new("docker")
            .args(["logs", container])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_else(|error| format!("docker logs {container}: {error}"))
    }

    fn logs(&self) -> String {
        format!(
            "agent log (last lines, newest first):\n{}\ncollector log (newest first):\n{}",
            tail(&Cut::log(&self.agent), 20),
            tail(&Cut::log(&self.collector), 20)
        )
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.agent, &self.collector])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        // The image goes after this, with the `image` field.
    }
}

#[test]
fn changes_made_during_a_network_cut_between_containers_arrive_after_it() -> Result<()> {
    let host = SyntheticHost::new(3_000)?;
    let dir = tempfile::tempdir()?;
    let (data, state) = (dir.path().join("data"), dir.path().join("state"));
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&state)?;
    let node = node_id("network-cut");
    let mut cut = Cut::start(&format!("{}", std::process::id()))?;
    cut.start_collector(&data)?;
    cut.start_agent(host.root(), &state, &node)?;
    converged(&cut.api, &node, &host, Duration::from_secs(90), || {
        cut.logs()
    })?;
    let before = live(&cut.api, &node)?;

    cut.agent_network(false)?;
    host.generation(1)?;
    std::thread::sleep(Duration::from_secs(3));
    host.generation(2)?;
    // The agent keeps scanning and spools its rounds; nothing reaches the collector.
    let spool = state.join("spool");
    wait_for(
        Duration::from_secs(30),
        "rounds spooled during the cut",
        || Ok((std::fs::read_dir(&spool)?.count() >= 2).then_some(())),
    )
    .with_context(|| cut.logs())?;
    // The agent notices the cut (keepalive) and its reconnects fail meanwhile.
    wait_for(
        Duration::from_secs(30),
        "the agent to notice the cut and fail to reconnect",
        || {
            let ended = Cut::log(&cut.agent).matches("sync stream ended").count();
            Ok((ended >= 2).then_some(()))
        },
    )
    .with_context(|| cut.logs())?;
    ensure!(
        live(&cut.api, &node)? == before,
        "the collector changed during the cut: it was not a cut\n{}",
        cut.logs()
    );

    cut.agent_network(true)?;
    converged(&cut.api, &node, &host, Duration::from_secs(120), || {
        cut.logs()
    })?;
    wait_for(Duration::from_secs(20), "the spool to drain", || {
        Ok((std::fs::read_dir(&spool)?.count() == 0).then_some(()))
    })?;
    let agent_log = Cut::log(&cut.agent);
    ensure!(
        agent_log.matches("connected to collector").count() >= 2,
        "the agent never reconnected:\n{}",
        tail(&agent_log, 30)
    );
    Ok(())
}
