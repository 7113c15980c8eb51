//! `process`: running user-space processes from /proc (kernel threads are left out),
//! with the executable's SHA-256 and the container each one runs in.
use census_proto::v1::{Process, record::Body};
use procfs::process::{Process as ProcProcess, all_processes_with_root};
use procfs::{ProcError, page_size, ticks_per_second};

use super::{CollectError, Collector, Context, Observation, SMALL_FILE_LIMIT};
use crate::parse::cgroup::{self, ContainerRef};

/// `PF_KTHREAD` in /proc/PID/stat flags: the task is a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;

/// A process as read from /proc. The command line is raw (it may hold secrets): it
/// stays in memory for derived kinds and is redacted before any record is made.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub exe: String,
    pub cmdline: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    pub state: char,
    pub threads: u32,
    pub rss_bytes: u64,
    pub cpu_time_ms: u64,
    pub container: Option<ContainerRef>,
}

impl ProcessInfo {
    /// The process record's key.
    pub fn key(&self) -> String {
        process_key(self.pid, self.start_ticks)
    }

    /// Path of a file under this process's /proc directory, under the host root.
    pub fn proc_path(&self, ctx: &Context, file: &str) -> std::path::PathBuf {
        ctx.root.join(format!("/proc/{}/{file}", self.pid))
    }
}

/// Reads every user-space process, sorted by pid.
pub fn gather(ctx: &Context) -> Result<Vec<ProcessInfo>, CollectError> {
    let proc_dir = ctx.root.join("/proc");
    // A root with no /proc at all (a mounted image, a backup) runs no processes.
    if !proc_dir.exists() {
        return Ok(Vec::new());
    }
    let processes = all_processes_with_root(&proc_dir).map_err(|error| CollectError::List {
        path: proc_dir.clone(),
        source: std::io::Error::other(error.to_string()),
    })?;
    let mut gathered = Vec::new();
    for process in processes {
        // A process that exits while we look at it is simply not there.
        let Ok(process) = process else { continue };
        match read_process(ctx, &process) {
            Ok(Some(info)) => gathered.push(info),
            Ok(None) | Err(ProcError::NotFound(_)) => {}
            Err(error) => tracing::warn!(
                path = %proc_dir.join(process.pid().to_string()).display(),
                %error,
                "skipping process"
            ),
        }
    }
    gathered.sort_by_key(|p| p.pid);
    Ok(gathered)
}

fn read_process(ctx: &Context, process: &ProcProcess) -> Result<Option<ProcessInfo>, ProcError> {
    let stat = process.stat()?;
    if stat.flags & PF_KTHREAD != 0 {
        return Ok(None);
    }
    let pid = u32::try_from(stat.pid).unwrap_or_default();
    let read_small = |file: &str| {
        crate::root::read_limited(
            &ctx.root.join(format!("/proc/{pid}/{file}")),
            SMALL_FILE_LIMIT,
        )
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    };
    let (uid, gid) = read_small("status")
        .and_then(|text| status_ids(&text))
        .unwrap_or_default();
    let ticks = ticks_per_second().max(1);
    Ok(Some(ProcessInfo {
        pid,
        ppid: u32::try_from(stat.ppid).unwrap_or_default(),
        comm: stat.comm.clone(),
        // Without privileges, other users' exe links and cmdlines may be unreadable:
        // the process is still reported with what is visible.
        exe: process
            .exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        cmdline: process.cmdline().unwrap_or_default(),
        uid,
        gid,
        start_ticks: stat.starttime,
        state: stat.state,
        threads: u32::try_from(stat.num_threads).unwrap_or_default(),
        rss_bytes: stat.rss.saturating_mul(page_size()),
        cpu_time_ms: (stat.utime + stat.stime).saturating_mul(1000) / ticks,
        container: read_small("cgroup").and_then(|text| cgroup::container_of(&text)),
    }))
}

#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let ticks = ticks_per_second().max(1);
        let observations = ctx
            .processes()?
            .iter()
            .map(|p| {
                let exe_sha256 = if p.exe.is_empty() {
                    String::new()
                } else {
                    match ctx.cache.exe(&p.proc_path(ctx, "exe")) {
                        Ok(info) => info.sha256.clone(),
                        Err(error) => {
                            tracing::debug!(pid = p.pid, exe = %p.exe, %error, "cannot hash executable");
                            String::new()
                        }
                    }
                };
                let start_time = ctx
                    .boot_time()
                    .map(|boot| crate::rfc3339_secs(boot + (p.start_ticks / ticks) as i64))
                    .unwrap_or_default();
                let body = Process {
                    pid: p.pid,
                    ppid: p.ppid,
                    name: p.comm.clone(),
                    exe: p.exe.clone(),
                    cmdline: ctx.redactor.args(&p.cmdline),
                    uid: p.uid,
                    user: ctx.user_name(p.uid).to_string(),
                    gid: p.gid,
                    start_time,
                    state: p.state.to_string(),
                    threads: p.threads,
                    rss_bytes: p.rss_bytes,
                    cpu_time_ms: p.cpu_time_ms,
                    exe_sha256,
                    container_id: p.container.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
                    container_runtime: p.container.as_ref().map(|c| c.runtime.to_string()).unwrap_or_default(),
                };
                Observation::new(p.key(), Body::Process(body))
            })
            .collect();
        Ok(observations)
    }
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
    use crate::collectors::test_context;
    use crate::root::HostRoot;
    use std::path::Path;

    /// A /proc/PID/stat line as Linux 6.x writes it, with `comm` inserted verbatim.
    fn stat_line(pid: u32, comm: &str, ppid: u32, flags: u32, starttime: u64) -> String {
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 {flags} 1234 0 0 0 250 50 0 0 20 0 3 0 {starttime} \
             12345678 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    use crate::collectors::write_fixture as write;

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

        let ctx = test_context(HostRoot::new(root));
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
    fn processes_carry_their_executable_hash_and_container() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/stat", "btime 1700000000\n");
        add_process(root, 77, "app", 0, &["/app/server"], 0);
        let exe = root.join("app-binary");
        std::fs::write(&exe, b"hello").unwrap();
        std::fs::remove_file(root.join("proc/77/exe")).unwrap();
        std::os::unix::fs::symlink(&exe, root.join("proc/77/exe")).unwrap();
        let id = "0123456789abcdef".repeat(4);
        write(
            root,
            "proc/77/cgroup",
            &format!("0::/system.slice/docker-{id}.scope\n"),
        );

        let observations = ProcessCollector
            .collect(&test_context(HostRoot::new(root)))
            .unwrap();
        let Body::Process(p) = &observations[0].body else {
            panic!("not a process")
        };
        assert_eq!(
            p.exe_sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            (p.container_id.as_str(), p.container_runtime.as_str()),
            (id.as_str(), "docker")
        );
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
            .collect(&test_context(HostRoot::new(root)))
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
