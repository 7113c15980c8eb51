//! census-agent command line: scan, run, bench.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use census_agent::budget::Budget;
use census_agent::enroll::Transport;
use census_agent::redact::Redactor;
use census_agent::root::HostRoot;
use census_agent::scan::{Scan, Scanner};
use census_agent::sync::{RunOptions, run};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "census-agent",
    version,
    about = "census node agent: inventories this host and streams it to a census collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inventory this host once and print it; no collector needed.
    Scan {
        /// Read the host filesystem mounted at this directory.
        #[arg(long, default_value = "/")]
        host_root: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Collect only these kinds (comma separated).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// Also search this host directory for python, npm and java packages (repeatable).
        #[arg(long = "package-dir", value_name = "DIR")]
        package_dirs: Vec<PathBuf>,
        /// Container runtime socket (Docker, containerd, CRI-O) instead of the discovered ones.
        #[arg(long)]
        runtime_socket: Option<PathBuf>,
    },
    /// Scan every interval and stream changes to a collector.
    Run {
        /// Collector gRPC URL: https://HOST:PORT (with --ca), or http:// with
        /// --insecure-plaintext.
        #[arg(long)]
        collector: String,
        #[command(flatten)]
        access: Box<Access>,
        /// Share of one core the agent's scans may use, in thousandths (250 = a
        /// quarter core); scans are paced to it and slow down further when over.
        #[arg(long, default_value_t = Budget::default().cpu_millicores, value_parser = clap::value_parser!(u32).range(1..=1000))]
        cpu_budget_millicores: u32,
        /// Resident memory the agent should stay under, in MiB; over it, caches are
        /// dropped and it is reported.
        #[arg(long, default_value_t = Budget::default().memory_bytes / (1024 * 1024))]
        memory_budget_mib: u64,
        /// Scheduling priority the agent lowers itself to (nice, 0..=19).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
        nice: i32,
        /// Seconds between scans; the collector's console configuration, when it sets
        /// an interval, takes precedence.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Sync once and exit (non-zero when the collector did not ack everything).
        #[arg(long)]
        once: bool,
        #[arg(long, default_value = "/var/lib/census-agent")]
        state_dir: PathBuf,
        #[arg(long, default_value = "/")]
        host_root: PathBuf,
        /// Node id; defaults to the host's machine-id.
        #[arg(long)]
        node_id: Option<String>,
        /// Collect only these kinds (comma separated); the collector's console
        /// configuration, when it enables kinds, takes precedence.
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// Kubernetes cluster this node belongs to, reported to the collector.
        #[arg(long, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        cluster: Option<String>,
        /// Also search this host directory for python, npm and java packages (repeatable).
        #[arg(long = "package-dir", value_name = "DIR")]
        package_dirs: Vec<PathBuf>,
        /// Container runtime socket (Docker, containerd, CRI-O) instead of the discovered ones.
        #[arg(long)]
        runtime_socket: Option<PathBuf>,
        /// Bound of the disk spool (in the state dir) in bytes; a round that does not
        /// fit is shed, counted and reported, and every kind is resent once there is room.
        #[arg(long, default_value_t = census_agent::sync::DEFAULT_SPOOL_BYTES)]
        spool_max_bytes: u64,
        /// Seconds between HTTP/2 keepalive pings to the collector; an unanswered ping
        /// (within the same time, at most 20 s) ends the stream and the agent reconnects.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        keepalive: u64,
    },
    /// Catalog the packages inside an image archive (`docker save` output), or an image
    /// of the node's Docker Engine, without extracting it.
    ScanImage {
        /// An image archive on disk.
        #[arg(long, conflicts_with = "image")]
        archive: Option<PathBuf>,
        /// An image of the Docker Engine (name, reference or id), read through its export.
        #[arg(long)]
        image: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Docker socket (default: discovered).
        #[arg(long)]
        runtime_socket: Option<PathBuf>,
    },
    /// Time each collector over repeated scans and print the agent's peak RSS.
    Bench {
        #[arg(long, default_value = "/")]
        host_root: PathBuf,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Instead, catalog this image of the Docker Engine once, cold.
        #[arg(long)]
        image: Option<String>,
        /// Also search this host directory for python, npm and java packages (repeatable).
        #[arg(long = "package-dir", value_name = "DIR")]
        package_dirs: Vec<PathBuf>,
        /// Container runtime socket (Docker, containerd, CRI-O) instead of the discovered ones.
        #[arg(long)]
        runtime_socket: Option<PathBuf>,
    },
}

/// How `run` reaches its collector and proves who it is.
#[derive(clap::Args)]
struct Access {
    /// File holding the enrollment secret, exchanged for this agent's credential
    /// (kept in the state dir, mode 0600) when it has none or it was revoked.
    #[arg(long, value_name = "FILE")]
    enrollment_secret_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the collector's certificate; the only CA
    /// trusted.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for a collector that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the collector's certificate must carry, when it is not the URL's host.
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// Allow a plain http:// collector URL: no TLS, for local development only.
    #[arg(long)]
    insecure_plaintext: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    };
    init_tracing(default_level);
    match execute(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("census-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Scan {
            host_root,
            format,
            only,
            package_dirs,
            runtime_socket,
        } => {
            let redactor = Redactor::ephemeral().context("cannot create a redaction key")?;
            let scanner = Scanner::new(HostRoot::new(host_root), only, redactor)
                .map_err(anyhow::Error::msg)?
                .with_package_dirs(package_dirs)
                .with_runtime_socket(runtime_socket);
            let scan = scanner.scan();
            print_scan(&scan, format).context("cannot write scan output")?;
            let failed: Vec<_> = scan.failures().map(|(kind, _)| kind).collect();
            if failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("census-agent: collectors failed: {}", failed.join(", "));
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Run {
            collector,
            interval,
            once,
            state_dir,
            host_root,
            node_id,
            only,
            cluster,
            package_dirs,
            runtime_socket,
            spool_max_bytes,
            keepalive,
            access,
            cpu_budget_millicores,
            memory_budget_mib,
            nice,
        } => {
            let Access {
                enrollment_secret_file,
                ca,
                tls_cert,
                tls_key,
                tls_server_name,
                insecure_plaintext,
            } = *access;
            let options = RunOptions {
                transport: Transport {
                    ca,
                    cert: tls_cert,
                    key: tls_key,
                    server_name: tls_server_name,
                    insecure_plaintext,
                },
                enrollment_secret_file,
                budget: Budget {
                    cpu_millicores: cpu_budget_millicores,
                    memory_bytes: memory_budget_mib.saturating_mul(1024 * 1024),
                },
                nice,
                collector,
                interval: Duration::from_secs(interval),
                once,
                state_dir,
                host_root,
                node_id,
                only,
                cluster,
                package_dirs,
                runtime_socket,
                spool_max_bytes,
                keepalive: Duration::from_secs(keepalive),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                tokio::select! {
                    result = run(options) => result.map_err(anyhow::Error::from),
                    signal = shutdown_signal() => {
                        tracing::info!(signal, "agent stopping");
                        Ok(())
                    }
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ScanImage {
            archive,
            image,
            format,
            runtime_socket,
        } => scan_image(archive, image, format, runtime_socket),
        Command::Bench {
            host_root,
            runs,
            image,
            package_dirs,
            runtime_socket,
        } => {
            let redactor = Redactor::ephemeral().context("cannot create a redaction key")?;
            let scanner = Scanner::new(HostRoot::new(host_root), None, redactor)
                .map_err(anyhow::Error::msg)?
                .with_package_dirs(package_dirs)
                .with_runtime_socket(runtime_socket);
            match image {
                Some(image) => print!(
                    "{}",
                    census_agent::bench::image_report(&scanner, &image)
                        .map_err(anyhow::Error::msg)?
                ),
                None => print!("{}", census_agent::bench::run(&scanner, runs)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Catalogs one image archive or Docker image and prints its packages.
fn scan_image(
    archive: Option<PathBuf>,
    image: Option<String>,
    format: Format,
    runtime_socket: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use census_agent::image_contents::catalog_export;
    let started = std::time::Instant::now();
    let packages = match (archive, image) {
        (Some(path), _) => {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let id = format!("archive:{}", path.display());
            catalog_export(std::io::BufReader::new(file), &id)
                .with_context(|| format!("cannot catalog {}", path.display()))?
        }
        (None, Some(image)) => {
            let root = HostRoot::new("/");
            let socket = census_agent::runtime::docker_socket(&root, runtime_socket.as_ref())
                .context("no Docker socket found (pass --runtime-socket)")?;
            let id = census_agent::runtime::block_on(async {
                let docker = census_agent::runtime::docker::connect(&socket).await?;
                docker
                    .inspect_image(&image)
                    .await
                    .map_err(|e| census_agent::runtime::RuntimeError::Docker(e.to_string()))
            })??
            .id
            .context("image has no id")?;
            census_agent::runtime::docker::export(&socket, &id, |reader| {
                catalog_export(reader, &id)
            })??
        }
        (None, None) => anyhow::bail!("pass --archive FILE or --image NAME"),
    };
    tracing::info!(packages = packages.len(), elapsed = ?started.elapsed(), peak_rss = census_agent::bench::peak_rss().unwrap_or_default(), "image cataloged");
    let scan = census_agent::scan::Scan {
        observed_at_ms: jiff::Timestamp::now().as_millisecond(),
        kinds: vec![census_agent::scan::KindScan {
            kind: "package",
            result: Ok(packages
                .into_iter()
                .map(|p| {
                    let key = census_agent::collectors::package::package_key(&p);
                    census_agent::collectors::Observation::new(
                        key,
                        census_proto::v1::record::Body::Package(p),
                    )
                })
                .collect()),
            elapsed: started.elapsed(),
        }],
    };
    print_scan(&scan, format)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a scan to stdout; a closed pipe (`census-agent scan | head`) is not an error.
fn print_scan(scan: &Scan, format: Format) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => census_agent::output::write_json(scan, &mut out),
        Format::Table => census_agent::output::write_table(scan, &mut out),
    }
    .or_else(|error| match error.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(error),
    })
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Logs to stderr; `CENSUS_LOG` (e.g. `debug` or `census_agent=debug,warn`) overrides the level.
fn init_tracing(default_level: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("CENSUS_LOG").unwrap_or_else(|_| default_level.to_string());
    let filter: Targets = spec
        .parse()
        .unwrap_or_else(|_| default_level.parse().unwrap_or_default());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}
