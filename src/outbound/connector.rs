//! The one connector under every connection the node opens to an address a request named: it
//! reads the URL ([`Target`]), resolves and checks every address against the [`AddressPolicy`]
//! at connect time, connects over TCP, and for `https://` completes a verified TLS handshake
//! before a byte of HTTP is sent. An `https://` address is never spoken to in plaintext; a peer
//! that answers a TLS handshake with something else is an error that says so.
//!
//! It serves tonic channels (HTTP/2, ALPN `h2`) and hyper's pooled client (HTTP/1.1) alike.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::policy::{AddressPolicy, Refusal, ResolveError, Scheme, Target};

/// Why a connection could not be made. The `Display` carries the detail for logs and for the
/// operator's own tools; what a remote requester sees is [`super::UNREACHABLE`] only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    /// The policy refused the address, or the URL is unusable.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The name did not resolve.
    #[error("name lookup failed: {0}")]
    Lookup(Arc<io::Error>),
    /// No address accepted the TCP connection.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed.
        source: Arc<io::Error>,
    },
    /// No address accepted within the connect timeout.
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// An `https://` peer answered the TLS handshake with something that is not TLS.
    #[error(
        "{server} did not answer with TLS; an https:// address is never spoken to in plaintext \
         (if the server speaks plaintext, its address is http://)"
    )]
    NotTls {
        /// The server.
        server: String,
    },
    /// The TLS handshake failed (an untrusted or wrong certificate, mostly).
    #[error("TLS with {server}: {source}")]
    Tls {
        /// The server.
        server: String,
        /// Why.
        source: Arc<io::Error>,
    },
    /// The HTTP/2 connection over the stream failed.
    #[error("{0}")]
    Transport(String),
}

impl From<ResolveError> for DialError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Refused(r) => DialError::Refused(r),
            ResolveError::Lookup(e) => DialError::Lookup(Arc::new(e)),
        }
    }
}

/// The connector; cheap to clone.
#[derive(Debug, Clone)]
pub struct Connector {
    policy: AddressPolicy,
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
}

impl Connector {
    /// A connector applying `policy`, verifying TLS with `tls` (whose ALPN picks the protocol),
    /// giving each connection attempt `connect_timeout` in all.
    pub fn new(
        policy: AddressPolicy,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            policy,
            tls,
            connect_timeout,
        }
    }

    /// Connects to `target` (see the module docs).
    pub async fn connect(&self, target: &Target) -> Result<Conn, DialError> {
        let addrs = self.policy.resolve(target).await?;
        let tcp = tokio::time::timeout(self.connect_timeout, connect_any(&addrs))
            .await
            .map_err(|_| DialError::Timeout(self.connect_timeout))??;
        let stream = match target.scheme {
            Scheme::Http => Stream::Plain(tcp),
            Scheme::Https => {
                let server = target.server_name();
                let name = rustls::pki_types::ServerName::try_from(server.clone())
                    .map_err(|e| Refusal::Unusable(format!("host {server:?}: {e}")))?;
                let handshake =
                    tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp);
                let tls = tokio::time::timeout(self.connect_timeout, handshake)
                    .await
                    .map_err(|_| DialError::Timeout(self.connect_timeout))?
                    .map_err(|source| tls_error(server, source))?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Conn(TokioIo::new(stream)))
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, DialError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                // Small gRPC frames must not wait out Nagle's algorithm.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(source) => {
                last = Some(DialError::Connect {
                    addr: *addr,
                    source: Arc::new(source),
                })
            }
        }
    }
    Err(last.unwrap_or(DialError::Refused(Refusal::Unusable("no address".into()))))
}

/// Names the common case: a plaintext server answering a TLS client.
fn tls_error(server: String, source: io::Error) -> DialError {
    let rustls_error = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let not_tls = matches!(rustls_error, Some(rustls::Error::InvalidMessage(_)))
        || source.kind() == io::ErrorKind::UnexpectedEof;
    if not_tls {
        DialError::NotTls { server }
    } else {
        DialError::Tls {
            server,
            source: Arc::new(source),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = DialError;
    type Future = BoxFuture<Result<Conn, DialError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let target = Target::parse(&uri.to_string())?;
            this.connect(&target).await
        })
    }
}

/// A connection, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A connected stream as hyper sees it.
#[derive(Debug)]
pub struct Conn(TokioIo<Stream>);

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        match self.0.inner() {
            Stream::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2) => {
                connected.negotiated_h2()
            }
            _ => connected,
        }
    }
}
