//! `census-agent bench`: times each collector over repeated scans of this host and
//! reports the agent's peak memory, as a Markdown table.
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::scan::Scanner;

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
    report
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
