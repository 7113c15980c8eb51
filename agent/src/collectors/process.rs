//! `process`: running user-space processes from /proc (kernel threads are left out).
use census_proto::v1::{Process, record::Body};
use procfs::process::{Process as ProcProcess, all_processes_with_root};
use procfs::{ProcError, page_size, ticks_per_second};

use super::{CollectError, Collector, Context, Observation, SMALL_FILE_LIMIT};

/// `PF_KTHREAD` in /proc/PID/stat flags: the task is a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;

#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let proc_dir = ctx.root.join("/proc");
        let processes = all_processes_with_root(&proc_dir).map_err(|error| CollectError::List {
            path: proc_dir.clone(),
            source: std::io::Error::other(error.to_string()),
        })?;
        let mut observations = Vec::new();
        for process in processes {
            // A process that exits while we look at it is simply not there.
            let Ok(process) = process else { continue };
            match observe(ctx, &process) {
                Ok(Some(observation)) => observations.push(observation),
                Ok(None) => {}
                Err(ProcError::NotFound(_)) => {}
                Err(error) => tracing::warn!(
                    path = %proc_dir.join(process.pid().to_string()).display(),
                    %error,
                    "skipping process"
                ),
            }
        }
        observations.sort_by_key(|o| match &o.body {
            Body::Process(p) => p.pid,
            _ => 0,
        });
        Ok(observations)
    }
}

fn observe(ctx: &Context, process: &ProcProcess) -> Result<Option<Observation>, ProcError> {
    let stat = process.stat()?;
    if stat.flags & PF_KTHREAD != 0 {
        return Ok(None);
    }
    let pid = u32::try_from(stat.pid).unwrap_or_default();
    // Without privileges, other users' exe links and cmdlines may be unreadable:
    // the process is still reported with what is visible.
    let exe = process
        .exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cmdline = process.cmdline().unwrap_or_default();
    let status_path = ctx.root.join(format!("/proc/{pid}/status"));
    let (uid, gid) = crate::root::read_limited(&status_path, SMALL_FILE_LIMIT)
        .ok()
        .and_then(|bytes| status_ids(&String::from_utf8_lossy(&bytes)))
        .unwrap_or_default();
    let ticks = ticks_per_second().max(1);
    let start_time = ctx
        .boot_time()
        .map(|boot| crate::rfc3339_secs(boot + (stat.starttime / ticks) as i64))
        .unwrap_or_default();
    let body = Process {
        pid,
        ppid: u32::try_from(stat.ppid).unwrap_or_default(),
        name: stat.comm.clone(),
        exe,
        cmdline,
        uid,
        user: ctx.user_name(uid).to_string(),
        gid,
        start_time,
        state: stat.state.to_string(),
        threads: u32::try_from(stat.num_threads).unwrap_or_default(),
        rss_bytes: stat.rss.saturating_mul(page_size()),
        cpu_time_ms: (stat.utime + stat.stime).saturating_mul(1000) / ticks,
    };
    Ok(Some(Observation::new(
        process_key(pid, stat.starttime),
        Body::Process(body),
    )))
}

/// A process's identity: its pid and start time in clock ticks since boot, which
/// together do not repeat while the host is up.
pub fn process_key(pid: u32, start_ticks: u64) -> String {
    format!("{pid}@{start_ticks}")
}

/// Real uid and gid from the `Uid:` and `Gid:` lines of /proc/PID/status.
fn status_ids(text: &str) -> Option<(u32, u32)> {
    let first_id = |prefix: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|ids| ids.split_whitespace().next())
            .and_then(|id| id.parse().ok())
    };
    Some((first_id("Uid:")?, first_id("Gid:")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::HostRoot;
    use std::path::Path;

    /// A /proc/PID/stat line as Linux 6.x writes it, with `comm` inserted verbatim.
    fn stat_line(pid: u32, comm: &str, ppid: u32, flags: u32, starttime: u64) -> String {
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 {flags} 1234 0 0 0 250 50 0 0 20 0 3 0 {starttime} \
             12345678 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn add_process(root: &Path, pid: u32, comm: &str, flags: u32, cmdline: &[&str], uid: u32) {
        write(
            root,
            &format!("proc/{pid}/stat"),
            &stat_line(pid, comm, 1, flags, 4200),
        );
        let mut args = cmdline.join("\0");
        args.push('\0');
        write(root, &format!("proc/{pid}/cmdline"), &args);
        write(
            root,
            &format!("proc/{pid}/status"),
            &format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t7\t7\t7\t7\n"),
        );
        std::os::unix::fs::symlink("/usr/bin/python3.11", root.join(format!("proc/{pid}/exe")))
            .unwrap();
    }

    #[test]
    fn parses_processes_with_parentheses_and_spaces_in_comm() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/stat", "btime 1700000000\n");
        write(
            root,
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        );
        add_process(
            root,
            4242,
            "my (odd) ) name",
            0x0040_0100,
            &["python3", "-m", "http.server"],
            1000,
        );
        add_process(root, 17, "kworker/0:1", PF_KTHREAD | 0x40, &[], 0);
        write(root, "proc/self", "not a process directory");

        let ctx = Context::new(HostRoot::new(root));
        let observations = ProcessCollector.collect(&ctx).unwrap();
        assert_eq!(
            observations.len(),
            1,
            "kernel threads are left out: {observations:?}"
        );
        assert_eq!(observations[0].key, "4242@4200");
        let Body::Process(p) = &observations[0].body else {
            panic!("not a process")
        };
        assert_eq!(p.pid, 4242);
        assert_eq!(p.ppid, 1);
        assert_eq!(p.name, "my (odd) ) name");
        assert_eq!(p.exe, "/usr/bin/python3.11");
        assert_eq!(p.cmdline, ["python3", "-m", "http.server"]);
        assert_eq!((p.uid, p.user.as_str(), p.gid), (1000, "alice", 7));
        assert_eq!(p.state, "S");
        assert_eq!(p.threads, 3);
        assert_eq!(
            p.start_time,
            crate::rfc3339_secs(1_700_000_000 + 4200 / ticks_per_second() as i64)
        );
        assert_eq!(p.rss_bytes, 2048 * page_size());
    }

    #[test]
    fn a_malformed_stat_skips_only_that_process() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/stat", "btime 1700000000\n");
        add_process(root, 10, "good", 0, &["good"], 0);
        add_process(root, 11, "bad", 0, &["bad"], 0);
        write(root, "proc/11/stat", "11 (bad no closing paren S 1\n");
        let observations = ProcessCollector
            .collect(&Context::new(HostRoot::new(root)))
            .unwrap();
        let keys: Vec<_> = observations.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["10@4200"]);
    }

    #[test]
    fn reads_uid_and_gid_from_status() {
        assert_eq!(
            status_ids("Name:\tbash\nUid:\t1000\t0\t0\t0\nGid:\t50\t50\t50\t50\n"),
            Some((1000, 50))
        );
        assert_eq!(status_ids("Name:\tbash\n"), None);
    }
}
