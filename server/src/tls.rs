//! TLS (rustls) for both ports: the gRPC ingest through tonic, the HTTP API through
//! hyper over a rustls acceptor. With a client CA, agents must present a certificate
//! it signed (mutual TLS).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest an HTTPS client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The collector's certificate, key and, for mutual TLS, the CA of agent certificates.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read {what} {}: {error}", path.display()))
}

impl TlsFiles {
    /// tonic's server TLS settings.
    pub fn grpc(&self) -> Result<tonic::transport::ServerTlsConfig, String> {
        let identity = tonic::transport::Identity::from_pem(
            read(&self.cert, "--tls-cert")?,
            read(&self.key, "--tls-key")?,
        );
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(identity)
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(
                ca,
                "--tls-client-ca",
            )?));
        }
        Ok(config)
    }

    /// rustls settings for the HTTP API (HTTP/1.1).
    pub fn http(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let certs = CertificateDer::pem_slice_iter(&read(&self.cert, "--tls-cert")?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("--tls-cert {}: {error}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "--tls-cert {}: no PEM certificate in it",
                self.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key, "--tls-key")?)
            .map_err(|error| format!("--tls-key {}: {error}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&read(ca, "--tls-client-ca")?) {
                    let cert =
                        cert.map_err(|error| format!("--tls-client-ca {}: {error}", ca.display()))?;
                    roots
                        .add(cert)
                        .map_err(|error| format!("--tls-client-ca {}: {error}", ca.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|error| format!("--tls-client-ca {}: {error}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|error| format!("--tls-cert/--tls-key: {error}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Serves `router` over TLS on `listener` until `stopped` turns true, then waits for
/// open connections to finish their requests.
pub async fn serve_https(
    listener: TcpListener,
    router: axum::Router,
    config: Arc<rustls::ServerConfig>,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "https handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "https handshake timed out");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "https connection ended");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
