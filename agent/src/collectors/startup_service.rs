//! `startup_service`: what the node starts at boot: systemd services with their
//! enablement, SysV init scripts with their runlevel links, and /etc/rc.local.
use census_proto::v1::{StartupService, record::Body};

use super::systemd::UnitFiles;
use super::{CollectError, Collector, Context, Observation, SMALL_FILE_LIMIT};

#[derive(Debug)]
pub struct StartupServiceCollector;

/// Runlevels whose `S` links mean "started at boot" on a multi-user system.
const BOOT_RUNLEVELS: &[&str] = &["2", "3", "4", "5"];

impl Collector for StartupServiceCollector {
    fn kind(&self) -> &'static str {
        "startup_service"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut services = systemd_services(ctx);
        services.extend(sysv_scripts(ctx));
        services.extend(rc_local(ctx));
        Ok(services
            .into_iter()
            .map(|s| Observation::new(format!("{}/{}", s.source, s.name), Body::StartupService(s)))
            .collect())
    }
}

fn systemd_services(ctx: &Context) -> Vec<StartupService> {
    let files = UnitFiles::load(ctx);
    files
        .units
        .iter()
        .filter(|(name, _)| name.ends_with(".service"))
        .map(|(name, file)| {
            let unit = files.parse(ctx, name);
            let get = |section: &str, key: &str| {
                unit.as_ref()
                    .and_then(|u| u.get(section, key))
                    .unwrap_or_default()
                    .to_string()
            };
            let exec_start = unit
                .as_ref()
                .map(|u| u.get_all("Service", "ExecStart").join(" ; "))
                .unwrap_or_default();
            StartupService {
                name: name.clone(),
                source: "systemd".into(),
                path: file.path.display().to_string(),
                state: files.state(name, unit.as_ref()).into(),
                description: get("Unit", "Description"),
                exec_start: ctx.redactor.command(&exec_start),
                user: get("Service", "User"),
                wanted_by: files.wanted_by(name),
            }
        })
        .collect()
}

fn sysv_scripts(ctx: &Context) -> Vec<StartupService> {
    let Ok(dir) = ctx.root.resolve("/etc/init.d") else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| {
            e.file_type()
                .map(|t| t.is_file() || t.is_symlink())
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            !matches!(
                name.as_str(),
                "README"
                    | "skeleton"
                    | "rc"
                    | "rcS"
                    | ".depend.boot"
                    | ".depend.start"
                    | ".depend.stop"
            )
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = format!("/etc/init.d/{name}");
            let text = ctx
                .root
                .read_string(&path, SMALL_FILE_LIMIT)
                .unwrap_or_default();
            let enabled = BOOT_RUNLEVELS
                .iter()
                .any(|level| runlevel_starts(ctx, level, &name));
            StartupService {
                description: lsb_field(&text, "Short-Description").unwrap_or_default(),
                source: "sysv".into(),
                state: if enabled { "enabled" } else { "disabled" }.into(),
                exec_start: format!("{path} start"),
                path,
                name,
                ..Default::default()
            }
        })
        .collect()
}

/// Whether /etc/rcN.d holds an `S<NN><name>` link.
fn runlevel_starts(ctx: &Context, level: &str, name: &str) -> bool {
    let Ok(dir) = ctx.root.resolve(format!("/etc/rc{level}.d")) else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry.file_name().to_str().is_some_and(|link| {
            link.strip_prefix('S')
                .map(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()))
                == Some(name)
        })
    })
}

/// A field of an init script's LSB header (`# Short-Description: ...`).
fn lsb_field(text: &str, field: &str) -> Option<String> {
    let header = text
        .split("### BEGIN INIT INFO")
        .nth(1)?
        .split("### END INIT INFO")
        .next()?;
    header.lines().find_map(|line| {
        let line = line.trim_start_matches('#').trim();
        line.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

fn rc_local(ctx: &Context) -> Option<StartupService> {
    let text = ctx.read_optional("/etc/rc.local")?;
    let commands: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && *line != "exit 0")
        .map(|line| ctx.redactor.command(line))
        .collect();
    let executable = ctx
        .root
        .resolve("/etc/rc.local")
        .and_then(std::fs::metadata)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
        .unwrap_or(false);
    Some(StartupService {
        name: "rc.local".into(),
        source: "rc.local".into(),
        path: "/etc/rc.local".into(),
        // systemd's rc-local generator runs it only when it is executable.
        state: if executable { "enabled" } else { "disabled" }.into(),
        exec_start: commands.join(" ; "),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn reports_systemd_sysv_and_rc_local_with_secrets_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, text: &str| crate::collectors::write_fixture(root, path, text);
        write(
            "lib/systemd/system/app.service",
            "[Unit]\nDescription=App server\n[Service]\nUser=app\nExecStart=/opt/app/bin/app \\\n  --db-password=hunter22 --port 8080\n[Install]\nWantedBy=multi-user.target\n",
        );
        std::fs::create_dir_all(root.join("etc/systemd/system/multi-user.target.wants")).unwrap();
        symlink(
            "/lib/systemd/system/app.service",
            root.join("etc/systemd/system/multi-user.target.wants/app.service"),
        )
        .unwrap();
        write(
            "etc/init.d/legacy",
            "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: legacy\n# Short-Description: Legacy daemon\n### END INIT INFO\n",
        );
        std::fs::create_dir_all(root.join("etc/rc2.d")).unwrap();
        symlink("../init.d/legacy", root.join("etc/rc2.d/S01legacy")).unwrap();
        write("etc/init.d/README", "not a script");
        write(
            "etc/rc.local",
            "#!/bin/sh -e\n# comment\n/usr/local/bin/tunnel --token ghp_abcdefghijklmnopqrstuvwxyz0123456789\nexit 0\n",
        );
        std::fs::set_permissions(
            root.join("etc/rc.local"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();

        let observations = StartupServiceCollector
            .collect(&test_context(HostRoot::new(root)))
            .unwrap();
        let keys: Vec<_> = observations.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["systemd/app.service", "sysv/legacy", "rc.local/rc.local"]
        );
        let text: String = observations
            .iter()
            .map(|o| o.body.fields_json().to_string())
            .collect();
        assert!(
            !text.contains("hunter22") && !text.contains("ghp_abcdef"),
            "{text}"
        );
        let Body::StartupService(app) = &observations[0].body else {
            panic!()
        };
        assert_eq!(
            (
                app.state.as_str(),
                app.user.as_str(),
                app.description.as_str()
            ),
            ("enabled", "app", "App server")
        );
        assert!(
            app.exec_start
                .starts_with("/opt/app/bin/app --db-password=<redacted:"),
            "{}",
            app.exec_start
        );
        assert!(
            app.exec_start.ends_with("--port 8080"),
            "{}",
            app.exec_start
        );
        let Body::StartupService(legacy) = &observations[1].body else {
            panic!()
        };
        assert_eq!(
            (legacy.state.as_str(), legacy.description.as_str()),
            ("enabled", "Legacy daemon")
        );
        let Body::StartupService(rc) = &observations[2].body else {
            panic!()
        };
        assert_eq!(rc.state, "enabled");
        assert!(
            rc.exec_start
                .starts_with("/usr/local/bin/tunnel --token <redacted:"),
            "{}",
            rc.exec_start
        );
    }
}
