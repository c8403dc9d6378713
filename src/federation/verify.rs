//! The tower layer that verifies every incoming server-to-server call before its handler runs.
//!
//! For a method in [`wire::S2S_METHODS`] it buffers the body (at most [`wire::MAX_BODY_BYTES`]),
//! then checks, cheapest first: the headers' formats, that the call is addressed to this server,
//! the clock window, the signature over method, body hash, headers and nonce, that the nonce is
//! new, and finally that the origin's address is pinned to the signing key (fetching the origin's
//! key on first contact, see [`super::peers`]). Only then does it store the nonce, together with
//! any new pin, in one transaction, and hand the call to its handler with a [`VerifiedOrigin`] in
//! the request's extensions. A refused call writes nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower::{Layer, Service};

use super::wire::{self, SignedCall};
use super::{FederationError, PeerDirectory};
use crate::identity::freshness::{self, now_ms};
use crate::identity::{PublicKey, signing};
use crate::store::federation::PinChange;
use crate::store::{StorageError, Store};

/// The server a call came from, proven by its signature. Only the verifier puts one in a
/// request's extensions; handlers of server calls read it with [`verified_origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOrigin {
    address: String,
    key: PublicKey,
}

impl VerifiedOrigin {
    /// The origin's canonical address (its key is pinned under it).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The origin's key.
    pub fn key(&self) -> PublicKey {
        self.key
    }
}

/// The verified origin of a server call; `UNAUTHENTICATED` if the request did not pass the
/// verifier (which cannot happen for a method in [`wire::S2S_METHODS`]).
pub fn verified_origin<T>(request: &tonic::Request<T>) -> Result<VerifiedOrigin, tonic::Status> {
    request
        .extensions()
        .get::<VerifiedOrigin>()
        .cloned()
        .ok_or_else(|| {
            tonic::Status::unauthenticated("guildhall-signature: not a verified server call")
        })
}

/// The checks of a signed server call that need no storage, cheapest first: the headers' formats,
/// that the call is addressed to `own_key`, the clock window around `now`, and the origin's
/// signature over method, body hash, headers and nonce. [`Verifier::verify`] runs these, then the
/// replay and pin checks; public so the fuzz targets (`fuzz/`, `tests/fuzz.rs`) run these very
/// checks.
pub fn check_call(
    headers: &http::HeaderMap,
    method: &str,
    body: &[u8],
    own_key: PublicKey,
    now: u64,
    window_ms: u64,
) -> Result<signing::Verified<signing::S2sRequestPayload>, FederationError> {
    let call = SignedCall::parse(headers, method, body)?;
    let p = &call.payload;
    if p.audience != own_key {
        return Err(FederationError::WrongDestination(p.audience.to_hex()));
    }
    freshness::check(p.timestamp, now, window_ms).map_err(FederationError::Stale)?;
    let origin_key = p.origin_key;
    signing::verify(call.payload, &origin_key, &call.signature)
        .map_err(|_| FederationError::BadSignature)
}

/// Checks signed server calls; see the module docs.
#[derive(Debug)]
pub struct Verifier {
    own_key: PublicKey,
    window_ms: u64,
    directory: PeerDirectory,
    store: Store,
}

impl Verifier {
    /// A verifier for the node holding `own_key`.
    pub fn new(own_key: PublicKey, window_ms: u64, directory: PeerDirectory, store: Store) -> Self {
        Self {
            own_key,
            window_ms,
            directory,
            store,
        }
    }

    /// Verifies one call of `method` with these headers and body; on success the call's nonce is
    /// stored and the origin returned.
    pub async fn verify(
        &self,
        method: &str,
        headers: &http::HeaderMap,
        body: &[u8],
        client: Option<std::net::IpAddr>,
    ) -> Result<VerifiedOrigin, FederationError> {
        let verified = check_call(
            headers,
            method,
            body,
            self.own_key,
            now_ms(),
            self.window_ms,
        )?;
        let origin_key = verified.origin_key;
        let (key_bytes, nonce) = (*origin_key.as_bytes(), verified.nonce);
        // A replay is refused before anything is fetched for it.
        if self
            .store
            .read(move |c| crate::store::federation::nonce_used(c, &key_bytes, &nonce))
            .await?
        {
            return Err(FederationError::Replay);
        }
        let pin = self
            .directory
            .resolve_origin(&verified.origin, origin_key, client)
            .await?;
        let address = verified.origin.clone();
        let first = matches!(pin, Some(PinChange::New { .. }));
        let expires_at = verified.timestamp.saturating_add(self.window_ms);
        self.store
            .write(move |tx| {
                crate::store::federation::accept_call(
                    tx,
                    &key_bytes,
                    &nonce,
                    expires_at,
                    &address,
                    pin.as_ref(),
                    now_ms(),
                )
            })
            .await
            .map_err(|e| match e {
                StorageError::Replay => FederationError::Replay,
                StorageError::Conflict(_) => FederationError::UnknownOrigin(format!(
                    "the pinned key of {} changed while this call was checked; retry",
                    verified.origin
                )),
                other => other.into(),
            })?;
        if first {
            self.directory.pinned_new(&verified.origin);
        }
        Ok(VerifiedOrigin {
            address: verified.origin.clone(),
            key: origin_key,
        })
    }
}

/// Tower layer installing the verifier in front of the node's services.
#[derive(Debug, Clone)]
pub struct S2sVerifyLayer {
    verifier: Arc<Verifier>,
}

impl S2sVerifyLayer {
    /// A layer over `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier: Arc::new(verifier),
        }
    }
}

impl<S> Layer<S> for S2sVerifyLayer {
    type Service = S2sVerifyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        S2sVerifyService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`S2sVerifyLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct S2sVerifyService<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ResBody> Service<http::Request<tonic::body::Body>> for S2sVerifyService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            if !wire::is_s2s_path(request.uri().path()) {
                return inner.call(request).await;
            }
            let (mut parts, body) = request.into_parts();
            let bytes = match Limited::new(body, wire::MAX_BODY_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let err = if e.is::<LengthLimitError>() {
                        FederationError::BodyTooLarge(wire::MAX_BODY_BYTES)
                    } else {
                        FederationError::Header {
                            header: "request body",
                            rule: format!("could not be read: {e}"),
                        }
                    };
                    return Ok(refuse(err));
                }
            };
            let method = parts.uri.path().to_owned();
            let client = parts
                .extensions
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr)
                .map(|addr| addr.ip());
            match verifier
                .verify(&method, &parts.headers, &bytes, client)
                .await
            {
                Ok(origin) => {
                    tracing::debug!(origin = %origin.address, %method, "signed server call accepted");
                    parts.extensions.insert(origin);
                    let body = tonic::body::Body::new(Full::new(bytes));
                    inner.call(http::Request::from_parts(parts, body)).await
                }
                Err(err) => {
                    tracing::info!(%method, error = %err, "signed server call refused");
                    Ok(refuse(err))
                }
            }
        })
    }
}

fn refuse<B: Default>(err: FederationError) -> http::Response<B> {
    tonic::Status::from(crate::error::Error::from(err)).into_http()
}
