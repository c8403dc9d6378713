//! Homeserver moves: `homeserver-move-v2` statements, chained per user (docs/PROTOCOL.md §12).
//!
//! A statement is self-certifying: K_id signs `{user, new homeserver, timestamp, sequence, prev}`,
//! where `sequence` counts the user's moves from 1 and `prev` is the SHA-256 of the previous
//! statement's signing bytes. So any server may carry it (the old homeserver can be offline or
//! hostile), an older statement can never roll a newer one back, and a replay changes nothing.
//!
//! - A `Login` at the new homeserver carrying a statement is checked here
//!   ([`login_move`]), applied in the login's transaction, and sent as `UpdateHomeServer` to every
//!   migration target through the outbox.
//! - A received `UpdateHomeServer` is parsed ([`MoveStatement::from_request`]), verified
//!   ([`MoveStatement::verify`]) and applied ([`apply_verified`]). Gossip applies statements it
//!   receives through the same two calls.

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::identity::signing::{self, HomeserverMoveV2Payload, Signable};
use crate::identity::{PublicKey, SecretKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::Store;
use crate::store::moves::{Applied, HomeserverMove, MoveRecord};

/// The server method that carries a statement.
pub const UPDATE_HOME_SERVER: &str = "UpdateHomeServer";

/// Most migration targets one login may name.
pub const MAX_TARGETS: usize = 64;

/// A statement as received, with its fields parsed but its signature not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveStatement {
    /// The signed fields.
    pub payload: HomeserverMoveV2Payload,
    /// K_id's signature.
    pub signature: Signature,
}

/// A statement whose K_id signature verified. Only [`MoveStatement::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMove {
    statement: MoveStatement,
    hash: [u8; 32],
}

/// Checks a chain position: `sequence ≥ 1`; `prev` empty for the first statement, 32 bytes after.
fn check_chain_fields(sequence: u64, prev: &[u8], seq_field: &str, prev_field: &str) -> Result<()> {
    if sequence == 0 {
        return Err(Error::invalid(
            seq_field,
            "must be at least 1 (the first homeserver-move-v2 statement is 1)",
        ));
    }
    match (sequence, prev.len()) {
        (1, 0) => Ok(()),
        (1, _) => Err(Error::invalid(prev_field, "must be empty for sequence 1")),
        (_, 32) => Ok(()),
        _ => Err(Error::invalid(
            prev_field,
            "must be the 32-byte SHA-256 of the previous statement's signing bytes",
        )),
    }
}

impl MoveStatement {
    /// Signs a statement (clients, tests, the CLI).
    pub fn sign(
        id_key: &SecretKey,
        new_homeserver: &str,
        timestamp: u64,
        sequence: u64,
        prev: Vec<u8>,
    ) -> Self {
        let payload = HomeserverMoveV2Payload {
            id_key: id_key.public(),
            new_homeserver: new_homeserver.to_owned(),
            timestamp,
            sequence,
            prev,
        };
        let signature = signing::sign(&payload, id_key);
        Self { payload, signature }
    }

    /// The statement carried by an `UpdateHomeServerRequest`; field rules only.
    pub fn from_request(r: &pb::UpdateHomeServerRequest) -> Result<Self> {
        let id_key = PublicKey::from_hex(&r.user_id).map_err(|e| Error::invalid("user_id", e))?;
        rules::http_url(&r.new_homeserver).map_err(|e| Error::invalid("new_homeserver", e))?;
        check_chain_fields(r.sequence, &r.prev, "sequence", "prev")?;
        let signature =
            Signature::from_hex(&r.signature).map_err(|e| Error::invalid("signature", e))?;
        Ok(Self {
            payload: HomeserverMoveV2Payload {
                id_key,
                new_homeserver: r.new_homeserver.clone(),
                timestamp: r.timestamp,
                sequence: r.sequence,
                prev: r.prev.clone(),
            },
            signature,
        })
    }

    /// The request that carries it to another server.
    pub fn to_request(&self) -> pb::UpdateHomeServerRequest {
        let p = &self.payload;
        pb::UpdateHomeServerRequest {
            user_id: p.id_key.to_hex(),
            new_homeserver: p.new_homeserver.clone(),
            timestamp: p.timestamp,
            signature: self.signature.to_hex(),
            sequence: p.sequence,
            prev: p.prev.clone(),
        }
    }

    /// Sets a login's migration fields to this statement (the login must be signed afterwards).
    pub fn apply_to_login(&self, request: &mut pb::LoginRequest) {
        let p = &self.payload;
        request.new_homeserver = Some(p.new_homeserver.clone());
        request.migration_timestamp = Some(p.timestamp);
        request.migration_signature = Some(self.signature.to_hex());
        request.migration_sequence = Some(p.sequence);
        request.migration_prev = Some(p.prev.clone());
    }

    /// SHA-256 of the statement's signing bytes: what the next statement's `prev` must be.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.payload.signing_bytes()).into()
    }

    /// Checks K_id's signature; `field` names the signature in the refusal.
    pub fn verify_as(self, field: &str) -> Result<VerifiedMove> {
        signing::verify(self.payload.clone(), &self.payload.id_key, &self.signature).map_err(
            |_| {
                Error::unauthenticated(
                    field,
                    "not a signature by the user's identity key over this homeserver-move-v2 statement",
                )
            },
        )?;
        let hash = self.hash();
        Ok(VerifiedMove {
            statement: self,
            hash,
        })
    }

    /// Checks K_id's signature (field `signature`, as in `UpdateHomeServerRequest`).
    pub fn verify(self) -> Result<VerifiedMove> {
        self.verify_as("signature")
    }
}

impl VerifiedMove {
    /// The verified statement.
    pub fn statement(&self) -> &MoveStatement {
        &self.statement
    }

    /// The row to store.
    pub fn record(&self) -> MoveRecord {
        let p = &self.statement.payload;
        MoveRecord {
            user_id: p.id_key.to_hex(),
            new_homeserver: p.new_homeserver.clone(),
            timestamp: p.timestamp,
            sequence: p.sequence,
            prev: p.prev.clone(),
            hash: self.hash,
            signature: self.statement.signature.to_hex(),
        }
    }
}

/// Applies a verified statement on this node: the user's homeserver changes if the statement is
/// newer than the one held (see [`crate::store::moves::apply_statement`] for the refusals).
/// `UpdateHomeServer` calls this; so can gossip, with a statement it verified the same way.
pub async fn apply_verified(store: &Store, verified: VerifiedMove) -> Result<()> {
    let record = verified.record();
    let user = record.user_id.clone();
    let applied = store
        .write(move |tx| crate::store::moves::apply_statement(tx, &record, now_ms()))
        .await?;
    match applied {
        Applied::Applied => {
            tracing::info!(user = %&user[..8], to = %verified.statement.payload.new_homeserver, sequence = verified.statement.payload.sequence, "homeserver move applied");
            Ok(())
        }
        Applied::UnknownUser => Err(Error::NotFound(
            "user_id: no user with this identity is known on this server".into(),
        )),
    }
}

/// The migration fields of a `Login`, as sent.
#[derive(Debug, Clone, Default)]
pub struct LoginMoveFields {
    /// `new_homeserver`.
    pub new_homeserver: Option<String>,
    /// `migration_timestamp`.
    pub timestamp: Option<u64>,
    /// `migration_signature` (hex).
    pub signature: Option<String>,
    /// `migration_sequence`.
    pub sequence: Option<u64>,
    /// `migration_prev`.
    pub prev: Option<Vec<u8>>,
    /// `migration_targets`.
    pub targets: Vec<String>,
}

/// Checks a login's migration fields at the node `own_address`: all or none; the statement must
/// name this node as the new homeserver and verify under the user's K_id. Returns the move with
/// one `UpdateHomeServer` delivery per target (other than this node), or `None` without a move.
pub fn login_move(
    fields: &LoginMoveFields,
    id_key: &PublicKey,
    own_address: &str,
) -> Result<Option<HomeserverMove>> {
    let (new_homeserver, timestamp, signature) = match (
        &fields.new_homeserver,
        fields.timestamp,
        &fields.signature,
    ) {
        (None, None, None) => {
            if !fields.targets.is_empty() || fields.sequence.is_some() || fields.prev.is_some() {
                return Err(Error::invalid(
                    "migration_targets",
                    "must be empty (and migration_sequence, migration_prev absent) unless new_homeserver is set",
                ));
            }
            return Ok(None);
        }
        (Some(h), Some(t), Some(s)) => (h, t, s),
        _ => {
            return Err(Error::invalid(
                "new_homeserver",
                "new_homeserver, migration_timestamp and migration_signature go together",
            ));
        }
    };
    rules::http_url(new_homeserver).map_err(|e| Error::invalid("new_homeserver", e))?;
    if new_homeserver.trim_end_matches('/') != own_address.trim_end_matches('/') {
        return Err(Error::invalid(
            "new_homeserver",
            format!("must be this server ({own_address}): log in at the homeserver you move to"),
        ));
    }
    let sequence = fields.sequence.ok_or_else(|| {
        Error::invalid(
            "migration_sequence",
            "required with the migration fields (homeserver-move-v2, docs/PROTOCOL.md §12)",
        )
    })?;
    let prev = fields.prev.clone().unwrap_or_default();
    check_chain_fields(sequence, &prev, "migration_sequence", "migration_prev")?;
    if fields.targets.len() > MAX_TARGETS {
        return Err(Error::invalid(
            "migration_targets",
            format!("at most {MAX_TARGETS} servers"),
        ));
    }
    for (i, target) in fields.targets.iter().enumerate() {
        rules::http_url(target)
            .map_err(|e| Error::invalid(format!("migration_targets[{i}]"), e))?;
    }
    let signature =
        Signature::from_hex(signature).map_err(|e| Error::invalid("migration_signature", e))?;
    let statement = MoveStatement {
        payload: HomeserverMoveV2Payload {
            id_key: *id_key,
            new_homeserver: new_homeserver.clone(),
            timestamp,
            sequence,
            prev,
        },
        signature,
    };
    let verified = statement.verify_as("migration_signature")?;
    let body = verified.statement.to_request().encode_to_vec();
    let mut deliveries: Vec<(String, Vec<u8>)> = Vec::new();
    for target in &fields.targets {
        let target = target.trim_end_matches('/');
        if target == own_address.trim_end_matches('/')
            || deliveries.iter().any(|(d, _)| d == target)
        {
            continue;
        }
        deliveries.push((target.to_owned(), body.clone()));
    }
    Ok(Some(HomeserverMove {
        record: verified.record(),
        deliveries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip_verify_and_field_rules() {
        let id = SecretKey::from_seed(&[1; 32]);
        let first = MoveStatement::sign(&id, "https://b.example", 5, 1, vec![]);
        let second = MoveStatement::sign(&id, "https://c.example", 6, 2, first.hash().to_vec());
        let parsed = MoveStatement::from_request(&second.to_request()).expect("parses");
        assert_eq!(parsed, second);
        let verified = parsed.verify().expect("verifies");
        assert_eq!(verified.record().prev, first.hash().to_vec());

        let mut forged = second.to_request();
        forged.new_homeserver = "https://evil.example".into();
        let err = MoveStatement::from_request(&forged)
            .expect("well formed")
            .verify()
            .expect_err("bad signature");
        assert!(err.to_string().starts_with("signature:"));
        let mut zero = second.to_request();
        zero.sequence = 0;
        assert!(MoveStatement::from_request(&zero).is_err());
        let mut short = second.to_request();
        short.prev = vec![1; 5];
        assert!(MoveStatement::from_request(&short).is_err());
    }
}
