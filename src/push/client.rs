//! The HTTP client that POSTs pushes to distributors: hyper's pooled client over plain TCP or
//! rustls (ring, Mozilla's roots from `webpki-roots`), with a resolver that refuses non-public
//! addresses unless the operator allows them.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The distributor took it (2xx).
    Delivered,
    /// The distributor says this endpoint no longer exists (404 or 410): forget it.
    Gone(u16),
    /// The distributor refused this push for good (another 4xx): drop the push, keep the endpoint.
    Rejected(u16),
    /// A failure that may pass (5xx, 429, 408, timeout, connection error): try again later.
    Retry(String),
    /// The node will not send there (a non-public address, an unusable URL): drop the push.
    Refused(String),
}

/// Why a host may not be reached, if it may not.
pub fn forbidden_ip(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let private = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    };
    private.then_some("a loopback, private, link-local or otherwise non-public address")
}

/// Resolves names with the system resolver, keeping only addresses the policy allows.
#[derive(Debug, Clone)]
struct GuardedResolver {
    allow_private: bool,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || forbidden_ip(a.ip()).is_none())
                .collect();
            if found.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{name} has no public address"),
                ));
            }
            Ok(found.into_iter())
        })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// A pooled HTTP(S) client for distributor POSTs.
#[derive(Debug, Clone)]
pub struct PushClient {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    allow_private: bool,
}

impl PushClient {
    /// A client whose every attempt (connect, TLS, request, response head) ends within `timeout`.
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, String> {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS setup: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(tls);
        Ok(Self {
            client,
            timeout,
            allow_private,
        })
    }

    /// POSTs `body` (JSON) to `url` once.
    pub async fn post(&self, url: &str, body: String) -> Outcome {
        let uri: http::Uri = match url.parse() {
            Ok(uri) => uri,
            Err(e) => return Outcome::Refused(format!("unusable URL: {e}")),
        };
        // The resolver never sees IP literals, so they are checked here.
        if let Some(host) = uri.host()
            && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse()
            && !self.allow_private
            && let Some(why) = forbidden_ip(ip)
        {
            return Outcome::Refused(format!("{host} is {why}"));
        }
        let request = match http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
        {
            Ok(request) => request,
            Err(e) => return Outcome::Refused(format!("unusable request: {e}")),
        };
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Outcome::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Outcome::Retry(format!("request failed: {e}")),
            Ok(Ok(response)) => classify(response.status().as_u16()),
        }
    }
}

/// What an HTTP status means for a push (UnifiedPush: 404 and 410 mean the endpoint is gone).
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        404 | 410 => Outcome::Gone(status),
        408 | 425 | 429 => Outcome::Retry(format!("HTTP {status}")),
        400..=499 => Outcome::Rejected(status),
        _ => Outcome::Retry(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(forbidden_ip(ip).is_some(), "{ip} should be refused");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(forbidden_ip(ip).is_none(), "{ip} should be allowed");
        }
    }

    #[test]
    fn statuses_follow_unifiedpush() {
        assert_eq!(classify(201), Outcome::Delivered);
        assert_eq!(classify(404), Outcome::Gone(404));
        assert_eq!(classify(410), Outcome::Gone(410));
        assert_eq!(classify(413), Outcome::Rejected(413));
        assert!(matches!(classify(429), Outcome::Retry(_)));
        assert!(matches!(classify(503), Outcome::Retry(_)));
    }
}
