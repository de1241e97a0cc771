//! TLS for the webhook listener: a certificate that can be swapped while serving.
//!
//! The key pair is re-read when the files change (rewritten in place, or swapped through
//! the `..data` symlink Kubernetes uses for Secret volumes); a pair that does not parse
//! or does not match keeps the old one serving. New connections get the new certificate,
//! open ones keep theirs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found: {reason}")]
    NoKey { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(rustls::Error),
    #[error("client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The certificate and key files, and what was last loaded from them.
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A loaded key pair and the raw bytes it came from (to notice changes cheaply).
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub source: (Vec<u8>, Vec<u8>),
    /// The leaf's notAfter, seconds since the epoch.
    pub not_after: i64,
}

impl CertificateFiles {
    /// Reads both files; `Ok(None)` when they are byte-identical to `previous`.
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source });
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    pub fn load(&self, source: (Vec<u8>, Vec<u8>)) -> Result<LoadedCertificate, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&source.0)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::NoCertificate { path: self.cert.clone() })?;
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCertificate { path: self.cert.clone() });
        };
        let not_after = x509_parser::parse_x509_certificate(leaf)
            .map(|(_, cert)| cert.validity().not_after.timestamp())
            .unwrap_or_default();
        let key = PrivateKeyDer::from_pem_slice(&source.1)
            .map_err(|e| TlsError::NoKey { path: self.key.clone(), reason: e.to_string() })?;
        let provider = rustls::crypto::ring::default_provider();
        let key = CertifiedKey::from_der(chain, key, &provider).map_err(TlsError::Pair)?;
        Ok(LoadedCertificate { key: Arc::new(key), source, not_after })
    }
}

/// Hands every new TLS connection the current certificate.
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingResolver")
    }
}

impl ReloadingResolver {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self { current: RwLock::new(key) }
    }

    pub fn replace(&self, key: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut guard) => *guard = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Builds the rustls config: TLS 1.2 and 1.3, ALPN `http/1.1` (plus `h2` when enabled),
/// and client-certificate verification when a client CA is given.
pub fn server_config(
    resolver: Arc<ReloadingResolver>,
    client_ca: Option<&Path>,
    enable_http2: bool,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca_error = |reason: String| TlsError::ClientCa { path: path.to_path_buf(), reason };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no certificate found".to_string()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols =
        if enable_http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(config)
}
