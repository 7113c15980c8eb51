//! `census-agent scan` output: JSON lines or a table for people.
use std::io::{self, Write};

use census_proto::Fields;
use census_proto::v1::record::Body;

use crate::collectors::Observation;
use crate::scan::Scan;

/// One JSON object per record: `{"kind", "key", "fingerprint", "observed_at", "fields"}`.
pub fn write_json(scan: &Scan, out: &mut impl Write) -> io::Result<()> {
    let observed_at = crate::rfc3339_ms(scan.observed_at_ms);
    for kind in &scan.kinds {
        for observation in kind.result.iter().flatten() {
            let line = JsonLine {
                kind: kind.kind,
                key: &observation.key,
                fingerprint: hex::encode(observation.fingerprint),
                observed_at: &observed_at,
                fields: Fields(&observation.body),
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    kind: &'a str,
    key: &'a str,
    fingerprint: String,
    observed_at: &'a str,
    fields: Fields<'a>,
}

/// Aligned KIND / KEY / DETAILS columns, then a count per kind.
pub fn write_table(scan: &Scan, out: &mut impl Write) -> io::Result<()> {
    const KEY_WIDTH: usize = 44;
    let rows: Vec<(&str, String, String)> = scan
        .kinds
        .iter()
        .flat_map(|k| {
            k.result
                .iter()
                .flatten()
                .map(move |o| (k.kind, clip(&o.key, KEY_WIDTH), details(o)))
        })
        .collect();
    let kind_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    let key_width = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(3)
        .max(3);
    writeln!(out, "{:kind_width$}  {:key_width$}  DETAILS", "KIND", "KEY")?;
    for (kind, key, details) in &rows {
        writeln!(out, "{kind:kind_width$}  {key:key_width$}  {details}")?;
    }
    writeln!(out)?;
    for kind in &scan.kinds {
        match &kind.result {
            Ok(observations) => writeln!(
                out,
                "{:kind_width$}  {} records",
                kind.kind,
                observations.len()
            )?,
            Err(error) => writeln!(out, "{:kind_width$}  failed: {error}", kind.kind)?,
        }
    }
    Ok(())
}

const MIB: u64 = 1024 * 1024;

fn details(observation: &Observation) -> String {
    let text = match &observation.body {
        Body::Host(h) => format!(
            "{} | {} | kernel {} | {} | {} CPUs | {} MiB",
            h.hostname,
            h.os_pretty_name,
            h.kernel_release,
            h.arch,
            h.cpu_count,
            h.memory_total_bytes / (1024 * 1024)
        ),
        Body::Process(p) => {
            let command = if p.cmdline.is_empty() {
                p.name.clone()
            } else {
                p.cmdline.join(" ")
            };
            format!("{:<10} {}", p.user, command)
        }
        Body::ListeningPort(p) if p.pid == 0 => "(no visible owner)".to_string(),
        Body::ListeningPort(p) => format!("{} pid {}", p.process, p.pid),
        Body::Package(p) => format!("{} {}", p.version, p.status),
        Body::KernelModule(m) => {
            let used_by = if m.used_by.is_empty() {
                String::new()
            } else {
                format!(" used by {}", m.used_by.join(","))
            };
            format!("{} bytes{used_by}", m.size)
        }
        Body::ResourceUsage(u) => format!(
            "load {:.2} {:.2} {:.2} | memory {}/{} MiB | {} processes",
            u.load_1,
            u.load_5,
            u.load_15,
            u.memory_used_bytes / MIB,
            u.memory_total_bytes / MIB,
            u.process_count
        ),
        Body::Account(a) => format!(
            "uid {} {} {} password {}{}",
            a.uid,
            a.home,
            a.shell,
            a.password_status,
            if a.sudo_rules.is_empty() { "" } else { " sudo" }
        ),
        Body::Group(g) => format!("gid {} {}", g.gid, g.members.join(",")),
        Body::Database(d) => format!(
            "{} {} pid {} {}",
            d.engine,
            d.version,
            d.pid,
            d.listen.join(" ")
        ),
        Body::WebService(w) => format!(
            "{} {} pid {} {}",
            w.server,
            w.version,
            w.pid,
            w.listen.join(" ")
        ),
        Body::WebFramework(f) => format!("{} {} ({})", f.name, f.version, f.package),
        Body::WebSite(w) => format!(
            "{} {} listen {} root {}",
            w.server,
            w.server_names.join(","),
            w.listen.join(","),
            w.root
        ),
        Body::WebApplication(a) => format!("{} {} {}", a.server, a.path, a.framework),
        Body::StartupService(s) => format!("{} {}", s.state, s.exec_start),
        Body::ScheduledTask(t) => format!("{} {} {}", t.schedule, t.user, t.command),
        Body::EnvironmentVariable(e) => format!("{}={}", e.name, e.value),
        Body::Image(i) => format!(
            "{}/{}:{} {} MiB {}/{}",
            i.repository,
            i.name,
            i.tags.join(","),
            i.size_bytes / MIB,
            i.os,
            i.arch
        ),
        Body::ImageHistory(h) => format!("{} bytes {}", h.size_bytes, h.created_by),
        Body::Container(c) => format!("{} {} {} {}", c.name, c.state, c.image_ref, c.pod_name),
    };
    clip(&text, 100)
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(width - 1).collect();
    clipped.push('…');
    clipped
}
