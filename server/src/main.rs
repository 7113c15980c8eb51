//! census-collector command line.
use std::net::SocketAddr;
use std::process::ExitCode;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use census_collector::calendar::Calendar;
use census_collector::ingest::Limits;
use census_collector::serve::{ServeOptions, serve};
use census_collector::store::{self, PurgeOptions};
use census_collector::tls::TlsFiles;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "census-collector",
    version,
    about = "census collector: tags, stores and serves agents' asset records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC ingest and the HTTP API.
    Serve {
        /// Store: sqlite:PATH.
        #[arg(long, default_value = "sqlite:census.db")]
        db: String,
        /// Where agents connect (census.v1 gRPC).
        #[arg(long, default_value = "127.0.0.1:7701")]
        grpc_addr: SocketAddr,
        /// Where the HTTP API listens.
        #[arg(long, default_value = "127.0.0.1:7700")]
        http_addr: SocketAddr,
        /// Holidays (one YYYY-MM-DD per line) that are not working days.
        #[arg(long)]
        holidays: Option<PathBuf>,
        /// Seconds between scheduled purges; 0 disables them.
        #[arg(long, default_value_t = 3600)]
        purge_interval: u64,
        #[command(flatten)]
        security: Box<Security>,
    },
    /// Delete every record whose retention deadline has come, with an audit entry per
    /// rule; takes a backup first and drops it once the purge is verified.
    Purge {
        #[arg(long, default_value = "sqlite:census.db")]
        db: String,
        /// The purge's now (RFC 3339); defaults to the current time.
        #[arg(long)]
        as_of: Option<String>,
        /// Also delete what falls due within this many seconds after --as-of.
        #[arg(long, default_value_t = 0)]
        horizon_secs: u64,
        /// Show what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep the pre-purge backup (it holds the purged data).
        #[arg(long)]
        keep_backup: bool,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the database while it stays in use.
    Backup {
        #[arg(long, default_value = "sqlite:census.db")]
        db: String,
        /// The copy's path; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
}

/// TLS, credentials and limits of `serve`.
#[derive(clap::Args)]
struct Security {
    /// PEM certificate (chain) the collector presents on both ports.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: clients of both ports must present a certificate this CA (PEM) signed.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve plain text, without TLS: for local development only.
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_plaintext: bool,
    /// Enrollment secrets agents exchange for credentials, one per line; read again
    /// when the file changes (list old and new together to rotate).
    #[arg(long, value_name = "FILE")]
    enrollment_secrets: Option<PathBuf>,
    /// HTTP API bearer tokens, one `read TOKEN` or `admin TOKEN` per line; read again
    /// when the file changes. Without it only /healthz answers.
    #[arg(long, value_name = "FILE")]
    api_tokens: Option<PathBuf>,
    /// Largest census.v1 message accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_frame_bytes)]
    max_frame_bytes: usize,
    /// Most upserts plus removes in one batch.
    #[arg(long, default_value_t = Limits::default().max_batch_changes)]
    max_batch_changes: usize,
    /// Longest string in a record's fields, in bytes.
    #[arg(long, default_value_t = Limits::default().max_string_bytes)]
    max_string_bytes: usize,
    /// Sustained bytes per second one agent may send.
    #[arg(long, default_value_t = Limits::default().rate_bytes_per_sec)]
    rate_bytes_per_sec: u64,
    /// Bytes one agent may send at once above its rate.
    #[arg(long, default_value_t = Limits::default().rate_burst_bytes)]
    rate_burst_bytes: u64,
    /// Agent streams open at once.
    #[arg(long, default_value_t = Limits::default().max_streams, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_streams: usize,
}

impl Security {
    fn tls(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            _ if self.insecure_plaintext => Ok(None),
            _ => anyhow::bail!(
                "serve needs --tls-cert and --tls-key, or --insecure-plaintext for local development"
            ),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_batch_changes: self.max_batch_changes,
            max_string_bytes: self.max_string_bytes,
            rate_bytes_per_sec: self.rate_bytes_per_sec,
            rate_burst_bytes: self.rate_burst_bytes,
            max_streams: self.max_streams,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve {
            db,
            grpc_addr,
            http_addr,
            holidays,
            purge_interval,
            security,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|runtime| {
                let calendar = match &holidays {
                    Some(path) => Calendar::from_file(path)?,
                    None => Calendar::weekends_only(),
                };
                let options = ServeOptions {
                    db,
                    grpc_addr,
                    http_addr,
                    calendar,
                    purge_interval: (purge_interval > 0)
                        .then(|| Duration::from_secs(purge_interval)),
                    tls: security.tls()?,
                    enrollment_secrets: security.enrollment_secrets.clone(),
                    api_tokens: security.api_tokens.clone(),
                    limits: security.limits(),
                };
                runtime
                    .block_on(serve(options, shutdown_signal()))
                    .map_err(anyhow::Error::from)
            }),
        Command::Purge {
            db,
            as_of,
            horizon_secs,
            dry_run,
            keep_backup,
            json,
        } => purge(
            &db,
            as_of.as_deref(),
            horizon_secs,
            dry_run,
            keep_backup,
            json,
        ),
        Command::Backup { db, to } => store::open(&db)
            .and_then(|store| store.backup(&to))
            .map(|()| println!("backed up {db} to {}", to.display()))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("census-collector: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn purge(
    db: &str,
    as_of: Option<&str>,
    horizon_secs: u64,
    dry_run: bool,
    keep_backup: bool,
    json: bool,
) -> anyhow::Result<()> {
    let now = match as_of {
        Some(text) => text
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("--as-of {text:?} is not an RFC 3339 timestamp"))?,
        None => jiff::Timestamp::now(),
    };
    let horizon = jiff::SignedDuration::from_secs(i64::try_from(horizon_secs).unwrap_or(i64::MAX));
    let store = store::open(db)?;
    let options = PurgeOptions {
        now,
        horizon,
        dry_run,
    };
    let purged = census_collector::purge::purge(store.as_ref(), db, options, keep_backup)?;
    let run = &purged.run;
    if json {
        let mut value = serde_json::to_value(run)?;
        value["backup"] = serde_json::json!(purged.backup);
        println!("{value}");
        return Ok(());
    }
    println!(
        "{} as of {}: {} deleted, {} held, {} late{}",
        if dry_run { "dry run" } else { "purge" },
        run.as_of,
        run.deleted,
        run.held,
        run.late,
        run.id
            .map(|id| format!(" (audit run {id})"))
            .unwrap_or_default()
    );
    println!(
        "{:<28} {:<28} {:<44} {:>8} {:>6} {:>6}  earliest deadline",
        "rule", "category", "hosting service", "deleted", "held", "late"
    );
    for entry in &run.entries {
        println!(
            "{:<28} {:<28} {:<44} {:>8} {:>6} {:>6}  {}",
            entry.rule,
            entry.category,
            entry.hosting_service,
            entry.deleted,
            entry.held,
            entry.late,
            entry.earliest_delete_by.as_deref().unwrap_or("-")
        );
    }
    if let Some(backup) = &purged.backup {
        println!("pre-purge backup kept at {}", backup.display());
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr; `CENSUS_LOG` (e.g. `debug`) overrides the default `info`.
fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("CENSUS_LOG").unwrap_or_else(|_| "info".to_string());
    let filter: Targets = spec
        .parse()
        .unwrap_or_else(|_| "info".parse().unwrap_or_default());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}
