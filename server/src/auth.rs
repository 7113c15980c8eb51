//! Who may talk to the collector: enrollment secrets exchanged for per-agent
//! credentials on the gRPC side, bearer tokens with a role on the HTTP side.
//!
//! Secrets live in files an operator manages (a mounted Kubernetes Secret, say). They
//! are read again whenever the file changes, so a secret is rotated by listing the new
//! one beside the old, waiting for agents to move, and removing the old.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Shortest enrollment secret or API token accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// Prefix of every credential: its format's version.
const CREDENTIAL_PREFIX: &str = "cen1";

/// A per-agent credential: a public id (listed, revoked) and a secret the collector
/// keeps only the SHA-256 of.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A new credential from the operating system's random source.
    pub fn generate() -> std::io::Result<Credential> {
        Ok(Credential {
            id: hex::encode(random_bytes::<8>()?),
            secret: hex::encode(random_bytes::<32>()?),
        })
    }

    /// Parses `cen1.ID.SECRET`; `None` for anything else.
    pub fn parse(token: &str) -> Option<Credential> {
        let mut parts = token.split('.');
        let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
        let hex_of = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        (prefix == CREDENTIAL_PREFIX
            && hex_of(id, 16)
            && hex_of(secret, 64)
            && parts.next().is_none())
        .then(|| Credential {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The form agents present: `cen1.ID.SECRET`.
    pub fn token(&self) -> String {
        format!("{CREDENTIAL_PREFIX}.{}.{}", self.id, self.secret)
    }

    pub fn secret_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// Whether this credential's secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        constant_time_eq(&self.secret_sha256(), stored)
    }
}

fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    let mut filled = 0;
    while filled < N {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(std::io::Error::from)?;
    }
    Ok(bytes)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A short, non-reversible label of a secret (the first 8 hex digits of its SHA-256),
/// so logs and the credential list can say which enrollment secret was used.
pub fn label(secret: &str) -> String {
    hex::encode(&Sha256::digest(secret.as_bytes())[..4])
}

/// What a bearer token may do on the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every GET.
    Read,
    /// Also terminations, deletion requests, legal holds, console configuration and
    /// credential revocation.
    Admin,
}

/// The enrollment secrets file: one secret per line; blank lines and `#` comments
/// are skipped.
#[derive(Debug, Default)]
pub struct EnrollmentSecrets(Vec<String>);

impl EnrollmentSecrets {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut secrets = Vec::new();
        for (number, line) in meaningful_lines(text) {
            check_secret(line).map_err(|error| format!("line {number}: {error}"))?;
            secrets.push(line.to_string());
        }
        Ok(EnrollmentSecrets(secrets))
    }

    /// The label of the secret `presented` matches, if any.
    pub fn check(&self, presented: &str) -> Option<String> {
        self.0
            .iter()
            .find(|secret| constant_time_eq(secret.as_bytes(), presented.as_bytes()))
            .map(|secret| label(secret))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The API tokens file: one `ROLE TOKEN` per line (`read` or `admin`); blank lines and
/// `#` comments are skipped.
#[derive(Debug, Default)]
pub struct ApiTokens(Vec<(Role, String)>);

impl ApiTokens {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for (number, line) in meaningful_lines(text) {
            let (role, token) = line
                .split_once(char::is_whitespace)
                .map(|(role, token)| (role, token.trim()))
                .ok_or_else(|| format!("line {number}: expected 'read TOKEN' or 'admin TOKEN'"))?;
            let role = match role {
                "read" => Role::Read,
                "admin" => Role::Admin,
                other => {
                    return Err(format!(
                        "line {number}: unknown role {other:?} (expected read or admin)"
                    ));
                }
            };
            check_secret(token).map_err(|error| format!("line {number}: {error}"))?;
            tokens.push((role, token.to_string()));
        }
        Ok(ApiTokens(tokens))
    }

    /// The role of `presented`, if it is a known token.
    pub fn role(&self, presented: &str) -> Option<Role> {
        self.0
            .iter()
            .find(|(_, token)| constant_time_eq(token.as_bytes(), presented.as_bytes()))
            .map(|(role, _)| *role)
    }
}

fn meaningful_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

fn check_secret(secret: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "a secret must be at least {MIN_SECRET_LEN} characters, this one has {}",
            secret.len()
        ));
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a secret must not contain spaces or control characters".into());
    }
    Ok(())
}

/// A secrets file, parsed, and parsed again when its modification time or size
/// changes. A change that does not parse is logged and the last good content kept.
#[derive(Debug)]
pub struct SecretsFile<T> {
    path: PathBuf,
    parse: fn(&str) -> Result<T, String>,
    state: Mutex<Loaded<T>>,
}

#[derive(Debug)]
struct Loaded<T> {
    stamp: Option<(SystemTime, u64)>,
    value: Arc<T>,
}

impl<T> SecretsFile<T> {
    /// Reads and parses `path`; an unreadable or invalid file is an error naming it.
    pub fn open(path: &Path, parse: fn(&str) -> Result<T, String>) -> Result<Self, String> {
        let stamp = stamp(path).map_err(|error| format!("{}: {error}", path.display()))?;
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let value = parse(&text).map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(SecretsFile {
            path: path.to_path_buf(),
            parse,
            state: Mutex::new(Loaded {
                stamp: Some(stamp),
                value: Arc::new(value),
            }),
        })
    }

    /// The current content, read again if the file changed.
    pub fn get(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamp(&self.path).ok();
        if now != state.stamp {
            state.stamp = now;
            match std::fs::read_to_string(&self.path)
                .map_err(|error| error.to_string())
                .and_then(|text| (self.parse)(&text))
            {
                Ok(value) => {
                    tracing::info!(path = %self.path.display(), "secrets file reloaded");
                    state.value = Arc::new(value);
                }
                Err(error) => {
                    tracing::error!(path = %self.path.display(), %error, "secrets file changed but cannot be used; keeping its previous content")
                }
            }
        }
        state.value.clone()
    }
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified()?, metadata.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_and_hide_their_secret() {
        let credential = Credential::generate().unwrap();
        let token = credential.token();
        assert_eq!(Credential::parse(&token), Some(credential.clone()));
        assert!(credential.matches(&credential.secret_sha256()));
        assert!(
            !Credential::generate()
                .unwrap()
                .matches(&credential.secret_sha256())
        );
        assert!(!format!("{credential:?}").contains(&credential.secret));
        for bad in [
            "",
            "cen1",
            "cen2.0123456789abcdef.".to_string().as_str(),
            &token[..token.len() - 1],
            &format!("{token}.x"),
            &token.replace("cen1", "cen2"),
        ] {
            assert_eq!(Credential::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn secrets_files_name_the_bad_line() {
        let secrets = EnrollmentSecrets::parse(
            "# rotation\nold-secret-0123456789\n\nnew-secret-0123456789\n",
        )
        .unwrap();
        assert_eq!(secrets.len(), 2);
        assert_eq!(
            secrets.check("new-secret-0123456789"),
            Some(label("new-secret-0123456789"))
        );
        assert_eq!(secrets.check("new-secret-012345678"), None);
        let error = EnrollmentSecrets::parse("good-secret-0123456789\nshort\n").unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("at least 16"),
            "{error}"
        );

        let tokens =
            ApiTokens::parse("read reader-token-0123456\nadmin admin-token-01234567\n").unwrap();
        assert_eq!(tokens.role("reader-token-0123456"), Some(Role::Read));
        assert_eq!(tokens.role("admin-token-01234567"), Some(Role::Admin));
        assert_eq!(tokens.role("admin"), None);
        let error = ApiTokens::parse("owner some-token-0123456789\n").unwrap_err();
        assert!(
            error.contains("line 1") && error.contains("\"owner\""),
            "{error}"
        );
        let error = ApiTokens::parse("admin\n").unwrap_err();
        assert!(error.contains("expected 'read TOKEN'"), "{error}");
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_change_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "first-secret-0123456789\n").unwrap();
        let file = SecretsFile::open(&path, EnrollmentSecrets::parse).unwrap();
        assert!(file.get().check("first-secret-0123456789").is_some());
        std::fs::write(&path, "first-secret-0123456789\nsecond-secret-0123456789\n").unwrap();
        assert!(file.get().check("second-secret-0123456789").is_some());
        std::fs::write(&path, "bad\n").unwrap();
        assert!(file.get().check("second-secret-0123456789").is_some());
        std::fs::write(&path, "").unwrap();
        assert!(file.get().is_empty());
        std::fs::write(&path, "short").unwrap();
        assert!(SecretsFile::open(&path, EnrollmentSecrets::parse).is_err());
    }
}
