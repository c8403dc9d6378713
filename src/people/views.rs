//! What both the local and the cross-node relationship code build: a relationship as its user sees
//! it, the bound on relationships, and the refusal they share.

use crate::error::Error;
use crate::proto::guildhall::v1 as pb;
use crate::store::StorageError;
use crate::store::people::{self as db, Kind, RelationshipRecord};

/// Most relationships (friends, requests either way, blocks) one user has: the Users resource's
/// friend limit, and a bound on `ListRelationships` and on requests one user can be sent.
pub const MAX_RELATIONSHIPS: u64 = 1000;

/// The protobuf type of a stored kind (`None`: no relationship).
pub fn type_of(kind: Option<Kind>) -> pb::RelationshipType {
    match kind {
        None => pb::RelationshipType::None,
        Some(Kind::Friend) => pb::RelationshipType::Friend,
        Some(Kind::Blocked) => pb::RelationshipType::Blocked,
        Some(Kind::Incoming) => pb::RelationshipType::PendingIncoming,
        Some(Kind::Outgoing) => pb::RelationshipType::PendingOutgoing,
    }
}

/// A relationship change refused for the state the two users are in.
pub fn refused(message: &str) -> Error {
    Error::FailedPrecondition(format!("user_id: {message}"))
}

/// The protobuf form of what `other_id` is to `user_id` as stored in `tx`, with the other user.
pub fn relationship_proto(
    tx: &rusqlite::Connection,
    user_id: &str,
    other_id: &str,
    admins: &dyn Fn(&str) -> bool,
) -> Result<pb::Relationship, StorageError> {
    let record = db::relationship(tx, user_id, other_id)?;
    to_proto(tx, other_id, record.as_ref(), admins)
}

/// The protobuf form of `record` (what `other_id` is to its owner).
pub fn to_proto(
    tx: &rusqlite::Connection,
    other_id: &str,
    record: Option<&RelationshipRecord>,
    admins: &dyn Fn(&str) -> bool,
) -> Result<pb::Relationship, StorageError> {
    let user = crate::store::accounts::load_user(tx, other_id)?
        .map(|u| crate::convert::user(&u, admins(&u.id)));
    Ok(pb::Relationship {
        user_id: other_id.to_owned(),
        r#type: type_of(record.map(|r| r.kind)) as i32,
        since: record.and_then(|r| crate::convert::timestamp(r.since)),
        user,
    })
}
