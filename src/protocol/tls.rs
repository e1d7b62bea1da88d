//! TLS 1.3 (rustls, ring) for both sides of the protocol: the agent's
//! listener (optionally requiring client certificates: mutual TLS), the
//! agent's connector (verifying the controller), and the controller side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file or setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {kind} from {path}: {message}")]
    Pem {
        kind: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Setting(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Pem {
        kind: "certificates",
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        kind: "a private key",
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store.add(cert).map_err(TlsError::Rustls)?;
    }
    Ok(store)
}

/// The agent's listener side: its certificate and key; with a CA, client
/// certificates are required and verified against it (mutual TLS).
pub fn server_config(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(
        builder.with_single_cert(load_certs(cert)?, load_key(key)?)?,
    ))
}

/// The dialling side (the agent in connect mode, or a controller): verify
/// the other side against `ca`; present `cert`/`key` when given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The TLS settings of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// What the agent uses, built once at start.
#[derive(Clone, Default)]
pub struct AgentTls {
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub connector: Option<tokio_rustls::TlsConnector>,
}

impl TlsFiles {
    pub fn enabled(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.ca.is_some()
    }

    /// Builds the acceptor (when listening) and the connector (in connect
    /// mode), refusing incomplete settings.
    pub fn build(&self, listen: bool, connect: bool) -> Result<AgentTls, TlsError> {
        if !self.enabled() {
            return Ok(AgentTls::default());
        }
        let pair = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => {
                return Err(TlsError::Setting(
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        let acceptor = if listen {
            let (cert, key) = pair.ok_or_else(|| {
                TlsError::Setting("listening with TLS needs --tls-cert and --tls-key".into())
            })?;
            Some(tokio_rustls::TlsAcceptor::from(server_config(
                cert,
                key,
                self.ca.as_deref(),
            )?))
        } else {
            None
        };
        let connector = if connect {
            let ca = self.ca.as_deref().ok_or_else(|| {
                TlsError::Setting(
                    "connect mode with TLS needs --tls-ca to verify the controller".into(),
                )
            })?;
            Some(tokio_rustls::TlsConnector::from(client_config(ca, pair)?))
        } else {
            None
        };
        Ok(AgentTls {
            acceptor,
            connector,
        })
    }
}
