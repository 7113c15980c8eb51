//! `account`: local users from /etc/passwd, with their groups, shadow password aging
//! (whether a password is set, never the hash) and the sudoers rules that apply to them.
use std::collections::BTreeSet;

use census_proto::v1::{Account, record::Body};

use super::{CollectError, Collector, Context, Observation};
use crate::parse::shadow::{self, ShadowEntry};
use crate::parse::sudoers::SudoRule;

#[derive(Debug)]
pub struct AccountCollector;

/// Shells that do not let a user log in.
const NON_LOGIN_SHELLS: &[&str] = &["nologin", "false", "sync", "halt", "shutdown"];

impl Collector for AccountCollector {
    fn kind(&self) -> &'static str {
        "account"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let users = ctx.users();
        if users.is_empty() {
            let path = ctx.root.join("/etc/passwd");
            return Err(CollectError::Source(format!(
                "no accounts in {}",
                path.display()
            )));
        }
        // /etc/shadow is readable by root only: without it, aging is unknown.
        let shadow: Vec<ShadowEntry> =
            match ctx.root.read_string("/etc/shadow", super::SMALL_FILE_LIMIT) {
                Ok(text) => shadow::parse(&text).warn_skipped(&ctx.root.join("/etc/shadow")),
                Err(error) => {
                    tracing::debug!(%error, "no shadow password aging");
                    Vec::new()
                }
            };
        let groups = ctx.groups();
        let sudo_rules = ctx.sudo_rules();
        let uid_min = ctx.login_defs_number("UID_MIN").unwrap_or(1000);
        let observations = users
            .iter()
            .map(|user| {
                let primary = groups
                    .iter()
                    .find(|g| g.gid == user.gid)
                    .map(|g| g.name.clone())
                    .unwrap_or_default();
                let supplementary: Vec<String> = groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == &user.name))
                    .map(|g| g.name.clone())
                    .collect();
                let member_of: BTreeSet<&str> = supplementary
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::once(primary.as_str()))
                    .collect();
                let entry = shadow.iter().find(|s| s.name == user.name);
                let shell_name = user.shell.rsplit('/').next().unwrap_or_default();
                let account = Account {
                    name: user.name.clone(),
                    uid: user.uid,
                    gid: user.gid,
                    group: primary.clone(),
                    groups: supplementary.clone(),
                    gecos: user.gecos.clone(),
                    home: user.home.clone(),
                    shell: user.shell.clone(),
                    interactive: !shell_name.is_empty() && !NON_LOGIN_SHELLS.contains(&shell_name),
                    system: user.uid < uid_min,
                    password_status: entry
                        .map(|e| e.password_status.as_str())
                        .unwrap_or("unknown")
                        .to_string(),
                    password_last_change: entry
                        .and_then(|e| e.last_change_days)
                        .map(date_of_day)
                        .unwrap_or_default(),
                    password_min_days: entry.and_then(|e| e.min_days),
                    password_max_days: entry.and_then(|e| e.max_days),
                    password_warn_days: entry.and_then(|e| e.warn_days),
                    password_inactive_days: entry.and_then(|e| e.inactive_days),
                    account_expires: entry
                        .and_then(|e| e.expire_days)
                        .map(date_of_day)
                        .unwrap_or_default(),
                    sudo_rules: rules_for_user(
                        sudo_rules,
                        ctx.sudo_user_aliases(),
                        &user.name,
                        user.uid,
                        &member_of,
                    ),
                };
                Observation::new(user.name.clone(), Body::Account(account))
            })
            .collect();
        Ok(observations)
    }
}

/// The sudoers rules that name `user`: directly, by `#uid`, through one of its groups
/// (`%group`), through a User_Alias, or as `ALL`.
fn rules_for_user(
    rules: &[SudoRule],
    aliases: &std::collections::BTreeMap<String, Vec<String>>,
    user: &str,
    uid: u32,
    groups: &BTreeSet<&str>,
) -> Vec<String> {
    let names = |principal: &str| -> bool {
        principal == "ALL"
            || principal == user
            || principal
                .strip_prefix('#')
                .is_some_and(|id| id == uid.to_string())
            || principal
                .strip_prefix('%')
                .is_some_and(|group| groups.contains(group))
    };
    let mut matched: Vec<String> = rules
        .iter()
        .filter(|rule| {
            names(&rule.principal)
                || aliases
                    .get(&rule.principal)
                    .is_some_and(|members| members.iter().any(|member| names(member)))
        })
        .map(|rule| rule.rule.clone())
        .collect();
    matched.dedup();
    matched
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (shadow(5) dates).
fn date_of_day(days: i64) -> String {
    jiff::Timestamp::from_second(days.saturating_mul(86_400))
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    use crate::collectors::write_fixture as write;

    #[test]
    fn accounts_carry_groups_aging_and_sudo_rules_but_no_hash() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/sh\n",
        );
        write(
            root,
            "etc/group",
            "root:x:0:\ndaemon:x:1:\nsudo:x:27:alice\nalice:x:1000:\nbob:x:1001:\nops:x:2000:bob\n",
        );
        let hash = "$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnop";
        write(
            root,
            "etc/shadow",
            &format!(
                "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:{hash}:19700:1:90:7:14:20000:\nbob:!:19000::::::\n"
            ),
        );
        write(
            root,
            "etc/login.defs",
            "# comment\nUID_MIN\t\t\t 1000\nGID_MIN 1000\n",
        );
        write(
            root,
            "etc/sudoers",
            "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\nUser_Alias OPS = %ops\nOPS ALL=(root) /usr/bin/systemctl\n#includedir /etc/sudoers.d\n",
        );
        write(
            root,
            "etc/sudoers.d/bob",
            "bob ALL=(ALL) NOPASSWD: /usr/bin/apt\n",
        );
        write(root, "etc/sudoers.d/ignored~", "bob ALL=(ALL) ALL\n");

        let ctx = test_context(HostRoot::new(root));
        let observations = AccountCollector.collect(&ctx).unwrap();
        let json: Vec<String> = observations
            .iter()
            .map(|o| o.body.fields_json().to_string())
            .collect();
        assert!(
            json.iter().all(|j| !j.contains("saltsalt")),
            "the hash leaked: {json:?}"
        );
        let account = |name: &str| match &observations.iter().find(|o| o.key == name).unwrap().body
        {
            Body::Account(a) => a.clone(),
            _ => unreachable!(),
        };
        let alice = account("alice");
        assert_eq!(
            (alice.group.as_str(), alice.groups.clone()),
            ("alice", vec!["sudo".to_string()])
        );
        assert_eq!(alice.password_status, "set");
        assert_eq!(alice.password_last_change, "2023-12-09");
        assert_eq!(alice.password_max_days, Some(90));
        assert_eq!(alice.account_expires, "2024-10-04");
        assert!(alice.interactive && !alice.system);
        assert_eq!(alice.sudo_rules, ["%sudo ALL=(ALL:ALL) ALL"]);
        let bob = account("bob");
        assert_eq!(bob.password_status, "locked");
        assert_eq!(
            bob.sudo_rules,
            [
                "OPS ALL=(root) /usr/bin/systemctl",
                "bob ALL=(ALL) NOPASSWD: /usr/bin/apt"
            ]
        );
        let daemon = account("daemon");
        assert!(!daemon.interactive && daemon.system && daemon.sudo_rules.is_empty());
        assert_eq!(daemon.password_status, "no_password");
        assert_eq!(account("root").sudo_rules, ["root ALL=(ALL:ALL) ALL"]);
    }

    #[test]
    fn without_shadow_aging_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "etc/passwd",
            "alice:x:1000:1000::/home/alice:/bin/bash\n",
        );
        let observations = AccountCollector
            .collect(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        let Body::Account(alice) = &observations[0].body else {
            panic!()
        };
        assert_eq!(alice.password_status, "unknown");
        assert_eq!(alice.group, "");
    }
}
