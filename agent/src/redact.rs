//! Secrets never leave the node: values that look like passwords, tokens or keys are
//! replaced, before anything is printed, spooled or sent, by a marker naming the rule
//! and carrying a keyed hash, so a changed secret still changes the record.
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Replaces secrets in environment variables, command lines and free text.
#[derive(Clone)]
pub struct Redactor {
    key: [u8; 32],
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor { key: <hidden> }")
    }
}

/// Parts of a variable or option name that mark its value as secret wherever they
/// appear in the name (`MYSQL_ROOT_PASSWORD`, `--client-secret`).
const SECRET_NAME_PARTS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "CREDENTIAL",
    "APIKEY",
    "ACCESSKEY",
    "PRIVATEKEY",
];

/// Whole words of a name (split at `_`, `-`, `.`) that mark its value as secret
/// (`DB_PASS`, `API_KEY`), matched as words so that `KEYBOARD` or `PASSENGER` are not.
const SECRET_NAME_WORDS: &[&str] = &["PASS", "PWD", "KEY", "KEYS", "AUTH", "DSN"];

/// Names that contain a secret-looking word but hold no secret.
const NOT_SECRET_NAMES: &[&str] = &[
    "PWD",
    "OLDPWD",
    "SSH_AUTH_SOCK",
    "XAUTHORITY",
    "GPG_KEY",
    "KEYMAP",
    "PASSWORD_STORE_DIR",
    "AUTH_SOCK",
];

/// Programs that take a password as `-pPASSWORD` (MySQL clients) or `-a`/`-p VALUE`.
const PASSWORD_FLAG_PROGRAMS: &[(&str, &str)] = &[
    ("mysql", "-p"),
    ("mysqldump", "-p"),
    ("mysqladmin", "-p"),
    ("mysqlimport", "-p"),
    ("mysqlcheck", "-p"),
    ("mysqlshow", "-p"),
    ("mariadb", "-p"),
    ("mariadb-dump", "-p"),
    ("mariadb-admin", "-p"),
    ("redis-cli", "-a"),
    ("sshpass", "-p"),
];

impl Redactor {
    /// A redactor keyed with `key` (kept in the agent's state dir, so markers stay
    /// stable across restarts).
    pub fn new(key: [u8; 32]) -> Self {
        Redactor { key }
    }

    /// A redactor with a fresh random key, for one-shot scans.
    pub fn ephemeral() -> std::io::Result<Self> {
        Ok(Redactor::new(random_key()?))
    }

    /// `<redacted:RULE:HASH>`, HASH = the first 16 hex digits of HMAC-SHA256(key, secret).
    pub fn marker(&self, rule: &str, secret: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts any key length");
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("<redacted:{rule}:{}>", hex::encode(&digest[..8]))
    }

    /// An environment variable's value, redacted as a whole when the name marks it as
    /// secret, else with any secret inside it replaced. Returns the rule that applied.
    pub fn env(&self, name: &str, value: &str) -> (String, Option<&'static str>) {
        if !value.is_empty() && is_secret_name(name) {
            return (self.marker("secret-name", value), Some("secret-name"));
        }
        self.text_with_rule(value)
    }

    /// Labels (of an image or container) with the values of secret-named labels and
    /// secrets inside any value replaced.
    pub fn labels(
        &self,
        labels: std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        labels
            .into_iter()
            .map(|(name, value)| {
                let (value, _) = self.env(&name, &value);
                (name, value)
            })
            .collect()
    }

    /// A command line with secret option values, `-pPASSWORD`-style arguments,
    /// `name=secret` pairs and secrets inside arguments replaced.
    pub fn args(&self, args: &[String]) -> Vec<String> {
        let program = args
            .first()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .unwrap_or_default();
        let password_flag = PASSWORD_FLAG_PROGRAMS
            .iter()
            .find(|(name, _)| *name == program)
            .map(|(_, flag)| *flag);
        let mut out = Vec::with_capacity(args.len());
        let mut secret_next = false;
        for (index, arg) in args.iter().enumerate() {
            if secret_next && !arg.starts_with('-') {
                out.push(self.marker("secret-option", arg));
                secret_next = false;
                continue;
            }
            secret_next = false;
            if index == 0 {
                out.push(self.text(arg));
                continue;
            }
            if let Some(flag) = password_flag {
                if arg == flag {
                    // `-p` alone makes MySQL prompt; `redis-cli -a X` and `sshpass -p X` take the next.
                    secret_next = flag != "-p" || program == "sshpass";
                    out.push(arg.clone());
                    continue;
                }
                if let Some(secret) = arg
                    .strip_prefix(flag)
                    .filter(|s| !s.is_empty() && flag == "-p")
                {
                    out.push(format!("{flag}{}", self.marker("secret-option", secret)));
                    continue;
                }
            }
            if let Some(option) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
                match option.split_once('=') {
                    Some((name, value)) if is_secret_name(name) && !value.is_empty() => {
                        let prefix = &arg[..arg.len() - value.len()];
                        out.push(format!("{prefix}{}", self.marker("secret-option", value)));
                        continue;
                    }
                    None if arg.starts_with("--") && is_secret_name(option) => {
                        secret_next = true;
                        out.push(arg.clone());
                        continue;
                    }
                    _ => {}
                }
            } else if let Some((name, value)) = arg.split_once('=')
                && !value.is_empty()
                && !name.contains(['/', ' '])
                && is_secret_name(name)
            {
                out.push(format!("{name}={}", self.marker("secret-name", value)));
                continue;
            }
            out.push(self.text(arg));
        }
        out
    }

    /// A shell command line (a cron command, an ExecStart line): split at whitespace
    /// and redacted as arguments.
    pub fn command(&self, line: &str) -> String {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let redacted = self.args(&words);
        // Nothing secret: the line as it was, spacing included.
        if redacted == words {
            return line.to_string();
        }
        redacted.join(" ")
    }

    /// Free text with secrets inside replaced.
    pub fn text(&self, text: &str) -> String {
        self.text_with_rule(text).0
    }

    fn text_with_rule(&self, text: &str) -> (String, Option<&'static str>) {
        let spans = find_secrets(text);
        let Some(first_rule) = spans.first().map(|s| s.rule) else {
            return (text.to_string(), None);
        };
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for span in spans {
            out.push_str(&text[at..span.start]);
            out.push_str(&self.marker(span.rule, &text[span.start..span.end]));
            at = span.end;
        }
        out.push_str(&text[at..]);
        (out, Some(first_rule))
    }
}

/// Whether a variable or option name marks its value as secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.trim_start_matches('-').to_ascii_uppercase();
    if NOT_SECRET_NAMES.contains(&upper.as_str()) {
        return false;
    }
    let squeezed: String = upper
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if SECRET_NAME_PARTS.iter().any(|part| squeezed.contains(part)) {
        return true;
    }
    upper
        .split(['_', '-', '.'])
        .any(|word| SECRET_NAME_WORDS.contains(&word))
}

/// A secret found inside text: byte range and the rule that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    rule: &'static str,
}

/// A token format recognised by its prefix: what may follow and how much of it.
struct TokenFormat {
    prefix: &'static str,
    rule: &'static str,
    allowed: fn(u8) -> bool,
    min: usize,
    max: usize,
}

const fn token(
    prefix: &'static str,
    rule: &'static str,
    allowed: fn(u8) -> bool,
    min: usize,
    max: usize,
) -> TokenFormat {
    TokenFormat {
        prefix,
        rule,
        allowed,
        min,
        max,
    }
}

const TOKEN_FORMATS: &[TokenFormat] = &[
    token("AKIA", "aws-access-key-id", upper_alnum, 16, 16),
    token("ASIA", "aws-access-key-id", upper_alnum, 16, 16),
    token("ghp_", "github-token", alnum, 36, 255),
    token("gho_", "github-token", alnum, 36, 255),
    token("ghu_", "github-token", alnum, 36, 255),
    token("ghs_", "github-token", alnum, 36, 255),
    token("ghr_", "github-token", alnum, 36, 255),
    token("github_pat_", "github-token", word, 22, 255),
    token("glpat-", "gitlab-token", token_char, 20, 255),
    token("xoxb-", "slack-token", token_char, 10, 255),
    token("xoxp-", "slack-token", token_char, 10, 255),
    token("xoxa-", "slack-token", token_char, 10, 255),
    token("xoxr-", "slack-token", token_char, 10, 255),
    token("xoxs-", "slack-token", token_char, 10, 255),
    token("xoxe-", "slack-token", token_char, 10, 255),
    token(
        "https://hooks.slack.com/services/",
        "slack-webhook",
        path_char,
        20,
        255,
    ),
    token("AIza", "google-api-key", token_char, 35, 35),
    token("sk_live_", "stripe-key", alnum, 16, 255),
    token("rk_live_", "stripe-key", alnum, 16, 255),
    token("npm_", "npm-token", alnum, 36, 36),
];

fn upper_alnum(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}
fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
fn path_char(b: u8) -> bool {
    token_char(b) || b == b'/'
}

/// Every secret inside `text`, in order, not overlapping.
fn find_secrets(text: &str) -> Vec<Span> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        if let Some(span) = secret_at(text, i) {
            i = span.end.max(i + 1);
            spans.push(span);
        } else {
            i += 1;
        }
    }
    spans
}

/// A secret starting at byte `i` of `text`, if any.
fn secret_at(text: &str, i: usize) -> Option<Span> {
    let bytes = text.as_bytes();
    let rest = &text[i..];
    let at_boundary = i == 0 || !token_char(bytes[i - 1]);
    let run = |from: usize, allowed: fn(u8) -> bool| {
        bytes[from..].iter().take_while(|b| allowed(**b)).count()
    };
    if at_boundary {
        for format in TOKEN_FORMATS {
            if rest.starts_with(format.prefix) {
                let len = run(i + format.prefix.len(), format.allowed);
                if len >= format.min && len <= format.max {
                    let end = i + format.prefix.len() + len;
                    return Some(Span {
                        start: i,
                        end,
                        rule: format.rule,
                    });
                }
            }
        }
        // JWT: three base64url parts, the first two JSON objects ("eyJ" = `{"`).
        if rest.starts_with("eyJ") {
            let header = run(i, token_char);
            let after_header = i + header;
            if header >= 10
                && bytes.get(after_header) == Some(&b'.')
                && text[after_header + 1..].starts_with("eyJ")
            {
                let payload = run(after_header + 1, token_char);
                let after_payload = after_header + 1 + payload;
                if bytes.get(after_payload) == Some(&b'.') {
                    let signature = run(after_payload + 1, token_char);
                    return Some(Span {
                        start: i,
                        end: after_payload + 1 + signature,
                        rule: "jwt",
                    });
                }
            }
        }
    }
    // A PEM private key, through its END line (or the end of the text).
    if rest.starts_with("-----BEGIN ") {
        let header_end = rest
            .find("-----\n")
            .or_else(|| rest[5..].find("-----").map(|p| p + 5))?;
        if rest[..header_end].ends_with("PRIVATE KEY") {
            let end = rest
                .find("-----END ")
                .and_then(|p| rest[p + 9..].find("-----").map(|q| p + 9 + q + 5))
                .unwrap_or(rest.len());
            return Some(Span {
                start: i,
                end: i + end,
                rule: "private-key",
            });
        }
    }
    // Credentials in a URL: scheme://user:password@host -> only the password.
    if let Some(after_scheme) = rest.strip_prefix("://") {
        let authority_len = after_scheme
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after_scheme.len());
        let authority = &after_scheme[..authority_len];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
            && colon + 1 < at
        {
            let start = i + 3 + colon + 1;
            return Some(Span {
                start,
                end: i + 3 + at,
                rule: "url-credentials",
            });
        }
    }
    // "Bearer TOKEN" (an Authorization header on a command line).
    if at_boundary && rest.len() > 7 && rest.as_bytes()[..7].eq_ignore_ascii_case(b"bearer ") {
        let len = bytes[i + 7..]
            .iter()
            .take_while(|b| !b.is_ascii_whitespace() && **b != b'"' && **b != b'\'')
            .count();
        if len >= 8 {
            return Some(Span {
                start: i + 7,
                end: i + 7 + len,
                rule: "bearer-token",
            });
        }
    }
    None
}

/// 32 bytes from the kernel's CSPRNG.
pub fn random_key() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new([7; 32])
    }

    fn args(line: &str) -> Vec<String> {
        redactor().args(&line.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn secret_names_are_recognised_as_words_or_parts() {
        for name in [
            "MYSQL_ROOT_PASSWORD",
            "PGPASSWORD",
            "DB_PASS",
            "API_KEY",
            "aws_secret_access_key",
            "GITHUB_TOKEN",
            "client-secret",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "SENTRY_DSN",
            "ssh.passphrase",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "PWD",
            "OLDPWD",
            "KEYBOARD_LAYOUT",
            "PASSENGER_ROOT",
            "SSH_AUTH_SOCK",
            "TERM",
            "LANG",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn env_values_of_secret_names_are_replaced_whole() {
        let (value, rule) = redactor().env("MYSQL_ROOT_PASSWORD", "hunter2");
        assert!(
            value.starts_with("<redacted:secret-name:") && !value.contains("hunter2"),
            "{value}"
        );
        assert_eq!(rule, Some("secret-name"));
        assert_eq!(
            redactor().env("PATH", "/usr/bin:/bin"),
            ("/usr/bin:/bin".to_string(), None)
        );
        assert_eq!(
            redactor().env("DB_PASS", ""),
            (String::new(), None),
            "an empty value hides nothing"
        );
    }

    #[test]
    fn markers_are_stable_per_key_and_differ_per_secret() {
        let a = redactor().marker("r", "one");
        assert_eq!(a, redactor().marker("r", "one"));
        assert_ne!(a, redactor().marker("r", "two"));
        assert_ne!(a, Redactor::new([8; 32]).marker("r", "one"));
        assert_eq!(a.len(), "<redacted:r:>".len() + 16);
    }

    #[test]
    fn command_line_secrets_are_replaced() {
        let redacted = args(
            "/usr/bin/app --password=s3cret --token abc123 --verbose --db-pass=x1 -v user=bob password=pw9",
        );
        let joined = redacted.join(" ");
        for secret in ["s3cret", "abc123", "x1", "pw9"] {
            assert!(!joined.contains(secret), "{secret} in {joined}");
        }
        assert_eq!(redacted[0], "/usr/bin/app");
        assert!(redacted[1].starts_with("--password=<redacted:secret-option:"));
        assert_eq!(redacted[2], "--token");
        assert_eq!(redacted[4], "--verbose");
        assert_eq!(redacted[7], "user=bob");
    }

    #[test]
    fn database_client_password_flags_are_replaced() {
        let mysql = args("mysql -u root -pTopSecret -h db");
        assert!(
            mysql[3].starts_with("-p<redacted:") && !mysql.join(" ").contains("TopSecret"),
            "{mysql:?}"
        );
        assert_eq!(
            args("mysql -u root -p -h db")[3],
            "-p",
            "a bare -p prompts and hides nothing"
        );
        let redis = args("redis-cli -h cache -a R3disPass ping");
        assert!(
            !redis.join(" ").contains("R3disPass") && redis[5] == "ping",
            "{redis:?}"
        );
        assert_eq!(
            args("grep -p pattern")[2],
            "pattern",
            "other programs' -p is not a password"
        );
    }

    #[test]
    fn token_formats_are_found_inside_text() {
        let cases = [
            (
                "key AKIAIOSFODNN7EXAMPLE here",
                "aws-access-key-id",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "github-token",
                "ghp_abcdefghij",
            ),
            (
                "token=glpat-abcdefghij0123456789",
                "gitlab-token",
                "glpat-abcdefghij",
            ),
            (
                "xoxb-1234567890-abcdefghij",
                "slack-token",
                "xoxb-1234567890",
            ),
            (
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
                "google-api-key",
                "AIzaSyA12345",
            ),
            (
                "curl -H 'Authorization: Bearer abcdef123456789'",
                "bearer-token",
                "abcdef123456789",
            ),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt",
                "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
            ),
        ];
        for (text, rule, secret) in cases {
            let (out, found) = redactor().text_with_rule(text);
            assert_eq!(found, Some(rule), "{text}");
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert_eq!(
            redactor().text("AKIAIOSFODNN7EXAMPLEX"),
            "AKIAIOSFODNN7EXAMPLEX",
            "too long to be a key id"
        );
    }

    #[test]
    fn url_credentials_lose_only_the_password() {
        let out = redactor().text("postgres://app:pa55word@db.internal:5432/main?sslmode=require");
        assert!(
            out.starts_with("postgres://app:<redacted:url-credentials:"),
            "{out}"
        );
        assert!(
            out.ends_with("@db.internal:5432/main?sslmode=require"),
            "{out}"
        );
        assert_eq!(
            redactor().text("https://example.com/a:b@c"),
            "https://example.com/a:b@c"
        );
        assert_eq!(
            redactor().text("ssh://git@github.com/x"),
            "ssh://git@github.com/x"
        );
    }

    #[test]
    fn private_keys_are_replaced_through_their_end_line() {
        let pem = "before -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY----- after";
        let out = redactor().text(pem);
        assert!(
            out.starts_with("before <redacted:private-key:") && out.ends_with(" after"),
            "{out}"
        );
        let public = "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----";
        assert_eq!(redactor().text(public), public);
    }

    #[test]
    fn odd_text_never_panics() {
        for text in [
            "",
            "://",
            "://@",
            "x://:@",
            "-----BEGIN ",
            "-----BEGIN X PRIVATE KEY",
            "eyJ",
            "Bearer ",
            "é://ü:ö@ä",
            "AKIA€",
        ] {
            let _ = redactor().text(text);
            let _ = redactor().args(&[text.to_string(), text.to_string()]);
        }
    }
}
