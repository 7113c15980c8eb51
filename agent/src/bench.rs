//! `census-agent bench`: times each collector over repeated scans of this host, beside
//! the floor (the time to merely read what the collector reads), and reports the
//! agent's peak memory, as Markdown tables.
//!
//! The floor is measured without instrumenting the agent: one scan per kind runs under
//! `strace -y`, which names every file opened, directory listed and link read; the bench
//! then times doing only those reads.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::scan::{Scanner, Selection};

/// Timings of one collector over all runs.
#[derive(Debug, Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    records: usize,
}

/// Scans `runs` times and returns the report.
pub fn run(scanner: &Scanner, runs: usize) -> String {
    let collectors = &scanner.collectors;
    let mut samples: Vec<(&str, Samples)> = collectors
        .iter()
        .map(|c| (c.kind(), Samples::default()))
        .collect();
    let mut totals = Samples::default();
    for _ in 0..runs.max(1) {
        let ctx = scanner.context();
        let (scan_wall, scan_cpu) = (Instant::now(), thread_cpu());
        for (collector, (_, sample)) in collectors.iter().zip(samples.iter_mut()) {
            let (wall, cpu) = (Instant::now(), thread_cpu());
            let records = collector.collect(&ctx).map(|r| r.len()).unwrap_or(0);
            sample.wall.push(wall.elapsed());
            sample.cpu.push(thread_cpu().saturating_sub(cpu));
            sample.records = records;
        }
        totals.wall.push(scan_wall.elapsed());
        totals.cpu.push(thread_cpu().saturating_sub(scan_cpu));
        totals.records = samples.iter().map(|(_, s)| s.records).sum();
    }

    let mut report = String::new();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let _ = writeln!(
        report,
        "census-agent bench: {} runs over {} ({profile} build)\n",
        runs.max(1),
        scanner.root.dir().display()
    );
    let _ = writeln!(
        report,
        "| collector | records | wall median ms | wall min ms | wall max ms | cpu median ms |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|");
    for (kind, sample) in samples
        .iter_mut()
        .chain(std::iter::once(&mut ("total", totals)))
    {
        let (median, min, max) = stats(&mut sample.wall);
        let (cpu_median, _, _) = stats(&mut sample.cpu);
        let _ = writeln!(
            report,
            "| {kind} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            sample.records,
            ms(median),
            ms(min),
            ms(max),
            ms(cpu_median)
        );
    }
    let _ = writeln!(
        report,
        "\npeak RSS (VmHWM): {}",
        peak_rss().unwrap_or_else(|| "unknown".into())
    );
    report.push_str(&floor_report(scanner, runs.max(1)));
    report
}

/// Catalogs one image of the Docker Engine from its export, cold (as on a node that
/// has just pulled it), and reports time, packages per ecosystem and peak RSS.
pub fn image_report(scanner: &Scanner, image: &str) -> Result<String, String> {
    use crate::runtime::{RuntimeError, block_on, docker};
    let socket = scanner
        .docker_socket()
        .ok_or("no Docker socket found (pass --runtime-socket)")?;
    let inspect = block_on(async {
        let client = docker::connect(&socket).await?;
        client
            .inspect_image(image)
            .await
            .map_err(|e| RuntimeError::Docker(e.to_string()))
    })
    .and_then(|r| r)
    .map_err(|e| e.to_string())?;
    let id = inspect.id.clone().ok_or("image has no id")?;
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let packages = docker::export(&socket, &id, |reader| {
        crate::image_contents::catalog_export(reader, &id)
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let (wall, cpu) = (wall.elapsed(), thread_cpu().saturating_sub(cpu));
    let mut by_ecosystem: std::collections::BTreeMap<&str, usize> =
        std::collections::BTreeMap::new();
    for package in &packages {
        *by_ecosystem.entry(package.ecosystem.as_str()).or_default() += 1;
    }
    let size = inspect.size.unwrap_or_default().max(0) as f64 / (1024.0 * 1024.0);
    let layers = inspect
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.as_ref())
        .map(|l| l.len())
        .unwrap_or(0);
    let mut report =
        format!("census-agent bench: image {image} ({id}), {size:.0} MiB in {layers} layers\n\n");
    let _ = writeln!(
        report,
        "| packages | by ecosystem | wall s | cataloging thread cpu s | peak RSS |"
    );
    let _ = writeln!(report, "|---:|---|---:|---:|---:|");
    let ecosystems: Vec<String> = by_ecosystem
        .iter()
        .map(|(e, n)| format!("{e} {n}"))
        .collect();
    let _ = writeln!(
        report,
        "| {} | {} | {:.2} | {:.2} | {} |",
        packages.len(),
        ecosystems.join(", "),
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        peak_rss().unwrap_or_else(|| "unknown".into())
    );
    Ok(report)
}

/// Each kind scanned alone (warm cache) against the floor of the reads it makes.
fn floor_report(scanner: &Scanner, runs: usize) -> String {
    let mut report = String::from("\n### Against the floor\n\n");
    let strace_works = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !strace_works {
        report.push_str("floor not measured: strace is not installed (apt-get install strace)\n");
        return report;
    }
    let _ = writeln!(
        report,
        "Each kind scanned alone with a warm cache (median of {runs}) beside the floor: opening and \
         reading every file, listing every directory and reading every link the same scan touches \
         (traced with strace -y), nothing else.\n"
    );
    let _ = writeln!(
        report,
        "| kind | files | dirs | links | scan ms | floor ms | scan / floor |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|---:|");
    let kinds: Vec<Option<&'static str>> = scanner
        .collectors
        .iter()
        .map(|c| Some(c.kind()))
        .chain(std::iter::once(None))
        .collect();
    for kind in kinds {
        let touched = match trace_scan(scanner, kind) {
            Ok(touched) => touched,
            Err(error) => {
                let _ = writeln!(
                    report,
                    "| {} | trace failed: {error} |",
                    kind.unwrap_or("all")
                );
                continue;
            }
        };
        let selection = match kind {
            Some(kind) => Selection::new(Some(vec![kind.to_string()]), &scanner.collectors)
                .unwrap_or_default(),
            None => Selection::default(),
        };
        let mut scans = Vec::new();
        let mut floors = Vec::new();
        // One untimed scan warms the agent's cache and the page cache for both.
        let _ = scanner.scan_selected(&selection);
        for _ in 0..runs {
            let started = Instant::now();
            let _ = scanner.scan_selected(&selection);
            scans.push(started.elapsed());
            let started = Instant::now();
            touched.replay();
            floors.push(started.elapsed());
        }
        let (scan, _, _) = stats(&mut scans);
        let (floor, _, _) = stats(&mut floors);
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.1}x |",
            kind.unwrap_or("**all kinds**"),
            touched.files.len(),
            touched.dirs.len(),
            touched.links.len(),
            ms(scan),
            ms(floor),
            scan.as_secs_f64() / floor.as_secs_f64().max(1e-9)
        );
    }
    report
}

/// What one scan touched.
#[derive(Debug, Default)]
struct Touched {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    links: Vec<PathBuf>,
}

impl Touched {
    /// Does only the reads: open and read each file, list each directory, read each link.
    fn replay(&self) {
        let mut buffer = vec![0u8; 64 * 1024];
        for file in &self.files {
            if let Ok(mut file) = std::fs::File::open(file) {
                while matches!(std::io::Read::read(&mut file, &mut buffer), Ok(n) if n > 0) {}
            }
        }
        for dir in &self.dirs {
            if let Ok(entries) = std::fs::read_dir(dir) {
                entries.for_each(drop);
            }
        }
        for link in &self.links {
            let _ = std::fs::read_link(link);
        }
    }
}

/// Runs `census-agent scan` (one kind, or all) under strace and collects what it touched.
fn trace_scan(scanner: &Scanner, kind: Option<&str>) -> Result<Touched, String> {
    let log = std::env::temp_dir().join(format!("census-bench-{}.strace", std::process::id()));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new("strace");
    command
        .args(["-y", "-qq", "-e", "trace=openat,readlink,readlinkat", "-o"])
        .arg(&log)
        .arg(exe)
        .args(["scan", "--format", "json", "--host-root"])
        .arg(scanner.root.dir());
    if let Some(kind) = kind {
        command.args(["--only", kind]);
    }
    for dir in scanner.package_dirs.iter() {
        command.arg("--package-dir").arg(dir);
    }
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    child.wait_with_output().map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&log);
    Ok(parse_trace(&text))
}

/// Successful opens (files and directories, not O_PATH handles) and link reads of an
/// `strace -y` log, without the program's own loading (shared libraries, /proc/self/maps).
fn parse_trace(text: &str) -> Touched {
    let mut touched = Touched::default();
    let mut seen = std::collections::BTreeSet::new();
    // The traced program's pid, from how the kernel names its first /proc/self open.
    let own = text
        .lines()
        .find(|line| line.contains("\"/proc/self/"))
        .and_then(|line| line.rsplit_once("</proc/"))
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(pid, _)| format!("/proc/{pid}/"))
        .unwrap_or_else(|| "/proc/self/".into());
    for line in text.lines() {
        let Some((call, result)) = line.rsplit_once(") = ") else {
            continue;
        };
        if result.starts_with('-') {
            continue;
        }
        if line.starts_with("openat(") {
            if call.contains("O_PATH") {
                continue;
            }
            let Some(path) = result
                .split_once('<')
                .and_then(|(_, rest)| rest.strip_suffix('>'))
            else {
                continue;
            };
            if path.contains(".so") || path.starts_with("/dev/") || path == format!("{own}maps") {
                continue;
            }
            // The kernel names /proc/self/net/tcp as the traced pid's: replay it as self.
            let path = match path.strip_prefix(&own) {
                Some(rest) => format!("/proc/self/{rest}"),
                None => path.to_string(),
            };
            let path = path.as_str();
            let directory = call.contains("O_DIRECTORY");
            if seen.insert((directory, path.to_string())) {
                let list = if directory {
                    &mut touched.dirs
                } else {
                    &mut touched.files
                };
                list.push(PathBuf::from(path));
            }
        } else if let Some(args) = line.strip_prefix("readlinkat(") {
            let dir = args
                .split_once('<')
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(dir, _)| dir);
            let path = match (dir, args.split('"').nth(1)) {
                (_, Some(name)) if name.starts_with('/') => PathBuf::from(name),
                (Some(dir), Some(name)) => Path::new(dir).join(name),
                _ => continue,
            };
            if seen.insert((false, path.display().to_string())) {
                touched.links.push(path);
            }
        } else if let Some(name) = line
            .strip_prefix("readlink(")
            .and_then(|args| args.split('"').nth(1))
            && seen.insert((false, name.to_string()))
        {
            touched.links.push(PathBuf::from(name));
        }
    }
    touched
}

fn stats(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    match samples {
        [] => Default::default(),
        _ => (
            samples[samples.len() / 2],
            samples[0],
            samples[samples.len() - 1],
        ),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The process's peak resident set size, e.g. "7.9 MiB".
pub fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(format!("{:.1} MiB", kib as f64 / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_name_the_files_directories_and_links_read() {
        let log = r#"openat(AT_FDCWD</tmp>, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3</etc/ld.so.cache>
openat(AT_FDCWD</tmp>, "/proc/self/maps", O_RDONLY|O_CLOEXEC) = 3</proc/77/maps>
openat(AT_FDCWD</tmp>, "/proc/net/tcp", O_RDONLY|O_CLOEXEC) = 3</proc/77/net/tcp>
openat(AT_FDCWD</tmp>, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>
openat(AT_FDCWD</tmp>, "/missing", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)
openat(AT_FDCWD</tmp>, "/proc/1", O_RDONLY|O_PATH|O_DIRECTORY) = 3</proc/1>
openat(AT_FDCWD</tmp>, "/proc", O_RDONLY|O_CLOEXEC|O_DIRECTORY) = 3</proc>
openat(3</proc>, ".", O_RDONLY|O_CLOEXEC|O_DIRECTORY) = 4</proc>
openat(5</proc/1420>, "stat", O_RDONLY|O_CLOEXEC) = 6</proc/1420/stat>
readlinkat(3</proc/1420>, "exe", "/usr/sbin/dockerd", 256) = 17
readlinkat(3</proc/1>, "exe", 0x5652038d14b0, 256) = -1 EACCES (Permission denied)
readlink("/proc/1420/fd/3", "socket:[12]", 4096) = 11
"#;
        let touched = parse_trace(log);
        let files = ["/proc/self/net/tcp", "/etc/passwd", "/proc/1420/stat"].map(PathBuf::from);
        assert_eq!(touched.files, files);
        assert_eq!(touched.dirs, [PathBuf::from("/proc")]);
        assert_eq!(
            touched.links,
            [
                PathBuf::from("/proc/1420/exe"),
                PathBuf::from("/proc/1420/fd/3")
            ]
        );
    }

    #[test]
    fn thread_cpu_time_does_not_count_sleeping() {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        std::thread::sleep(Duration::from_millis(50));
        let slept_cpu = thread_cpu().saturating_sub(cpu);
        assert!(wall.elapsed() >= Duration::from_millis(50));
        assert!(
            slept_cpu < Duration::from_millis(20),
            "{slept_cpu:?} of CPU while sleeping"
        );
    }
}
