//! TLS for the three listeners (rustls with aws-lc-rs): the server configuration built from
//! PEM files, rebuilt when the files change on disk (checked every second by
//! [`Tls::reload`]), mutual TLS with a client CA, and the connection type the listeners serve.
//!
//! A connection takes the configuration current when it is accepted and keeps it: a rotated
//! certificate applies to new connections, in-flight ones are not dropped.

use crate::config::TlsConfig;
use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A certificate, key or client CA that cannot be used. Names the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM {expected}")]
    Pem {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("invalid TLS configuration: {0}")]
    Rustls(String),
}

/// The listeners' TLS configuration, reloaded when its files change.
pub struct Tls {
    cfg: TlsConfig,
    /// The files' bytes at the last successful build.
    files: Mutex<Vec<Vec<u8>>>,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Tls {
    pub fn load(cfg: &TlsConfig) -> Result<Tls, TlsError> {
        let files = read_files(cfg)?;
        let server = build(cfg, &files)?;
        Ok(Tls {
            cfg: cfg.clone(),
            files: Mutex::new(files),
            current: RwLock::new(Arc::new(server)),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Re-reads the files and rebuilds the configuration when they changed. A half-written or
    /// invalid set (e.g. a new certificate before its key) keeps the previous one in use.
    pub fn reload(&self) {
        let Ok(now) = read_files(&self.cfg) else {
            tracing::warn!("cannot read the TLS files; the previous certificate stays in use");
            return;
        };
        let mut files = self.files.lock();
        if *files == now {
            return;
        }
        match build(&self.cfg, &now) {
            Ok(server) => {
                *self.current.write() = Arc::new(server);
                *files = now;
                tracing::info!(cert_file = %self.cfg.cert_file.display(), "TLS files changed; certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed TLS files are not usable (yet); the previous certificate stays in use");
            }
        }
    }
}

fn read_files(cfg: &TlsConfig) -> Result<Vec<Vec<u8>>, TlsError> {
    let read = |what, p: &std::path::Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            what,
            path: p.display().to_string(),
            source,
        })
    };
    let mut out = vec![
        read("certificate file", &cfg.cert_file)?,
        read("key file", &cfg.key_file)?,
    ];
    if let Some(ca) = &cfg.client_ca_file {
        out.push(read("client CA file", ca)?);
    }
    Ok(out)
}

fn build(cfg: &TlsConfig, files: &[Vec<u8>]) -> Result<rustls::ServerConfig, TlsError> {
    let pem = |what, p: &std::path::Path, expected| TlsError::Pem {
        what,
        path: p.display().to_string(),
        expected,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files[0])
        .collect::<Result<_, _>>()
        .map_err(|_| pem("certificate file", &cfg.cert_file, "certificate"))?;
    if certs.is_empty() {
        return Err(pem("certificate file", &cfg.cert_file, "certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&files[1])
        .map_err(|_| pem("key file", &cfg.key_file, "private key"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (&cfg.client_ca_file, files.get(2)) {
        (Some(path), Some(bytes)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(bytes) {
                let c = c.map_err(|_| pem("client CA file", path, "certificate"))?;
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("client CA {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(pem("client CA file", path, "certificate"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// An accepted connection: plain TCP or TLS over it.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

/// Accepts the TLS handshake on `stream` within `timeout`, or plain TCP when `tls` is `None`.
/// A failed handshake (plain text to a TLS port, an unknown or expired client certificate) is
/// counted and logged at debug.
pub async fn handshake(
    stream: TcpStream,
    tls: Option<&Tls>,
    timeout: std::time::Duration,
    sec: &super::Security,
    listener: super::Listener,
) -> Option<Conn> {
    let Some(tls) = tls else {
        return Some(Conn::Plain(stream));
    };
    match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => {
            sec.stats.tls_failed(listener);
            tracing::debug!(listener = listener.label(), error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            sec.stats.tls_failed(listener);
            tracing::debug!(listener = listener.label(), "TLS handshake timed out");
            None
        }
    }
}
