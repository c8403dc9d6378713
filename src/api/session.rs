//! The one layer that authenticates every non-public method.
//!
//! It runs before tonic decodes the request, reads `authorization: Bearer <token>`, resolves the
//! token to a [`SessionInfo`] and puts it in the request's extensions, where handlers read it with
//! [`caller`]. Public methods (registration, login, server info, and the server-to-server calls,
//! which carry their own signatures) pass through untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tower::{Layer, Service};

use crate::accounts::Accounts;
use crate::store::SessionInfo;

/// The gRPC path prefix of the combined service.
const GUILDHALL_PREFIX: &str = "/guildhall.v1.GuildHall/";
/// The gRPC path prefix of the admin service (this layer authenticates all of it; the admin gate
/// in `api::admin` then lets only configured admins through).
pub const ADMIN_PREFIX: &str = "/guildhall.admin.v1.Admin/";

/// Methods of the combined service a client calls without a session: they authenticate themselves
/// with signatures, or are deliberately open (server info, health of the API, invite previews).
/// Server-to-server methods ([`crate::federation::wire::S2S_METHODS`]) need no session either:
/// the federation layer checks their signatures.
const PUBLIC_METHODS: &[&str] = &[
    "Register",
    "Login",
    "Refresh",
    "HelloGrpc",
    "Ping",
    "GetServerInfo",
    "GetServerSettings",
    "PreviewInvite",
    "JoinInvite",
    "SyncMailbox",
    "SetAccountStatus",
    "ClaimIrcAccount",
];

/// Whether a request path needs a session. Only the node's own API services do (every method of
/// the admin service among them); standard services (health, reflection) are open.
pub fn requires_session(path: &str) -> bool {
    if let Some(method) = path.strip_prefix(GUILDHALL_PREFIX) {
        return !PUBLIC_METHODS.contains(&method)
            && !crate::federation::wire::S2S_METHODS.contains(&method);
    }
    path.starts_with("/protocol.profile.v1.ProfileService/") || path.starts_with(ADMIN_PREFIX)
}

/// Reads the bearer token from the headers.
fn bearer(headers: &http::HeaderMap) -> Result<&str, Status> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Status::unauthenticated("authorization: missing; send \"Bearer <token>\"")
    })?;
    let text = value
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization: not valid ASCII"))?;
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| Status::unauthenticated("authorization: must be \"Bearer <token>\""))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Status::unauthenticated(
            "authorization: must be \"Bearer <token>\"",
        ));
    }
    Ok(token)
}

/// The session of the caller, put there by [`SessionLayer`].
pub fn caller<T>(request: &tonic::Request<T>) -> Result<SessionInfo, Status> {
    request
        .extensions()
        .get::<SessionInfo>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("authorization: no session"))
}

/// Tower layer that authenticates requests; see the module docs.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    accounts: Accounts,
}

impl SessionLayer {
    /// A layer resolving tokens through `accounts`.
    pub fn new(accounts: Accounts) -> Self {
        Self { accounts }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            accounts: self.accounts.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    accounts: Accounts,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for SessionService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let accounts = self.accounts.clone();
        Box::pin(async move {
            if !requires_session(request.uri().path()) {
                return inner.call(request).await;
            }
            let token = match bearer(request.headers()) {
                Ok(token) => token.to_owned(),
                Err(status) => return Ok(status.into_http()),
            };
            match accounts.authenticate(&token).await {
                Ok(session) => {
                    request.extensions_mut().insert(session);
                    inner.call(request).await
                }
                Err(err) => Ok(Status::from(err).into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_paths() {
        assert!(!requires_session("/guildhall.v1.GuildHall/Register"));
        assert!(!requires_session("/grpc.health.v1.Health/Check"));
        assert!(requires_session("/guildhall.v1.GuildHall/GetMyData"));
        assert!(requires_session("/guildhall.v1.GuildHall/CreateGuild"));
        assert!(requires_session(
            "/protocol.profile.v1.ProfileService/GetProfile"
        ));
        assert!(requires_session(
            "/guildhall.admin.v1.Admin/ListRegistrationTokens"
        ));
    }
}
