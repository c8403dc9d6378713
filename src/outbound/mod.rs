//! Every connection the node opens to an address that a request (or another server) named: other
//! servers for federation and key fetches, the servers of `ProxiedUnread`, push distributors.
//!
//! - [`policy`]: which addresses may be dialled (WHATWG URL parsing, a deny table of the IANA
//!   special-purpose blocks, `allow_private_addresses`).
//! - [`connector`]: resolve → check every address → TCP → verified TLS for `https://`.
//!
//! [`Outbound`] bundles the policy with the node's client TLS roots; it is built once by the node
//! and handed to every part that dials out, so there is one policy and one trust store.

pub mod connector;
pub mod policy;

use std::time::Duration;

pub use connector::{Conn, Connector, DialError};
pub use policy::{AddressPolicy, Refusal, Target};

use crate::tls::ClientTls;

/// What a remote requester is told when a server it named could not be reached, whatever the
/// reason: the same words for a closed port, a filtered one, a refused address, a TLS failure or a
/// timeout, so the node can't be used to map a network. The detail goes to the node's log.
pub const UNREACHABLE: &str =
    "not reachable from this server (down, or not an address this server connects to); retry later";

/// The policy and TLS roots for outgoing connections; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    policy: AddressPolicy,
    tls: ClientTls,
}

impl Outbound {
    /// Outgoing connections under `policy`, verifying `https://` peers against `tls`.
    pub fn new(policy: AddressPolicy, tls: ClientTls) -> Self {
        Self { policy, tls }
    }

    /// For the operator's own tools and tests: any address, Mozilla's roots plus `extra_ca`.
    pub fn unrestricted(extra_ca: Option<&std::path::Path>) -> Result<Self, crate::tls::TlsError> {
        Ok(Self::new(
            AddressPolicy::new(true),
            ClientTls::new(extra_ca)?,
        ))
    }

    /// The address policy.
    pub fn policy(&self) -> AddressPolicy {
        self.policy
    }

    /// A connector for gRPC (HTTP/2).
    pub fn grpc_connector(&self, connect_timeout: Duration) -> Connector {
        Connector::new(self.policy, self.tls.h2(), connect_timeout)
    }

    /// A connector for HTTP/1.1 (push distributors).
    pub fn http1_connector(&self, connect_timeout: Duration) -> Connector {
        Connector::new(self.policy, self.tls.http1(), connect_timeout)
    }

    /// A tonic channel to `address` that connects on first use, every attempt through the
    /// policy and TLS; calls time out after `request_timeout`.
    pub fn lazy_channel(
        &self,
        address: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<tonic::transport::Channel, DialError> {
        Ok(endpoint(address, connect_timeout)?
            .timeout(request_timeout)
            .connect_with_connector_lazy(self.grpc_connector(connect_timeout)))
    }

    /// A tonic channel to `address`, connected now; the error says why not.
    pub async fn channel(
        &self,
        address: &str,
        connect_timeout: Duration,
    ) -> Result<tonic::transport::Channel, DialError> {
        endpoint(address, connect_timeout)?
            .connect_with_connector(self.grpc_connector(connect_timeout))
            .await
            .map_err(|e| {
                // Report the connector's own error (refused, not TLS, bad certificate) rather
                // than tonic's wrapper around it.
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(err) = source {
                    if let Some(dial) = err.downcast_ref::<DialError>() {
                        return dial.clone();
                    }
                    source = err.source();
                }
                DialError::Transport(e.to_string())
            })
    }
}

fn endpoint(
    address: &str,
    connect_timeout: Duration,
) -> Result<tonic::transport::Endpoint, DialError> {
    // The policy's parser is the one that decides; tonic's only has to agree it is a URI.
    Target::parse(address)?;
    Ok(tonic::transport::Endpoint::from_shared(address.to_owned())
        .map_err(|e| Refusal::Unusable(e.to_string()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true))
}
