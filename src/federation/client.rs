//! The client side of server-to-server calls: a generated `GuildHallClient` over a channel whose
//! every request is signed (`s2s-request`) for the peer it goes to.
//!
//! [`FederationClient::connect`] first refreshes the peer's key through the directory (pinning it on
//! first use, accepting only signed rotations afterwards), then signs every call for that key. A
//! connected client is meant to be kept and reused: it holds one HTTP/2 connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use tower::Service;

use super::wire::{self, SignedCall};
use super::{FederationError, PeerDirectory};
use crate::identity::freshness::now_ms;
use crate::identity::{PublicKey, SecretKey};
use crate::proto::guildhall::v1::guild_hall_client::GuildHallClient;

/// How long connecting to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one server call may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A `GuildHallClient` whose calls are signed for one peer.
pub type SignedClient = GuildHallClient<SigningService<tonic::transport::Channel>>;

/// Makes signed clients for peers; cheap to clone.
#[derive(Debug, Clone)]
pub struct FederationClient {
    key: Arc<SecretKey>,
    origin: String,
    directory: PeerDirectory,
}

impl FederationClient {
    /// A client signing as the node with `key`, whose canonical address is `origin`.
    pub fn new(key: Arc<SecretKey>, origin: String, directory: PeerDirectory) -> Self {
        Self {
            key,
            origin,
            directory,
        }
    }

    /// A client for the peer at `address`: checks the peer's key against the directory (pins on
    /// first use), then connects. Refused if the peer's key changed without a valid rotation.
    pub async fn connect(&self, address: &str) -> Result<SignedClient, FederationError> {
        Ok(GuildHallClient::new(self.connect_service(address).await?))
    }

    /// The signing channel under [`FederationClient::connect`], for callers that send
    /// pre-encoded requests (the outbox, through `tonic::client::Grpc`).
    pub async fn connect_service(
        &self,
        address: &str,
    ) -> Result<SigningService<tonic::transport::Channel>, FederationError> {
        let destination = self.directory.refresh(address).await?;
        let channel = self
            .directory
            .outbound()
            .lazy_channel(address, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
            .map_err(|e| FederationError::Unreachable {
                address: address.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(SigningService {
            inner: channel,
            signer: Arc::new(Signer {
                key: self.key.clone(),
                origin: self.origin.clone(),
                destination,
            }),
        })
    }

    /// This node's canonical address (the origin of its calls).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

#[derive(Debug)]
struct Signer {
    key: Arc<SecretKey>,
    origin: String,
    destination: PublicKey,
}

/// Signs each request passing through it for one destination; see the module docs.
#[derive(Debug, Clone)]
pub struct SigningService<S> {
    inner: S,
    signer: Arc<Signer>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ResBody> Service<http::Request<tonic::body::Body>> for SigningService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let signer = self.signer.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // Server calls are unary: the body ends, and is bounded like the verifier's.
            let bytes = Limited::new(body, wire::MAX_BODY_BYTES)
                .collect()
                .await?
                .to_bytes();
            let call = SignedCall::sign(
                &signer.key,
                &signer.origin,
                signer.destination,
                parts.uri.path(),
                &bytes,
                now_ms(),
                wire::random_nonce(),
            );
            call.write_headers(&mut parts.headers)?;
            let body = tonic::body::Body::new(Full::new(bytes));
            inner
                .call(http::Request::from_parts(parts, body))
                .await
                .map_err(Into::into)
        })
    }
}
