//! A user's signed profile change forwarded by their homeserver (docs/PROTOCOL.md §11): checked
//! against the user on record, applied, and announced to co-members. Both ways it arrives go
//! through here: the `UpdateFederatedProfile` call (an adapter) and a gossiped `profile-update`
//! server event (federation's inbound side).

use crate::accounts::{Accounts, UpdateFields, UpdateUserInput};
use crate::convert;
use crate::error::Error;
use crate::identity::PublicKey;
use crate::proto::guildhall::v1 as pb;

/// Applies a user's signed profile change forwarded by `origin` (the server that must be the
/// user's homeserver on record here): from `UpdateFederatedProfile`, or gossiped as a
/// `profile-update` server event.
pub async fn apply(
    a: &Accounts,
    harmony: &super::Harmony,
    origin: &str,
    f: pb::UpdateFederatedProfileRequest,
) -> Result<(), Error> {
    let (user_id, input) = parse(f)?;
    let (name, avatar) = (
        input.fields.name.is_some(),
        input.fields.avatar_url.is_some(),
    );
    let user = a.apply_forwarded_profile(origin, &user_id, &input).await?;
    harmony.announce_signed_update(&user, name, avatar).await;
    tracing::debug!(user = %user_id.fmt_short(), origin, "forwarded profile change applied");
    Ok(())
}

/// A forwarded `UpdateFederatedProfileRequest` with its user key, device cert and signature
/// parsed (field rules only; the signature and the cert chain are checked against the user on
/// record by [`Accounts::apply_forwarded_profile`]). Public so the fuzz targets (`fuzz/`,
/// `tests/fuzz.rs`) parse forwarded profile changes as the node does.
pub fn parse(f: pb::UpdateFederatedProfileRequest) -> Result<(PublicKey, UpdateUserInput), Error> {
    let user_id = convert::public_key("user_id", &f.user_id)?;
    let u = f.update.ok_or_else(|| {
        Error::invalid(
            "update",
            "is required: the user's signed UpdateUserRequest, as their homeserver received it",
        )
    })?;
    let input = UpdateUserInput {
        fields: UpdateFields::from_request(&u),
        cert: convert::device_cert(u.device_cert).map_err(|e| convert::nested("update", e))?,
        timestamp: u.timestamp,
        signature: convert::signature_bytes("update.signature", &u.signature)?,
    };
    Ok((user_id, input))
}
