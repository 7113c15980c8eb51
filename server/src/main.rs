//! census-collector command line.
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use census_collector::serve::{ServeOptions, serve};
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve {
            db,
            grpc_addr,
            http_addr,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|runtime| {
                let options = ServeOptions {
                    db,
                    grpc_addr,
                    http_addr,
                };
                runtime
                    .block_on(serve(options, shutdown_signal()))
                    .map_err(anyhow::Error::from)
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("census-collector: {error:#}");
            ExitCode::FAILURE
        }
    }
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
