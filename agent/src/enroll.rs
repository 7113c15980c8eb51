//! How the agent reaches its collector and proves who it is: TLS pinned to the
//! collector's CA (plain text only when asked for), and a per-agent credential obtained
//! once by enrollment and kept private in the state dir.
use std::path::{Path, PathBuf};
use std::time::Duration;

use census_proto::v1::EnrollRequest;
use census_proto::v1::census_client::CensusClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::state::{StateError, write_synced};

/// Connection settings of `census-agent run`.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// The CA (PEM) that signed the collector's certificate: the only one trusted.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for a collector that requires mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name the collector's certificate must carry, when it is not the URL's host.
    pub server_name: Option<String>,
    /// Allows an `http://` collector: no TLS, for local development only.
    pub insecure_plaintext: bool,
}

impl Transport {
    /// The endpoint for `url`, with TLS unless plain text was asked for; an error
    /// names the flag that is missing or the file that cannot be used.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|error| format!("invalid --collector URL {url:?}: {error}"))?;
        match endpoint.uri().scheme_str() {
            Some("https") => {}
            Some("http") if self.insecure_plaintext => {
                if self.ca.is_some() || self.cert.is_some() {
                    return Err(format!(
                        "--collector {url} is plain http://, but TLS files were given: use https://"
                    ));
                }
                return Ok(endpoint);
            }
            Some("http") => {
                return Err(format!(
                    "--collector {url} is plain http://: use https:// with --ca, or pass --insecure-plaintext (local development only)"
                ));
            }
            _ => return Err(format!("--collector {url:?} must be an https:// URL")),
        }
        let ca = self.ca.as_ref().ok_or_else(|| {
            format!(
                "--collector {url} needs --ca FILE: the CA that signed the collector's certificate (the only one trusted)"
            )
        })?;
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "--ca")?));
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "--tls-cert")?,
                    read(key, "--tls-key")?,
                ));
            }
            (None, None) => {}
            _ => return Err("--tls-cert and --tls-key go together".into()),
        }
        endpoint
            .tls_config(tls)
            .map_err(|error| format!("TLS settings for {url}: {error}"))
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read {flag} {}: {error}", path.display()))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(format!("{flag} {}: not a PEM file", path.display()));
    }
    Ok(bytes)
}

/// The credential file in the state dir (mode 0600): `NODE_ID` and the credential,
/// one per line, so a state dir reused for another node enrolls again.
#[derive(Debug, Clone)]
pub struct CredentialFile {
    path: PathBuf,
}

impl CredentialFile {
    pub fn new(state_dir: &Path) -> Self {
        CredentialFile {
            path: state_dir.join("credential"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored credential, if it was issued for `node_id`.
    pub fn load(&self, node_id: &str) -> Result<Option<String>, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut lines = text.lines();
        match (lines.next(), lines.next()) {
            (Some(node), Some(credential)) if node == node_id && !credential.is_empty() => {
                Ok(Some(credential.to_string()))
            }
            _ => Ok(None),
        }
    }

    pub fn save(&self, node_id: &str, credential: &str) -> Result<(), StateError> {
        write_synced(
            &self.path,
            &self.path.with_extension("tmp"),
            format!("{node_id}\n{credential}\n").as_bytes(),
        )
    }

    pub fn forget(&self) -> Result<(), StateError> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
                path: self.path.clone(),
                source: error,
            }),
            _ => Ok(()),
        }
    }
}

/// Reads the enrollment secret (the file's first non-empty line).
pub fn enrollment_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "cannot read --enrollment-secret-file {}: {error}",
            path.display()
        )
    })?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("--enrollment-secret-file {} is empty", path.display()))
}

/// Exchanges the enrollment secret for a credential bound to `node_id`.
pub async fn enroll(
    channel: Channel,
    secret: String,
    node_id: &str,
    agent_id: &str,
    hostname: &str,
) -> Result<String, tonic::Status> {
    let mut client = CensusClient::new(channel);
    let mut request = tonic::Request::new(EnrollRequest {
        enrollment_secret: secret,
        node_id: node_id.to_string(),
        agent_id: agent_id.to_string(),
        hostname: hostname.to_string(),
    });
    request.set_timeout(Duration::from_secs(30));
    let response = client.enroll(request).await?.into_inner();
    tracing::info!(credential = %response.credential_id, node_id, "enrolled with the collector");
    Ok(response.credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_needs_its_flag_and_tls_needs_a_ca() {
        let plain = Transport::default();
        let error = plain.endpoint("http://127.0.0.1:7701").unwrap_err();
        assert!(error.contains("--insecure-plaintext"), "{error}");
        let error = plain.endpoint("https://127.0.0.1:7701").unwrap_err();
        assert!(error.contains("needs --ca"), "{error}");
        let allowed = Transport {
            insecure_plaintext: true,
            ..Transport::default()
        };
        assert!(allowed.endpoint("http://127.0.0.1:7701").is_ok());
        let error = allowed.endpoint("ftp://x").unwrap_err();
        assert!(error.contains("https://"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let error = Transport {
            ca: Some(not_pem),
            ..Transport::default()
        }
        .endpoint("https://127.0.0.1:7701")
        .unwrap_err();
        assert!(error.contains("not a PEM file"), "{error}");
    }

    #[test]
    fn the_credential_is_private_and_bound_to_its_node() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = CredentialFile::new(dir.path());
        assert_eq!(file.load("node-a").unwrap(), None);
        file.save("node-a", "cen1.x.y").unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(file.load("node-a").unwrap().as_deref(), Some("cen1.x.y"));
        assert_eq!(file.load("node-b").unwrap(), None);
        file.forget().unwrap();
        file.forget().unwrap();
        assert_eq!(file.load("node-a").unwrap(), None);
    }
}
