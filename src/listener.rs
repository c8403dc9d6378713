//! Where the node's connections come from: the accept loop under the gRPC/HTTP server, TLS on it
//! when the node has a certificate, the cap on connections per client address, and the real
//! client address of requests that arrive through a trusted reverse proxy.
//!
//! The accept loop never waits on a client: each TLS handshake runs in its own task with a time
//! limit, so a client that connects and says nothing holds up no one else.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Connections accepted (and TLS-established) but not yet taken by the server.
const ACCEPTED_QUEUE: usize = 256;
/// Pause after an accept error (out of file descriptors, mostly) before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How the listener treats connections.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// TLS for every connection, or none (plaintext).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most connections open at once from one client address (0: no cap).
    pub max_connections_per_address: usize,
    /// Reverse proxies whose connections are not capped and whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpNet>>,
    /// How long a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct Counts(Mutex<HashMap<IpAddr, usize>>);

impl Counts {
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Slot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_default();
        if cap != 0 && *count >= cap {
            return None;
        }
        *count += 1;
        Some(Slot {
            counts: Some(self.clone()),
            ip,
        })
    }
}

/// One counted connection; gives its place back when dropped.
#[derive(Debug)]
struct Slot {
    counts: Option<Arc<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(counts) = self.counts.take() {
            let mut counts = counts.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// Accepts on `listener` until `cancel` fires; the stream yields connections ready for HTTP.
pub fn incoming(
    listener: TcpListener,
    config: ListenerConfig,
    cancel: CancellationToken,
) -> ReceiverStream<Result<ServerConn, io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let counts = Arc::new(Counts::default());
    let local = listener.local_addr().ok();
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            let slot = if trusted(&config.trusted_proxies, remote.ip()) {
                Slot {
                    counts: None,
                    ip: remote.ip(),
                }
            } else {
                match counts.take(remote.ip(), config.max_connections_per_address) {
                    Some(slot) => slot,
                    None => {
                        tracing::debug!(%remote, "connection refused: max_connections_per_address reached");
                        continue;
                    }
                }
            };
            // Without TCP_NODELAY, small gRPC replies wait out Nagle's algorithm and the peer's
            // delayed ACK (~40 ms per unary call).
            let _ = tcp.set_nodelay(true);
            let conn = move |stream| ServerConn {
                stream,
                local,
                remote,
                _slot: slot,
            };
            match &config.tls {
                None => {
                    if tx.send(Ok(conn(ServerStream::Plain(tcp)))).await.is_err() {
                        break;
                    }
                }
                Some(tls) => {
                    let (tx, acceptor) = (tx.clone(), tokio_rustls::TlsAcceptor::from(tls.clone()));
                    let timeout = config.handshake_timeout;
                    tokio::spawn(async move {
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let _ =
                                    tx.send(Ok(conn(ServerStream::Tls(Box::new(stream))))).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Whether `ip` (an IPv4-mapped IPv6 address read as IPv4) is in one of `proxies`.
pub fn trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    proxies.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (a dual-stack socket's view of IPv4 clients) as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A connection, plain or TLS.
#[derive(Debug)]
enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection, as the gRPC server reads and writes it.
#[derive(Debug)]
pub struct ServerConn {
    stream: ServerStream,
    local: Option<SocketAddr>,
    remote: SocketAddr,
    _slot: Slot,
}

impl Connected for ServerConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.remote),
        }
    }
}

impl AsyncRead for ServerConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            ServerStream::Plain(s) => s.is_write_vectored(),
            ServerStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The client address of a request that came through a trusted proxy: the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy. Anything else keeps the connection's
/// address, so a client can't pick its own rate-limit key by sending the header.
pub fn forwarded_client(proxies: &[IpNet], peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
    if !trusted(proxies, peer) {
        return peer;
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // An unreadable hop: nothing to its left can be trusted either.
            return peer;
        };
        if !trusted(proxies, ip) {
            return canonical(ip);
        }
    }
    peer
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// Sets each request's client address (the `TcpConnectInfo` that rate limits read) from
/// `X-Forwarded-For` when the connection comes from a trusted proxy.
#[derive(Debug, Clone)]
pub struct ClientAddressLayer {
    proxies: Arc<Vec<IpNet>>,
}

impl ClientAddressLayer {
    /// Believes `X-Forwarded-For` only from `proxies`.
    pub fn new(proxies: Arc<Vec<IpNet>>) -> Self {
        Self { proxies }
    }
}

impl<S> tower::Layer<S> for ClientAddressLayer {
    type Service = ClientAddress<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientAddress {
            inner,
            proxies: self.proxies.clone(),
        }
    }
}

/// See [`ClientAddressLayer`].
#[derive(Debug, Clone)]
pub struct ClientAddress<S> {
    inner: S,
    proxies: Arc<Vec<IpNet>>,
}

impl<S, B> tower::Service<http::Request<B>> for ClientAddress<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !self.proxies.is_empty()
            && let Some(info) = request.extensions().get::<TcpConnectInfo>()
            && let Some(peer) = info.remote_addr
        {
            let headers: Vec<&str> = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let client = forwarded_client(&self.proxies, peer.ip(), &headers);
            if client != peer.ip() {
                let local_addr = info.local_addr;
                request.extensions_mut().insert(TcpConnectInfo {
                    local_addr,
                    remote_addr: Some(SocketAddr::new(client, 0)),
                });
            }
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        // Straight from a client: the header is ignored.
        assert_eq!(
            forwarded_client(&proxies, ip("203.0.113.5"), &["1.2.3.4"]),
            ip("203.0.113.5")
        );
        // Through the proxy: the right-most untrusted hop.
        assert_eq!(
            forwarded_client(&proxies, ip("10.0.0.2"), &["6.6.6.6, 1.2.3.4, 10.0.0.9"]),
            ip("1.2.3.4")
        );
        assert_eq!(
            forwarded_client(&proxies, ip("10.0.0.2"), &["[2001:4860::1]:443"]),
            ip("2001:4860::1")
        );
        // No header, or a broken one: the proxy's own address.
        assert_eq!(
            forwarded_client(&proxies, ip("10.0.0.2"), &[]),
            ip("10.0.0.2")
        );
        assert_eq!(
            forwarded_client(&proxies, ip("10.0.0.2"), &["1.2.3.4, junk"]),
            ip("10.0.0.2")
        );
        // A dual-stack socket's view of the proxy.
        assert_eq!(
            forwarded_client(&proxies, ip("::ffff:10.0.0.2"), &["1.2.3.4"]),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn connection_slots_are_capped_and_given_back() {
        let counts = Arc::new(Counts::default());
        let a = ip("198.51.100.1");
        let first = counts.take(a, 2).expect("first");
        let second = counts.take(a, 2).expect("second");
        assert!(counts.take(a, 2).is_none(), "third is over the cap");
        assert!(
            counts.take(ip("198.51.100.2"), 2).is_some(),
            "others are not held up"
        );
        drop(first);
        assert!(
            counts.take(a, 2).is_some(),
            "a closed connection frees its slot"
        );
        drop(second);
    }
}
