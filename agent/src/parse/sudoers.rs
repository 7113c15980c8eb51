//! sudoers(5): who may run what as whom. Keeps each rule with the principal it
//! grants, the user aliases a principal may name, and the include directives.
use std::collections::BTreeMap;

use super::{Skipped, numbered_lines};

/// One user-specification line, once per principal in its user list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoRule {
    /// The (first, for continued lines) line of the rule, 1-based.
    pub line: usize,
    /// The user-list item as written: `alice`, `%admin`, `#1000`, `ALL`, `!bob`,
    /// or a `User_Alias` name (see [`Sudoers::user_aliases`]).
    pub principal: String,
    /// The whole rule, continuations joined and whitespace collapsed to single
    /// spaces, e.g. `%sudo ALL=(ALL:ALL) ALL`.
    pub rule: String,
}

/// An `#include`/`@include` (a file) or `#includedir`/`@includedir` (a directory)
/// directive. The path is as written: relative paths are relative to the
/// directory of the including file, and `%h` stands for the short host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub line: usize,
    pub path: String,
    pub directory: bool,
}

/// What one sudoers file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sudoers {
    pub rules: Vec<SudoRule>,
    pub includes: Vec<Include>,
    /// `User_Alias` name to its members as written; the last definition of a name wins.
    pub user_aliases: BTreeMap<String, Vec<String>>,
    pub skipped: Vec<Skipped>,
}

/// Parses one sudoers file (includes are not followed). `Defaults` lines and
/// `Runas_Alias`, `Host_Alias` and `Cmnd_Alias` definitions are ignored.
pub fn parse(text: &str) -> Sudoers {
    let mut sudoers = Sudoers::default();
    let mut rule_budget = MAX_RULE_TEXT;
    let mut lines = numbered_lines(text);
    while let Some((number, first)) = lines.next() {
        let trimmed = first.trim();
        // A comment ends at its line: a trailing backslash does not continue it.
        if trimmed.is_empty() || is_comment(trimmed) {
            continue;
        }
        let mut logical = String::new();
        let mut current = first;
        while let Some(head) = strip_continuation(current) {
            logical.push_str(head);
            logical.push(' ');
            match lines.next() {
                Some((_, next)) => current = next,
                None => {
                    current = "";
                    break;
                }
            }
        }
        logical.push_str(current);
        if let Err(reason) = sudoers.add(number, logical.trim(), &mut rule_budget) {
            sudoers.skipped.push(Skipped {
                line: number,
                reason,
            });
        }
    }
    sudoers
}

const IGNORED_ALIASES: [&str; 4] = ["Runas_Alias", "Host_Alias", "Cmnd_Alias", "Cmd_Alias"];

/// Bytes of rule text kept for one file, counting the copy each principal gets: a
/// long user list on a long rule would otherwise multiply the file's size in memory
/// (a 40 KB line took a gigabyte). Real files hold a few kilobytes of rules.
const MAX_RULE_TEXT: usize = 16 * 1024 * 1024;

impl Sudoers {
    /// Records one logical (continuations joined, trimmed, non-comment) line; its
    /// rules are refused when they would take more than what is left of `rule_budget`.
    fn add(&mut self, line: usize, text: &str, rule_budget: &mut usize) -> Result<(), String> {
        if let Some((directory, rest)) = include_directive(text) {
            let path = include_path(rest).ok_or("include directive without a path")?;
            self.includes.push(Include {
                line,
                path,
                directory,
            });
            return Ok(());
        }
        let text = strip_trailing_comment(text);
        let (keyword, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        if is_defaults(keyword) || IGNORED_ALIASES.contains(&keyword) {
            return Ok(());
        }
        if keyword == "User_Alias" {
            for (name, members) in user_aliases(rest)? {
                self.user_aliases.insert(name, members);
            }
            return Ok(());
        }
        let rule = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let principals = user_list(text)?;
        let copies = principals.len().saturating_mul(rule.len());
        if copies > *rule_budget {
            return Err(format!(
                "rule for {} principals would take more than the {MAX_RULE_TEXT} bytes of rules kept per file",
                principals.len()
            ));
        }
        *rule_budget -= copies;
        for principal in principals {
            self.rules.push(SudoRule {
                line,
                principal,
                rule: rule.clone(),
            });
        }
        Ok(())
    }
}

/// A `#` line that is neither an include directive nor a rule for a uid (`#1000 ALL=...`).
fn is_comment(trimmed: &str) -> bool {
    match trimmed.strip_prefix('#') {
        Some(rest) => {
            !rest.starts_with(|c: char| c.is_ascii_digit()) && include_directive(trimmed).is_none()
        }
        None => false,
    }
}

/// The line without its trailing (unescaped) backslash, when it has one.
fn strip_continuation(line: &str) -> Option<&str> {
    let line = line.trim_end();
    let backslashes = line.len() - line.trim_end_matches('\\').len();
    if backslashes % 2 == 1 {
        line.strip_suffix('\\')
    } else {
        None
    }
}

/// Whether it is the directory form, and the text after the directive word.
fn include_directive(text: &str) -> Option<(bool, &str)> {
    // "includedir" before "include": the latter is a prefix of the former.
    for (word, directory) in [
        ("#includedir", true),
        ("@includedir", true),
        ("#include", false),
        ("@include", false),
    ] {
        if let Some(rest) = text.strip_prefix(word)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return Some((directory, rest.trim()));
        }
    }
    None
}

/// The path of a directive: double-quoted, or up to the first unescaped blank.
fn include_path(rest: &str) -> Option<String> {
    let (mut chars, quoted) = match rest.strip_prefix('"') {
        Some(inner) => (inner.chars(), true),
        None => (rest.chars(), false),
    };
    let mut path = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => path.extend(chars.next()),
            '"' if quoted => break,
            c if !quoted && c.is_whitespace() => break,
            c => path.push(c),
        }
    }
    Some(path).filter(|path| !path.is_empty())
}

/// `Defaults`, `Defaults:user`, `Defaults@host`, `Defaults>runas`, `Defaults!cmd`.
fn is_defaults(keyword: &str) -> bool {
    keyword
        .strip_prefix("Defaults")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@', '>', '!']))
}

/// Cuts a `#` comment that starts a word, except `#` followed by digits (a uid).
fn strip_trailing_comment(text: &str) -> &str {
    let mut previous_blank = false;
    for (at, c) in text.char_indices() {
        if c == '#' && previous_blank {
            let next = text.get(at + 1..).and_then(|rest| rest.chars().next());
            if !next.is_some_and(|c| c.is_ascii_digit()) {
                return text.get(..at).unwrap_or(text).trim_end();
            }
        }
        previous_blank = c.is_whitespace();
    }
    text
}

/// `NAME = member, member : NAME2 = member` after the `User_Alias` keyword.
fn user_aliases(rest: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut aliases = Vec::new();
    for definition in rest.split(':') {
        let Some((name, members)) = definition.split_once('=') else {
            return Err(format!(
                "User_Alias definition without '=': {:?}",
                definition.trim()
            ));
        };
        let name = name.trim();
        let valid_name = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            return Err(format!("invalid User_Alias name {name:?}"));
        }
        let members: Vec<String> = members
            .split(',')
            .map(str::trim)
            .filter(|member| !member.is_empty())
            .map(str::to_string)
            .collect();
        if members.is_empty() {
            return Err(format!("User_Alias {name} has no members"));
        }
        aliases.push((name.to_string(), members));
    }
    Ok(aliases)
}

/// The comma-separated user list that starts a rule. The rule must go on with a
/// host list and an `=`.
fn user_list(text: &str) -> Result<Vec<String>, String> {
    let head = match unescaped_position(text, '=') {
        Some(at) => text.get(..at).unwrap_or_default(),
        None => return Err("rule has no '=' after the user list".to_string()),
    };
    let mut users = Vec::new();
    let mut rest = head.trim_start();
    loop {
        let (user, after) = take_word(rest);
        if user.is_empty() {
            return Err("empty item in the user list".to_string());
        }
        users.push(user.to_string());
        let after = after.trim_start();
        match after.strip_prefix(',') {
            Some(more) => rest = more.trim_start(),
            None => {
                rest = after;
                break;
            }
        }
    }
    if rest.trim().is_empty() {
        return Err("rule has no host list before '='".to_string());
    }
    Ok(users)
}

/// The first byte offset of `wanted` not escaped by a backslash nor inside double quotes.
fn unescaped_position(text: &str, wanted: char) -> Option<usize> {
    let mut escaped = false;
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c == wanted && !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

/// One user-list item (backslash escapes and double quotes kept as written) and
/// the text after it.
fn take_word(text: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if !quoted && (c == ',' || c.is_whitespace()) => {
                return text.split_at_checked(at).unwrap_or((text, ""));
            }
            _ => {}
        }
    }
    (text, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(sudoers: &Sudoers) -> Vec<(usize, &str, &str)> {
        sudoers
            .rules
            .iter()
            .map(|r| (r.line, r.principal.as_str(), r.rule.as_str()))
            .collect()
    }

    #[test]
    fn parses_the_debian_default_file() {
        let text = "\
#
# This file MUST be edited with the 'visudo' command as root.
#
Defaults\tenv_reset
Defaults\tmail_badpass
Defaults\tsecure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"
Defaults\tuse_pty

# Host alias specification

# User privilege specification
root\tALL=(ALL:ALL) ALL

# Allow members of group sudo to execute any command
%sudo\tALL=(ALL:ALL) ALL

# See sudoers(5) for more information on \"@include\" directives:

@includedir /etc/sudoers.d
";
        let sudoers = parse(text);
        assert_eq!(sudoers.skipped, vec![]);
        assert_eq!(
            rules(&sudoers),
            [
                (12, "root", "root ALL=(ALL:ALL) ALL"),
                (15, "%sudo", "%sudo ALL=(ALL:ALL) ALL"),
            ]
        );
        assert_eq!(
            sudoers.includes,
            [Include {
                line: 19,
                path: "/etc/sudoers.d".into(),
                directory: true
            }]
        );
        assert!(sudoers.user_aliases.is_empty());
    }

    #[test]
    fn aliases_user_lists_uids_and_continuations() {
        let text = "\
User_Alias ADMINS = alice, bob
User_Alias WEB = www-data : OPS = carol,dave ,
Runas_Alias OP = root, operator
Host_Alias SERVERS = web1, web2
Cmnd_Alias SHUTDOWN = /sbin/shutdown, /sbin/reboot
Cmd_Alias PKG = /usr/bin/apt
ADMINS ALL = (ALL) NOPASSWD: ALL
alice, bob   SERVERS=(OP)   SHUTDOWN
#1000 ALL=(ALL) NOPASSWD: /usr/bin/systemctl restart nginx
WEB ALL = (root) /usr/bin/systemctl \\
    reload nginx, \\
    /usr/bin/journalctl
\"%domain users\" ALL=(ALL) ALL
%wheel,!mallory localhost=(ALL) ALL
ALL ALL=(ALL) /usr/bin/id
";
        let sudoers = parse(text);
        assert_eq!(sudoers.skipped, vec![]);
        assert_eq!(
            rules(&sudoers),
            [
                (7, "ADMINS", "ADMINS ALL = (ALL) NOPASSWD: ALL"),
                (8, "alice", "alice, bob SERVERS=(OP) SHUTDOWN"),
                (8, "bob", "alice, bob SERVERS=(OP) SHUTDOWN"),
                (
                    9,
                    "#1000",
                    "#1000 ALL=(ALL) NOPASSWD: /usr/bin/systemctl restart nginx"
                ),
                (
                    10,
                    "WEB",
                    "WEB ALL = (root) /usr/bin/systemctl reload nginx, /usr/bin/journalctl"
                ),
                (13, "\"%domain users\"", "\"%domain users\" ALL=(ALL) ALL"),
                (14, "%wheel", "%wheel,!mallory localhost=(ALL) ALL"),
                (14, "!mallory", "%wheel,!mallory localhost=(ALL) ALL"),
                (15, "ALL", "ALL ALL=(ALL) /usr/bin/id"),
            ]
        );
        let aliases: Vec<_> = sudoers
            .user_aliases
            .iter()
            .map(|(name, members)| (name.as_str(), members.join(",")))
            .collect();
        assert_eq!(
            aliases,
            [
                ("ADMINS", "alice,bob".to_string()),
                ("OPS", "carol,dave".to_string()),
                ("WEB", "www-data".to_string()),
            ]
        );
    }

    #[test]
    fn defaults_includes_comments_and_line_endings() {
        let text = "\
Defaults:alice !requiretty\r
Defaults@db1 log_output\r
Defaults>root !set_logname\r
Defaults!/usr/bin/less noexec\r
Defaults env_keep += \"LANG \\\r
    LC_ALL\"\r
   # indented comment \\\r
#includes are not directives without a blank\r
#include /etc/sudoers.local\r
@include \"/etc/sudoers extra\"\r
#includedir\t/etc/sudoers.d   \r
@include sudoers.%h # per host\r
\r
alice ALL=(ALL) ALL # trailing comment\t\r
bob ALL=(#0) /bin/ls   \r
carol ALL=(ALL) ALL \\\r
";
        let sudoers = parse(text);
        assert_eq!(sudoers.skipped, vec![]);
        assert_eq!(
            rules(&sudoers),
            [
                (14, "alice", "alice ALL=(ALL) ALL"),
                (15, "bob", "bob ALL=(#0) /bin/ls"),
                (16, "carol", "carol ALL=(ALL) ALL"),
            ]
        );
        let includes: Vec<_> = sudoers
            .includes
            .iter()
            .map(|i| (i.line, i.path.as_str(), i.directory))
            .collect();
        assert_eq!(
            includes,
            [
                (9, "/etc/sudoers.local", false),
                (10, "/etc/sudoers extra", false),
                (11, "/etc/sudoers.d", true),
                (12, "sudoers.%h", false),
            ]
        );
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line() {
        let text = "\
root ALL=(ALL) ALL
alice ALL
just words
User_Alias lower = alice
User_Alias EMPTY =
User_Alias NOEQUALS alice
@includedir
alice,,bob ALL=(ALL) ALL
alice=ALL
bob ALL=(ALL) \\
  NOPASSWD
,alice ALL=ALL
%sudo ALL=(ALL:ALL) ALL
";
        let sudoers = parse(text);
        let principals: Vec<_> = sudoers
            .rules
            .iter()
            .map(|r| (r.line, r.principal.as_str()))
            .collect();
        assert_eq!(principals, [(1, "root"), (10, "bob"), (13, "%sudo")]);
        let lines: Vec<_> = sudoers.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9, 12], "{:?}", sudoers.skipped);
        let reasons: Vec<_> = sudoers.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "rule has no '=' after the user list",
                "rule has no '=' after the user list",
                "invalid User_Alias name \"lower\"",
                "User_Alias EMPTY has no members",
                "User_Alias definition without '=': \"NOEQUALS alice\"",
                "include directive without a path",
                "empty item in the user list",
                "rule has no host list before '='",
                "empty item in the user list",
            ]
        );
        assert!(sudoers.user_aliases.is_empty());
    }

    #[test]
    fn long_user_lists_on_long_rules_stay_within_the_rule_budget() {
        // Found by scaling the fuzz inputs: the rule is kept once per principal, so
        // memory grew with the square of the line's length.
        let principals = 8_000;
        let mut text = "a,".repeat(principals - 1);
        text.push_str("b ALL=(ALL) /bin/");
        text.push_str(&"x".repeat(MAX_RULE_TEXT / principals));
        text.push_str("\n%sudo ALL=(ALL:ALL) ALL\n");
        let sudoers = parse(&text);
        assert_eq!(rules(&sudoers), [(2, "%sudo", "%sudo ALL=(ALL:ALL) ALL")]);
        assert_eq!(sudoers.skipped.len(), 1);
        assert_eq!(sudoers.skipped[0].line, 1);
        assert!(
            sudoers.skipped[0]
                .reason
                .starts_with("rule for 8000 principals would take more than"),
            "{}",
            sudoers.skipped[0].reason
        );
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        let garbage = String::from_utf8_lossy(&[
            0xff, b'=', b'\\', b'\n', b'#', 0x80, b'\n', b'"', b'=', b'#', b'1', b'\\',
        ])
        .into_owned();
        let sudoers = parse(&garbage);
        assert!(sudoers.rules.is_empty());
        assert_eq!(sudoers.skipped.len(), 2, "{:?}", sudoers.skipped);
    }

    proptest! {
        #[test]
        fn never_panics_and_reports_real_lines(
            text in "([a-zA-Z0-9%#@!=:,\"()\\\\ \t\r\n_]|\\PC){0,200}"
        ) {
            let lines = text.lines().count();
            let sudoers = parse(&text);
            let reported = sudoers
                .skipped
                .iter()
                .map(|s| s.line)
                .chain(sudoers.rules.iter().map(|r| r.line))
                .chain(sudoers.includes.iter().map(|i| i.line));
            for line in reported {
                prop_assert!(line >= 1 && line <= lines);
            }
        }
    }
}
