//! The wire form of a signed server-to-server call: which methods are server calls, the metadata
//! headers that carry the `s2s-request` signature, and how the body is hashed.
//!
//! Both ends use this module: [`super::client`] to sign outgoing calls and [`super::verify`] to
//! check incoming ones, so the two can never disagree on a header name or on what is hashed.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::FederationError;
use crate::identity::signing::{self, S2sRequestPayload};
use crate::identity::{PublicKey, SecretKey, Signature};

/// The origin server's canonical address (`http://…` or `https://…`).
pub const HEADER_ORIGIN: &str = "guildhall-origin";
/// The origin server's key, lowercase hex.
pub const HEADER_ORIGIN_KEY: &str = "guildhall-origin-key";
/// The destination server's key, lowercase hex.
pub const HEADER_DESTINATION: &str = "guildhall-destination";
/// When the call was signed: decimal milliseconds since the epoch.
pub const HEADER_TIMESTAMP: &str = "guildhall-timestamp";
/// 16 random bytes as 32 lowercase hex characters.
pub const HEADER_NONCE: &str = "guildhall-nonce";
/// The `s2s-request` signature, 128 lowercase hex characters.
pub const HEADER_SIGNATURE: &str = "guildhall-signature";

/// Largest request body a server call may carry; the whole body is buffered to be hashed, so this
/// bounds the memory one call can take (tonic's default message limit is the same 4 MiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Longest server address (`guildhall-origin`, and any address a peer is fetched from), in bytes:
/// the URL rule of the Users resource.
pub const MAX_ADDRESS_BYTES: usize = 2048;

/// The gRPC path prefix of the combined service.
const GUILDHALL_PREFIX: &str = "/guildhall.v1.GuildHall/";

/// Methods only another server calls. Each needs a valid `s2s-request` signature and no bearer
/// token. `ProxiedUnread` is not one: a user's client calls it on their homeserver with a session.
pub const S2S_METHODS: &[&str] = &[
    "Federate",
    "PropagateBan",
    "VerifyUser",
    "PushNotification",
    "UpdateHomeServer",
    "UpdateFederatedProfile",
    "ReceiveDMInvite",
    // guildhall additions (not in the seed):
    "ReceiveDeviceRevocation",
    "ReceiveDMInviteRejection",
    "PullServerEvents",
    "ReceiveServerEvent",
    "ReceiveAccountStatus",
    "ReceiveRelationship",
    "ReceivePresence",
];

/// Whether a request path is a server-to-server method.
pub fn is_s2s_path(path: &str) -> bool {
    path.strip_prefix(GUILDHALL_PREFIX)
        .is_some_and(|method| S2S_METHODS.contains(&method))
}

/// SHA-256 of a request body, as it goes into the signature.
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The HTTP body gRPC sends for one uncompressed message: flag `0`, 4-byte big-endian length,
/// then the encoded message. Lets tests and other-language clients compute the hash they sign.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// 16 bytes from the operating system's random source.
pub fn random_nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).expect("the OS random source is available");
    nonce
}

/// A signed call: what was signed and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCall {
    /// The signed fields.
    pub payload: S2sRequestPayload,
    /// The origin's signature over them.
    pub signature: Signature,
}

impl SignedCall {
    /// Signs a call of `method` with `body` from `origin` (whose key is `key`) to `destination`.
    pub fn sign(
        key: &SecretKey,
        origin: &str,
        destination: PublicKey,
        method: &str,
        body: &[u8],
        timestamp: u64,
        nonce: [u8; 16],
    ) -> Self {
        let payload = S2sRequestPayload {
            audience: destination,
            origin_key: key.public(),
            origin: origin.to_owned(),
            method: method.to_owned(),
            body_sha256: body_sha256(body),
            timestamp,
            nonce,
        };
        let signature = signing::sign(&payload, key);
        Self { payload, signature }
    }

    /// The headers as name/value pairs, in the order `docs/PROTOCOL.md` lists them.
    pub fn header_values(&self) -> [(&'static str, String); 6] {
        let p = &self.payload;
        [
            (HEADER_ORIGIN, p.origin.clone()),
            (HEADER_ORIGIN_KEY, p.origin_key.to_hex()),
            (HEADER_DESTINATION, p.audience.to_hex()),
            (HEADER_TIMESTAMP, p.timestamp.to_string()),
            (HEADER_NONCE, hex::encode(p.nonce)),
            (HEADER_SIGNATURE, self.signature.to_hex()),
        ]
    }

    /// Puts the headers on an outgoing request; fails only if the origin address is not a valid
    /// header value (the node's own configured address, checked at start).
    pub fn write_headers(&self, headers: &mut HeaderMap) -> Result<(), FederationError> {
        for (name, value) in self.header_values() {
            let value =
                http::HeaderValue::from_str(&value).map_err(|_| FederationError::Header {
                    header: name,
                    rule: "must be visible ASCII".into(),
                })?;
            headers.insert(name, value);
        }
        Ok(())
    }

    /// Reads a call's headers; the method and body hash come from the request itself, so what is
    /// checked is what arrived. Checks formats only, not the signature.
    pub fn parse(headers: &HeaderMap, method: &str, body: &[u8]) -> Result<Self, FederationError> {
        let origin = header(headers, HEADER_ORIGIN)?;
        if origin.len() > MAX_ADDRESS_BYTES
            || !(origin.starts_with("http://") || origin.starts_with("https://"))
        {
            return Err(bad(
                HEADER_ORIGIN,
                format!(
                    "must be an http:// or https:// address of at most {MAX_ADDRESS_BYTES} bytes"
                ),
            ));
        }
        let key = |name| {
            PublicKey::from_hex(header(headers, name)?).map_err(|e| bad(name, e.to_string()))
        };
        let origin_key = key(HEADER_ORIGIN_KEY)?;
        let audience = key(HEADER_DESTINATION)?;
        let timestamp_text = header(headers, HEADER_TIMESTAMP)?;
        let timestamp = timestamp_text
            .parse::<u64>()
            .ok()
            .filter(|_| timestamp_text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(HEADER_TIMESTAMP, "must be decimal milliseconds"))?;
        let nonce_text = header(headers, HEADER_NONCE)?;
        let nonce: [u8; 16] = (nonce_text.len() == 32
            && !nonce_text.bytes().any(|b| b.is_ascii_uppercase()))
        .then(|| hex::decode(nonce_text).ok())
        .flatten()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            bad(
                HEADER_NONCE,
                "must be 32 lowercase hex characters (16 bytes)",
            )
        })?;
        let signature = Signature::from_hex(header(headers, HEADER_SIGNATURE)?)
            .map_err(|e| bad(HEADER_SIGNATURE, e.to_string()))?;
        Ok(Self {
            payload: S2sRequestPayload {
                audience,
                origin_key,
                origin: origin.to_owned(),
                method: method.to_owned(),
                body_sha256: body_sha256(body),
                timestamp,
                nonce,
            },
            signature,
        })
    }
}

fn bad(header: &'static str, rule: impl Into<String>) -> FederationError {
    FederationError::Header {
        header,
        rule: rule.into(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, FederationError> {
    let value = headers.get(name).ok_or_else(|| {
        bad(
            name,
            "missing; server-to-server calls must be signed (docs/PROTOCOL.md §10)",
        )
    })?;
    value
        .to_str()
        .map_err(|_| bad(name, "must be visible ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_roundtrip_and_paths() {
        let key = SecretKey::from_seed(&[5; 32]);
        let dest = SecretKey::from_seed(&[6; 32]).public();
        let method = "/guildhall.v1.GuildHall/VerifyUser";
        let call = SignedCall::sign(&key, "http://a.example", dest, method, b"body", 7, [9; 16]);
        let mut headers = HeaderMap::new();
        call.write_headers(&mut headers).expect("ascii");
        assert_eq!(
            SignedCall::parse(&headers, method, b"body").ok(),
            Some(call)
        );
        assert!(is_s2s_path(method));
        assert!(!is_s2s_path("/guildhall.v1.GuildHall/ProxiedUnread"));
        headers.insert(HEADER_TIMESTAMP, http::HeaderValue::from_static("+7"));
        assert!(SignedCall::parse(&headers, method, b"body").is_err());
    }
}
