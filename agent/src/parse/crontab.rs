//! crontab(5) files: user crontabs, and system ones (`/etc/crontab`, `/etc/cron.d/*`)
//! whose entries name the user the command runs as.
use super::{Parsed, numbered_lines};

/// One scheduled command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronEntry {
    pub line: usize,
    /// The five time fields joined by single spaces (`*/5 * * * mon-fri`), or the
    /// lowercased `@` keyword (`@reboot`, `@daily`, ...).
    pub schedule: String,
    /// The user column of system crontabs; `None` in user crontabs.
    pub user: Option<String>,
    /// The rest of the line as written, ends trimmed. cron turns an unescaped `%`
    /// into a newline and feeds what follows to the command's stdin; that is kept
    /// as written too.
    pub command: String,
}

const KEYWORDS: [&str; 8] = [
    "@reboot",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// The five time fields, and whether each may use names (`jan`, `mon-fri`).
const TIME_FIELDS: [(&str, bool); 5] = [
    ("minute", false),
    ("hour", false),
    ("day of month", false),
    ("month", true),
    ("day of week", true),
];

/// Parses one crontab. `system` is true for `/etc/crontab` and `/etc/cron.d/*`,
/// which have a user column after the schedule. Comments, blank lines and
/// environment assignments (`MAILTO=root`, `PATH = /usr/bin`) are not entries and
/// are passed over silently.
pub fn parse(text: &str, system: bool) -> Parsed<CronEntry> {
    let mut parsed = Parsed::default();
    for (number, line) in numbered_lines(text) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || is_assignment(line) {
            continue;
        }
        match parse_entry(line, system) {
            Ok((schedule, user, command)) => parsed.items.push(CronEntry {
                line: number,
                schedule,
                user,
                command,
            }),
            Err(reason) => parsed.skip(number, reason),
        }
    }
    parsed
}

/// `NAME=value` or `NAME = value`: the first word holds a `=`, or the text after
/// it starts with one, and the line does not start like a schedule.
fn is_assignment(line: &str) -> bool {
    if line.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@') {
        return false;
    }
    let (first, rest) = next_word(line);
    first.contains('=') || rest.trim_start().starts_with('=')
}

fn parse_entry(line: &str, system: bool) -> Result<(String, Option<String>, String), String> {
    let (first, mut rest) = next_word(line);
    let schedule = if first.starts_with('@') {
        let keyword = first.to_ascii_lowercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(format!("unknown schedule keyword {first:?}"));
        }
        keyword
    } else {
        let mut fields = Vec::with_capacity(TIME_FIELDS.len());
        for (index, (name, names_allowed)) in TIME_FIELDS.into_iter().enumerate() {
            let field = match index {
                0 => first,
                _ => {
                    let (field, after) = next_word(rest);
                    rest = after;
                    field
                }
            };
            if field.is_empty() {
                return Err(format!("schedule has no {name} field"));
            }
            if !valid_time_field(field, names_allowed) {
                return Err(format!("invalid {name} field {field:?}"));
            }
            fields.push(field);
        }
        fields.join(" ")
    };
    let user = if system {
        let (user, after) = next_word(rest);
        if user.is_empty() {
            return Err("entry has no user".to_string());
        }
        rest = after;
        Some(user.to_string())
    } else {
        None
    };
    let command = rest.trim();
    if command.is_empty() {
        return Err("entry has no command".to_string());
    }
    Ok((schedule, user, command.to_string()))
}

/// Numbers, `*`, lists, ranges and steps; names only in the month and day-of-week fields.
fn valid_time_field(field: &str, names_allowed: bool) -> bool {
    field.chars().all(|c| {
        c.is_ascii_digit()
            || matches!(c, '*' | ',' | '/' | '-')
            || (names_allowed && c.is_ascii_alphabetic())
    })
}

/// The first whitespace-delimited word of `text` and what follows it, untrimmed.
fn next_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    text.split_at_checked(end).unwrap_or((text, ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(parsed: &Parsed<CronEntry>) -> Vec<(usize, &str, Option<&str>, &str)> {
        parsed
            .items
            .iter()
            .map(|e| {
                (
                    e.line,
                    e.schedule.as_str(),
                    e.user.as_deref(),
                    e.command.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn parses_the_debian_system_crontab() {
        let text = "\
# /etc/crontab: system-wide crontab
# Unlike any other crontab you don't have to run the `crontab'
# command to install the new version when you edit this file

SHELL=/bin/sh
# You can also override PATH, but by default, newer versions inherit it from the environment
#PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin

# Example of job definition:
# .---------------- minute (0 - 59)
# |  .------------- hour (0 - 23)
# *  *  *  *  * user-name command to be executed
17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }
47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }
52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }
#
";
        let parsed = parse(text, true);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(
            entries(&parsed),
            [
                (
                    13,
                    "17 * * * *",
                    Some("root"),
                    "cd / && run-parts --report /etc/cron.hourly"
                ),
                (
                    14,
                    "25 6 * * *",
                    Some("root"),
                    "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }"
                ),
                (
                    15,
                    "47 6 * * 7",
                    Some("root"),
                    "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }"
                ),
                (
                    16,
                    "52 6 1 * *",
                    Some("root"),
                    "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }"
                ),
            ]
        );
    }

    #[test]
    fn user_crontab_with_keywords_names_and_assignments() {
        let text = "\
MAILTO=\"ops@example.com\"\r
PATH = /usr/local/bin:/usr/bin\r
 CRON_TZ =Europe/Paris\r
HOME='/home/alice'\r
\r
   # indented comment\r
*/5 * * * * /usr/bin/backup --quick   >/dev/null   2>&1   \r
0 9-17/2 * JAN-mar mon-fri   echo \"work hours\" % input\r
@reboot   /home/alice/bin/start-tunnel\r
@Daily /usr/bin/cleanup\r
@ANNUALLY  /usr/bin/yearly\r
1,2,3 0 1-15 */2 sun   FOO=bar /usr/bin/env-in-command\r
";
        let parsed = parse(text, false);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(
            entries(&parsed),
            [
                (
                    7,
                    "*/5 * * * *",
                    None,
                    "/usr/bin/backup --quick   >/dev/null   2>&1"
                ),
                (
                    8,
                    "0 9-17/2 * JAN-mar mon-fri",
                    None,
                    "echo \"work hours\" % input"
                ),
                (9, "@reboot", None, "/home/alice/bin/start-tunnel"),
                (10, "@daily", None, "/usr/bin/cleanup"),
                (11, "@annually", None, "/usr/bin/yearly"),
                (
                    12,
                    "1,2,3 0 1-15 */2 sun",
                    None,
                    "FOO=bar /usr/bin/env-in-command"
                ),
            ]
        );
    }

    #[test]
    fn system_keyword_entries_have_a_user() {
        let parsed = parse("@hourly www-data /usr/bin/php /srv/cron.php\n", true);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(
            entries(&parsed),
            [(1, "@hourly", Some("www-data"), "/usr/bin/php /srv/cron.php")]
        );
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line() {
        let text = "\
0 * * * * root /bin/ok
* * * *
* * * * * root
* * * * *
@every5m root /bin/x
@reboot
x * * * * root /bin/x
0 jan * * * root /bin/x
0 0 ? * * root /bin/x
0 0 * * mon;tue root /bin/x
hello world
@weekly root /bin/fine
";
        let parsed = parse(text, true);
        let lines: Vec<_> = parsed.items.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 12]);
        let skipped: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(
            skipped,
            [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            "{:?}",
            parsed.skipped
        );
        let reasons: Vec<_> = parsed.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "schedule has no day of week field",
                "entry has no command",
                "entry has no user",
                "unknown schedule keyword \"@every5m\"",
                "entry has no user",
                "invalid minute field \"x\"",
                "invalid hour field \"jan\"",
                "invalid day of month field \"?\"",
                "invalid day of week field \"mon;tue\"",
                "invalid minute field \"hello\"",
            ]
        );
    }

    #[test]
    fn user_crontab_needs_only_a_command() {
        let parsed = parse("* * * * * root\n@daily\n", false);
        assert_eq!(entries(&parsed), [(1, "* * * * *", None, "root")]);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2]);
        assert_eq!(parsed.skipped[0].reason, "entry has no command");
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        let garbage = String::from_utf8_lossy(&[
            0xff, b' ', b'*', b'\n', b'@', 0x80, b'\n', b'*', b' ', 0x00, b'=', b'\n',
        ])
        .into_owned();
        let parsed = parse(&garbage, true);
        assert!(parsed.items.is_empty());
        assert_eq!(parsed.skipped.len(), 3, "{:?}", parsed.skipped);
    }

    proptest! {
        #[test]
        fn never_panics_and_reports_real_lines(
            text in "([a-z0-9*,/@=# \t\r\n-]|\\PC){0,200}",
            system in any::<bool>(),
        ) {
            let lines = text.lines().count();
            let parsed = parse(&text, system);
            let reported = parsed
                .skipped
                .iter()
                .map(|s| s.line)
                .chain(parsed.items.iter().map(|e| e.line));
            for line in reported {
                prop_assert!(line >= 1 && line <= lines);
            }
        }
    }
}
