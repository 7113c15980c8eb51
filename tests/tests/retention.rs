//! The DPSA retention lifecycle with the real binaries: a terminated node's records
//! are archived, purged at their deadline (gone from the database file's bytes) and
//! audited, unless a legal hold keeps them; bad requests are refused by name and change
//! nothing; a console deletion request is purged on its working day, holidays
//! skipped; a backup taken while serving holds what the collector serves. Time moves
//! with `purge --as-of`, never by sleeping.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use census_tests::{
    Api, Collector, Running, SyntheticHost, binary, node_id, run_measured, triple, wait_for,
};
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const ARRIVAL: Duration = Duration::from_secs(60);
const POLICY: &str = "dpsa-tcss-2023-04-03/v1";
const TERMINATED: &str = "hosting_service_terminated";

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n * 24)
}

/// Now, to the millisecond the collector stores.
fn now_ms() -> Result<Timestamp> {
    Ok(Timestamp::from_millisecond(
        Timestamp::now().as_millisecond(),
    )?)
}

fn timestamp(value: &Value, field: &str) -> Result<Timestamp> {
    let text = value[field]
        .as_str()
        .with_context(|| format!("{field} missing in {value}"))?;
    text.parse()
        .with_context(|| format!("{field} of {value} is not a timestamp"))
}

/// Sends a request with the admin token; status and JSON answer.
fn answer(api: &Api, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Value)> {
    let (status, text) = api.send(method, path, body)?;
    let body = serde_json::from_str(&text)
        .with_context(|| format!("{method} {path} answered {status} with non-JSON {text:?}"))?;
    Ok((status, body))
}

/// POSTs `body` (sent as is, JSON or not) to the API; status and JSON answer.
fn post_raw(api: &Api, path: &str, body: &str) -> Result<(u16, Value)> {
    answer(api, "POST", path, Some(body))
}

fn post(api: &Api, path: &str, body: &Value) -> Result<(u16, Value)> {
    post_raw(api, path, &body.to_string())
}

/// POSTs `body`, which must create something (201); the answer.
fn created(api: &Api, path: &str, body: &Value) -> Result<Value> {
    let (status, answer) = post(api, path, body)?;
    ensure!(
        status == 201,
        "POST {path} {body} answered {status}: {answer}"
    );
    Ok(answer)
}

fn delete(api: &Api, path: &str) -> Result<(u16, Value)> {
    answer(api, "DELETE", path, None)
}

/// Records of `node` in the live tier, or the archive tier when `archived`.
fn records(api: &Api, node: &str, archived: bool) -> Result<Vec<Value>> {
    let page = api.records_where(&format!(
        "node={node}&limit=10000&include_removed=true&archived={archived}"
    ))?;
    ensure!(page.len() < 10_000, "more records than one page holds");
    Ok(page)
}

fn node_entry(api: &Api, node: &str) -> Result<Option<Value>> {
    let nodes = api.get("/api/v1/nodes")?;
    Ok(nodes["nodes"]
        .as_array()
        .context("nodes is not a list")?
        .iter()
        .find(|n| n["id"] == node)
        .cloned())
}

/// Runs `census-collector` with `args` to completion.
fn collector_cli(args: &[&str]) -> Result<Output> {
    Command::new(binary("census-collector"))
        .args(args)
        .output()
        .context("cannot run census-collector")
}

fn sqlite_url(db: &Path) -> String {
    format!("sqlite:{}", db.display())
}

/// `census-collector purge --json` on `db` with `args`, which must succeed; the run.
fn purge(db: &Path, args: &[&str]) -> Result<Value> {
    let url = sqlite_url(db);
    let mut all = vec!["purge", "--db", &url, "--json"];
    all.extend_from_slice(args);
    let output = collector_cli(&all)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "census-collector {all:?} failed ({}): {stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "purge printed {:?}, not JSON",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The files of the database (itself and its write-ahead log) whose bytes hold `text`.
fn files_holding(db: &Path, text: &str) -> Result<Vec<PathBuf>> {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let mut holding = Vec::new();
    for path in [db.to_path_buf(), wal] {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
        };
        if bytes.windows(text.len()).any(|w| w == text.as_bytes()) {
            holding.push(path);
        }
    }
    Ok(holding)
}

/// The audit entry of one rule and hosting service in a purge run.
fn entry<'a>(run: &'a Value, rule: &str, service: &str) -> Result<&'a Value> {
    run["entries"]
        .as_array()
        .context("entries is not a list")?
        .iter()
        .find(|e| e["rule"] == rule && e["hosting_service"] == service)
        .with_context(|| format!("no {rule} entry for {service} in {run}"))
}

/// The group of `service` in a `retention/due` answer, if it has one.
fn due_group(due: &Value, service: &str) -> Result<Option<Value>> {
    Ok(due["due"]
        .as_array()
        .context("due is not a list")?
        .iter()
        .find(|g| g["hosting_service"] == service)
        .cloned())
}

/// A synthetic node whose dpkg database also lists a package named by a marker found
/// nowhere else, so its bytes can be looked for in the database file.
struct Node {
    id: String,
    marker: String,
    host: SyntheticHost,
    agent: Option<Running>,
    dir: tempfile::TempDir,
}

impl Node {
    fn new(test: &str, packages: usize) -> Result<Self> {
        let host = SyntheticHost::new(packages)?;
        let marker = format!("census-marker-{:016x}", fastrand::u64(..));
        let status = host.root().join("var/lib/dpkg/status");
        let mut text = std::fs::read_to_string(&status)?;
        text.push_str(&format!(
            "Package: {marker}\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\n"
        ));
        std::fs::write(&status, text)?;
        Ok(Node {
            id: node_id(test),
            marker,
            host,
            agent: None,
            dir: tempfile::tempdir()?,
        })
    }

    fn service(&self) -> String {
        format!("node:{}", self.id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn start_agent(&mut self, collector: &Collector) -> Result<()> {
        self.agent = Some(self.host.agent(
            &collector.grpc_url(),
            &collector.agent_args(),
            &self.dir.path().join("state"),
            &self.id,
            &self.dir.path().join("agent.log"),
            &[],
        )?);
        Ok(())
    }

    fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill();
        }
    }

    /// Waits until the collector's live records of the node are what a scan of its
    /// root finds, marker included; their number.
    fn converge(&self, collector: &Collector) -> Result<usize> {
        let expected: BTreeSet<_> = self.host.scanned()?;
        ensure!(
            expected
                .iter()
                .any(|(_, key, _)| key.contains(&self.marker)),
            "the scan does not find the marker package {}",
            self.marker
        );
        wait_for(ARRIVAL, "the node's records to arrive", || {
            let stored: BTreeSet<_> = records(&collector.api, &self.id, false)?
                .iter()
                .map(triple)
                .collect();
            Ok((stored == expected).then_some(expected.len()))
        })
        .with_context(|| {
            format!(
                "agent log:\n{}\ncollector log:\n{}",
                self.log(),
                collector.log()
            )
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_agent();
    }
}

/// A node that reports, then stops: its records stay as they are.
fn reported(collector: &Collector, test: &str, packages: usize) -> Result<(Node, usize)> {
    let mut node = Node::new(test, packages)?;
    node.start_agent(collector)?;
    let count = node.converge(collector)?;
    node.stop_agent();
    Ok((node, count))
}

/// Checks the archive of a node terminated at `at`: every record is deleted by its
/// retention floor, 180 days after collection (later than `at` + 30 days).
fn check_archived(
    archived: &[Value],
    node: &Node,
    collected_after: Timestamp,
    at: Timestamp,
    held: bool,
) -> Result<()> {
    ensure!(
        archived
            .iter()
            .any(|r| r["key"].as_str().is_some_and(|k| k.contains(&node.marker))),
        "the marker package is not in the archive of {}",
        node.id
    );
    for record in archived {
        let collected = timestamp(record, "collected_at")?;
        let retain_until = timestamp(record, "retain_until")?;
        let delete_by = timestamp(record, "delete_by")?;
        ensure!(
            collected >= collected_after && collected <= at,
            "collected_at {collected} is not between {collected_after} and the termination {at}: {record}"
        );
        ensure!(
            retain_until.duration_since(collected) == days(180),
            "retain_until is not collected_at + 180 days: {record}"
        );
        ensure!(
            delete_by == retain_until,
            "delete_by is not max(at + 30 days, collected_at + 180 days) = retain_until: {record}"
        );
        ensure!(
            record["delete_rule"] == TERMINATED,
            "delete_rule of {record}"
        );
        ensure!(
            record["hosting_service"] == node.service(),
            "hosting_service of {record}"
        );
        ensure!(
            record["category"] == "asset_basic_data",
            "category of {record}"
        );
        ensure!(record["policy"] == POLICY, "policy of {record}");
        ensure!(record["legal_hold"] == held, "legal_hold of {record}");
    }
    Ok(())
}

fn deadlines(records: &[Value]) -> Result<Vec<Timestamp>> {
    records.iter().map(|r| timestamp(r, "delete_by")).collect()
}

#[test]
fn a_terminated_node_is_purged_at_its_deadline_unless_held() -> Result<()> {
    let collector = Collector::start()?;
    let api = &collector.api;
    let db = &collector.db;
    let started = now_ms()?;
    // The held node reports first, so its deadlines come before the other's.
    let (held, held_count) = reported(&collector, "retention-held", 300)?;
    let (gone, count) = reported(&collector, "retention-purged", 300)?;
    for node in [&held, &gone] {
        ensure!(
            !files_holding(db, &node.marker)?.is_empty(),
            "marker {} not in the database's bytes after it arrived",
            node.marker
        );
    }

    let hold = created(
        api,
        "/api/v1/legal-holds",
        &json!({"hosting_service": held.service(), "reason": "litigation case 2026-117"}),
    )?;
    assert_eq!(hold["records"], held_count, "{hold}");
    assert_eq!(hold["hosting_service"], held.service(), "{hold}");
    assert!(hold["cleared_at"].is_null(), "{hold}");

    let at = now_ms()?;
    let terminated = created(
        api,
        "/api/v1/terminations",
        &json!({"hosting_service": gone.service(), "at": at.to_string()}),
    )?;
    created(
        api,
        "/api/v1/terminations",
        &json!({"hosting_service": held.service(), "at": at.to_string()}),
    )?;
    assert_eq!(terminated["nodes"], json!([gone.id]), "{terminated}");
    assert_eq!(terminated["records"], count, "{terminated}");
    assert_eq!(timestamp(&terminated, "at")?, at, "{terminated}");

    // Archived: out of the live records, in the archive tier with their deadlines.
    assert_eq!(records(api, &gone.id, false)?, Vec::<Value>::new());
    assert_eq!(records(api, &held.id, false)?, Vec::<Value>::new());
    let archived = records(api, &gone.id, true)?;
    assert_eq!(archived.len(), count);
    check_archived(&archived, &gone, started, at, false)?;
    let held_archived = records(api, &held.id, true)?;
    assert_eq!(held_archived.len(), held_count);
    check_archived(&held_archived, &held, started, at, true)?;
    let gone_deadlines = deadlines(&archived)?;
    let (earliest, deadline) = (
        *gone_deadlines.iter().min().context("no deadline")?,
        *gone_deadlines.iter().max().context("no deadline")?,
    );
    assert_eq!(timestamp(&terminated, "earliest_delete_by")?, earliest);
    assert_eq!(timestamp(&terminated, "latest_delete_by")?, deadline);
    let held_deadline = *deadlines(&held_archived)?
        .iter()
        .max()
        .context("no deadline")?;
    ensure!(
        held_deadline <= earliest,
        "the held node's deadlines ({held_deadline}) should come before the other's ({earliest})"
    );
    let summary = node_entry(api, &gone.id)?.context("terminated node not listed")?;
    assert_eq!(timestamp(&summary, "terminated_at")?, at, "{summary}");

    // Due: not within 100 days; within 181 days, the whole archive of both nodes.
    let soon = api.get(&format!("/api/v1/retention/due?before={}", at + days(100)))?;
    assert_eq!(soon["records"], 0, "{soon}");
    assert_eq!(soon["due"], json!([]), "{soon}");
    let due = api.get(&format!("/api/v1/retention/due?before={}", at + days(181)))?;
    assert_eq!(due["records"], count + held_count, "{due}");
    assert_eq!(due["held"], held_count, "{due}");
    let group = due_group(&due, &gone.service())?.with_context(|| format!("{due}"))?;
    assert_eq!(group["rule"], TERMINATED, "{group}");
    assert_eq!(group["tier"], "archive", "{group}");
    assert_eq!(group["category"], "asset_basic_data", "{group}");
    assert_eq!(group["policy"], POLICY, "{group}");
    assert_eq!(group["records"], count, "{group}");
    assert_eq!(group["held"], 0, "{group}");
    assert_eq!(timestamp(&group, "earliest_delete_by")?, earliest);
    assert_eq!(timestamp(&group, "latest_delete_by")?, deadline);
    let group = due_group(&due, &held.service())?.with_context(|| format!("{due}"))?;
    assert_eq!(group["records"], held_count, "{group}");
    assert_eq!(group["held"], held_count, "{group}");

    // 100 days on, the 180-day floor still holds: nothing goes.
    let early = purge(db, &["--as-of", &(at + days(100)).to_string()])?;
    assert_eq!(early["deleted"], 0, "{early}");
    assert_eq!(early["held"], 0, "{early}");
    assert_eq!(early["entries"], json!([]), "{early}");
    assert_eq!(records(api, &gone.id, true)?.len(), count);
    ensure!(
        !files_holding(db, &gone.marker)?.is_empty(),
        "the marker left the database before its deadline"
    );

    // A dry run at the deadline counts, and deletes nothing.
    let deadline_text = deadline.to_string();
    let dry = purge(db, &["--as-of", &deadline_text, "--dry-run"])?;
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(dry["id"].is_null(), "{dry}");
    assert_eq!(dry["deleted"], count, "{dry}");
    assert_eq!(dry["held"], held_count, "{dry}");
    assert_eq!(records(api, &gone.id, true)?.len(), count);

    // At the deadline: the unheld node's records all go, on time; the held ones stay.
    let run = purge(db, &["--as-of", &deadline_text])?;
    // A deletion within a minute of its deadline is on time (the purge's tolerance).
    let tolerance = jiff::SignedDuration::from_secs(60);
    let on_time_late = gone_deadlines
        .iter()
        .filter(|d| **d < deadline - tolerance)
        .count();
    assert_eq!(run["deleted"], count, "{run}");
    assert_eq!(run["held"], held_count, "{run}");
    assert_eq!(run["late"], on_time_late, "{run}");
    assert_eq!(run["nodes_removed"], 1, "{run}");
    assert!(
        run["backup"].is_null(),
        "the pre-purge backup was kept: {run}"
    );
    let purged = entry(&run, TERMINATED, &gone.service())?;
    assert_eq!(purged["deleted"], count, "{purged}");
    assert_eq!(purged["held"], 0, "{purged}");
    assert_eq!(purged["late"], on_time_late, "{purged}");
    assert_eq!(purged["category"], "asset_basic_data", "{purged}");
    assert_eq!(purged["policy"], POLICY, "{purged}");
    assert_eq!(timestamp(purged, "earliest_delete_by")?, earliest);
    assert_eq!(timestamp(purged, "latest_delete_by")?, deadline);
    let kept = entry(&run, TERMINATED, &held.service())?;
    assert_eq!(kept["deleted"], 0, "{kept}");
    assert_eq!(kept["held"], held_count, "{kept}");

    // The audit, as the API serves it, says the same.
    let audit = api.get("/api/v1/retention/audit")?;
    let audited = audit["purge_runs"]
        .as_array()
        .context("purge_runs is not a list")?
        .iter()
        .find(|r| r["id"] == run["id"])
        .with_context(|| format!("run {} not in the audit: {audit}", run["id"]))?;
    for field in ["deleted", "held", "late", "nodes_removed", "entries"] {
        assert_eq!(audited[field], run[field], "{field} of {audited} vs {run}");
    }

    // Gone from the API and from the database file's bytes; the held node's data stays.
    assert_eq!(records(api, &gone.id, true)?, Vec::<Value>::new());
    assert_eq!(node_entry(api, &gone.id)?, None);
    assert_eq!(
        files_holding(db, &gone.marker)?,
        Vec::<PathBuf>::new(),
        "purged content is still in the database's bytes"
    );
    let dir = db.parent().context("database directory")?;
    let backups: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("pre-purge"))
        .collect();
    assert_eq!(
        backups,
        Vec::<String>::new(),
        "pre-purge backups left behind"
    );
    assert_eq!(records(api, &held.id, true)?.len(), held_count);
    ensure!(
        !files_holding(db, &held.marker)?.is_empty(),
        "held content left the database"
    );
    let summary = node_entry(api, &held.id)?.context("held node no longer listed")?;
    assert_eq!(timestamp(&summary, "terminated_at")?, at, "{summary}");

    // Once the hold is cleared, the next purge deletes them, past their deadline.
    let (status, cleared) = delete(api, &format!("/api/v1/legal-holds/{}", hold["id"]))?;
    assert_eq!(status, 200, "{cleared}");
    assert!(cleared["cleared_at"].is_string(), "{cleared}");
    let later = purge(db, &["--as-of", &(at + days(181)).to_string()])?;
    assert_eq!(later["deleted"], held_count, "{later}");
    assert_eq!(later["late"], held_count, "{later}");
    assert_eq!(later["held"], 0, "{later}");
    assert_eq!(later["nodes_removed"], 1, "{later}");
    let released = entry(&later, TERMINATED, &held.service())?;
    assert_eq!(released["deleted"], held_count, "{released}");
    assert_eq!(records(api, &held.id, true)?, Vec::<Value>::new());
    assert_eq!(node_entry(api, &held.id)?, None);
    assert_eq!(files_holding(db, &held.marker)?, Vec::<PathBuf>::new());
    let due = api.get(&format!("/api/v1/retention/due?before={}", at + days(400)))?;
    assert_eq!(due["records"], 0, "{due}");
    Ok(())
}

#[test]
fn a_terminated_node_stores_nothing_more_from_its_open_stream() -> Result<()> {
    let collector = Collector::start()?;
    let api = &collector.api;
    let mut node = Node::new("retention-open", 50)?;
    node.start_agent(&collector)?;
    let count = node.converge(&collector)?;

    // Terminated while its agent is connected; then the node changes.
    let at = now_ms()?;
    created(
        api,
        "/api/v1/terminations",
        &json!({"hosting_service": node.service(), "at": at.to_string()}),
    )?;
    node.host.generation(1)?;
    wait_for(
        ARRIVAL,
        "the agent to be refused (or its changes to be stored)",
        || {
            let written = !records(api, &node.id, false)?.is_empty();
            Ok((written || node.log().contains("terminated")).then_some(()))
        },
    )
    .with_context(|| {
        format!(
            "agent log:\n{}\ncollector log:\n{}",
            node.log(),
            collector.log()
        )
    })?;
    let live = records(api, &node.id, false)?;
    assert!(
        live.is_empty(),
        "{} records of the node terminated at {at} were stored live after it, e.g. {}\ncollector log:\n{}",
        live.len(),
        live[0],
        collector.log()
    );
    assert_eq!(records(api, &node.id, true)?.len(), count);
    Ok(())
}

#[test]
fn a_terminated_nodes_agent_is_refused_when_it_connects() -> Result<()> {
    let collector = Collector::start()?;
    let api = &collector.api;
    let (node, count) = reported(&collector, "retention-refused", 50)?;
    let at = now_ms()?;
    created(
        api,
        "/api/v1/terminations",
        &json!({"hosting_service": node.service(), "at": at.to_string()}),
    )?;
    node.host.generation(1)?;

    let mut once = Command::new(binary("census-agent"));
    once.args([
        "run",
        "--once",
        "--collector",
        &collector.grpc_url(),
        "--node-id",
        &node.id,
    ])
    .args(collector.agent_args())
    .arg("--host-root")
    .arg(node.host.root())
    .arg("--state-dir")
    .arg(node.dir.path().join("state"))
    .args([
        "--only",
        census_tests::SYNTHETIC_KINDS,
        "--runtime-socket",
        "/nonexistent/runtime.sock",
    ]);
    let refused = run_measured(&mut once, ARRIVAL)?;
    assert!(
        !refused.status.success(),
        "a terminated node's agent run succeeded: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("terminated") && refused.stderr.contains(&node.id),
        "{}",
        refused.stderr
    );
    assert_eq!(records(api, &node.id, false)?, Vec::<Value>::new());
    assert_eq!(records(api, &node.id, true)?.len(), count);
    let summary = node_entry(api, &node.id)?.context("terminated node not listed")?;
    assert_eq!(timestamp(&summary, "terminated_at")?, at, "{summary}");
    Ok(())
}

/// Everything a refused request must leave as it was.
fn snapshot(api: &Api, node: &str) -> Result<Value> {
    Ok(json!({
        "live": records(api, node, false)?,
        "archived": records(api, node, true)?,
        "nodes": api.get("/api/v1/nodes")?,
        "holds": api.get("/api/v1/legal-holds")?,
        "audit": api.get("/api/v1/retention/audit")?,
    }))
}

/// Sends a request that must be refused with `status` and an error naming `needles`;
/// checks it changed nothing.
fn refused(
    api: &Api,
    node: &str,
    what: &str,
    send: impl FnOnce() -> Result<(u16, Value)>,
    status: u16,
    needles: &[&str],
) -> Result<()> {
    let before = snapshot(api, node)?;
    let (got, body) = send()?;
    let error = body["error"]
        .as_str()
        .with_context(|| format!("{what}: no error message in {body}"))?;
    ensure!(
        got == status,
        "{what}: answered {got}, expected {status}: {error}"
    );
    for needle in needles {
        ensure!(
            error.contains(needle),
            "{what}: {error:?} does not mention {needle:?}"
        );
    }
    ensure!(
        snapshot(api, node)? == before,
        "{what}: the refused request changed the store"
    );
    Ok(())
}

#[test]
fn bad_retention_requests_are_refused_by_name_and_change_nothing() -> Result<()> {
    let collector = Collector::start()?;
    let api = &collector.api;
    let (node, _) = reported(&collector, "retention-bad", 50)?;
    let service = node.service();
    let now = now_ms()?.to_string();
    let future = (Timestamp::now() + SignedDuration::from_hours(1)).to_string();
    let floor = records(api, &node.id, false)?
        .iter()
        .map(|r| timestamp(r, "retain_until"))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max()
        .context("no records")?
        .to_string();
    let too_soon = (Timestamp::now() + days(10)).to_string();

    let cases: Vec<(&str, &str, String, u16, Vec<&str>)> = vec![
        (
            "termination in the future",
            "/api/v1/terminations",
            json!({"hosting_service": service, "at": future}).to_string(),
            422,
            vec!["at", "future"],
        ),
        (
            "termination of an unknown node",
            "/api/v1/terminations",
            json!({"hosting_service": "node:no-such-node-7f3a", "at": now}).to_string(),
            404,
            vec!["no-such-node-7f3a"],
        ),
        (
            "termination with a malformed date",
            "/api/v1/terminations",
            json!({"hosting_service": service, "at": "24/11/2026 10:00"}).to_string(),
            400,
            vec!["at", "24/11/2026 10:00", "RFC 3339"],
        ),
        (
            "termination with an unknown field",
            "/api/v1/terminations",
            json!({"hosting_service": service, "at": now, "reason": "moved"}).to_string(),
            400,
            vec!["unknown field", "reason"],
        ),
        (
            "termination of a malformed hosting service",
            "/api/v1/terminations",
            json!({"hosting_service": format!("server:{}", node.id), "at": now}).to_string(),
            400,
            vec!["hosting_service", "server:"],
        ),
        (
            "malformed JSON",
            "/api/v1/terminations",
            format!("{{\"hosting_service\": \"{service}\", \"at\": "),
            400,
            vec!["JSON"],
        ),
        (
            "deletion by a date that breaks the 180-day floor",
            "/api/v1/deletion-requests",
            json!({"hosting_service": service, "delete_by": too_soon}).to_string(),
            409,
            vec!["retention floor", "retained until", &floor],
        ),
        (
            "deletion requested in the future",
            "/api/v1/deletion-requests",
            json!({"hosting_service": service, "at": future}).to_string(),
            422,
            vec!["at", "future"],
        ),
        (
            "deletion of a key without its kind",
            "/api/v1/deletion-requests",
            json!({"hosting_service": service, "key": format!("deb/{}/amd64", node.marker)})
                .to_string(),
            400,
            vec!["key", "kind"],
        ),
        (
            "deletion of console data on a node",
            "/api/v1/deletion-requests",
            json!({"hosting_service": service, "kind": "alarm_setting"}).to_string(),
            400,
            vec!["alarm_setting", "console_configuration_data"],
        ),
        (
            "legal hold without a reason",
            "/api/v1/legal-holds",
            json!({"hosting_service": service, "reason": "  "}).to_string(),
            400,
            vec!["reason"],
        ),
        (
            "legal hold on an unknown node",
            "/api/v1/legal-holds",
            json!({"hosting_service": "node:no-such-node-7f3a", "reason": "case 1"}).to_string(),
            404,
            vec!["no-such-node-7f3a"],
        ),
    ];
    for (what, path, body, status, needles) in cases {
        refused(
            api,
            &node.id,
            what,
            || post_raw(api, path, &body),
            status,
            &needles,
        )?;
    }
    refused(
        api,
        &node.id,
        "clearing a hold that does not exist",
        || delete(api, "/api/v1/legal-holds/987654"),
        404,
        &["987654"],
    )?;
    refused(
        api,
        &node.id,
        "deadlines due before a malformed date",
        || {
            let (status, body) = api.get_raw("/api/v1/retention/due?before=tomorrow")?;
            Ok((status, serde_json::from_str(&body)?))
        },
        400,
        &["before", "tomorrow"],
    )?;
    // The floor refusal left the records without a deadline.
    for record in records(api, &node.id, false)? {
        ensure!(record["delete_by"].is_null(), "{record}");
    }

    // Terminated once; a second termination is refused and changes nothing.
    let at = now_ms()?;
    created(
        api,
        "/api/v1/terminations",
        &json!({"hosting_service": service, "at": at.to_string()}),
    )?;
    let again = (at - SignedDuration::from_hours(1)).to_string();
    refused(
        api,
        &node.id,
        "a second termination",
        || {
            post(
                api,
                "/api/v1/terminations",
                &json!({"hosting_service": service, "at": again}),
            )
        },
        409,
        &["already terminated", &service],
    )?;

    // The purge command refuses a malformed --as-of, naming it, and purges nothing.
    let before = snapshot(api, &node.id)?;
    let url = sqlite_url(&collector.db);
    let output = collector_cli(&["purge", "--db", &url, "--as-of", "next tuesday"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "purge with a malformed --as-of succeeded: {stderr}"
    );
    assert!(
        stderr.contains("--as-of") && stderr.contains("next tuesday"),
        "{stderr}"
    );
    assert_eq!(snapshot(api, &node.id)?, before);
    Ok(())
}

#[test]
fn a_backup_taken_while_serving_holds_the_records_and_is_never_overwritten() -> Result<()> {
    let collector = Collector::start()?;
    let mut node = Node::new("retention-backup", 300)?;
    // The agent keeps its stream open while the backup is taken.
    node.start_agent(&collector)?;
    let count = node.converge(&collector)?;
    let dir = tempfile::tempdir()?;
    let backup = dir.path().join("census-backup.db");
    let backup_text = backup.display().to_string();
    let url = sqlite_url(&collector.db);

    let output = collector_cli(&["backup", "--db", &url, "--to", &backup_text])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "backup failed: {stderr}");
    let copy =
        rusqlite::Connection::open_with_flags(&backup, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    assert_eq!(check, "ok");
    let copied: i64 = copy.query_row(
        "SELECT COUNT(*) FROM records WHERE node_id = ?1 AND removed_at IS NULL",
        [&node.id],
        |row| row.get(0),
    )?;
    assert_eq!(copied, i64::try_from(count)?);
    let marker: i64 = copy.query_row(
        "SELECT COUNT(*) FROM records WHERE node_id = ?1 AND key LIKE '%' || ?2 || '%'",
        [&node.id, &node.marker],
        |row| row.get(0),
    )?;
    assert_eq!(marker, 1, "the marker package is not in the backup");
    drop(copy);

    // A second backup to the same path is refused by name; the first is untouched.
    let bytes = std::fs::read(&backup)?;
    let output = collector_cli(&["backup", "--db", &url, "--to", &backup_text])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a backup over an existing file succeeded: {stderr}"
    );
    assert!(
        stderr.contains(&backup_text) && stderr.contains("exists"),
        "{stderr}"
    );
    assert!(
        std::fs::read(&backup)? == bytes,
        "the existing backup was changed"
    );
    Ok(())
}

/// The `days`-th working day after `from`'s UTC date at `from`'s time of day, counted
/// here day by day: Saturdays, Sundays and `holidays` are not working days.
fn working_days_after(from: Timestamp, days: usize, holidays: &[Date]) -> Result<Timestamp> {
    let start = from.to_zoned(TimeZone::UTC);
    let mut date = start.date();
    let mut counted = 0;
    while counted < days {
        date = date.tomorrow()?;
        if !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !holidays.contains(&date)
        {
            counted += 1;
        }
    }
    Ok(date
        .to_datetime(start.time())
        .to_zoned(TimeZone::UTC)?
        .timestamp())
}

#[test]
fn a_console_deletion_request_is_purged_on_the_thirtieth_working_day_after_holidays() -> Result<()>
{
    // Requested an hour ago; two weekdays and one Saturday of the 30 working days
    // that follow are holidays.
    let at = now_ms()? - SignedDuration::from_hours(1);
    let weekdays: Vec<Date> = {
        let mut date = at.to_zoned(TimeZone::UTC).date();
        let mut found = Vec::new();
        while found.len() < 12 {
            date = date.tomorrow()?;
            if !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) {
                found.push(date);
            }
        }
        found
    };
    let saturday = {
        let mut date = weekdays[0];
        while date.weekday() != Weekday::Saturday {
            date = date.tomorrow()?;
        }
        date
    };
    let holidays = [weekdays[1], weekdays[8], saturday];
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("holidays");
    std::fs::write(
        &file,
        format!(
            "# test calendar\n{} first\n\n{}\n{} # a Saturday anyway\n",
            holidays[0], holidays[1], holidays[2]
        ),
    )?;
    let file_text = file.display().to_string();
    let collector = Collector::start_with(&["--holidays", &file_text])?;
    let api = &collector.api;
    let policy = api.get("/api/v1/retention/policy")?;
    let mut listed: Vec<String> = holidays.iter().map(|d| d.to_string()).collect();
    listed.sort();
    assert_eq!(policy["calendar"]["holidays"], json!(listed), "{policy}");

    let deadline = working_days_after(at, 30, &holidays)?;
    let without_holidays = working_days_after(at, 30, &[])?;
    ensure!(
        deadline > without_holidays && deadline == working_days_after(at, 32, &[])?,
        "the holidays should move the deadline by two working days: {deadline} vs {without_holidays}"
    );

    // A console item holding a marker, then a deletion request for it made at `at`.
    let marker = format!("census-marker-{:016x}", fastrand::u64(..));
    let key = format!("retention-{}", fastrand::u32(..));
    let path = format!("/api/v1/config/ignore_rule/{key}");
    let (status, item) = answer(
        api,
        "PUT",
        &path,
        Some(
            &json!({"rule_type": "vulnerability", "pattern": marker, "reason": "test"}).to_string(),
        ),
    )?;
    ensure!(status == 201, "PUT {path} answered {status}: {item}");
    let (status, missing) = post(
        api,
        "/api/v1/deletion-requests",
        &json!({"hosting_service": "feature", "kind": "ignore_rule", "key": "no-such-item", "at": at.to_string()}),
    )?;
    assert_eq!(status, 404, "{missing}");
    let error = missing["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no records") && error.contains("no-such-item"),
        "{missing}"
    );

    let request = created(
        api,
        "/api/v1/deletion-requests",
        &json!({"hosting_service": "feature", "kind": "ignore_rule", "key": key, "at": at.to_string()}),
    )?;
    assert_eq!(request["rule"], "console_deletion_request", "{request}");
    assert_eq!(request["records"], 1, "{request}");
    assert_eq!(timestamp(&request, "at")?, at, "{request}");
    assert_eq!(
        timestamp(&request, "earliest_delete_by")?,
        deadline,
        "{request}"
    );
    assert_eq!(
        timestamp(&request, "latest_delete_by")?,
        deadline,
        "{request}"
    );
    let stored = api.get(&path)?;
    assert_eq!(timestamp(&stored, "delete_by")?, deadline, "{stored}");
    assert_eq!(
        stored["delete_rule"], "console_deletion_request",
        "{stored}"
    );
    assert!(
        stored["deleted_at"].is_string(),
        "no longer applies: {stored}"
    );

    // Due on the deadline, not a millisecond before.
    let just_before = deadline - SignedDuration::from_millis(1);
    let due = api.get(&format!("/api/v1/retention/due?before={just_before}"))?;
    assert_eq!(due_group(&due, "feature")?, None, "{due}");
    let due = api.get(&format!("/api/v1/retention/due?before={deadline}"))?;
    let group = due_group(&due, "feature")?.with_context(|| format!("{due}"))?;
    assert_eq!(group["tier"], "console", "{group}");
    assert_eq!(group["rule"], "console_deletion_request", "{group}");
    assert_eq!(group["category"], "console_configuration_data", "{group}");
    assert_eq!(group["records"], 1, "{group}");

    let db = &collector.db;
    let early = purge(db, &["--as-of", &just_before.to_string()])?;
    assert_eq!(early["deleted"], 0, "{early}");
    ensure!(
        !files_holding(db, &marker)?.is_empty(),
        "the item left the database before its deadline"
    );
    let run = purge(db, &["--as-of", &deadline.to_string()])?;
    assert_eq!(run["deleted"], 1, "{run}");
    assert_eq!(run["late"], 0, "{run}");
    let purged = entry(&run, "console_deletion_request", "feature")?;
    assert_eq!(purged["category"], "console_configuration_data", "{purged}");
    assert_eq!(purged["deleted"], 1, "{purged}");
    assert_eq!(
        timestamp(purged, "earliest_delete_by")?,
        deadline,
        "{purged}"
    );
    assert_eq!(api.get_raw(&path)?.0, 404);
    assert_eq!(
        files_holding(db, &marker)?,
        Vec::<PathBuf>::new(),
        "the purged item is still in the database's bytes"
    );

    // A holidays file with a bad date stops serve before it listens, naming the line.
    let bad = dir.path().join("bad-holidays");
    std::fs::write(&bad, "2026-12-25\n2026-13-01 no such month\n")?;
    let mut serve = Command::new(binary("census-collector"));
    serve
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--db")
        .arg(sqlite_url(&dir.path().join("bad.db")))
        .arg("--holidays")
        .arg(&bad);
    let stopped = run_measured(&mut serve, ARRIVAL)?;
    assert!(
        !stopped.status.success(),
        "serve started with a bad holidays file"
    );
    assert!(
        stopped.stderr.contains(&bad.display().to_string()) && stopped.stderr.contains("line 2"),
        "{}",
        stopped.stderr
    );
    Ok(())
}
