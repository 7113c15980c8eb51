//! The agent against this machine's own tools: its deb packages equal dpkg-query's
//! and its TCP listening ports equal ss's.
use std::collections::BTreeSet;
use std::net::TcpListener;

use anyhow::{Context, Result, bail, ensure};
use census_tests::{command_output, scan_json};

#[test]
fn deb_packages_equal_dpkg_query() -> Result<()> {
    let (records, _) = scan_json(&["--only", "package"])?;
    let agent: BTreeSet<(String, String, String)> = records
        .iter()
        // Packages of the host itself, not those inside its container images.
        .filter(|r| r["fields"]["ecosystem"] == "deb" && r["fields"]["image_id"] == "")
        .map(|r| {
            let field = |name: &str| r["fields"][name].as_str().unwrap_or_default().to_string();
            (field("name"), field("version"), field("arch"))
        })
        .collect();

    // Every package dpkg knows with its files on disk (config-files and
    // not-installed entries are removed software).
    let listing = command_output(
        "dpkg-query",
        &[
            "-W",
            "-f",
            "${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n",
        ],
    )?;
    let dpkg: BTreeSet<(String, String, String)> = listing
        .lines()
        .filter_map(|line| {
            let [status, name, version, arch] = line.split('\t').collect::<Vec<_>>()[..] else {
                return None;
            };
            (status != "config-files" && status != "not-installed")
                .then(|| (name.to_string(), version.to_string(), arch.to_string()))
        })
        .collect();

    ensure!(
        dpkg.len() > 10,
        "dpkg-query listed only {} packages",
        dpkg.len()
    );
    let missing: Vec<_> = dpkg.difference(&agent).collect();
    let phantom: Vec<_> = agent.difference(&dpkg).collect();
    ensure!(
        missing.is_empty() && phantom.is_empty(),
        "missing from the agent: {missing:?}; not in dpkg-query: {phantom:?}"
    );
    Ok(())
}

/// `ss -ltnH` local endpoints as (address, port); ss prints `*` for a dual-stack `::`.
fn ss_endpoints() -> Result<BTreeSet<(String, u16)>> {
    let output = command_output("ss", &["-ltnH"])?;
    output
        .lines()
        .map(|line| {
            let local = line
                .split_whitespace()
                .nth(3)
                .with_context(|| format!("ss line {line:?}"))?;
            let (address, port) = local
                .rsplit_once(':')
                .with_context(|| format!("ss endpoint {local:?}"))?;
            let address = address.trim_start_matches('[').trim_end_matches(']');
            // Strip an interface scope: 127.0.0.53%lo, fe80::1%eth0.
            let address = address.split('%').next().unwrap_or(address);
            let address = if address == "*" { "::" } else { address };
            Ok((address.to_string(), port.parse()?))
        })
        .collect()
}

fn agent_tcp_endpoints() -> Result<BTreeSet<(String, u16)>> {
    let (records, _) = scan_json(&["--only", "listening_port"])?;
    records
        .iter()
        .filter(|r| r["fields"]["protocol"] == "tcp")
        .map(|r| {
            let address = r["fields"]["address"]
                .as_str()
                .context("address")?
                .to_string();
            let port = r["fields"]["port"].as_u64().context("port")?;
            Ok((address, u16::try_from(port)?))
        })
        .collect()
}

#[test]
fn tcp_listening_ports_equal_ss() -> Result<()> {
    // Listeners of our own, so the comparison is never between two empty sets.
    let v4 = TcpListener::bind("127.0.0.1:0")?;
    let v6 = TcpListener::bind("[::1]:0").ok();
    let own = (String::from("127.0.0.1"), v4.local_addr()?.port());

    // Other tests open and close ports meanwhile: compare only when ss saw the same
    // set before and after the scan.
    for _ in 0..10 {
        let before = ss_endpoints()?;
        let agent = agent_tcp_endpoints()?;
        let after = ss_endpoints()?;
        if before != after {
            continue;
        }
        ensure!(
            before.contains(&own),
            "ss does not show our own listener {own:?}"
        );
        if let Some(v6) = &v6 {
            ensure!(
                agent.contains(&("::1".to_string(), v6.local_addr()?.port())),
                "agent misses [::1] listener"
            );
        }
        let missing: Vec<_> = before.difference(&agent).collect();
        let phantom: Vec<_> = agent.difference(&before).collect();
        ensure!(
            missing.is_empty() && phantom.is_empty(),
            "missing from the agent: {missing:?}; not in ss: {phantom:?}"
        );
        return Ok(());
    }
    bail!("listening sockets kept changing: no stable moment to compare in 10 attempts")
}
