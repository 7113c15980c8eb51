//! `group`: local groups from /etc/group, with the sudoers rules that name them.
use census_proto::v1::{Group, record::Body};

use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct GroupCollector;

impl Collector for GroupCollector {
    fn kind(&self) -> &'static str {
        "group"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let groups = ctx.groups();
        if groups.is_empty() {
            let path = ctx.root.join("/etc/group");
            return Err(CollectError::Source(format!(
                "no groups in {}",
                path.display()
            )));
        }
        let gid_min = ctx.login_defs_number("GID_MIN").unwrap_or(1000);
        let rules = ctx.sudo_rules();
        Ok(groups
            .iter()
            .map(|group| {
                let principal = format!("%{}", group.name);
                let body = Group {
                    name: group.name.clone(),
                    gid: group.gid,
                    members: group.members.clone(),
                    system: group.gid < gid_min,
                    sudo_rules: rules
                        .iter()
                        .filter(|rule| rule.principal == principal)
                        .map(|rule| rule.rule.clone())
                        .collect(),
                };
                Observation::new(group.name.clone(), Body::Group(body))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn groups_carry_members_and_sudo_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nsudo:x:27:alice,bob\nstaff:x:1500:\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/sudoers"),
            "%sudo   ALL=(ALL:ALL)   ALL\n",
        )
        .unwrap();
        let observations = GroupCollector
            .collect(&test_context(HostRoot::new(dir.path())))
            .unwrap();
        let Body::Group(sudo) = &observations[1].body else {
            panic!()
        };
        assert_eq!(sudo.members, ["alice", "bob"]);
        assert!(sudo.system);
        assert_eq!(sudo.sudo_rules, ["%sudo ALL=(ALL:ALL) ALL"]);
        let Body::Group(staff) = &observations[2].body else {
            panic!()
        };
        assert!(!staff.system && staff.sudo_rules.is_empty());
    }
}
