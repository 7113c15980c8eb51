//! Harness for census end-to-end tests: builds and starts the real binaries, talks to
//! them over loopback, and cleans up (children are killed when dropped).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod frames;

/// Path of a workspace binary (`census-agent`, `census-collector`), built on first use
/// with the same profile as the running test, so tests never run stale binaries.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> (tests) or target/<profile>/<bin> (benches) -> target/<profile>
        let parent = exe.parent().expect("target dir");
        let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
            parent.parent().expect("target profile dir")
        } else {
            parent
        }
        .to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "census-agent",
            "-p",
            "census-collector",
        ]);
        build.current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile != "debug" {
            build.args(["--profile", profile]);
        }
        let status = build
            .status()
            .expect("cannot run cargo build for the census binaries");
        assert!(
            status.success(),
            "cargo build of census-agent and census-collector failed"
        );
        profile_dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    pub name: &'static str,
}

impl Running {
    /// Starts `command` in a process group of its own, so that [`Running::kill`] also
    /// stops what it forks (nginx workers, postgres under runuser).
    pub fn group(command: &mut Command, name: &'static str) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Running { child, name })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (and its process group, when it leads one) and waits for it.
    pub fn kill(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The enrollment secret every test collector accepts.
pub const ENROLLMENT_SECRET: &str = "census-test-enrollment-secret-1";
/// API tokens every test collector accepts.
pub const ADMIN_TOKEN: &str = "census-test-admin-token-1";
pub const READ_TOKEN: &str = "census-test-read-token-1";

/// A test certificate authority with a collector certificate (for `localhost` and
/// `127.0.0.1`) and an agent client certificate, all PEM files in a temporary dir.
#[derive(Debug)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(name: &str) -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let leaf = |names: Vec<String>, file: &str| -> Result<(PathBuf, PathBuf)> {
            let key = KeyPair::generate()?;
            let cert = CertificateParams::new(names)?.signed_by(&key, &ca)?;
            let (cert_path, key_path) = (
                dir.path().join(format!("{file}.pem")),
                dir.path().join(format!("{file}.key")),
            );
            std::fs::write(&cert_path, cert.pem())?;
            std::fs::write(&key_path, key.serialize_pem())?;
            Ok((cert_path, key_path))
        };
        let (server_cert, server_key) =
            leaf(vec!["localhost".into(), "127.0.0.1".into()], "collector")?;
        let (client_cert, client_key) = leaf(vec!["census-agent".into()], "agent")?;
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem())?;
        Ok(Pki {
            ca: ca_path,
            server_cert,
            server_key,
            client_cert,
            client_key,
            _dir: dir,
        })
    }
}

/// How a test collector is secured: TLS files (with the client CA for mutual TLS) or
/// plain text.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate the agent presents, required by the collector when set.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Tls {
    pub fn of(pki: &Pki, mutual: bool) -> Self {
        Tls {
            ca: pki.ca.clone(),
            server_cert: pki.server_cert.clone(),
            server_key: pki.server_key.clone(),
            client: mutual.then(|| (pki.client_cert.clone(), pki.client_key.clone())),
        }
    }
}

/// A collector serving a fresh SQLite file on loopback ports the OS picked.
#[derive(Debug)]
pub struct Collector {
    pub process: Running,
    pub grpc: String,
    pub api: Api,
    pub db: PathBuf,
    /// The enrollment secret file (also what `--enrollment-secrets` reads).
    pub enrollment_secret: PathBuf,
    pub tls: Option<Tls>,
    /// Extra `serve` flags, kept across restarts.
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl Collector {
    pub fn start() -> Result<Self> {
        Collector::start_with(&[])
    }

    /// Like [`Collector::start`], with extra `serve` flags (e.g. `--holidays FILE`).
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        Collector::start_secured(None, extra)
    }

    /// A collector with TLS (`Some`) or plain text, enrollment secret
    /// [`ENROLLMENT_SECRET`] and API tokens [`ADMIN_TOKEN`] and [`READ_TOKEN`].
    pub fn start_secured(tls: Option<Tls>, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("census.db");
        let enrollment_secret = dir.path().join("enrollment-secrets");
        std::fs::write(&enrollment_secret, format!("{ENROLLMENT_SECRET}\n"))?;
        let tokens = dir.path().join("api-tokens");
        std::fs::write(&tokens, format!("admin {ADMIN_TOKEN}\nread {READ_TOKEN}\n"))?;
        let mut flags: Vec<String> = vec![
            "--enrollment-secrets".into(),
            enrollment_secret.display().to_string(),
            "--api-tokens".into(),
            tokens.display().to_string(),
        ];
        match &tls {
            Some(tls) => {
                flags.extend([
                    "--tls-cert".into(),
                    tls.server_cert.display().to_string(),
                    "--tls-key".into(),
                    tls.server_key.display().to_string(),
                ]);
                if tls.client.is_some() {
                    flags.extend(["--tls-client-ca".into(), tls.ca.display().to_string()]);
                }
            }
            None => flags.push("--insecure-plaintext".into()),
        }
        flags.extend(extra.iter().map(|s| s.to_string()));
        let (process, grpc, http) =
            spawn_collector(&db, "127.0.0.1:0", "127.0.0.1:0", dir.path(), &flags)?;
        Ok(Collector {
            process,
            grpc,
            api: Api {
                http,
                token: Some(ADMIN_TOKEN.into()),
                tls: tls.clone(),
            },
            db,
            enrollment_secret,
            tls,
            extra: flags,
            dir,
        })
    }

    /// `census-agent run` flags to reach this collector: TLS (or plain text) and the
    /// enrollment secret.
    pub fn agent_args(&self) -> Vec<String> {
        let mut args = match &self.tls {
            None => vec!["--insecure-plaintext".to_string()],
            Some(tls) => {
                let mut args = vec!["--ca".to_string(), tls.ca.display().to_string()];
                if let Some((cert, key)) = &tls.client {
                    args.extend([
                        "--tls-cert".to_string(),
                        cert.display().to_string(),
                        "--tls-key".to_string(),
                        key.display().to_string(),
                    ]);
                }
                args
            }
        };
        args.extend([
            "--enrollment-secret-file".to_string(),
            self.enrollment_secret.display().to_string(),
        ]);
        args
    }

    /// The directory of the collector's database, log and secrets files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the collector with SIGKILL (no shutdown, nothing flushed).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the collector again on the same ports and database.
    pub fn start_again(&mut self) -> Result<()> {
        self.process.kill();
        let mut attempts = 0;
        loop {
            match spawn_collector(
                &self.db,
                &self.grpc,
                &self.api.http,
                self.dir.path(),
                &self.extra,
            ) {
                Ok((process, _, _)) => {
                    self.process = process;
                    return Ok(());
                }
                // The port may still be held for a moment by the killed process.
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub fn grpc_url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.grpc),
            None => format!("http://{}", self.grpc),
        }
    }

    /// The collector's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.log")).unwrap_or_default()
    }
}

/// The collector's HTTP API at `http` (host:port), called with `token`.
#[derive(Debug, Clone)]
pub struct Api {
    pub http: String,
    pub token: Option<String>,
    /// Set when the collector serves TLS: its CA is trusted, and the client
    /// certificate, if any, presented.
    pub tls: Option<Tls>,
}

impl Api {
    /// The same API called with another bearer token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        match self.tls {
            Some(_) => format!("https://{}{path_and_query}", self.http),
            None => format!("http://{}{path_and_query}", self.http),
        }
    }

    fn agent(&self) -> Result<ureq::Agent> {
        let mut config = ureq::Agent::config_builder().http_status_as_error(false);
        if let Some(tls) = &self.tls {
            let ca = ureq::tls::Certificate::from_pem(&std::fs::read(&tls.ca)?)?;
            let mut tls_config = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]));
            if let Some((cert, key)) = &tls.client {
                let cert = ureq::tls::Certificate::from_pem(&std::fs::read(cert)?)?;
                let key = ureq::tls::PrivateKey::from_pem(&std::fs::read(key)?)?;
                tls_config = tls_config
                    .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[cert], key)));
            }
            config = config.tls_config(tls_config.build());
        }
        Ok(config.build().into())
    }

    /// Sends `method` to a path of the API with `body` (JSON text) if any; returns the
    /// status and the body, whatever the status.
    pub fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        let url = self.url(path_and_query);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let agent = self.agent()?;
        let mut response = match body {
            Some(body) => agent.run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())?,
            ),
            None => agent.run(request.body(())?),
        }
        .with_context(|| format!("{method} {url}"))?;
        Ok((
            response.status().as_u16(),
            response.body_mut().read_to_string()?,
        ))
    }

    /// GET a path of the HTTP API, parsed as JSON; non-2xx answers are errors.
    pub fn get(&self, path_and_query: &str) -> Result<serde_json::Value> {
        let (status, body) = self.get_raw(path_and_query)?;
        if !(200..300).contains(&status) {
            bail!("GET {path_and_query} answered {status}: {body}");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path_and_query}: not JSON: {body}"))
    }

    /// Status code and body of a GET, whatever the status.
    pub fn get_raw(&self, path_and_query: &str) -> Result<(u16, String)> {
        self.send("GET", path_and_query, None)
    }

    /// Live records of `kind` on `node`.
    pub fn records(&self, node: &str, kind: &str) -> Result<Vec<serde_json::Value>> {
        self.records_where(&format!("node={node}&kind={kind}&limit=10000"))
    }

    pub fn records_where(&self, query: &str) -> Result<Vec<serde_json::Value>> {
        let body = self.get(&format!("/api/v1/records?{query}"))?;
        Ok(body["records"].as_array().cloned().unwrap_or_default())
    }
}

/// Starts `census-collector serve` on the given addresses, logging (appending) to
/// `dir/collector.log`, with `extra` flags; returns once it prints the addresses it
/// listens on.
fn spawn_collector(
    db: &std::path::Path,
    grpc_addr: &str,
    http_addr: &str,
    dir: &std::path::Path,
    extra: &[String],
) -> Result<(Running, String, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("collector.log"))?;
    let mut child = Command::new(binary("census-collector"))
        .args([
            "serve",
            "--grpc-addr",
            grpc_addr,
            "--http-addr",
            http_addr,
            "--db",
        ])
        .arg(format!("sqlite:{}", db.display()))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start census-collector")?;
    let stdout = child.stdout.take().context("collector stdout")?;
    let process = Running {
        child,
        name: "census-collector",
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(name))
            .map(str::to_string)
            .with_context(|| {
                format!("collector printed {line:?}, expected 'listening grpc=.. http=..'")
            })
    };
    let (grpc, http) = (field("grpc=")?, field("http=")?);
    Ok((process, grpc, http))
}

/// Enrolls `node` with the (plain-text) collector; returns its credential.
pub async fn enroll(collector: &Collector, node: &str) -> Result<String> {
    let mut client =
        census_proto::v1::census_client::CensusClient::connect(collector.grpc_url()).await?;
    let response = client
        .enroll(census_proto::v1::EnrollRequest {
            enrollment_secret: ENROLLMENT_SECRET.into(),
            node_id: node.into(),
            agent_id: "census-tests".into(),
            hostname: "census-tests".into(),
        })
        .await?;
    Ok(response.into_inner().credential)
}

/// A request carrying `credential` as census agents send it.
pub fn authorized<T>(message: T, credential: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {credential}")
        .parse()
        .expect("a credential is ASCII");
    request.metadata_mut().insert("authorization", value);
    request
}

/// A Docker image a test made (by its tag), removed when dropped.
#[derive(Debug)]
pub struct ImageGuard(pub String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// Builds the Dockerfile in `context` as `tag` with the classic builder (nothing is
/// pulled); returns the guard that removes the image and the image id.
pub fn docker_build(context: &Path, tag: &str) -> Result<(ImageGuard, String)> {
    let output = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(context)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .context("cannot run docker build (the test needs a running Docker Engine)")?;
    if !output.status.success() {
        bail!(
            "docker build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let id = String::from_utf8(output.stdout)?.trim().to_string();
    Ok((ImageGuard(tag.to_string()), id))
}

/// A unique node id for one test, so tests sharing a host never collide.
pub fn node_id(test: &str) -> String {
    format!(
        "test-{test}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    )
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            match last_error {
                Some(error) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {error:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `census-agent scan --format json` with extra arguments; returns the records
/// and stderr. Fails unless the scan exits successfully.
pub fn scan_json(args: &[&str]) -> Result<(Vec<serde_json::Value>, String)> {
    let output = Command::new(binary("census-agent"))
        .args(["scan", "--format", "json"])
        .args(args)
        .output()
        .context("cannot run census-agent scan")?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!(
            "census-agent scan {args:?} failed ({}): {stderr}",
            output.status
        );
    }
    let records = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .context("scan output is not JSON lines")?;
    Ok((records, stderr))
}

/// Output of a command that must succeed.
pub fn command_output(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program).args(args).output().with_context(|| {
        format!("cannot run {program} (is it installed? tests/run installs it)")
    })?;
    if !output.status.success() {
        bail!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// A loopback TCP port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) -> Result<()> {
    wait_for(timeout, what, || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ()))
    })
}

/// What a measured command did: its output and the peak resident memory it reached.
#[derive(Debug)]
pub struct Measured {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// VmHWM of the process, sampled until it exited (KiB).
    pub peak_rss_kib: u64,
    pub elapsed: Duration,
}

/// Runs a command to completion, sampling its peak RSS; kills it and fails after `timeout`.
pub fn run_measured(command: &mut Command, timeout: Duration) -> Result<Measured> {
    let started = Instant::now();
    let stdout_file = tempfile::NamedTempFile::new()?;
    let stderr_file = tempfile::NamedTempFile::new()?;
    let mut child = command
        .stdout(Stdio::from(stdout_file.reopen()?))
        .stderr(Stdio::from(stderr_file.reopen()?))
        .spawn()
        .context("cannot start the measured command")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_rss_kib = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak_rss_kib = kib;
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("command did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Measured {
        status,
        stdout: std::fs::read_to_string(stdout_file.path())?,
        stderr: std::fs::read_to_string(stderr_file.path())?,
        peak_rss_kib,
        elapsed: started.elapsed(),
    })
}

/// Kinds whose state is a pure function of the synthetic root (no processes).
pub const SYNTHETIC_KINDS: &str = "package,account,group";

/// A host root holding only what these tests change: a dpkg database of many
/// packages, accounts and groups. Generation `g` changes versions, removes some
/// packages and adds others.
#[derive(Debug)]
pub struct SyntheticHost {
    dir: tempfile::TempDir,
    packages: usize,
}

impl SyntheticHost {
    pub fn new(packages: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc"))?;
        std::fs::create_dir_all(root.join("var/lib/dpkg"))?;
        std::fs::write(
            root.join("etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"census synthetic\"\n",
        )?;
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ncensus:x:1000:1000:census:/home/census:/bin/sh\n",
        )?;
        std::fs::write(root.join("etc/group"), "root:x:0:\ncensus:x:1000:\n")?;
        let host = SyntheticHost { dir, packages };
        host.generation(0)?;
        Ok(host)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn generation(&self, g: usize) -> Result<()> {
        let mut status = String::with_capacity(self.packages * 160);
        for i in 0..self.packages {
            if g > 0 && (i + g).is_multiple_of(10) {
                continue;
            }
            let version = if g > 0 && i % 7 == g % 7 { g } else { 0 };
            status.push_str(&format!(
                "Package: census-synthetic-{i}\nStatus: install ok installed\nVersion: 1.{version}-{i}\n\
                 Architecture: amd64\nMaintainer: census <census@example.org>\nInstalled-Size: {i}\n\
                 Description: synthetic package {i}\n\n"
            ));
        }
        for j in 0..10 {
            status.push_str(&format!(
                "Package: census-extra-{g}-{j}\nStatus: install ok installed\nVersion: {g}.{j}\n\
                 Architecture: all\n\n"
            ));
        }
        let path = self.root().join("var/lib/dpkg/status");
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, status)?;
        std::fs::rename(temporary, path)?;
        Ok(())
    }

    /// `census-agent run` against the collector at `collector`, reached with `access`
    /// ([`Collector::agent_args`]), for this root, logging to `log`.
    pub fn agent(
        &self,
        collector: &str,
        access: &[String],
        state: &Path,
        node: &str,
        log: &Path,
        extra: &[&str],
    ) -> Result<Running> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        Running::group(
            Command::new(binary("census-agent"))
                .args(["run", "--collector", collector])
                .args(access)
                .args(if extra.contains(&"--interval") {
                    &[][..]
                } else {
                    &["--interval", "1"][..]
                })
                .arg("--host-root")
                .arg(self.root())
                .arg("--state-dir")
                .arg(state)
                .args(["--node-id", node, "--only", SYNTHETIC_KINDS])
                .args(["--runtime-socket", "/nonexistent/runtime.sock"])
                .args(extra)
                .env("RUST_LOG", "census_agent=debug")
                .stdout(Stdio::null())
                .stderr(log),
            "census-agent",
        )
    }

    /// What a fresh scan of the root finds: (kind, key, fingerprint).
    pub fn scanned(&self) -> Result<std::collections::BTreeSet<(String, String, String)>> {
        let root = self.root().display().to_string();
        let (records, _) = scan_json(&[
            "--host-root",
            &root,
            "--only",
            SYNTHETIC_KINDS,
            "--runtime-socket",
            "/nonexistent/runtime.sock",
        ])?;
        Ok(records.iter().map(triple).collect())
    }
}

pub fn triple(record: &serde_json::Value) -> (String, String, String) {
    let text = |name: &str| record[name].as_str().unwrap_or_default().to_string();
    (text("kind"), text("key"), text("fingerprint"))
}
