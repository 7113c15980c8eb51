//! `/etc/group`: `name:password:gid:member1,member2`.
use super::{Parsed, numbered_lines};

/// One group. The password field (almost always `x`) is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// Supplementary members in file order; empty when the fourth field is.
    /// Primary members (users whose passwd gid is this group) are not listed here.
    pub members: Vec<String>,
}

/// Parses the whole file. Comments, blank lines and NIS compat lines (`+`, `-`)
/// are ignored; lines without four fields or with an invalid gid are skipped.
pub fn parse(text: &str) -> Parsed<GroupEntry> {
    let mut parsed = Parsed::default();
    for (number, line) in numbered_lines(text) {
        let line = line.trim_end();
        if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        // NIS compat entries ("+", "+@netgroup", "-group") name no local group.
        if line.starts_with(['+', '-']) {
            continue;
        }
        match parse_line(line) {
            Ok(entry) => parsed.items.push(entry),
            Err(reason) => parsed.skip(number, reason),
        }
    }
    parsed
}

fn parse_line(line: &str) -> Result<GroupEntry, String> {
    let fields: Vec<&str> = line.split(':').collect();
    let [name, _password, gid, members] = fields[..] else {
        return Err(format!("expected 4 fields, found {}", fields.len()));
    };
    if name.is_empty() {
        return Err("empty group name".to_string());
    }
    let gid = gid
        .trim()
        .parse()
        .map_err(|_| format!("invalid gid {gid:?} for group {name:?}"))?;
    let members = members
        .split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty())
        .map(str::to_string)
        .collect();
    Ok(GroupEntry {
        name: name.to_string(),
        gid,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(entry: &GroupEntry) -> Vec<&str> {
        entry.members.iter().map(String::as_str).collect()
    }

    #[test]
    fn parses_debian_group_file() {
        let text = "\
root:x:0:
daemon:x:1:
adm:x:4:syslog,alice
sudo:x:27:alice
docker:x:999:alice,bob,ci
nogroup:x:65534:
";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        let groups: Vec<_> = parsed
            .items
            .iter()
            .map(|g| (g.name.as_str(), g.gid))
            .collect();
        assert_eq!(
            groups,
            [
                ("root", 0),
                ("daemon", 1),
                ("adm", 4),
                ("sudo", 27),
                ("docker", 999),
                ("nogroup", 65534)
            ]
        );
        assert_eq!(members(&parsed.items[0]), Vec::<&str>::new());
        assert_eq!(members(&parsed.items[2]), ["syslog", "alice"]);
        assert_eq!(members(&parsed.items[4]), ["alice", "bob", "ci"]);
    }

    #[test]
    fn odd_but_valid_lines_are_accepted() {
        let text = "# /etc/group\r\n\r\n  # indented comment\nwheel:x:10:alice\r\n+@netgroup\n-games\n+\n\
                    staff:!:50:alice, bob,\t\nempty::100:,,\n";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(parsed.items.len(), 3);
        assert_eq!(parsed.items[0].name, "wheel");
        assert_eq!(members(&parsed.items[0]), ["alice"]);
        assert_eq!(members(&parsed.items[1]), ["alice", "bob"]);
        assert_eq!(parsed.items[2].gid, 100);
        assert_eq!(members(&parsed.items[2]), Vec::<&str>::new());
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line() {
        let text = "\
root:x:0:
only:three:fields
toomany:x:1:a:b
badgid:x:abc:alice
negative:x:-1:
:x:5:
users:x:100:
huge:x:4294967296:
";
        let parsed = parse(text);
        let names: Vec<_> = parsed.items.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["root", "users"]);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 8], "{:?}", parsed.skipped);
        assert_eq!(parsed.skipped[0].reason, "expected 4 fields, found 3");
        assert!(parsed.skipped[2].reason.contains("badgid"));
        assert_eq!(parsed.skipped[4].reason, "empty group name");
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        let garbage =
            String::from_utf8_lossy(&[0xff, b':', 0x00, b':', b'\n', b':', b':', b':', 0x80, b','])
                .into_owned();
        let parsed = parse(&garbage);
        assert!(parsed.items.is_empty());
        assert_eq!(parsed.skipped.len(), 2);
    }

    proptest! {
        #[test]
        fn never_panics_and_reports_real_lines(text in "([a-z0-9:,#+ \r\n-]|\\PC){0,200}") {
            let lines = text.lines().count();
            for skipped in parse(&text).skipped {
                prop_assert!(skipped.line >= 1 && skipped.line <= lines);
            }
        }
    }
}
