//! Console Configuration Data end to end: a detection schedule changed through the API
//! reaches a running agent over its stream, an alarm setting calls a local webhook
//! (retrying a failed call), and a deleted item is purged on the 30th working day.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use census_tests::{Collector, SyntheticHost, binary, node_id, wait_for};
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Sends `method` with a JSON body to the collector's API; returns status and JSON.
fn send(
    collector: &Collector,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let body = body.map(|body| body.to_string());
    let (status, text) = collector.api.send(method, path, body.as_deref())?;
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((status, value))
}

fn has_package(collector: &Collector, node: &str, name: &str) -> Result<bool> {
    let found = collector
        .api
        .records_where(&format!("node={node}&kind=package&q={name}&limit=10"))?;
    Ok(found.iter().any(|r| {
        r["key"]
            .as_str()
            .is_some_and(|k| k.ends_with(&format!("/{name}")) || k.contains(name))
    }))
}

#[test]
fn a_changed_detection_schedule_reaches_a_running_agent() -> Result<()> {
    let collector = Collector::start()?;
    let host = SyntheticHost::new(200)?;
    let dir = tempfile::tempdir()?;
    let node = node_id("schedule");
    let log = dir.path().join("agent.log");
    // An hour between scans: only the console's schedule can bring a change sooner.
    let _agent = host.agent(
        &collector.grpc_url(),
        &collector.agent_args(),
        &dir.path().join("state"),
        &node,
        &log,
        &["--interval", "3600"],
    )?;
    wait_for(Duration::from_secs(60), "the first sync", || {
        has_package(&collector, &node, "census-extra-0-0").map(|f| f.then_some(()))
    })?;

    let (status, item) = send(
        &collector,
        "PUT",
        "/api/v1/config/detection_schedule/fast",
        Some(serde_json::json!({ "interval_secs": 1, "node": node })),
    )?;
    ensure!(status == 201, "PUT detection_schedule: {status} {item}");
    assert_eq!(item["category"], "console_configuration_data");
    assert_eq!(item["hosting_service"], "feature");
    wait_for(
        Duration::from_secs(20),
        "the agent to apply the schedule",
        || {
            let text = std::fs::read_to_string(&log)?;
            Ok(text
                .lines()
                .any(|l| {
                    l.contains("console configuration applied") && l.contains("interval_secs=1")
                })
                .then_some(()))
        },
    )
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    host.generation(1)?;
    wait_for(
        Duration::from_secs(30),
        "a change scanned on the console's schedule",
        || has_package(&collector, &node, "census-extra-1-0").map(|f| f.then_some(())),
    )
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    Ok(())
}

/// A one-connection-at-a-time HTTP receiver: answers `statuses` in turn (then 200)
/// and passes on every request body it got.
fn receiver(statuses: Vec<u16>) -> Result<(u16, mpsc::Receiver<(u16, String)>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (sender, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone socket"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = statuses.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if sender
                .send((status, String::from_utf8_lossy(&body).into_owned()))
                .is_err()
            {
                return;
            }
        }
    });
    Ok((port, received))
}

#[test]
fn an_alarm_setting_calls_its_webhook_for_a_new_record_retrying_a_failure() -> Result<()> {
    let collector = Collector::start()?;
    let host = SyntheticHost::new(200)?;
    let dir = tempfile::tempdir()?;
    let node = node_id("alarm");
    let _agent = host.agent(
        &collector.grpc_url(),
        &collector.agent_args(),
        &dir.path().join("state"),
        &node,
        &dir.path().join("agent.log"),
        &[],
    )?;
    wait_for(Duration::from_secs(60), "the first sync", || {
        has_package(&collector, &node, "census-extra-0-0").map(|f| f.then_some(()))
    })?;
    let (port, received) = receiver(vec![500])?;
    let (status, item) = send(
        &collector,
        "PUT",
        "/api/v1/config/alarm_setting/new-package",
        Some(serde_json::json!({
            "webhook": format!("http://127.0.0.1:{port}/hook"),
            "kind": "package",
            "pattern": "census-extra-1-3",
        })),
    )?;
    ensure!(status == 201, "PUT alarm_setting: {status} {item}");
    // Generation 1 adds census-extra-1-0..9 and changes others: one new record matches.
    host.generation(1)?;
    let first = received
        .recv_timeout(Duration::from_secs(30))
        .with_context(|| format!("no webhook call; collector log:\n{}", collector.log()))?;
    assert_eq!(first.0, 500, "the receiver fails the first call");
    let second = received
        .recv_timeout(Duration::from_secs(30))
        .context("the failed webhook call was not retried")?;
    assert_eq!(second.0, 200);
    assert_eq!(first.1, second.1, "a retry sends the same alarm");
    let alarm: serde_json::Value = serde_json::from_str(&second.1)?;
    assert_eq!(alarm["alarm"], "new-package");
    assert_eq!(alarm["event"], "new_record");
    assert_eq!(alarm["node"], node.as_str());
    assert_eq!(alarm["kind"], "package");
    ensure!(
        alarm["key"]
            .as_str()
            .is_some_and(|k| k.contains("census-extra-1-3")),
        "{alarm}"
    );
    // Nothing else matched: changed versions and the initial sync raise no alarm.
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        received.try_recv().is_err(),
        "an unexpected second alarm was sent"
    );
    Ok(())
}

/// `from` plus `days` working days (Monday to Friday), counted here independently.
fn thirty_working_days(from: Timestamp) -> Timestamp {
    let zoned = from.to_zoned(TimeZone::UTC);
    let mut date = zoned.date();
    let mut counted = 0;
    while counted < 30 {
        date = date.tomorrow().expect("date");
        if !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) {
            counted += 1;
        }
    }
    date.to_datetime(zoned.time())
        .to_zoned(TimeZone::UTC)
        .expect("zoned")
        .timestamp()
}

fn purge(collector: &Collector, as_of: Timestamp) -> Result<serde_json::Value> {
    let output = Command::new(binary("census-collector"))
        .args(["purge", "--json", "--as-of", &as_of.to_string(), "--db"])
        .arg(format!("sqlite:{}", collector.db.display()))
        .output()?;
    ensure!(
        output.status.success(),
        "purge failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

#[test]
fn a_deleted_console_item_is_purged_on_the_thirtieth_working_day() -> Result<()> {
    let collector = Collector::start()?;
    let (status, item) = send(
        &collector,
        "PUT",
        "/api/v1/config/file_decision/nc",
        Some(serde_json::json!({ "path": "/usr/bin/nc", "decision": "isolate" })),
    )?;
    ensure!(status == 201, "PUT file_decision: {status} {item}");
    let (status, outcome) = send(
        &collector,
        "DELETE",
        "/api/v1/config/file_decision/nc",
        None,
    )?;
    ensure!(status == 200, "DELETE: {status} {outcome}");
    assert_eq!(outcome["rule"], "console_deletion_request");
    let requested: Timestamp = outcome["at"].as_str().context("at")?.parse()?;
    let deadline = thirty_working_days(requested);
    let reported: Timestamp = outcome["earliest_delete_by"]
        .as_str()
        .context("delete_by")?
        .parse()?;
    assert_eq!(reported, deadline, "requested at {requested}");
    // It no longer applies, but is kept until the purge.
    let listed = collector.api.get("/api/v1/config")?;
    ensure!(
        listed["items"]
            .as_array()
            .is_some_and(|items| items.is_empty()),
        "{listed}"
    );
    let stored = collector.api.get("/api/v1/config/file_decision/nc")?;
    ensure!(stored["deleted_at"].is_string(), "{stored}");

    let day_before = purge(&collector, deadline - 24.hours())?;
    assert_eq!(day_before["deleted"], 0, "{day_before}");
    assert_eq!(
        collector.api.get_raw("/api/v1/config/file_decision/nc")?.0,
        200
    );
    let on_the_day = purge(&collector, deadline)?;
    assert_eq!(on_the_day["deleted"], 1, "{on_the_day}");
    let entry = &on_the_day["entries"][0];
    assert_eq!(entry["rule"], "console_deletion_request");
    assert_eq!(entry["category"], "console_configuration_data");
    assert_eq!(entry["hosting_service"], "feature");
    assert_eq!(entry["late"], 0);
    assert_eq!(
        collector.api.get_raw("/api/v1/config/file_decision/nc")?.0,
        404
    );
    Ok(())
}
