//! `/etc/shadow` (shadow(5)): password status and ageing per account. The password
//! hash itself is never kept, neither in entries nor in skip reasons.
use super::{Parsed, numbered_lines};

/// What the password field says about logging in with a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordStatus {
    /// A crypt hash: the account can log in with its password.
    Set,
    /// Starts with `!` (`!`, `!!`, `!$6$...`): password login is disabled.
    Locked,
    /// Empty field: anyone can log in without a password.
    Empty,
    /// A value that cannot be a crypt hash (`*`, `x`, `NP`, `*LK*`): no password
    /// can match it, so password login is impossible.
    NoPassword,
}

impl PasswordStatus {
    /// Classifies a password field. The shortest crypt hash (traditional DES) is
    /// 13 characters; every other scheme starts with `$`.
    pub fn of(field: &str) -> PasswordStatus {
        if field.is_empty() {
            PasswordStatus::Empty
        } else if field.starts_with('!') {
            PasswordStatus::Locked
        } else if field.starts_with('$') {
            PasswordStatus::Set
        } else if field.starts_with('*') || field.chars().count() < 13 {
            // '*' is outside the crypt alphabet, whatever follows it.
            PasswordStatus::NoPassword
        } else {
            PasswordStatus::Set
        }
    }

    /// The status as a stable lowercase word: `set`, `locked`, `empty`, `no_password`.
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordStatus::Set => "set",
            PasswordStatus::Locked => "locked",
            PasswordStatus::Empty => "empty",
            PasswordStatus::NoPassword => "no_password",
        }
    }
}

/// One account. Day counts are as in shadow(5): dates are days since 1970-01-01,
/// periods are numbers of days; an empty field is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowEntry {
    pub name: String,
    pub password_status: PasswordStatus,
    /// Date of the last password change; `Some(0)` forces a change at next login.
    pub last_change_days: Option<i64>,
    pub min_days: Option<i64>,
    pub max_days: Option<i64>,
    pub warn_days: Option<i64>,
    pub inactive_days: Option<i64>,
    /// Date the account expires.
    pub expire_days: Option<i64>,
}

/// The numeric fields in file order (fields 3 to 8), named as in [`ShadowEntry`].
const DAY_FIELDS: [&str; 6] = [
    "last_change_days",
    "min_days",
    "max_days",
    "warn_days",
    "inactive_days",
    "expire_days",
];

/// Parses the whole file. Lines need 9 fields (8 when the reserved last one is
/// missing); comments, blank lines and NIS compat lines (`+`, `-`) are ignored.
pub fn parse(text: &str) -> Parsed<ShadowEntry> {
    let mut parsed = Parsed::default();
    for (number, line) in numbered_lines(text) {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        // NIS compat entries ("+", "+@netgroup", "-user") name no local account.
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

/// Reasons must never quote the password field, nor any field that could be a
/// misplaced hash: only the field count, the user name and field names.
fn parse_line(line: &str) -> Result<ShadowEntry, String> {
    let fields: Vec<&str> = line.split(':').collect();
    // The ninth field is reserved; some tools leave it out.
    let (8 | 9, [name, password, ..]) = (fields.len(), &fields[..]) else {
        return Err(format!("expected 9 fields, found {}", fields.len()));
    };
    if !plausible_user_name(name) {
        return Err("invalid user name".to_string());
    }
    let mut days = [None; 6];
    for ((slot, field), value) in days.iter_mut().zip(DAY_FIELDS).zip(fields.iter().skip(2)) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        *slot = Some(
            value
                .parse::<i64>()
                .map_err(|_| format!("invalid {field} for user {name:?}"))?,
        );
    }
    let [
        last_change_days,
        min_days,
        max_days,
        warn_days,
        inactive_days,
        expire_days,
    ] = days;
    Ok(ShadowEntry {
        name: name.to_string(),
        password_status: PasswordStatus::of(password),
        last_change_days,
        min_days,
        max_days,
        warn_days,
        inactive_days,
        expire_days,
    })
}

/// A line missing its name field puts the hash where the name belongs, and the
/// name is kept and quoted in reasons. Hashes of the `$` schemes, and DES hashes
/// containing `/`, cannot be user names (useradd allows `$` only as the last
/// character, never `/`), so they are caught here; a DES hash without `/` is
/// indistinguishable from a name.
fn plausible_user_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && !body.starts_with('-')
        && !body.contains(['$', '/'])
        && !body.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA512: &str = "$6$rounds=5000$saltsalt$Vx0cQ3o1T7jX2q9bRZ8f3eC1lH6pN4kW0yU5sA2dG7hJ9mK3nB8vC1xZ6qW4eR2tY7uI0oP5aS3dF8gH1jK2lZ.";
    const YESCRYPT: &str =
        "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";
    const DES: &str = "abJnggxhB/yWI";

    fn fixture() -> String {
        format!(
            "\
root:{YESCRYPT}:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
alice:{SHA512}:19701:1:90:14:30:20000:
bob:!{SHA512}:19702:0:99999:7:::
carol:!:19703::::::
dave::19704:0:99999:7:::
legacy:{DES}:0:0:99999:7:::
solaris:*LK*:::::::
nis:NP:6445::::::
x_field:x:19700:0:99999:7:::
"
        )
    }

    #[test]
    fn classifies_password_fields() {
        use PasswordStatus::*;
        let cases = [
            ("", Empty),
            ("!", Locked),
            ("!!", Locked),
            ("!$6$salt$hash", Locked),
            ("*", NoPassword),
            ("x", NoPassword),
            ("NP", NoPassword),
            ("*LK*", NoPassword),
            ("*LOCKED*ABCDEFGHIJ", NoPassword),
            ("$1$salt$hash", Set),
            ("$y$short", Set),
            (DES, Set),
        ];
        for (field, status) in cases {
            assert_eq!(PasswordStatus::of(field), status, "{field:?}");
        }
        assert_eq!(Set.as_str(), "set");
        assert_eq!(Locked.as_str(), "locked");
        assert_eq!(Empty.as_str(), "empty");
        assert_eq!(NoPassword.as_str(), "no_password");
    }

    #[test]
    fn parses_accounts_and_ageing() {
        let parsed = parse(&fixture());
        assert_eq!(parsed.skipped, vec![]);
        let statuses: Vec<_> = parsed
            .items
            .iter()
            .map(|e| (e.name.as_str(), e.password_status.as_str()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("root", "set"),
                ("daemon", "no_password"),
                ("alice", "set"),
                ("bob", "locked"),
                ("carol", "locked"),
                ("dave", "empty"),
                ("legacy", "set"),
                ("solaris", "no_password"),
                ("nis", "no_password"),
                ("x_field", "no_password"),
            ]
        );
        assert_eq!(
            parsed.items[2],
            ShadowEntry {
                name: "alice".into(),
                password_status: PasswordStatus::Set,
                last_change_days: Some(19701),
                min_days: Some(1),
                max_days: Some(90),
                warn_days: Some(14),
                inactive_days: Some(30),
                expire_days: Some(20000),
            }
        );
        let carol = &parsed.items[4];
        assert_eq!(carol.last_change_days, Some(19703));
        assert_eq!(
            (carol.min_days, carol.max_days, carol.warn_days),
            (None, None, None)
        );
        assert_eq!((carol.inactive_days, carol.expire_days), (None, None));
        assert_eq!(parsed.items[6].last_change_days, Some(0));
        assert_eq!(parsed.items[7].last_change_days, None);
    }

    #[test]
    fn odd_but_valid_lines_are_accepted() {
        let text = format!(
            "# shadow\r\n\r\nroot:{SHA512}:19700:0:99999:7:::\r\n   \n+@netgroup::::::::\n-bob\n\
             eight:*:19700:0:99999:7::\nspaced:*:19700:0:99999:7:: 20000 :  \nsmbhost$:*:19700::::::\n"
        );
        let parsed = parse(&text);
        assert_eq!(parsed.skipped, vec![]);
        let names: Vec<_> = parsed.items.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "eight", "spaced", "smbhost$"]);
        assert_eq!(parsed.items[0].password_status, PasswordStatus::Set);
        assert_eq!(parsed.items[1].expire_days, None);
        assert_eq!(parsed.items[2].expire_days, Some(20000));
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line() {
        let text = format!(
            "\
root:{SHA512}:19700:0:99999:7:::
short:{SHA512}:19700:0:99999
long:{SHA512}:19700:0:99999:7::::extra
badmax:{SHA512}:19700:0:ninety:7:::
{SHA512}:19700:0:99999:7:::
:{SHA512}:19700:0:99999:7:::
badexpire:*:19700:0:99999:7::2025-01-01:
ok:!:19700:0:99999:7:::
"
        );
        let parsed = parse(&text);
        let names: Vec<_> = parsed.items.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "ok"]);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7], "{:?}", parsed.skipped);
        assert_eq!(parsed.skipped[0].reason, "expected 9 fields, found 5");
        assert_eq!(
            parsed.skipped[2].reason,
            "invalid max_days for user \"badmax\""
        );
        assert_eq!(parsed.skipped[3].reason, "invalid user name");
        assert_eq!(parsed.skipped[4].reason, "invalid user name");
        assert_eq!(
            parsed.skipped[5].reason,
            "invalid expire_days for user \"badexpire\""
        );
    }

    #[test]
    fn hashes_never_reach_the_output() {
        // Every line of the fixture, plus variants mangled so they are skipped with
        // the hash in every position a reason could be built from.
        let mut text = fixture();
        for hash in [SHA512, YESCRYPT, DES] {
            text.push_str(&format!("{hash}:19700:0:99999:7:::\n"));
            text.push_str(&format!("mangled:{hash}:{hash}:0:99999:7:::\n"));
            text.push_str(&format!("mangled:{hash}:19700:0:99999:{hash}:::\n"));
            text.push_str(&format!("short:{hash}\n"));
        }
        let parsed = parse(&text);
        assert_eq!(parsed.items.len(), 10);
        assert_eq!(parsed.skipped.len(), 12);
        let mut output: Vec<String> = parsed.items.iter().map(|e| format!("{e:?}")).collect();
        output.extend(parsed.skipped.iter().map(|s| format!("{s:?}")));
        for hash in [SHA512, YESCRYPT, DES] {
            // The salt and the digest separately, so a partial leak is caught too.
            let parts = hash.split('$').filter(|part| part.len() >= 4);
            for part in parts.chain([hash]) {
                for line in &output {
                    assert!(!line.contains(part), "{part:?} leaked in {line}");
                }
            }
        }
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        let garbage = String::from_utf8_lossy(&[
            0xff, b':', b'!', b':', 0x80, b':', b':', b':', b':', b':', b'\n', b':', b'$', 0x00,
        ])
        .into_owned();
        let parsed = parse(&garbage);
        assert!(parsed.items.is_empty());
        assert_eq!(parsed.skipped.len(), 2);
    }

    proptest! {
        #[test]
        fn never_panics_and_reports_real_lines(text in "([a-z0-9:!$*#+ \r\n-]|\\PC){0,200}") {
            let lines = text.lines().count();
            for skipped in parse(&text).skipped {
                prop_assert!(skipped.line >= 1 && skipped.line <= lines);
            }
        }
    }
}
