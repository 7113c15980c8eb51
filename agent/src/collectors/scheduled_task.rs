//! `scheduled_task`: cron entries (/etc/crontab, /etc/cron.d, user crontabs, the
//! cron.hourly/daily/weekly/monthly directories) and systemd timers.
use census_proto::v1::{ScheduledTask, record::Body};

use super::systemd::UnitFiles;
use super::{CollectError, Collector, Context, Observation};
use crate::parse::crontab;

#[derive(Debug)]
pub struct ScheduledTaskCollector;

/// run-parts directories and the schedule cron runs them on (Debian's /etc/crontab).
const PERIODIC_DIRS: &[(&str, &str)] = &[
    ("/etc/cron.hourly", "@hourly"),
    ("/etc/cron.daily", "@daily"),
    ("/etc/cron.weekly", "@weekly"),
    ("/etc/cron.monthly", "@monthly"),
];

/// Where user crontabs live: Debian, then Red Hat.
const USER_CRONTAB_DIRS: &[&str] = &["/var/spool/cron/crontabs", "/var/spool/cron"];

/// Timer settings that schedule a timer (systemd.timer(5)).
const TIMER_SETTINGS: &[&str] = &[
    "OnCalendar",
    "OnActiveSec",
    "OnBootSec",
    "OnStartupSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
];

impl Collector for ScheduledTaskCollector {
    fn kind(&self) -> &'static str {
        "scheduled_task"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut tasks = Vec::new();
        cron_file(ctx, "/etc/crontab", "crontab", None, &mut tasks);
        for name in run_parts_names(ctx, "/etc/cron.d") {
            cron_file(
                ctx,
                &format!("/etc/cron.d/{name}"),
                "cron.d",
                None,
                &mut tasks,
            );
        }
        for dir in USER_CRONTAB_DIRS {
            for user in list_files(ctx, dir) {
                cron_file(
                    ctx,
                    &format!("{dir}/{user}"),
                    "user-crontab",
                    Some(&user),
                    &mut tasks,
                );
            }
        }
        for (dir, schedule) in PERIODIC_DIRS {
            for name in run_parts_names(ctx, dir) {
                let path = format!("{dir}/{name}");
                tasks.push((
                    path.clone(),
                    ScheduledTask {
                        source: dir.trim_start_matches("/etc/").to_string(),
                        user: "root".into(),
                        schedule: schedule.to_string(),
                        command: path.clone(),
                        path,
                        ..Default::default()
                    },
                ));
            }
        }
        tasks.extend(timers(ctx));
        Ok(tasks
            .into_iter()
            .map(|(key, task)| Observation::new(key, Body::ScheduledTask(task)))
            .collect())
    }
}

fn cron_file(
    ctx: &Context,
    path: &str,
    source: &str,
    user: Option<&str>,
    tasks: &mut Vec<(String, ScheduledTask)>,
) {
    let Some(text) = ctx.read_optional(path) else {
        return;
    };
    let entries = crontab::parse(&text, user.is_none()).warn_skipped(&ctx.root.join(path));
    for entry in entries {
        let key = format!("{path}:{}", entry.line);
        let task = ScheduledTask {
            source: source.to_string(),
            user: entry
                .user
                .as_deref()
                .or(user)
                .unwrap_or_default()
                .to_string(),
            schedule: entry.schedule,
            command: ctx.redactor.command(&entry.command),
            path: path.to_string(),
            line: entry.line as u32,
            state: String::new(),
        };
        tasks.push((key, task));
    }
}

fn timers(ctx: &Context) -> Vec<(String, ScheduledTask)> {
    let files = UnitFiles::load(ctx);
    files
        .units
        .iter()
        .filter(|(name, _)| name.ends_with(".timer"))
        .map(|(name, file)| {
            let unit = files.parse(ctx, name);
            let schedule: Vec<String> = TIMER_SETTINGS
                .iter()
                .flat_map(|setting| {
                    unit.iter()
                        .flat_map(|u| u.get_all("Timer", setting))
                        .map(move |value| format!("{setting}={value}"))
                })
                .collect();
            let service = unit
                .as_ref()
                .and_then(|u| u.get("Timer", "Unit"))
                .map(str::to_string)
                .unwrap_or_else(|| name.replace(".timer", ".service"));
            let service_unit = files.parse(ctx, &service);
            let command = service_unit
                .as_ref()
                .map(|u| u.get_all("Service", "ExecStart").join(" ; "))
                .unwrap_or_default();
            let user = service_unit
                .as_ref()
                .and_then(|u| u.get("Service", "User"))
                .unwrap_or("root")
                .to_string();
            let task = ScheduledTask {
                source: "systemd-timer".into(),
                user,
                schedule: schedule.join("; "),
                command: ctx.redactor.command(&command),
                path: file.path.display().to_string(),
                line: 0,
                state: files.state(name, unit.as_ref()).into(),
            };
            (format!("systemd/{name}"), task)
        })
        .collect()
}

/// Regular files of a directory, sorted (symlinks followed inside the host root).
fn list_files(ctx: &Context, dir: &str) -> Vec<String> {
    let Ok(resolved) = ctx.root.resolve(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(resolved) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Files run-parts (and Debian's cron for /etc/cron.d) would run: names made only of
/// letters, digits, `_` and `-`, so `foo.dpkg-old` or `backup~` are left out.
fn run_parts_names(ctx: &Context, dir: &str) -> Vec<String> {
    list_files(ctx, dir)
        .into_iter()
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;
    use std::os::unix::fs::symlink;

    #[test]
    fn reports_cron_entries_periodic_scripts_and_timers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, text: &str| crate::collectors::write_fixture(root, path, text);
        write(
            "etc/crontab",
            "SHELL=/bin/sh\r\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\r\n",
        );
        write(
            "etc/cron.d/backup",
            "MAILTO=ops\n# nightly\n30 2 * * * backup /usr/local/bin/backup --password=s3cr3t!\nbad line\n",
        );
        write("etc/cron.d/backup.dpkg-old", "* * * * * root /bin/false\n");
        write(
            "var/spool/cron/crontabs/alice",
            "@reboot /home/alice/start.sh\n*/5 * * * * curl -s https://app:pw@example.com/ping\n",
        );
        write("etc/cron.daily/logrotate", "#!/bin/sh\n");
        write(
            "lib/systemd/system/apt-daily.timer",
            "[Timer]\nOnCalendar=*-*-* 6,18:00\nRandomizedDelaySec=12h\nPersistent=true\n[Install]\nWantedBy=timers.target\n",
        );
        write(
            "lib/systemd/system/apt-daily.service",
            "[Service]\nExecStart=/usr/lib/apt/apt.systemd.daily update\n",
        );
        std::fs::create_dir_all(root.join("etc/systemd/system/timers.target.wants")).unwrap();
        symlink(
            "/lib/systemd/system/apt-daily.timer",
            root.join("etc/systemd/system/timers.target.wants/apt-daily.timer"),
        )
        .unwrap();

        let observations = ScheduledTaskCollector
            .collect(&test_context(HostRoot::new(root)))
            .unwrap();
        let keys: Vec<_> = observations.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/etc/crontab:2",
                "/etc/cron.d/backup:3",
                "/var/spool/cron/crontabs/alice:1",
                "/var/spool/cron/crontabs/alice:2",
                "/etc/cron.daily/logrotate",
                "systemd/apt-daily.timer",
            ]
        );
        let task = |i: usize| match &observations[i].body {
            Body::ScheduledTask(t) => t.clone(),
            _ => unreachable!(),
        };
        assert_eq!(
            (task(0).user.as_str(), task(0).schedule.as_str()),
            ("root", "17 * * * *")
        );
        assert_eq!(task(1).user, "backup");
        assert!(!task(1).command.contains("s3cr3t") && !task(3).command.contains(":pw@"));
        assert_eq!(
            (
                task(2).source.as_str(),
                task(2).user.as_str(),
                task(2).schedule.as_str()
            ),
            ("user-crontab", "alice", "@reboot")
        );
        assert_eq!(
            (task(4).source.as_str(), task(4).schedule.as_str()),
            ("cron.daily", "@daily")
        );
        let timer = task(5);
        assert_eq!(timer.schedule, "OnCalendar=*-*-* 6,18:00");
        assert_eq!(timer.command, "/usr/lib/apt/apt.systemd.daily update");
        assert_eq!(timer.state, "enabled");
    }
}
