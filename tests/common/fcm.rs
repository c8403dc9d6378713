//! A stand-in for Google's FCM HTTP v1 API and OAuth 2.0 token endpoint, on 127.0.0.1:0, that
//! checks every request the way Google documents them and writes down anything wrong:
//!
//! - `POST /token`: `application/x-www-form-urlencoded` with exactly `grant_type` (the JWT bearer
//!   grant) and `assertion`; the assertion's header is `{"alg":"RS256","typ":"JWT"}`, its
//!   signature verifies with the test service account's public key, and its claims are exactly
//!   `iss` (the account's email), `scope` (FCM's), `aud` (this endpoint), `iat` (now) and `exp`
//!   (at most an hour later). Answers `{access_token, expires_in, token_type}`, or
//!   `invalid_grant`.
//! - `POST /v1/projects/<project>/messages:send`: `Authorization: Bearer` a token it handed out,
//!   JSON body exactly `{"message":{"token","data":{string:string},"android":{"priority":"high"}}}`
//!   with no reserved data key. Answers from a script per FCM token (200 when none is left).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

/// The test service account's project.
pub const PROJECT: &str = "guildhall-test";
/// The test service account.
pub const CLIENT_EMAIL: &str = "push@guildhall-test.iam.gserviceaccount.com";
/// The test service account's private key (PKCS#8 PEM, as in Google's key files).
pub const PRIVATE_KEY: &str = include_str!("../fixtures/fcm/service_account_key.pem");
/// A key that is not the account's: assertions it signs don't verify.
pub const OTHER_KEY: &str = include_str!("../fixtures/fcm/other_key.pem");
/// The account's public key, which the stand-in verifies assertions with.
const PUBLIC_KEY: &str = include_str!("../fixtures/fcm/service_account_key.pub.pem");
/// FCM's OAuth scope.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long [`FcmStandIn::wait_for_sends`] waits.
const WAIT: Duration = Duration::from_secs(20);

/// How the stand-in answers one send to a token.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An FCM error answer: HTTP status, the `error` object, and `Retry-After` seconds.
    Error(u16, serde_json::Value, Option<u64>),
    /// 401 UNAUTHENTICATED, and the access token used is revoked.
    RevokeAccessToken,
}

impl Reply {
    /// 404 `UNREGISTERED`, as FCM answers for a token whose app was uninstalled.
    pub fn unregistered() -> Self {
        Self::fcm_error(
            404,
            "NOT_FOUND",
            "UNREGISTERED",
            "Requested entity was not found.",
        )
    }

    /// 400 `INVALID_ARGUMENT` about the token (a `BadRequest` naming `message.token`).
    pub fn invalid_token() -> Self {
        Reply::Error(
            400,
            serde_json::json!({
                "code": 400,
                "message": "Request contains an invalid argument.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"},
                    {"@type": "type.googleapis.com/google.rpc.BadRequest",
                     "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]},
                ],
            }),
            None,
        )
    }

    /// 400 `INVALID_ARGUMENT` about the message, not the token.
    pub fn invalid_message() -> Self {
        Reply::Error(
            400,
            serde_json::json!({
                "code": 400,
                "message": "Invalid value at 'message.data[0].value'",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                             "fieldViolations": [{"field": "message.data[0].value", "description": "x"}]}],
            }),
            None,
        )
    }

    /// 429 `QUOTA_EXCEEDED`, with `Retry-After: retry_after` seconds.
    pub fn quota_exceeded(retry_after: u64) -> Self {
        match Self::fcm_error(
            429,
            "RESOURCE_EXHAUSTED",
            "QUOTA_EXCEEDED",
            "Quota exceeded.",
        ) {
            Reply::Error(status, error, _) => Reply::Error(status, error, Some(retry_after)),
            other => other,
        }
    }

    /// 503 `UNAVAILABLE`, no `Retry-After`.
    pub fn unavailable() -> Self {
        Self::fcm_error(
            503,
            "UNAVAILABLE",
            "UNAVAILABLE",
            "The service is currently unavailable.",
        )
    }

    fn fcm_error(status: u16, canonical: &str, code: &str, message: &str) -> Self {
        Reply::Error(
            status,
            serde_json::json!({
                "code": status,
                "message": message,
                "status": canonical,
                "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}],
            }),
            None,
        )
    }
}

/// A message the stand-in received (whatever it answered).
#[derive(Debug, Clone)]
pub struct Sent {
    /// `message.token`.
    pub token: String,
    /// `message.data`.
    pub data: BTreeMap<String, String>,
    /// The whole body as sent.
    pub raw: String,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct State {
    script: VecDeque<(String, Reply)>,
    sent: Vec<Sent>,
    problems: Vec<String>,
    assertions: usize,
    issued: Vec<String>,
    revoked: HashSet<String>,
}

/// The stand-in (see the module docs).
#[derive(Clone)]
pub struct FcmStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    dir: Arc<tempfile::TempDir>,
}

/// `message` as Google specifies it, nothing more.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    message: Message,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    token: String,
    data: BTreeMap<String, String>,
    android: Android,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Android {
    priority: String,
}

/// The assertion's claims: these and no others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    iss: String,
    scope: String,
    aud: String,
    iat: u64,
    exp: u64,
}

type Response = hyper::Response<Full<Bytes>>;

fn json(status: u16, body: serde_json::Value) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

impl FcmStandIn {
    pub async fn start(script: &[(&str, Reply)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let stand_in = Self {
            addr: listener.local_addr().expect("addr"),
            state: Arc::new(Mutex::new(State {
                script: script
                    .iter()
                    .map(|(t, r)| ((*t).to_owned(), r.clone()))
                    .collect(),
                ..State::default()
            })),
            dir: Arc::new(tempfile::tempdir().expect("tempdir")),
        };
        let shared = stand_in.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        stand_in
    }

    /// The FCM API base URL (`push.fcm_endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint (`push.fcm_token_uri`, and the assertion's audience).
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Writes a Google-style service account key file with `private_key` and returns its path.
    /// Its `token_uri` is Google's: the node is pointed at the stand-in by `push.fcm_token_uri`.
    pub fn key_file(&self, private_key: &str) -> PathBuf {
        let path = self.dir.path().join(format!("sa-{}.json", rand_suffix()));
        let file = serde_json::json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": private_key,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        std::fs::write(&path, file.to_string()).expect("write key file");
        path
    }

    /// Everything received so far, in arrival order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().expect("lock").sent.clone()
    }

    /// What was received for `token`.
    pub fn sent_to(&self, token: &str) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.token == token)
            .collect()
    }

    /// Everything wrong with the requests so far (empty if all were as Google specifies).
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().expect("lock").problems.clone()
    }

    /// How many assertions were presented at the token endpoint.
    pub fn assertions(&self) -> usize {
        self.state.lock().expect("lock").assertions
    }

    /// Waits until `token` got at least `n` sends, and returns them.
    pub async fn wait_for_sends(&self, token: &str, n: usize) -> Vec<Sent> {
        super::wait_for(WAIT, || async { self.sent_to(token).len() >= n }).await;
        self.sent_to(token)
    }

    fn problem(&self, what: String) {
        self.state.lock().expect("lock").problems.push(what);
    }

    async fn answer(&self, request: hyper::Request<hyper::body::Incoming>) -> Response {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let send_path = format!("/v1/projects/{PROJECT}/messages:send");
        match (parts.method.as_str(), parts.uri.path()) {
            ("POST", "/token") => self.token(&parts.headers, &body),
            ("POST", path) if path == send_path => self.send(&parts.headers, &body),
            (method, path) => {
                self.problem(format!("unexpected request {method} {path}"));
                json(
                    404,
                    serde_json::json!({"error": {"code": 404, "status": "NOT_FOUND"}}),
                )
            }
        }
    }

    fn token(&self, headers: &hyper::HeaderMap, body: &[u8]) -> Response {
        self.state.lock().expect("lock").assertions += 1;
        match self.check_assertion(headers, body) {
            Ok(()) => {
                let mut state = self.state.lock().expect("lock");
                let token = format!("ya29.stand-in-{}", state.issued.len() + 1);
                state.issued.push(token.clone());
                json(
                    200,
                    serde_json::json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
                )
            }
            Err(why) => {
                self.problem(format!("token endpoint: {why}"));
                json(
                    400,
                    serde_json::json!({"error": "invalid_grant", "error_description": why}),
                )
            }
        }
    }

    fn check_assertion(&self, headers: &hyper::HeaderMap, body: &[u8]) -> Result<(), String> {
        let content_type = headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type != "application/x-www-form-urlencoded" {
            return Err(format!("content-type {content_type:?}"));
        }
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
        if names != ["grant_type", "assertion"] {
            return Err(format!("form fields {names:?}"));
        }
        if form[0].1 != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
            return Err(format!("grant_type {:?}", form[0].1));
        }
        let jwt = &form[1].1;
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("header: {e}"))?;
        if header.alg != jsonwebtoken::Algorithm::RS256 || header.typ.as_deref() != Some("JWT") {
            return Err(format!("header {header:?}"));
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[self.token_uri()]);
        validation.set_issuer(&[CLIENT_EMAIL]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes())
            .map_err(|e| format!("public key: {e}"))?;
        let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
            .map_err(|e| format!("assertion: {e:?}"))?
            .claims;
        if claims.scope != SCOPE {
            return Err(format!("scope {:?}", claims.scope));
        }
        if claims.iss != CLIENT_EMAIL || claims.aud != self.token_uri() {
            return Err(format!("claims {claims:?}"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        if claims.iat > now + 60 || claims.iat + 300 < now {
            return Err(format!("iat {} is not now ({now})", claims.iat));
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
            return Err(format!(
                "exp {} not within an hour of iat {}",
                claims.exp, claims.iat
            ));
        }
        Ok(())
    }

    fn send(&self, headers: &hyper::HeaderMap, body: &[u8]) -> Response {
        let auth = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let access = auth.strip_prefix("Bearer ").unwrap_or("").to_owned();
        {
            let state = self.state.lock().expect("lock");
            let issued = state.issued.contains(&access);
            let revoked = state.revoked.contains(&access);
            drop(state);
            if !issued {
                self.problem(format!("send with an access token never issued: {auth:?}"));
            }
            if !issued || revoked {
                return json(
                    401,
                    serde_json::json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                        "message": "Request had invalid authentication credentials."}}),
                );
            }
        }
        let content_type = headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type != "application/json" {
            self.problem(format!("send content-type {content_type:?}"));
        }
        let raw = String::from_utf8_lossy(body).into_owned();
        let message = match serde_json::from_slice::<Envelope>(body) {
            Ok(envelope) => envelope.message,
            Err(e) => {
                self.problem(format!(
                    "send body is not the documented message: {e}: {raw}"
                ));
                return json(
                    400,
                    serde_json::json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": e.to_string()}}),
                );
            }
        };
        if message.android.priority != "high" {
            self.problem(format!("android.priority {:?}", message.android.priority));
        }
        for key in message.data.keys() {
            let reserved = key == "from"
                || key == "message_type"
                || key.starts_with("google")
                || key.starts_with("gcm");
            if reserved {
                self.problem(format!("reserved data key {key:?}"));
            }
        }
        let mut state = self.state.lock().expect("lock");
        state.sent.push(Sent {
            token: message.token.clone(),
            data: message.data,
            raw,
            at: Instant::now(),
        });
        let reply = match state.script.iter().position(|(t, _)| *t == message.token) {
            Some(i) => state.script.remove(i).map(|(_, r)| r),
            None => None,
        };
        match reply {
            None => json(
                200,
                serde_json::json!({"name": format!("projects/{PROJECT}/messages/{}", state.sent.len())}),
            ),
            Some(Reply::RevokeAccessToken) => {
                state.revoked.insert(access);
                json(
                    401,
                    serde_json::json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                        "message": "Request had invalid authentication credentials."}}),
                )
            }
            Some(Reply::Error(status, error, retry_after)) => {
                let mut response = json(status, serde_json::json!({ "error": error }));
                if let Some(secs) = retry_after {
                    response.headers_mut().insert(
                        hyper::header::RETRY_AFTER,
                        hyper::header::HeaderValue::from(secs),
                    );
                }
                response
            }
        }
    }
}

/// A distinct file name part.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
