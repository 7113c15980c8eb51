//! Delivery figures with the real binaries on loopback: bytes on the wire (counted by
//! a TCP proxy between agent and collector, both directions, HTTP/2 framing included)
//! for an initial sync and for unchanged intervals, and the time to converge after a
//! one-minute collector outage during which the node changed.
//!
//!   cargo build --release --workspace && ./target/release/census-delivery-bench [PACKAGES]
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use census_tests::{Collector, SyntheticHost, node_id, triple, wait_for};

const INTERVAL_SECS: u64 = 5;

/// Bytes seen by the proxy: agent to collector, collector to agent.
#[derive(Default)]
struct Wire {
    up: AtomicU64,
    down: AtomicU64,
}

impl Wire {
    fn take(&self) -> (u64, u64) {
        (
            self.up.swap(0, Ordering::SeqCst),
            self.down.swap(0, Ordering::SeqCst),
        )
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counter: Arc<Wire>, up: bool) {
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let count = if up { &counter.up } else { &counter.down };
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// A counting TCP proxy to `target`; returns its address.
fn proxy(target: String, wire: Arc<Wire>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                (Ok(c), Ok(s)) => (c, s),
                _ => continue,
            };
            let (w1, w2) = (wire.clone(), wire.clone());
            std::thread::spawn(move || pipe(client, server, w1, true));
            std::thread::spawn(move || pipe(s2, c2, w2, false));
        }
    });
    Ok(address)
}

fn converged(collector: &Collector, node: &str, host: &SyntheticHost) -> Result<()> {
    let expected = host.scanned()?;
    wait_for(Duration::from_secs(600), "convergence", || {
        let mut stored = std::collections::BTreeSet::new();
        let mut offset = 0;
        loop {
            let Ok(page) = collector
                .api
                .records_where(&format!("node={node}&limit=10000&offset={offset}"))
            else {
                return Ok(None);
            };
            stored.extend(page.iter().map(triple));
            if page.len() < 10_000 {
                break;
            }
            offset += page.len();
        }
        Ok((stored == expected).then_some(()))
    })
}

fn main() -> Result<()> {
    let packages: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("PACKAGES must be a number")?,
        None => 3_000,
    };
    let host = SyntheticHost::new(packages)?;
    let records = host.scanned()?.len();
    let mut collector = Collector::start()?;
    let wire = Arc::new(Wire::default());
    let address = proxy(collector.grpc.clone(), wire.clone())?;
    let dir = tempfile::tempdir()?;
    let node = node_id("delivery-bench");
    let started = Instant::now();
    let _agent = host.agent(
        &format!("http://{address}"),
        &collector.agent_args(),
        &dir.path().join("state"),
        &node,
        &dir.path().join("agent.log"),
        &["--interval", &INTERVAL_SECS.to_string()],
    )?;
    converged(&collector, &node, &host)?;
    let initial_time = started.elapsed();
    let initial = wire.take();

    let intervals = 6;
    std::thread::sleep(Duration::from_secs(INTERVAL_SECS * intervals));
    let unchanged = wire.take();

    collector.kill();
    let outage = Duration::from_secs(60);
    host.generation(1)?;
    std::thread::sleep(outage);
    collector.start_again()?;
    let back = Instant::now();
    converged(&collector, &node, &host)?;
    let recovery = back.elapsed();
    let after_outage = wire.take();

    println!(
        "census-delivery-bench: {records} records (package, account, group), interval {INTERVAL_SECS} s\n"
    );
    println!("| phase | agent -> collector bytes | collector -> agent bytes | time |");
    println!("|---|---:|---:|---:|");
    println!(
        "| initial sync | {} | {} | {:.2} s to converge |",
        initial.0,
        initial.1,
        initial_time.as_secs_f64()
    );
    println!(
        "| unchanged node, per interval (mean of {intervals}) | {} | {} | |",
        unchanged.0 / intervals,
        unchanged.1 / intervals
    );
    println!(
        "| {} s outage with ~10% of packages changed, then back | {} | {} | {:.2} s from restart to converged |",
        outage.as_secs(),
        after_outage.0,
        after_outage.1,
        recovery.as_secs_f64()
    );
    Ok(())
}
