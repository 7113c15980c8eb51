//! systemd unit files as systemd resolves them: the first directory holding a name
//! wins, `/etc` symlinks to /dev/null mask, `*.wants`/`*.requires` symlinks enable.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Context, SMALL_FILE_LIMIT};
use crate::parse::systemd_unit::{self, Unit};

/// Unit search path, highest precedence first (systemd.unit(5), system manager).
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Where a unit name resolved to.
#[derive(Debug, Clone)]
pub struct UnitFile {
    /// Host path of the file (or of the masking link).
    pub path: PathBuf,
    pub masked: bool,
    /// Another unit name this one is an alias of (a symlink to a differently named unit).
    pub alias_of: Option<String>,
}

/// The unit files of a host and which targets want each unit.
#[derive(Debug, Default)]
pub struct UnitFiles {
    pub units: BTreeMap<String, UnitFile>,
    /// Unit name -> targets whose `.wants`/`.requires` directory links to it.
    pub wanted_by: BTreeMap<String, BTreeSet<String>>,
}

impl UnitFiles {
    /// Lists every unit directory (names only; files are parsed on demand).
    pub fn load(ctx: &Context) -> Self {
        let mut files = UnitFiles::default();
        for dir in UNIT_DIRS {
            let Ok(resolved) = ctx.root.resolve(dir) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(&resolved) else {
                continue;
            };
            // /lib is often a link to /usr/lib: the same directory is read once.
            for entry in entries.flatten() {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let host_path = Path::new(dir).join(&name);
                let link = std::fs::read_link(entry.path()).ok();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
                    || (link.is_some() && entry.path().is_dir());
                if is_dir && (name.ends_with(".wants") || name.ends_with(".requires")) {
                    if dir.starts_with("/etc") || dir.starts_with("/run") {
                        let target = name
                            .rsplit_once('.')
                            .map(|(t, _)| t.to_string())
                            .unwrap_or_default();
                        files.read_wants(&entry.path(), &target);
                    }
                    continue;
                }
                if is_dir || !name.contains('.') || files.units.contains_key(&name) {
                    continue;
                }
                let masked = link.as_deref() == Some(Path::new("/dev/null"));
                let alias_of = link
                    .as_deref()
                    .and_then(|target| target.file_name()?.to_str().map(str::to_string))
                    .filter(|target| !masked && *target != name);
                files.units.insert(
                    name,
                    UnitFile {
                        path: host_path,
                        masked,
                        alias_of,
                    },
                );
            }
        }
        files
    }

    fn read_wants(&mut self, dir: &Path, target: &str) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if let Ok(name) = entry.file_name().into_string() {
                self.wanted_by
                    .entry(name)
                    .or_default()
                    .insert(target.to_string());
            }
        }
    }

    /// Parses a unit file, warning about malformed lines.
    pub fn parse(&self, ctx: &Context, name: &str) -> Option<Unit> {
        let file = self.units.get(name)?;
        if file.masked {
            return None;
        }
        let text = match ctx.root.read_string(&file.path, SMALL_FILE_LIMIT) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(%error, "skipping unreadable unit file");
                return None;
            }
        };
        let (unit, skipped) = systemd_unit::parse(&text);
        let path = ctx.root.join(&file.path);
        for skipped in skipped {
            tracing::warn!(path = %path.display(), line = skipped.line, reason = %skipped.reason, "skipped malformed input");
        }
        Some(unit)
    }

    /// Targets that want `name` (or, for an instance `foo@bar.service`, nothing more:
    /// instances are enabled through their own links).
    pub fn wanted_by(&self, name: &str) -> Vec<String> {
        self.wanted_by
            .get(name)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// systemctl's enablement state of a unit: masked, alias, enabled, static,
    /// indirect (a template enabled through instances, or never) or disabled.
    pub fn state(&self, name: &str, unit: Option<&Unit>) -> &'static str {
        let Some(file) = self.units.get(name) else {
            return "disabled";
        };
        if file.masked {
            return "masked";
        }
        if file.alias_of.is_some() {
            return "alias";
        }
        if self.wanted_by.contains_key(name) {
            return "enabled";
        }
        if let Some((prefix, suffix)) = name.split_once("@.") {
            let instance_enabled = self.wanted_by.keys().any(|wanted| {
                wanted.starts_with(&format!("{prefix}@")) && wanted.ends_with(&format!(".{suffix}"))
            });
            return if instance_enabled {
                "enabled"
            } else {
                "indirect"
            };
        }
        let installable = unit.is_some_and(|u| {
            ["WantedBy", "RequiredBy", "Also", "Alias"]
                .iter()
                .any(|key| u.get("Install", key).is_some())
        });
        if installable { "disabled" } else { "static" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolves_precedence_masks_aliases_and_enablement() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, text: &str| crate::collectors::write_fixture(root, path, text);
        write(
            "lib/systemd/system/ssh.service",
            "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n",
        );
        write(
            "lib/systemd/system/cron.service",
            "[Service]\nExecStart=/usr/sbin/cron -f\n[Install]\nWantedBy=multi-user.target\n",
        );
        write(
            "lib/systemd/system/systemd-journald.service",
            "[Service]\nExecStart=/lib/systemd/systemd-journald\n",
        );
        write(
            "lib/systemd/system/getty@.service",
            "[Service]\nExecStart=-/sbin/agetty\n[Install]\nWantedBy=getty.target\n",
        );
        write(
            "etc/systemd/system/cron.service",
            "[Service]\nExecStart=/usr/sbin/cron -f -L 15\n[Install]\nWantedBy=multi-user.target\n",
        );
        std::fs::create_dir_all(root.join("etc/systemd/system/multi-user.target.wants")).unwrap();
        std::fs::create_dir_all(root.join("etc/systemd/system/getty.target.wants")).unwrap();
        symlink(
            "/lib/systemd/system/ssh.service",
            root.join("etc/systemd/system/multi-user.target.wants/ssh.service"),
        )
        .unwrap();
        symlink(
            "/lib/systemd/system/getty@.service",
            root.join("etc/systemd/system/getty.target.wants/getty@tty1.service"),
        )
        .unwrap();
        symlink(
            "/lib/systemd/system/ssh.service",
            root.join("etc/systemd/system/sshd.service"),
        )
        .unwrap();
        write(
            "lib/systemd/system/apt-daily.service",
            "[Service]\nExecStart=/usr/lib/apt/apt.systemd.daily\n",
        );
        symlink(
            "/dev/null",
            root.join("etc/systemd/system/apt-daily.service"),
        )
        .unwrap();

        let ctx = test_context(HostRoot::new(root));
        let files = UnitFiles::load(&ctx);
        let state = |name: &str| files.state(name, files.parse(&ctx, name).as_ref());
        assert_eq!(state("ssh.service"), "enabled");
        assert_eq!(files.wanted_by("ssh.service"), ["multi-user.target"]);
        assert_eq!(state("cron.service"), "disabled");
        assert_eq!(
            files.units["cron.service"].path,
            Path::new("/etc/systemd/system/cron.service")
        );
        assert_eq!(state("systemd-journald.service"), "static");
        assert_eq!(state("getty@.service"), "enabled");
        assert_eq!(state("sshd.service"), "alias");
        assert_eq!(state("apt-daily.service"), "masked");
        assert!(files.parse(&ctx, "apt-daily.service").is_none());
    }
}
