//! TLS for the node, both ways, with rustls (ring):
//!
//! - [`ClientTls`]: what every outgoing `https://` connection verifies against: Mozilla's roots
//!   (`webpki-roots`) plus an operator's extra CA file (a private CA, or a test CA). One config per
//!   protocol the node speaks (HTTP/2 for gRPC, HTTP/1.1 for push distributors), chosen by ALPN.
//! - [`ServerCert`]: the certificate and key the node serves with, read from PEM files and read
//!   again when the files change or on `SIGHUP`, so a renewed certificate (certbot, Caddy, an ACME
//!   client) is taken up without a restart. A failed reload keeps the old certificate and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN for gRPC: HTTP/2 only.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN for plain HTTP requests (push distributors, webhooks).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// How often the served certificate's files are checked for a change.
pub const CERT_CHECK_EVERY: Duration = Duration::from_secs(30);

/// The `[tls]` settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain the node serves (PEM, leaf first). With `key_file`, the node's port
    /// speaks TLS only; without both it speaks plaintext (the zero-config loopback start).
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that outgoing `https://` connections trust besides Mozilla's roots:
    /// a private CA that signed the certificates of the servers this node federates with.
    pub extra_ca_file: PathBuf,
    /// How long a client has to complete the TLS handshake, ms.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            extra_ca_file: PathBuf::new(),
            handshake_timeout_ms: 10_000,
        }
    }
}

impl TlsConfig {
    /// Whether the node serves TLS.
    pub fn serves_tls(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// The extra CA file, if one is set.
    pub fn extra_ca(&self) -> Option<&Path> {
        (!self.extra_ca_file.as_os_str().is_empty()).then_some(self.extra_ca_file.as_path())
    }

    /// Checks the values; the error names the setting and the rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.cert_file.as_os_str().is_empty() != self.key_file.as_os_str().is_empty() {
            return Err((
                "tls.cert_file / tls.key_file",
                "set both to serve TLS, or neither".into(),
            ));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(("tls.handshake_timeout_ms", "must be greater than 0".into()));
        }
        Ok(())
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the material.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate in a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side: configs for outgoing `https://` connections; cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientTls {
    h2: Arc<rustls::ClientConfig>,
    http1: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Trusts Mozilla's roots and, if given, every certificate in `extra_ca` (PEM).
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
            }
        }
        let roots = Arc::new(roots);
        let config = |alpn: &[u8]| -> Result<Arc<rustls::ClientConfig>, TlsError> {
            let mut config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Self {
            h2: config(ALPN_H2)?,
            http1: config(ALPN_HTTP1)?,
        })
    }

    /// The config for gRPC (HTTP/2).
    pub fn h2(&self) -> Arc<rustls::ClientConfig> {
        self.h2.clone()
    }

    /// The config for HTTP/1.1.
    pub fn http1(&self) -> Arc<rustls::ClientConfig> {
        self.http1.clone()
    }
}

/// The certificate the node serves, reloadable; see the module docs.
#[derive(Debug)]
pub struct ServerCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    loaded_stamp: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl ServerCert {
    /// Reads the chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let key = read_key(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(key)),
            loaded_stamp: RwLock::new(stamp(cert_path, key_path)),
        }))
    }

    /// Reads the files again and serves them from the next handshake on; on failure the old
    /// certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        *self.loaded_stamp.write().unwrap_or_else(|e| e.into_inner()) =
            stamp(&self.cert_path, &self.key_path);
        Ok(())
    }

    /// Reloads if either file's modification time changed since the last load.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.cert_path, &self.key_path);
        let then = *self.loaded_stamp.read().unwrap_or_else(|e| e.into_inner());
        if now.is_none() || now == then {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// The rustls server config serving this certificate, offering HTTP/2 and HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }

    /// The rustls server config for the IRC gateway: the same certificate (reloaded with it),
    /// no ALPN, since IRC clients offer none.
    pub fn irc_server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }

    /// Reloads on `SIGHUP` and whenever the files change, until `cancel` fires. The `SIGHUP`
    /// handler is in place when this returns (so a signal sent right after start is not lost).
    pub fn spawn_watch(
        self: Arc<Self>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; the certificate reloads on file change only");
                None
            }
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CERT_CHECK_EVERY);
            tick.tick().await;
            loop {
                #[cfg(unix)]
                let hup = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup = std::future::pending::<Option<()>>();
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = hup => self.log_reload(self.reload().map(|()| true), "SIGHUP"),
                    _ = tick.tick() => self.log_reload(self.reload_if_changed(), "files changed"),
                }
            }
        })
    }

    fn log_reload(&self, outcome: Result<bool, TlsError>, why: &str) {
        match outcome {
            Ok(true) => {
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded ({why})");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; serving the previous one");
            }
        }
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn stamp(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(cert)?, modified(key)?))
}

fn read_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| file_error(key_path, format!("no usable PEM private key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key, &provider())?;
    Ok(certified)
}
