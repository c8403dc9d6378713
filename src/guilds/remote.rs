//! Guild checks for members from other nodes.

use super::Guilds;
use super::members::{BLOCKED_HERE, invite_problem};
use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::store::guilds as db;

impl Guilds {
    /// Checks, without changing anything, that `user_id` could join with `token` now: the invite
    /// exists and is usable (or the user is already a member) and the user is not banned. A remote
    /// join runs this before asking the user's homeserver to vouch, so a join that would be refused
    /// anyway makes no call to another server; the join's own transaction checks again.
    pub async fn check_joinable(&self, user_id: &str, token: &str) -> Result<String> {
        if token.is_empty() {
            return Err(Error::invalid("token", "is required"));
        }
        let (t, u) = (token.to_owned(), user_id.to_owned());
        let now = now_ms();
        self.store()
            .read(move |c| {
                let Some(invite) = db::invite(c, &t)? else {
                    return Ok(Err(Error::NotFound("token: no such invite".into())));
                };
                if db::is_banned(c, &invite.guild_id, &u)? {
                    return Ok(Err(Error::PermissionDenied(
                        "you are banned from this guild".into(),
                    )));
                }
                if crate::store::bans::blocked_here(c, &u)? {
                    return Ok(Err(Error::PermissionDenied(BLOCKED_HERE.into())));
                }
                if db::guild(c, &invite.guild_id)?.is_none() {
                    return Ok(Err(Error::NotFound(
                        "token: the invite's guild is gone".into(),
                    )));
                }
                let already = db::member(c, &invite.guild_id, &u)?.is_some();
                if !already && let Some(problem) = invite_problem(&invite, now) {
                    return Ok(Err(Error::FailedPrecondition(problem.into())));
                }
                Ok(Ok(invite.guild_id))
            })
            .await?
    }
}
