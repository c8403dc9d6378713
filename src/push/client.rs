//! The HTTP client that POSTs pushes to distributors and to FCM (and asks Google's OAuth endpoint
//! for FCM access tokens): hyper's pooled HTTP/1.1 client over the node's outbound connector, so
//! every URL passes the same address policy (checked at connect time, on every address a name
//! resolves to) and the same verified TLS as every other connection the node makes.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
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
    /// A failure that may pass (5xx, 429, 408, timeout, connection error): try again later, and
    /// not before `after` if the server said when (`Retry-After`).
    Retry {
        /// What went wrong, for the log and the queue's `last_error`.
        why: String,
        /// The server's `Retry-After`, if it sent one.
        after: Option<Duration>,
    },
    /// The node will not send there (a non-public address, an unusable URL): drop the push.
    Refused(String),
}

impl Outcome {
    /// A failure worth retrying, with no `Retry-After`.
    pub fn retry(why: impl Into<String>) -> Self {
        Outcome::Retry {
            why: why.into(),
            after: None,
        }
    }
}

/// Most bytes of an answer's body that are read (FCM's and OAuth's answers are a few hundred
/// bytes; the rest of a longer one is ignored).
pub const ANSWER_BODY_MAX: usize = 64 * 1024;

/// An HTTP answer: its status, when it asked to be retried, and (the start of) its body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After`, as a wait from now.
    pub retry_after: Option<Duration>,
    /// Up to [`ANSWER_BODY_MAX`] bytes of the body (empty if it was longer or broke off).
    pub body: Bytes,
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoAnswer {
    /// The node will not send there (the address policy, an unusable URL or request).
    #[error("{0}")]
    Refused(String),
    /// It failed on the way (timeout, connection error): it may work later.
    #[error("{0}")]
    Failed(String),
}

impl From<NoAnswer> for Outcome {
    fn from(e: NoAnswer) -> Self {
        match e {
            NoAnswer::Refused(why) => Outcome::Refused(why),
            NoAnswer::Failed(why) => Outcome::retry(why),
        }
    }
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

    /// POSTs `body` (JSON) to a UnifiedPush distributor at `url` once. Only the status and
    /// `Retry-After` count: the body of the answer is not waited for.
    pub async fn post(&self, url: &str, body: String) -> Outcome {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(request) => request,
            Err(e) => return Outcome::Refused(format!("unusable request: {e}")),
        };
        match self.exchange(request).await {
            Err(e) => e.into(),
            Ok(response) => match classify(response.status().as_u16()) {
                Outcome::Retry { why, .. } => Outcome::Retry {
                    why,
                    after: retry_after_header(&response),
                },
                outcome => outcome,
            },
        }
    }

    /// Sends `request` once and reads the answer: its head within the client's timeout, then up
    /// to [`ANSWER_BODY_MAX`] bytes of its body within the timeout again (a body that is longer,
    /// breaks off or takes longer is read as empty; the status still counts).
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Answer, NoAnswer> {
        let response = self.exchange(request).await?;
        let status = response.status().as_u16();
        let retry_after = retry_after_header(&response);
        let read = Limited::new(response.into_body(), ANSWER_BODY_MAX).collect();
        let body = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// Sends `request` once, after the address policy allows its URL, and waits for the head of
    /// the answer within the client's timeout.
    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, NoAnswer> {
        let url = request.uri().to_string();
        // Refused before anything is sent; the connector checks every resolved address again.
        if let Err(why) = self.outbound.policy().check_url(&url) {
            return Err(NoAnswer::Refused(why.to_string()));
        }
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(NoAnswer::Failed(format!(
                "no answer within {:?}",
                self.timeout
            ))),
            Ok(Err(e)) => Err(match refusal(&e) {
                Some(why) => NoAnswer::Refused(why),
                None => NoAnswer::Failed(format!("request failed: {}", chain(&e))),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// The answer's `Retry-After`, as a wait from now.
fn retry_after_header<B>(response: &http::Response<B>) -> Option<Duration> {
    response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()))
}

/// A `Retry-After` value (seconds, or an HTTP date) as a wait from `now`; a date in the past is
/// no wait.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
        408 | 425 | 429 => Outcome::retry(format!("HTTP {status}")),
        400..=499 => Outcome::Rejected(status),
        _ => Outcome::retry(format!("HTTP {status}")),
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
        assert!(matches!(classify(429), Outcome::Retry { .. }));
        assert!(matches!(classify(503), Outcome::Retry { .. }));
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: no wait"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
