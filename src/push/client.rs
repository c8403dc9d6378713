//! The HTTP client that POSTs pushes to distributors: hyper's pooled HTTP/1.1 client over the
//! node's outbound connector, so a distributor URL passes the same address policy (checked at
//! connect time, on every address a name resolves to) and the same verified TLS as every other
//! connection the node makes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::outbound::{Connector, Outbound};

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

/// A pooled HTTP(S) client for distributor POSTs.
#[derive(Debug, Clone)]
pub struct PushClient {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    outbound: Outbound,
}

impl PushClient {
    /// A client whose every attempt (connect, TLS, request, response head) ends within `timeout`.
    pub fn new(timeout: Duration, outbound: Outbound) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(outbound.http1_connector(timeout));
        Self {
            client,
            timeout,
            outbound,
        }
    }

    /// POSTs `body` (JSON) to `url` once.
    pub async fn post(&self, url: &str, body: String) -> Outcome {
        let uri: http::Uri = match url.parse() {
            Ok(uri) => uri,
            Err(e) => return Outcome::Refused(format!("unusable URL: {e}")),
        };
        // Refused before anything is sent; the connector checks every resolved address again.
        if let Err(why) = self.outbound.policy().check_url(url) {
            return Outcome::Refused(why.to_string());
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
            Ok(Err(e)) => match refusal(&e) {
                Some(why) => Outcome::Refused(why),
                None => Outcome::Retry(format!("request failed: {}", chain(&e))),
            },
            Ok(Ok(response)) => classify(response.status().as_u16()),
        }
    }
}

/// The policy refusal behind a failed request, if that is what it was: such a push is dropped,
/// not retried.
fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(crate::outbound::DialError::Refused(why)) =
            err.downcast_ref::<crate::outbound::DialError>()
        {
            return Some(why.to_string());
        }
        source = err.source();
    }
    None
}

/// An error and its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
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
    fn statuses_follow_unifiedpush() {
        assert_eq!(classify(201), Outcome::Delivered);
        assert_eq!(classify(404), Outcome::Gone(404));
        assert_eq!(classify(410), Outcome::Gone(410));
        assert_eq!(classify(413), Outcome::Rejected(413));
        assert!(matches!(classify(429), Outcome::Retry(_)));
        assert!(matches!(classify(503), Outcome::Retry(_)));
    }
}
