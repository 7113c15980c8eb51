//! The pipeline end to end: a marker process on this host reaches the collector's API
//! through the real agent, tagged per the DPSA policy, and leaves when it exits.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use census_tests::{Collector, Running, binary, node_id, wait_for};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

const ARRIVAL: Duration = Duration::from_secs(60);

fn start_marker() -> Result<(Running, u16)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_census-marker"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start census-marker")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("marker stdout")?).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("port ")
        .context("marker did not print its port")?
        .parse()?;
    Ok((
        Running {
            child,
            name: "census-marker",
        },
        port,
    ))
}

fn start_agent(collector: &Collector, node: &str, state_dir: &std::path::Path) -> Result<Running> {
    let child = Command::new(binary("census-agent"))
        .args([
            "run",
            "--interval",
            "1",
            "--collector",
            &collector.grpc_url(),
            "--node-id",
            node,
        ])
        .args(collector.agent_args())
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start census-agent run")?;
    Ok(Running {
        child,
        name: "census-agent",
    })
}

fn timestamp(record: &Value, field: &str) -> Result<Timestamp> {
    let text = record[field]
        .as_str()
        .with_context(|| format!("{field} missing in {record}"))?;
    Ok(text.parse()?)
}

/// The DPSA tags of a live asset record: asset basic data, kept 180 days from
/// collection, no deletion deadline while the node is in use.
fn assert_asset_tags(record: &Value, node: &str) -> Result<()> {
    ensure!(
        record["category"] == "asset_basic_data",
        "category of {record}"
    );
    ensure!(
        record["policy"] == "dpsa-tcss-2023-04-03/v1",
        "policy of {record}"
    );
    ensure!(record["delete_by"].is_null(), "delete_by of {record}");
    ensure!(record["legal_hold"] == false, "legal_hold of {record}");
    ensure!(
        record["hosting_service"] == format!("node:{node}"),
        "hosting_service of {record}"
    );
    let collected = timestamp(record, "collected_at")?;
    let retain_until = timestamp(record, "retain_until")?;
    ensure!(
        retain_until.duration_since(collected) == SignedDuration::from_hours(180 * 24),
        "retain_until {retain_until} is not collected_at {collected} + 180 days"
    );
    Ok(())
}

fn find_process(collector: &Collector, node: &str, pid: u32) -> Result<Option<Value>> {
    Ok(collector
        .api
        .records(node, "process")?
        .into_iter()
        .find(|r| r["fields"]["pid"] == pid))
}

fn find_port(collector: &Collector, node: &str, key: &str) -> Result<Option<Value>> {
    Ok(collector
        .api
        .records(node, "listening_port")?
        .into_iter()
        .find(|r| r["key"] == key))
}

#[test]
fn a_marker_process_and_its_port_arrive_tagged_and_leave_when_it_exits() -> Result<()> {
    let collector = Collector::start()?;
    let (mut marker, port) = start_marker()?;
    let pid = marker.pid();
    let node = node_id("marker");
    let state = tempfile::tempdir()?;
    let _agent = start_agent(&collector, &node, state.path())?;

    let process = wait_for(ARRIVAL, "the marker process in the API", || {
        find_process(&collector, &node, pid)
    })
    .with_context(|| collector.log())?;
    assert_eq!(process["fields"]["name"], "census-marker");
    assert!(
        process["fields"]["exe"]
            .as_str()
            .unwrap_or("")
            .ends_with("/census-marker"),
        "{process}"
    );
    assert_asset_tags(&process, &node)?;

    let port_key = format!("tcp/127.0.0.1:{port}");
    let listening = wait_for(ARRIVAL, "the marker's listening port in the API", || {
        find_port(&collector, &node, &port_key)
    })?;
    assert_eq!(listening["fields"]["pid"], pid, "{listening}");
    assert_eq!(listening["fields"]["process"], "census-marker");
    assert_eq!(listening["fields"]["port"], u32::from(port));
    assert_asset_tags(&listening, &node)?;

    // The first snapshot may span several batches: wait until it has all landed.
    let summary = wait_for(ARRIVAL, "the node summary to count packages", || {
        let nodes = collector.api.get("/api/v1/nodes")?;
        let summary = nodes["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == node.as_str()))
            .cloned()
            .context("node missing from /api/v1/nodes")?;
        Ok((summary["record_counts"]["package"].as_u64() >= Some(1)).then_some(summary))
    })?;
    assert!(
        summary["record_counts"]["process"].as_u64() >= Some(1),
        "{summary}"
    );
    assert!(
        summary["last_seen"].is_string() && summary["hostname"].is_string(),
        "{summary}"
    );

    marker.kill();
    wait_for(ARRIVAL, "the marker to leave the live records", || {
        let gone = find_process(&collector, &node, pid)?.is_none()
            && find_port(&collector, &node, &port_key)?.is_none();
        Ok(gone.then_some(()))
    })?;

    // Gone from the node, not from the store: the 180-day floor still holds.
    let retained = collector.api.records_where(&format!(
        "node={node}&kind=listening_port&include_removed=true&limit=10000"
    ))?;
    let removed = retained
        .iter()
        .find(|r| r["key"] == port_key.as_str())
        .context("removed port not retained")?;
    assert!(removed["removed_at"].is_string(), "{removed}");
    assert_eq!(removed["collected_at"], listening["collected_at"]);
    assert_asset_tags(removed, &node)?;
    Ok(())
}

#[test]
fn a_one_shot_run_reports_this_host_and_exits() -> Result<()> {
    let collector = Collector::start()?;
    let node = node_id("once");
    let state = tempfile::tempdir()?;
    let status = Command::new(binary("census-agent"))
        .args([
            "run",
            "--once",
            "--collector",
            &collector.grpc_url(),
            "--node-id",
            &node,
        ])
        .args(collector.agent_args())
        .arg("--state-dir")
        .arg(state.path())
        .status()?;
    assert!(status.success());
    let hosts = collector.api.records(&node, "host")?;
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert_eq!(hosts[0]["fields"]["hostname"], hostname.trim());
    // The acked seq is kept for the next run.
    let acked: u64 = std::fs::read_to_string(state.path().join("last-acked-seq"))?
        .trim()
        .parse()?;
    assert!(acked >= 1);
    Ok(())
}

#[test]
fn a_one_shot_run_without_a_collector_fails_with_the_reason() -> Result<()> {
    let state = tempfile::tempdir()?;
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let output = Command::new(binary("census-agent"))
        .args([
            "run",
            "--once",
            "--node-id",
            "n",
            "--collector",
            &format!("http://127.0.0.1:{port}"),
            "--insecure-plaintext",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to collector"), "{stderr}");
    Ok(())
}
