//! The agent is passive: it talks only to its collector, keeps secrets on the node,
//! and stays inside its budget. Real binaries, a real Docker image, strace.
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use census_tests::{
    Collector, ImageGuard, Running, SyntheticHost, binary, docker_build, node_id, wait_for,
};
use serde_json::Value;

/// Every record the collector holds for `node`, all kinds, as the API serves them.
fn api_dump(collector: &Collector, node: &str) -> Result<String> {
    let records = collector.api.get(&format!(
        "/api/v1/records?node={node}&include_removed=true&limit=10000"
    ))?;
    let nodes = collector.api.get("/api/v1/nodes")?;
    Ok(format!("{records}\n{nodes}"))
}

/// The database file and its WAL, as bytes on disk.
fn database_bytes(collector: &Collector) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(&collector.db)?;
    for suffix in ["-wal", "-shm"] {
        let path = format!("{}{suffix}", collector.db.display());
        if let Ok(more) = std::fs::read(&path) {
            bytes.extend(more);
        }
    }
    Ok(bytes)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn the_agent_connects_only_to_its_collector() -> Result<()> {
    let collector = Collector::start()?;
    let node = node_id("strace");
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("agent.strace");
    let output = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
        ])
        .arg(&trace)
        .arg(binary("census-agent"))
        .args(["run", "--once", "--node-id", &node, "--collector"])
        .arg(collector.grpc_url())
        .args(collector.agent_args())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .context("cannot run strace (Debian's strace package; ./tests/run installs it)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "the traced agent failed: {stderr}");
    // It scanned the whole host (every kind) and delivered.
    let nodes = collector.api.get("/api/v1/nodes")?;
    let ours = nodes["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == node.as_str()))
        .context("the node is listed")?;
    ensure!(
        ours["record_counts"]["process"].as_u64().unwrap_or(0) > 0,
        "{ours}"
    );

    let port = collector.grpc.rsplit(':').next().context("grpc port")?;
    let to_collector = format!("sin_port=htons({port}), sin_addr=inet_addr(\"127.0.0.1\")");
    let text = std::fs::read_to_string(&trace)?;
    let mut collector_connects = 0;
    let mut local = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(call) = ["connect(", "sendto(", "sendmsg("]
            .iter()
            .find(|c| line.contains(*c))
        else {
            continue;
        };
        if line.contains("AF_INET") {
            // AF_INET or AF_INET6: only ever the collector.
            ensure!(
                line.contains(&to_collector),
                "the agent reached something other than its collector {}: {line}",
                collector.grpc
            );
            collector_connects += usize::from(*call == "connect(");
        } else if let Some(family) = line.split("sa_family=").nth(1) {
            local.insert(
                family
                    .split([',', '}'])
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    ensure!(
        collector_connects > 0,
        "no connection to the collector traced: {text}"
    );
    // Everything else is local: Unix sockets (runtime sockets), netlink (sockets list).
    ensure!(
        local.iter().all(|f| f == "AF_UNIX" || f == "AF_NETLINK"),
        "unexpected socket families: {local:?}"
    );
    Ok(())
}

/// A Docker image holding secrets in its layers, configuration and history; its
/// guard and id.
fn planted_image(secrets: &Secrets) -> Result<(ImageGuard, String)> {
    let tag = format!("census-planted-{}:1", std::process::id());
    let context = tempfile::tempdir()?;
    let app = context.path().join("app");
    std::fs::create_dir_all(app.join("node_modules/leaky"))?;
    std::fs::write(app.join(".env"), format!("DB_PASSWORD={}\n", secrets.file))?;
    std::fs::write(
        app.join("node_modules/leaky/package.json"),
        format!(
            r#"{{"name": "leaky", "version": "1.0.0", "homepage": "https://deploy:{}@git.example.com/leaky"}}"#,
            secrets.url
        ),
    )?;
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM scratch\nLABEL org.census.test=planted deploy.password={}\nENV API_TOKEN={}\nCOPY app/ /app/\n",
            secrets.label, secrets.image_env
        ),
    )?;
    docker_build(context.path(), &tag)
}

/// Distinct random secrets, one per place they are planted.
struct Secrets {
    env: String,
    env_url: String,
    arg: String,
    arg_next: String,
    file: String,
    url: String,
    label: String,
    image_env: String,
}

impl Secrets {
    fn new() -> Self {
        let secret = || format!("s3cr3t{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..));
        Secrets {
            env: secret(),
            env_url: secret(),
            arg: secret(),
            arg_next: secret(),
            file: secret(),
            url: secret(),
            label: secret(),
            image_env: secret(),
        }
    }

    fn all(&self) -> [(&'static str, &str); 8] {
        [
            ("environment variable", &self.env),
            ("URL in an environment variable", &self.env_url),
            ("--db-password=", &self.arg),
            ("--token VALUE", &self.arg_next),
            ("file in an image layer", &self.file),
            ("URL in a package.json in an image layer", &self.url),
            ("image label", &self.label),
            ("image ENV (history)", &self.image_env),
        ]
    }
}

#[test]
fn planted_secrets_never_reach_the_collector() -> Result<()> {
    let secrets = Secrets::new();
    let (_image, image_id) = planted_image(&secrets)?;
    let collector = Collector::start()?;
    let node = node_id("planted");
    let dir = tempfile::tempdir()?;

    // A process with secrets in its environment and on its command line.
    let mut marker = Command::new(binary("census-marker"));
    marker
        .args([
            "--db-password=".to_string() + &secrets.arg,
            "--token".into(),
            secrets.arg_next.clone(),
        ])
        .env("CENSUS_PLANTED_API_TOKEN", &secrets.env)
        .env(
            "CENSUS_PLANTED_DATABASE_URL",
            format!("postgres://app:{}@db.internal:5432/main", secrets.env_url),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let marker = Running::group(&mut marker, "census-marker")?;
    let pid = marker.pid();

    let log = dir.path().join("agent.log");
    let status = Command::new(binary("census-agent"))
        .args(["run", "--once", "--node-id", &node, "--collector"])
        .arg(collector.grpc_url())
        .args(collector.agent_args())
        .args([
            "--only",
            "process,environment_variable,image,image_history,package",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "census_agent=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .status()?;
    ensure!(
        status.success(),
        "agent failed: {}",
        std::fs::read_to_string(&log)?
    );

    // The planted places were collected: the test looks where the secrets were.
    let processes = collector.api.records_where(&format!(
        "node={node}&kind=process&q=census-marker&limit=100"
    ))?;
    let process = processes
        .iter()
        .find(|p| p["fields"]["pid"] == pid)
        .with_context(|| format!("marker process {pid} not collected"))?;
    let cmdline = process["fields"]["cmdline"].to_string();
    ensure!(
        cmdline.contains("--db-password=<redacted:") && cmdline.contains("--token\",\"<redacted:"),
        "{cmdline}"
    );
    let env = collector.api.records_where(&format!(
        "node={node}&kind=environment_variable&q=CENSUS_PLANTED_API_TOKEN&limit=100"
    ))?;
    ensure!(
        !env.is_empty(),
        "the planted environment variable was not collected"
    );
    let history = collector.api.records_where(&format!(
        "node={node}&kind=image_history&q={}&limit=100",
        image_id.trim()
    ))?;
    let steps: Vec<&Value> = history.iter().map(|h| &h["fields"]["created_by"]).collect();
    ensure!(
        steps.iter().any(|s| s
            .as_str()
            .is_some_and(|s| s.contains("API_TOKEN=<redacted:"))),
        "{steps:?}"
    );
    let images = collector.api.records_where(&format!(
        "node={node}&kind=image&q={}&limit=10",
        image_id.trim()
    ))?;
    let labels = images
        .first()
        .map(|i| i["fields"]["labels"].to_string())
        .unwrap_or_default();
    ensure!(
        labels.contains("deploy.password") && labels.contains("<redacted:"),
        "{labels}"
    );

    // Nowhere at the collector: database bytes, its log, its API; nor in the agent's log.
    let (bytes, collector_log) = (database_bytes(&collector)?, collector.log());
    let (agent_log, api) = (std::fs::read_to_string(&log)?, api_dump(&collector, &node)?);
    for (place, secret) in secrets.all() {
        ensure!(
            !contains(&bytes, secret),
            "the {place} secret is in the database file"
        );
        ensure!(
            !collector_log.contains(secret),
            "the {place} secret is in the collector log"
        );
        ensure!(
            !api.contains(secret),
            "the {place} secret is served by the API"
        );
        ensure!(
            !agent_log.contains(secret),
            "the {place} secret is in the agent log"
        );
    }
    drop(marker);
    Ok(())
}

#[test]
fn the_agent_runs_at_low_priority_and_reports_its_budget() -> Result<()> {
    let collector = Collector::start()?;
    let host = SyntheticHost::new(100)?;
    let dir = tempfile::tempdir()?;
    let node = node_id("budget");
    let log = dir.path().join("agent.log");
    // A memory budget no agent fits in: the watchdog must notice, report and back off.
    let agent = host.agent(
        &collector.grpc_url(),
        &collector.agent_args(),
        &dir.path().join("state"),
        &node,
        &log,
        &["--memory-budget-mib", "1", "--cpu-budget-millicores", "100"],
    )?;
    // The agent lowers its own priority as it starts.
    let stat_path = format!("/proc/{}/stat", agent.pid());
    let nice = |stat: &str| -> Option<i64> {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(16))
            .and_then(|n| n.parse().ok())
    };
    wait_for(
        Duration::from_secs(10),
        "the agent to run at nice 10",
        || {
            let stat = std::fs::read_to_string(&stat_path)?;
            Ok((nice(&stat) == Some(10)).then_some(()))
        },
    )
    .with_context(|| std::fs::read_to_string(&stat_path).unwrap_or_default())?;

    let health = wait_for(Duration::from_secs(60), "the over-budget report", || {
        let nodes = collector.api.get("/api/v1/nodes")?;
        Ok(nodes["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == node.as_str()))
            .map(|n| n["health"].clone())
            .filter(|h| h["memory_over_budget"].as_u64().unwrap_or(0) > 0))
    })?;
    assert_eq!(health["memory_budget_bytes"], 1024 * 1024, "{health}");
    assert_eq!(health["cpu_budget_millicores"], 100, "{health}");
    assert!(
        health["rss_bytes"].as_u64().unwrap_or(0) > 1024 * 1024,
        "{health}"
    );
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("over the memory budget"), "{text}");
    Ok(())
}
