//! The host asset kinds against real components of this machine: accounts against
//! getent, Debian's nginx and PostgreSQL started by the test, and the agent's answer
//! to a hostile host root.
use std::collections::BTreeSet;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use census_tests::{
    Running, binary, command_output, free_port, run_measured, scan_json, wait_for_port,
};
use serde_json::Value;

fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

#[test]
fn accounts_equal_getent_passwd() -> Result<()> {
    let (records, _) = scan_json(&["--only", "account"])?;
    let agent: BTreeSet<(String, u64, u64, String, String)> = of_kind(&records, "account")
        .iter()
        .map(|r| {
            let f = &r["fields"];
            let text = |name: &str| f[name].as_str().unwrap_or_default().to_string();
            (
                text("name"),
                f["uid"].as_u64().unwrap_or(u64::MAX),
                f["gid"].as_u64().unwrap_or(u64::MAX),
                text("home"),
                text("shell"),
            )
        })
        .collect();
    let getent: BTreeSet<(String, u64, u64, String, String)> =
        command_output("getent", &["passwd"])?
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                    f.get(5)?.to_string(),
                    f.get(6)?.to_string(),
                ))
            })
            .collect();
    ensure!(
        getent.len() > 3,
        "getent listed only {} accounts",
        getent.len()
    );
    let missing: Vec<_> = getent.difference(&agent).collect();
    let phantom: Vec<_> = agent.difference(&getent).collect();
    ensure!(
        missing.is_empty() && phantom.is_empty(),
        "missing: {missing:?}; not in getent: {phantom:?}"
    );
    let root = of_kind(&records, "account")
        .into_iter()
        .find(|r| r["key"] == "root")
        .context("no root account")?;
    ensure!(
        !root.to_string().contains("$6$") && !root.to_string().contains("$y$"),
        "a hash leaked: {root}"
    );
    Ok(())
}

/// Debian's nginx, started by the test on a loopback port with a server block of its own.
#[test]
fn a_running_nginx_yields_a_web_service_and_its_site() -> Result<()> {
    let nginx = "/usr/sbin/nginx";
    ensure!(
        Path::new(nginx).exists(),
        "{nginx} is missing: tests/run installs Debian's nginx package"
    );
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let prefix = dir.path();
    std::fs::create_dir_all(prefix.join("www"))?;
    std::fs::create_dir_all(prefix.join("sites"))?;
    let config = prefix.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  \
             scgi_temp_path {p}/scgi;\n  include {p}/sites/*.conf;\n}}\n",
            p = prefix.display()
        ),
    )?;
    std::fs::write(
        prefix.join("sites/census.conf"),
        format!(
            "server {{\n  listen 127.0.0.1:{port};\n  server_name census-test.local;\n  root {}/www;\n}}\n",
            prefix.display()
        ),
    )?;
    let _nginx = Running::group(
        Command::new(nginx)
            .arg("-c")
            .arg(&config)
            .args(["-g", "daemon off; master_process on; worker_processes 2;"])
            .stderr(Stdio::null()),
        "nginx",
    )?;
    wait_for_port(port, Duration::from_secs(20), "nginx to listen")?;

    let (records, _) = scan_json(&["--only", "web_service,web_site,web_application"])?;
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let service = of_kind(&records, "web_service")
        .into_iter()
        .find(|r| {
            r["fields"]["listen"]
                .as_array()
                .is_some_and(|l| l.iter().any(|e| e == endpoint.as_str()))
        })
        .with_context(|| format!("no web_service listening on {endpoint}: {records:?}"))?;
    assert_eq!(service["fields"]["server"], "nginx");
    assert_eq!(service["fields"]["config"], config.display().to_string());
    let installed = command_output("dpkg-query", &["-W", "-f", "${Version}", "nginx"])?;
    assert_eq!(
        service["fields"]["version"],
        installed.as_str(),
        "version from Debian's package"
    );
    assert_eq!(service["key"], format!("nginx@{endpoint}"));

    let site = of_kind(&records, "web_site")
        .into_iter()
        .find(|r| r["fields"]["server_names"][0] == "census-test.local")
        .with_context(|| format!("no web_site for census-test.local: {records:?}"))?;
    assert_eq!(site["fields"]["listen"][0], format!("127.0.0.1:{port}"));
    assert_eq!(
        site["fields"]["config_file"],
        prefix.join("sites/census.conf").display().to_string()
    );
    assert_eq!(site["fields"]["root"], format!("{}/www", prefix.display()));
    let app = of_kind(&records, "web_application")
        .into_iter()
        .find(|r| r["fields"]["path"] == format!("{}/www", prefix.display()));
    ensure!(
        app.is_some(),
        "the document root is a web_application: {records:?}"
    );
    Ok(())
}

/// Debian's PostgreSQL server, a cluster of the test's own on a loopback port.
#[test]
fn a_running_postgresql_yields_a_database() -> Result<()> {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed: tests/run installs Debian's postgresql package")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .find(|b| b.join("postgres").exists())
        .context("no /usr/lib/postgresql/*/bin/postgres")?;
    let major = bin
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port()?;
    // initdb and postgres refuse to run as root: the cluster belongs to the postgres user.
    let uid = command_output("id", &["-u", "postgres"])
        .context("no postgres user")?
        .trim()
        .parse::<u32>()?;
    std::os::unix::fs::chown(dir.path(), Some(uid), None)?;
    let as_postgres = |program: &Path| {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    };
    let initdb = as_postgres(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .output()
        .context("cannot run initdb via runuser (the test must run as root)")?;
    ensure!(
        initdb.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let _postgres = Running::group(
        as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(dir.path())
            .stderr(Stdio::null()),
        "postgres",
    )?;
    wait_for_port(port, Duration::from_secs(60), "postgres to listen")?;

    let (records, _) = scan_json(&["--only", "database"])?;
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let database = of_kind(&records, "database")
        .into_iter()
        .find(|r| {
            r["fields"]["listen"]
                .as_array()
                .is_some_and(|l| l.iter().any(|e| e == endpoint.as_str()))
        })
        .with_context(|| format!("no database listening on {endpoint}: {records:?}"))?;
    let fields = &database["fields"];
    assert_eq!(fields["engine"], "postgresql");
    assert_eq!(fields["data_dir"], data.display().to_string());
    assert_eq!(fields["user"], "postgres");
    let version = fields["version"].as_str().unwrap_or_default();
    ensure!(
        version.starts_with(&major),
        "version {version:?} is not of PostgreSQL {major}"
    );
    assert_eq!(database["key"], format!("postgresql@{endpoint}"));
    Ok(())
}

fn write(root: &Path, path: &str, bytes: &[u8]) -> Result<()> {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().context("parent")?)?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// A jar whose manifest and nested jar inflate to a gigabyte each.
fn zip_bomb() -> Result<Vec<u8>> {
    use std::io::Write;
    let zeros = vec![0u8; 1 << 20];
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut buffer);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for name in ["META-INF/MANIFEST.MF", "BOOT-INF/lib/inner.jar"] {
        writer.start_file(name, options)?;
        for _ in 0..1024 {
            writer.write_all(&zeros)?;
        }
    }
    writer.finish()?;
    Ok(buffer.into_inner())
}

/// Binary garbage, oversized files, a FIFO, symlink loops and a zip bomb: the scan
/// finishes in bounded time and memory, warns naming each path, and reports the rest.
#[test]
fn a_hostile_host_root_costs_warnings_not_the_agent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let mut garbage = vec![0u8; 64 * 1024];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut garbage {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    write(root, "var/lib/dpkg/status", &garbage)?;
    write(root, "etc/passwd", &vec![b'x'; 17 * 1024 * 1024])?;
    std::fs::create_dir_all(root.join("etc"))?;
    symlink("os-release", root.join("etc/os-release"))?;
    ensure!(
        Command::new("mkfifo")
            .arg(root.join("etc/group"))
            .status()?
            .success(),
        "mkfifo failed"
    );
    std::fs::create_dir_all(root.join("opt/app"))?;
    symlink("/opt", root.join("opt/app/loop"))?;
    symlink("../..", root.join("opt/app/up"))?;
    write(root, "opt/app/bomb-1.0.jar", &zip_bomb()?)?;
    write(root, "opt/app/node_modules/evil/package.json", &garbage)?;
    write(
        root,
        "opt/app/node_modules/fine/package.json",
        br#"{"name":"fine","version":"1.0.0"}"#,
    )?;
    write(
        root,
        "usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
        &garbage,
    )?;
    write(root, "etc/crontab", &garbage)?;
    write(root, "lib/systemd/system/garbage.service", &garbage)?;
    write(
        root,
        "etc/nginx/nginx.conf",
        b"http { server { listen 80; \"unterminated }\n",
    )?;

    let measured = run_measured(
        Command::new(binary("census-agent"))
            .args(["scan", "--format", "json", "--host-root"])
            .arg(root),
        Duration::from_secs(120),
    )?;
    let records: Vec<Value> = measured
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let keys: Vec<&str> = records.iter().filter_map(|r| r["key"].as_str()).collect();
    ensure!(
        keys.contains(&"npm/fine@/opt/app/node_modules/fine"),
        "good package lost among bad ones: {keys:?}"
    );
    ensure!(
        keys.contains(&"jar/bomb@/opt/app/bomb-1.0.jar"),
        "the bomb jar is still named: {keys:?}"
    );
    // A gigabyte bomb read naively would need far more than this.
    ensure!(
        measured.peak_rss_kib < 256 * 1024,
        "peak RSS {} KiB",
        measured.peak_rss_kib
    );

    let shown = |path: &str| root.join(path).display().to_string();
    let expectations = [
        (shown("var/lib/dpkg/status"), "skipped malformed input"),
        (shown("etc/passwd"), "larger than"),
        (shown("etc/os-release"), "too many levels of symbolic links"),
        (shown("etc/group"), "not a regular file"),
        (
            format!("{}:META-INF/MANIFEST.MF", shown("opt/app/bomb-1.0.jar")),
            "decompresses to more than",
        ),
        (
            shown("opt/app/node_modules/evil/package.json"),
            "malformed package.json",
        ),
        (
            shown("usr/lib/python3/dist-packages/x-1.dist-info/METADATA"),
            "malformed python metadata",
        ),
        (shown("etc/crontab"), "skipped malformed input"),
        (
            shown("etc/nginx/nginx.conf"),
            "malformed nginx configuration",
        ),
    ];
    for (path, message) in expectations {
        let warned = measured
            .stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&path) && l.contains(message));
        ensure!(
            warned,
            "no warning {message:?} naming {path} in:\n{}",
            measured.stderr
        );
    }
    ensure!(!measured.stderr.contains("panicked"), "{}", measured.stderr);
    Ok(())
}

/// A process started with planted secrets in its environment and arguments.
#[test]
fn planted_secrets_appear_nowhere() -> Result<()> {
    let nonce = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
    let password = format!("Pw{nonce}x");
    let option = format!("Opt{nonce}y");
    let token = format!("ghp_{:0>36}", &nonce[nonce.len().saturating_sub(20)..]);
    let url_secret = format!("Url{nonce}z");
    let child = Command::new(env!("CARGO_BIN_EXE_census-marker"))
        .arg(format!("--password={option}"))
        .arg(format!("postgres://app:{url_secret}@db.internal/main"))
        .env("CENSUS_TEST_PASSWORD", &password)
        .env("DEPLOY_NOTE", format!("deploy with {token}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let marker = Running {
        child,
        name: "census-marker",
    };
    let secrets = [
        password.as_str(),
        option.as_str(),
        token.as_str(),
        url_secret.as_str(),
    ];
    let leaks = |what: &str, bytes: &[u8]| -> Result<()> {
        for secret in secrets {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                bail!("secret {secret} found in {what}");
            }
        }
        Ok(())
    };
    // The marker must be visible before we can say its secrets are hidden.
    let (records, stderr) = scan_json(&["--only", "process,environment_variable"])?;
    let pid = marker.pid();
    let env = |name: &str| {
        records
            .iter()
            .find(|r| {
                r["kind"] == "environment_variable"
                    && r["fields"]["pid"] == pid
                    && r["fields"]["name"] == name
            })
            .cloned()
    };
    let password_var = env("CENSUS_TEST_PASSWORD").context("marker's environment not scanned")?;
    assert_eq!(password_var["fields"]["redacted_by"], "secret-name");
    assert_eq!(
        env("DEPLOY_NOTE").context("DEPLOY_NOTE")?["fields"]["redacted_by"],
        "github-token"
    );
    let process = records
        .iter()
        .find(|r| r["kind"] == "process" && r["fields"]["pid"] == pid)
        .context("marker process")?;
    let cmdline = process["fields"]["cmdline"].to_string();
    ensure!(
        cmdline.contains("--password=<redacted:secret-option:")
            && cmdline.contains("postgres://app:<redacted:url-credentials:"),
        "{cmdline}"
    );
    let scan_text = serde_json::to_string(&records)?;
    leaks("scan output", scan_text.as_bytes())?;
    leaks("scan log", stderr.as_bytes())?;

    // Through the pipeline: agent state, collector database files and both logs.
    let collector = census_tests::Collector::start()?;
    let state = tempfile::tempdir()?;
    let node = census_tests::node_id("secrets");
    let run = Command::new(binary("census-agent"))
        .args([
            "run",
            "--once",
            "--only",
            "process,environment_variable",
            "--collector",
            &collector.grpc_url(),
            "--node-id",
            &node,
        ])
        .args(collector.agent_args())
        .arg("--state-dir")
        .arg(state.path())
        .env("CENSUS_LOG", "debug")
        .output()?;
    ensure!(
        run.status.success(),
        "agent run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    leaks("agent log", &run.stderr)?;
    let stored = collector.api.records_where(&format!(
        "node={node}&kind=environment_variable&q=CENSUS_TEST_PASSWORD"
    ))?;
    ensure!(
        !stored.is_empty(),
        "the redacted variable reached the collector"
    );
    // The state dir, its spool included.
    let mut dirs = vec![state.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for file in std::fs::read_dir(&dir)?.flatten() {
            if file.file_type()?.is_dir() {
                dirs.push(file.path());
                continue;
            }
            leaks(
                &format!("agent state {}", file.path().display()),
                &std::fs::read(file.path())?,
            )?;
        }
    }
    let db_dir = collector.db.parent().context("db dir")?;
    for file in std::fs::read_dir(db_dir)?.flatten() {
        let bytes = std::fs::read(file.path())?;
        leaks(&format!("collector file {}", file.path().display()), &bytes)?;
    }
    leaks("collector log", collector.log().as_bytes())?;
    let api = collector
        .api
        .get(&format!("/api/v1/records?node={node}&limit=10000"))?;
    leaks("collector API", api.to_string().as_bytes())?;
    let mode = std::fs::metadata(state.path().join("redaction-key"))?
        .permissions()
        .mode();
    ensure!(
        mode & 0o077 == 0,
        "redaction key readable by others: {mode:o}"
    );
    Ok(())
}
