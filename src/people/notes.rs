//! Private notes: one per other user, seen only by the user who keeps it (`SetUserNote`,
//! `GetUserNote`, `ListUserNotes`). A change reaches the keeper's other sessions as
//! `user_note_updated`, never anyone else.

use super::People;
use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::events;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::SessionInfo;
use crate::store::people::{self as db, NoteRecord};

/// Longest note, in characters (the Users resource's limit).
pub const NOTE_MAX: usize = 256;
/// Most notes one user keeps: bounds `ListUserNotes`' answer (about 1 MB at the longest notes).
pub const MAX_NOTES: u64 = 1000;

/// The protobuf form of `record`, or of no note about `user_id`.
pub fn note_proto(user_id: &str, record: Option<&NoteRecord>) -> pb::UserNote {
    pb::UserNote {
        user_id: user_id.to_owned(),
        note: record.map(|r| r.note.clone()).unwrap_or_default(),
        updated_at: record.and_then(|r| crate::convert::timestamp(r.updated_at)),
    }
}

/// Refuses a `user_id` that is not a user key.
fn check_user_id(user_id: &str) -> Result<()> {
    PublicKey::from_hex(user_id)
        .map(|_| ())
        .map_err(|e| Error::invalid("user_id", e))
}

impl People {
    /// `SetUserNote`: sets the caller's note about a user known here (an empty note clears it).
    pub async fn set_note(
        &self,
        caller: &SessionInfo,
        user_id: &str,
        note: &str,
    ) -> Result<pb::UserNote> {
        check_user_id(user_id)?;
        if user_id == caller.user_id {
            return Err(Error::invalid("user_id", "notes are about other users"));
        }
        rules::no_controls(note, rules::Lines::Multi)
            .map_err(|rule| Error::invalid("note", rule))?;
        let len = note.chars().count();
        if len > NOTE_MAX {
            return Err(Error::invalid(
                "note",
                format!("must be at most {NOTE_MAX} characters (got {len})"),
            ));
        }
        let (owner, target, text) = (caller.user_id.clone(), user_id.to_owned(), note.to_owned());
        let now = now_ms();
        self.guilds
            .events()
            .write(now, move |tx| {
                if crate::store::accounts::load_user(tx, &target)?.is_none() {
                    let refusal = Error::NotFound("user_id: no such user on this server".into());
                    return Ok((Err(refusal), vec![]));
                }
                let fresh = db::note(tx, &owner, &target)?.is_none();
                if fresh && !text.is_empty() && db::note_count(tx, &owner)? >= MAX_NOTES {
                    let refusal = Error::FailedPrecondition(format!(
                        "user_id: you keep {MAX_NOTES} notes, the most there can be; clear one first"
                    ));
                    return Ok((Err(refusal), vec![]));
                }
                db::set_note(tx, &owner, &target, &text, now)?;
                let stored = db::note(tx, &owner, &target)?;
                let proto = note_proto(&target, stored.as_ref());
                let event = events::row(
                    vec![events::user_scope(&owner)],
                    pb::stream_response::Event::UserNoteUpdated(proto.clone()),
                );
                Ok((Ok(proto), vec![event]))
            })
            .await?
    }

    /// `GetUserNote`: the caller's note about a user (empty if none).
    pub async fn note(&self, caller: &SessionInfo, user_id: &str) -> Result<pb::UserNote> {
        check_user_id(user_id)?;
        let (owner, target) = (caller.user_id.clone(), user_id.to_owned());
        let stored = self
            .guilds
            .store()
            .read(move |c| db::note(c, &owner, &target))
            .await?;
        Ok(note_proto(user_id, stored.as_ref()))
    }

    /// `ListUserNotes`: every note the caller keeps, by user id.
    pub async fn notes(&self, caller: &SessionInfo) -> Result<Vec<pb::UserNote>> {
        let owner = caller.user_id.clone();
        let stored = self
            .guilds
            .store()
            .read(move |c| db::notes(c, &owner))
            .await?;
        Ok(stored
            .iter()
            .map(|r| note_proto(&r.target_id, Some(r)))
            .collect())
    }
}
