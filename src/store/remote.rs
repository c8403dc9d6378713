//! Users whose homeserver is another node: their row on a host, and profile changes their
//! homeserver forwards. Everything here runs after the caller verified the user's own signature.

use rusqlite::{Connection, params};

use super::accounts::{NewUser, ProfileChange, UserRecord, apply_profile_v2_fields, load_user};
use super::{StorageError, Store, to_sql_int};

/// What became of a forwarded profile change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedProfile {
    /// Applied; the user as now stored.
    Applied(Box<UserRecord>),
    /// Not newer than the stored profile (ms of the last change applied): nothing changed.
    Stale(u64),
    /// The user is not known here.
    UnknownUser,
    /// The user's homeserver here is another server (given).
    NotTheirHomeserver(String),
}

/// Inside a join's transaction: creates the row of a remote user vouched for by their homeserver,
/// or refreshes its name and avatar from the join if the join is newer than the stored profile.
/// `Conflict` if the identity is known here with another homeserver (a local user, or a user of
/// another node): a join never changes whose user someone is.
pub fn upsert_remote_user(
    tx: &Connection,
    user: &NewUser,
    avatar_url: &str,
    profile_at: u64,
) -> Result<(), StorageError> {
    match load_user(tx, &user.id)? {
        None => {
            tx.execute(
                "INSERT INTO users (id, display_name, avatar_url, homeserver, profile_updated_at, \
                     created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    user.id,
                    user.display_name,
                    avatar_url,
                    user.homeserver,
                    to_sql_int(profile_at),
                    to_sql_int(user.created_at)
                ],
            )?;
        }
        Some(existing) if existing.homeserver != user.homeserver => {
            return Err(StorageError::Conflict(format!(
                "homeserver_url: this identity's homeserver here is {}, not {}",
                existing.homeserver, user.homeserver
            )));
        }
        Some(existing) if profile_at > existing.profile_updated_at => {
            tx.execute(
                "UPDATE users SET display_name = ?2, avatar_url = ?3, profile_updated_at = ?4
                 WHERE id = ?1",
                params![
                    user.id,
                    user.display_name,
                    avatar_url,
                    to_sql_int(profile_at)
                ],
            )?;
        }
        Some(_) => {}
    }
    Ok(())
}

impl Store {
    /// Applies a verified profile change of a remote user, forwarded by `origin`: only if `origin`
    /// is the user's homeserver here and the change is newer than the stored profile, in one
    /// transaction. Server-local fields (`irc_name`, `guild_order`) are never taken from afar.
    pub async fn apply_forwarded_profile(
        &self,
        user_id: String,
        origin: String,
        change: ProfileChange,
    ) -> Result<ForwardedProfile, StorageError> {
        self.write(move |tx| {
            let Some(user) = load_user(tx, &user_id)? else {
                return Ok(ForwardedProfile::UnknownUser);
            };
            if user.homeserver != origin {
                return Ok(ForwardedProfile::NotTheirHomeserver(user.homeserver));
            }
            if change.timestamp <= user.profile_updated_at {
                return Ok(ForwardedProfile::Stale(user.profile_updated_at));
            }
            tx.execute(
                "UPDATE users SET
                     display_name = coalesce(?2, display_name),
                     avatar_url = coalesce(?3, avatar_url),
                     presence_preference = coalesce(?4, presence_preference),
                     bio = coalesce(?5, bio),
                     is_profile_synced = coalesce(?6, is_profile_synced),
                     profile_updated_at = ?7
                 WHERE id = ?1",
                params![
                    user_id,
                    change.display_name,
                    change.avatar_url,
                    change.presence_preference,
                    change.bio,
                    change.is_profile_synced,
                    to_sql_int(change.timestamp),
                ],
            )?;
            apply_profile_v2_fields(tx, &user_id, &change)?;
            let user = load_user(tx, &user_id)?
                .ok_or_else(|| StorageError::Task("user vanished".into()))?;
            Ok(ForwardedProfile::Applied(Box::new(user)))
        })
        .await
    }
}
