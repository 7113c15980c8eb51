//! systemd unit files (systemd.syntax(7)): `[Section]` headers and `Key=value`
//! assignments, with `#`/`;` comments and backslash continuations.
use std::collections::HashMap;

use super::{Skipped, numbered_lines};

/// A parsed unit file: its sections in the order they first appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unit {
    pub sections: Vec<Section>,
}

/// One section. A name that appears several times in the file has one `Section`
/// whose entries are those of every occurrence, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// `(key, value)` assignments as written (trimmed), empty resets included.
    pub entries: Vec<(String, String)>,
}

impl Unit {
    /// The value of the last assignment of `key`, or `None` when there is none or
    /// the last one is empty (`Key=` resets a setting to its default).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values(section, key)
            .last()
            .filter(|value| !value.is_empty())
    }

    /// Every value of a list setting (`ExecStartPre=`, `Environment=`, ...) in
    /// order; an empty assignment clears the values before it.
    pub fn get_all(&self, section: &str, key: &str) -> Vec<&str> {
        let mut all = Vec::new();
        for value in self.values(section, key) {
            if value.is_empty() {
                all.clear();
            } else {
                all.push(value);
            }
        }
        all
    }

    /// Whether the file has a `[name]` section (even an empty one).
    pub fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|section| section.name == name)
    }

    fn values<'a>(&'a self, section: &str, key: &str) -> impl Iterator<Item = &'a str> {
        self.sections
            .iter()
            .filter(move |s| s.name == section)
            .flat_map(|s| &s.entries)
            .filter(move |(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses one unit file. Assignments before the first section header or under a
/// malformed one, lines without `=`, and malformed headers are skipped; a
/// continued line is reported at its first line.
pub fn parse(text: &str) -> (Unit, Vec<Skipped>) {
    let mut parser = Parser::default();
    // The first line of the logical line being continued, and its text so far.
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in numbered_lines(text) {
        let line = match number {
            1 => line.strip_prefix('\u{feff}').unwrap_or(line),
            _ => line,
        };
        let (first, mut joined) = match pending.take() {
            // Comment lines inside a continuation are dropped, and it goes on after them.
            Some(continued) if is_comment(line) => {
                pending = Some(continued);
                continue;
            }
            Some(continued) => continued,
            None if line.trim().is_empty() || is_comment(line) => continue,
            None => (number, String::new()),
        };
        match strip_continuation(line) {
            Some(head) => {
                append(&mut joined, head);
                pending = Some((first, joined));
            }
            None => {
                append(&mut joined, line);
                parser.line(first, &joined);
            }
        }
    }
    if let Some((first, joined)) = pending {
        parser.line(first, &joined);
    }
    (parser.unit, parser.skipped)
}

#[derive(Default)]
struct Parser {
    unit: Unit,
    skipped: Vec<Skipped>,
    /// Index in `unit.sections` of each section name, so that a file of many
    /// sections is not searched once per header.
    sections: HashMap<String, usize>,
    /// Index in `unit.sections` of the section assignments go to.
    current: Option<usize>,
    /// Whether a header (valid or not) was seen, to word the skip reasons.
    seen_header: bool,
}

impl Parser {
    fn line(&mut self, number: usize, text: &str) {
        if let Err(reason) = self.try_line(text.trim()) {
            self.skipped.push(Skipped {
                line: number,
                reason,
            });
        }
    }

    fn try_line(&mut self, text: &str) -> Result<(), String> {
        if text.starts_with('[') {
            self.seen_header = true;
            self.current = None;
            let name = text
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .filter(|name| !name.is_empty() && !name.contains(['[', ']']))
                .ok_or("malformed section header")?;
            let sections = &mut self.unit.sections;
            let index = *self.sections.entry(name.to_string()).or_insert_with(|| {
                sections.push(Section {
                    name: name.to_string(),
                    entries: Vec::new(),
                });
                sections.len() - 1
            });
            self.current = Some(index);
            return Ok(());
        }
        let (key, value) = text
            .split_once('=')
            .ok_or("expected Key=value or a [Section] header")?;
        let key = key.trim();
        if key.is_empty() {
            return Err("assignment with an empty key".to_string());
        }
        let section = self
            .current
            .and_then(|index| self.unit.sections.get_mut(index))
            .ok_or(if self.seen_header {
                "assignment under a malformed section header"
            } else {
                "assignment before the first section header"
            })?;
        section
            .entries
            .push((key.to_string(), value.trim().to_string()));
        Ok(())
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with(['#', ';'])
}

/// The line without its trailing backslash when it continues on the next one. An
/// even number of trailing backslashes is escaped backslashes, not a continuation.
fn strip_continuation(line: &str) -> Option<&str> {
    let line = line.trim_end();
    let backslashes = line.len() - line.trim_end_matches('\\').len();
    if backslashes % 2 == 1 {
        line.strip_suffix('\\')
    } else {
        None
    }
}

/// Joins continuation pieces with a single space.
fn append(joined: &mut String, piece: &str) {
    let piece = piece.trim();
    if !joined.is_empty() && !piece.is_empty() {
        joined.push(' ');
    }
    joined.push_str(piece);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOCKER_SERVICE: &str = "\
[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
After=network-online.target docker.socket firewalld.service containerd.service time-set.target
Wants=network-online.target containerd.service
Requires=docker.socket

[Service]
Type=notify
# the default is not to use systemd for cgroups because the delegate issues still
# exists and systemd currently does not support the cgroup feature set required
# for containers run by docker
ExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=0
RestartSec=2
Restart=always

# Note that StartLimit* options were moved from \"Service\" to \"Unit\" in systemd 229.
StartLimitBurst=3
LimitNOFILE=infinity
Delegate=yes
KillMode=process
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
";

    #[test]
    fn parses_a_packaged_service() {
        let (unit, skipped) = parse(DOCKER_SERVICE);
        assert_eq!(skipped, vec![]);
        let names: Vec<_> = unit.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Unit", "Service", "Install"]);
        assert_eq!(
            unit.get("Service", "ExecStart"),
            Some("/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock")
        );
        assert_eq!(
            unit.get("Service", "ExecReload"),
            Some("/bin/kill -s HUP $MAINPID")
        );
        assert_eq!(unit.get("Install", "WantedBy"), Some("multi-user.target"));
        assert_eq!(unit.get("Unit", "ExecStart"), None);
        assert_eq!(unit.get("Service", "User"), None);
        assert_eq!(unit.sections[1].entries.len(), 11);
        assert!(unit.has_section("Install"));
        assert!(!unit.has_section("Socket"));
        assert!(!unit.has_section("install"));
    }

    #[test]
    fn resets_repeats_and_repeated_sections() {
        let text = "\
[Service]
ExecStartPre=/bin/true one
ExecStartPre=/bin/true two
User=nobody
Environment=A=1
[Unit]
Description=x
[Service]
ExecStartPre=
ExecStartPre=/bin/true three
User=
Environment=B=2 C=3
[X-Empty]
";
        let (unit, skipped) = parse(text);
        assert_eq!(skipped, vec![]);
        let names: Vec<_> = unit.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Service", "Unit", "X-Empty"]);
        assert_eq!(unit.get_all("Service", "ExecStartPre"), ["/bin/true three"]);
        assert_eq!(unit.get("Service", "ExecStartPre"), Some("/bin/true three"));
        assert_eq!(unit.get("Service", "User"), None);
        assert_eq!(unit.get_all("Service", "User"), Vec::<&str>::new());
        assert_eq!(unit.get_all("Service", "Environment"), ["A=1", "B=2 C=3"]);
        assert_eq!(unit.get_all("Service", "Missing"), Vec::<&str>::new());
        assert!(unit.has_section("X-Empty"));
    }

    #[test]
    fn comments_continuations_and_line_endings() {
        let text = "\u{feff}# leading comment\r\n; another\r\n\r\n[Service]   \r\n  \
                    ExecStart = /usr/bin/app \\\r\n    --flag one \\\r\n# comment inside\r\n   ; and another\r\n\
                    \t--flag two\r\nKey\t=\tvalue with  inner   spaces\t\r\nEscaped=C:\\\\\r\nNext=after\r\n\
                    Empty=\r\nEquals=a=b=c\r\n[Socket]\r\nListenStream=/run/app.sock \\";
        let (unit, skipped) = parse(text);
        assert_eq!(skipped, vec![]);
        assert_eq!(
            unit.get("Service", "ExecStart"),
            Some("/usr/bin/app --flag one --flag two")
        );
        assert_eq!(
            unit.get("Service", "Key"),
            Some("value with  inner   spaces")
        );
        assert_eq!(unit.get("Service", "Escaped"), Some("C:\\\\"));
        assert_eq!(unit.get("Service", "Next"), Some("after"));
        assert_eq!(unit.get("Service", "Empty"), None);
        assert_eq!(unit.get("Service", "Equals"), Some("a=b=c"));
        assert_eq!(unit.get("Socket", "ListenStream"), Some("/run/app.sock"));
        assert_eq!(unit.sections[0].entries[0].0, "ExecStart");
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line() {
        let text = "\
Orphan=before any section
[Unit]
Description=ok
just some words
=no key
[Broken
Lost=under a broken header
[]
[Service]
ExecStart=/bin/a \\
  continued without equals \\
  still
not an assignment \\
  either
Type=simple
";
        let (unit, skipped) = parse(text);
        let lines: Vec<_> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [1, 4, 5, 6, 7, 8, 13], "{skipped:?}");
        let reasons: Vec<_> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "assignment before the first section header",
                "expected Key=value or a [Section] header",
                "assignment with an empty key",
                "malformed section header",
                "assignment under a malformed section header",
                "malformed section header",
                "expected Key=value or a [Section] header",
            ]
        );
        assert_eq!(unit.get("Unit", "Description"), Some("ok"));
        assert_eq!(
            unit.get("Service", "ExecStart"),
            Some("/bin/a continued without equals still")
        );
        assert_eq!(unit.get("Service", "Type"), Some("simple"));
        let names: Vec<_> = unit.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Unit", "Service"]);
    }

    #[test]
    fn many_sections_take_linear_time() {
        // Found by scaling the fuzz inputs: each header searched every section so
        // far, and 250 KB of distinct headers took over ten seconds.
        let count = 100_000;
        let text: String = (0..count).map(|i| format!("[S{i}]\nKey={i}\n")).collect();
        let (unit, skipped) = parse(&text);
        assert_eq!(skipped, vec![]);
        assert_eq!(unit.sections.len(), count);
        assert_eq!(unit.get("S99999", "Key"), Some("99999"));
        // A repeated header still goes back to its first section.
        let (unit, _) = parse("[A]\nX=1\n[B]\nY=2\n[A]\nX=3\n");
        assert_eq!(unit.sections.len(), 2);
        assert_eq!(unit.get_all("A", "X"), ["1", "3"]);
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        let garbage =
            String::from_utf8_lossy(&[0xff, b'[', 0x00, b'\n', b'=', b'\\', b'\n', 0x80, b']'])
                .into_owned();
        let (unit, skipped) = parse(&garbage);
        assert!(unit.sections.is_empty());
        assert_eq!(skipped.len(), 2, "{skipped:?}");
    }

    proptest! {
        #[test]
        fn never_panics_and_reports_real_lines(
            text in "([a-zA-Z0-9\\[\\]=#; \t\r\n\\\\]|\\PC){0,200}"
        ) {
            let lines = text.lines().count();
            for skipped in parse(&text).1 {
                prop_assert!(skipped.line >= 1 && skipped.line <= lines);
            }
        }
    }
}
