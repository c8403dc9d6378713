//! The `[push]` settings: per-user caps, delivery timeouts, retries, where pushes may go, and the
//! FCM service account and endpoints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where FCM messages are sent unless `fcm_endpoint` says otherwise (Google's HTTP v1 API).
pub const FCM_ENDPOINT: &str = "https://fcm.googleapis.com";

/// How push registration and delivery behave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Most UnifiedPush distributors one user may register (one per app install and device).
    pub max_distributors_per_user: usize,
    /// Most FCM tokens one user may register.
    pub max_fcm_tokens_per_user: usize,
    /// How long one POST to a distributor may take, connecting included, before it counts as a
    /// failed attempt.
    pub request_timeout_ms: u64,
    /// Most POSTs in flight at once, so a burst of mentions can't open unbounded connections.
    pub max_concurrent_deliveries: usize,
    /// Wait before the first retry; each further retry waits twice as long, up to
    /// `retry_max_backoff_ms`.
    pub retry_initial_backoff_ms: u64,
    /// Longest wait between retries.
    pub retry_max_backoff_ms: u64,
    /// A push that failed this many times is dropped.
    pub max_attempts: u32,
    /// A push still undelivered this long after it was queued is dropped: a notification about
    /// an old message is noise.
    pub max_age_secs: u64,
    /// The Google service account JSON key of the app's Firebase project. Empty: FCM is off (tokens
    /// are stored, nothing is sent to them). The file is a credential: keep it readable by the node
    /// only.
    pub fcm_service_account_file: PathBuf,
    /// Base URL of the FCM HTTP v1 API; messages go to
    /// `<fcm_endpoint>/v1/projects/<project_id>/messages:send`. Changed only for tests (a local
    /// stand-in) or a relay.
    pub fcm_endpoint: String,
    /// Where access tokens are asked for. Empty: the service account's `token_uri` (Google's
    /// `https://oauth2.googleapis.com/token`). Changed only for tests or a relay.
    pub fcm_token_uri: String,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            max_distributors_per_user: 16,
            max_fcm_tokens_per_user: 16,
            request_timeout_ms: 10_000,
            max_concurrent_deliveries: 16,
            retry_initial_backoff_ms: 5_000,
            retry_max_backoff_ms: 15 * 60 * 1000,
            max_attempts: 10,
            max_age_secs: 24 * 60 * 60,
            fcm_service_account_file: PathBuf::new(),
            fcm_endpoint: FCM_ENDPOINT.into(),
            fcm_token_uri: String::new(),
        }
    }
}

impl PushConfig {
    /// Checks the values; the error names the setting and the rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            (
                "push.max_distributors_per_user",
                self.max_distributors_per_user as u64,
            ),
            (
                "push.max_fcm_tokens_per_user",
                self.max_fcm_tokens_per_user as u64,
            ),
            ("push.request_timeout_ms", self.request_timeout_ms),
            (
                "push.max_concurrent_deliveries",
                self.max_concurrent_deliveries as u64,
            ),
            (
                "push.retry_initial_backoff_ms",
                self.retry_initial_backoff_ms,
            ),
            ("push.max_attempts", u64::from(self.max_attempts)),
            ("push.max_age_secs", self.max_age_secs),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err((field, "must be greater than 0".into()));
        }
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms {
            return Err((
                "push.retry_max_backoff_ms",
                "must be at least push.retry_initial_backoff_ms".into(),
            ));
        }
        base_url(&self.fcm_endpoint).map_err(|rule| ("push.fcm_endpoint", rule))?;
        if !self.fcm_token_uri.is_empty() {
            base_url(&self.fcm_token_uri).map_err(|rule| ("push.fcm_token_uri", rule))?;
        }
        Ok(())
    }

    /// The wait before the next attempt after `failed` failures: `initial · 2^(failed-1)`, capped.
    pub fn backoff_ms(&self, failed: u32) -> u64 {
        let doublings = failed.saturating_sub(1).min(32);
        self.retry_initial_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.retry_max_backoff_ms)
    }
}

/// An absolute `http://` or `https://` URL with no query or fragment (a trailing `/` is fine).
pub(crate) fn base_url(raw: &str) -> Result<(), String> {
    let rule =
        |why: String| format!("must be an absolute http:// or https:// URL ({why}; got {raw:?})");
    let url = url::Url::parse(raw).map_err(|e| rule(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(rule("not http or https".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(rule("no query or fragment".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = PushConfig {
            retry_initial_backoff_ms: 100,
            retry_max_backoff_ms: 1000,
            ..PushConfig::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| c.backoff_ms(n)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff_ms(u32::MAX), 1000);
    }

    #[test]
    fn validation_names_the_setting() {
        PushConfig::default()
            .validate()
            .expect("defaults are valid");
        let zero = PushConfig {
            max_attempts: 0,
            ..PushConfig::default()
        };
        assert_eq!(zero.validate().expect_err("zero").0, "push.max_attempts");
        let inverted = PushConfig {
            retry_initial_backoff_ms: 10,
            retry_max_backoff_ms: 5,
            ..PushConfig::default()
        };
        assert_eq!(
            inverted.validate().expect_err("inverted").0,
            "push.retry_max_backoff_ms"
        );
        for (bad_endpoint, bad_token_uri, field) in [
            ("fcm.googleapis.com", "", "push.fcm_endpoint"),
            ("ftp://fcm.example", "", "push.fcm_endpoint"),
            ("https://fcm.example/?x=1", "", "push.fcm_endpoint"),
            (
                FCM_ENDPOINT,
                "oauth2.googleapis.com/token",
                "push.fcm_token_uri",
            ),
        ] {
            let c = PushConfig {
                fcm_endpoint: bad_endpoint.into(),
                fcm_token_uri: bad_token_uri.into(),
                ..PushConfig::default()
            };
            let (named, rule) = c.validate().expect_err(bad_endpoint);
            assert_eq!(named, field, "{bad_endpoint} {bad_token_uri}");
            assert!(rule.starts_with("must be an absolute http"), "{rule}");
        }
    }
}
