//! TLS on the listener: a certificate chain and private key from PEM files, read again
//! when they change (a renewed certificate, a Kubernetes secret update) without a restart
//! or a dropped connection. Handshakes after a reload use the new pair; a pair that fails
//! to load is reported and the previous one stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_cache_core::Digest;
use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a malformed one.
    #[error("{path}: no usable PEM certificate ({reason})")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The key file holds no PEM private key, or a malformed one.
    #[error("{path}: no usable PEM private key ({reason})")]
    Key {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said (never key material).
        reason: String,
    },
    /// The key is of an unsupported kind or does not belong to the certificate.
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(rustls::Error),
}

/// A certificate and key loaded from files, replaced by [`ReloadingCert::reload`] when
/// the files change. It is the rustls certificate resolver of the listener.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
    /// Fingerprint of the last pair that failed to load, so it is reported once.
    rejected: RwLock<Option<Digest>>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// sha256 of both files' bytes: tells whether they changed (the key bytes themselves
    /// are not kept).
    fingerprint: Digest,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the PEM certificate chain (leaf first) and private key (PKCS#8, PKCS#1 or
    /// SEC1), checking that they belong together.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Arc<Self>, TlsError> {
        let (cert_path, key_path) = (cert.into(), key.into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_pem, key_pem) = (read(&cert_path)?, read(&key_path)?);
        let key = parse_pair(&cert_path, &cert_pem, &key_path, &key_pem, &provider)?;
        let loaded = Loaded {
            key,
            fingerprint: fingerprint(&cert_pem, &key_pem),
        };
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            provider,
            current: RwLock::new(loaded),
            rejected: RwLock::new(None),
        }))
    }

    /// Reads the files again; `Ok(true)` when they changed and the new pair is now in use,
    /// `Ok(false)` when they did not change (or are the pair that failed last time). On an
    /// error the previous pair stays in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.cert_path)?, read(&self.key_path)?);
        let fingerprint = fingerprint(&cert_pem, &key_pem);
        let known = |d: Option<&Digest>| d == Some(&fingerprint);
        if known(Some(&self.current.read().fingerprint)) || known(self.rejected.read().as_ref()) {
            return Ok(false);
        }
        match parse_pair(
            &self.cert_path,
            &cert_pem,
            &self.key_path,
            &key_pem,
            &self.provider,
        ) {
            Ok(key) => {
                *self.current.write() = Loaded { key, fingerprint };
                Ok(true)
            }
            Err(e) => {
                *self.rejected.write() = Some(fingerprint);
                Err(e)
            }
        }
    }

    /// Checks the files every `every` in a background task, for as long as the returned
    /// handle is not aborted; reloads and failures are logged.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let me = Arc::clone(&this);
                match tokio::task::spawn_blocking(move || me.reload()).await {
                    Ok(Ok(true)) => {
                        tracing::info!(cert = %this.cert_path.display(), "TLS certificate reloaded");
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the previous one");
                    }
                    Err(e) => tracing::warn!(error = %e, "TLS reload task failed"),
                }
            }
        })
    }

    /// A rustls server configuration (HTTP/1.1) that resolves certificates through `self`.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Pair)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().key))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// sha256 of both files' bytes.
fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> Digest {
    let mut both = cert_pem.to_vec();
    both.extend_from_slice(key_pem);
    Digest::sha256_of(&both)
}

/// The certified key from the PEM bytes of both files.
fn parse_pair(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: cert_path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("none found".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(TlsError::Pair)
}
