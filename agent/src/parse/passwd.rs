//! `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`.
use super::{Parsed, numbered_lines};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

pub fn parse(text: &str) -> Parsed<PasswdEntry> {
    let mut parsed = Parsed::default();
    for (number, line) in numbered_lines(text) {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        // NIS compat entries ("+", "+@netgroup", "-user") name no local account.
        if line.starts_with(['+', '-']) {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() != 7 {
            parsed.skip(number, format!("expected 7 fields, found {}", fields.len()));
            continue;
        }
        let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) else {
            parsed.skip(number, format!("invalid uid or gid for {:?}", fields[0]));
            continue;
        };
        parsed.items.push(PasswdEntry {
            name: fields[0].to_string(),
            uid,
            gid,
            gecos: fields[4].to_string(),
            home: fields[5].to_string(),
            shell: fields[6].to_string(),
        });
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_skips_bad_lines() {
        let text = "root:x:0:0:root:/root:/bin/bash\r\n# comment\n+@admins\nbroken:x:1\n\
                    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nbad:x:abc:0:::\n";
        let parsed = parse(text);
        let names: Vec<_> = parsed
            .items
            .iter()
            .map(|e| (e.name.as_str(), e.uid))
            .collect();
        assert_eq!(names, [("root", 0), ("nobody", 65534)]);
        assert_eq!(parsed.items[0].shell, "/bin/bash");
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [4, 6]);
    }
}
