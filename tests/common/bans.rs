//! Helpers for the tests of bans across servers: signed notices and moderation-list entries made
//! with any key (to forge them), what a node holds, and membership checks.

use guildhall::config::TrustedBanList;
use guildhall::identity::signing::{self, BanPayload, ServerBanPayload};
use guildhall::identity::{PublicKey, SecretKey};
use guildhall::proto::guildhall::v1 as pb;

use super::{TestNode, TestUser, authed};

/// A notice banning `user` from `guild_id`, signed by `key` (claiming `origin` as its origin).
pub fn notice(
    key: &SecretKey,
    origin: &SecretKey,
    user: &str,
    guild_id: &str,
    timestamp: u64,
) -> pb::BanNotification {
    let payload = BanPayload {
        origin: origin.public(),
        banned: PublicKey::from_hex(user).expect("user key"),
        guild_id: guild_id.into(),
        reason: "spam".into(),
        evidence_hash: String::new(),
        timestamp,
    };
    pb::BanNotification {
        origin_server_id: origin.public().to_hex(),
        banned_user_pubkey: user.into(),
        guild_id: guild_id.into(),
        reason: "spam".into(),
        evidence_hash: String::new(),
        timestamp,
        signature: signing::sign(&payload, key).to_bytes().to_vec(),
    }
}

/// A moderation-list entry about `user` (`banned` or lifted), signed by `key` (claiming `origin`
/// as the server whose list it is).
pub fn list_entry(
    key: &SecretKey,
    origin: &SecretKey,
    user: &str,
    banned: bool,
    timestamp: u64,
) -> pb::ServerBanEntry {
    let payload = ServerBanPayload {
        origin: origin.public(),
        user: PublicKey::from_hex(user).expect("user key"),
        banned,
        reason: "spam".into(),
        timestamp,
    };
    pb::ServerBanEntry {
        origin_server_id: origin.public().to_hex(),
        user_id: user.into(),
        banned,
        reason: "spam".into(),
        timestamp,
        signature: signing::sign(&payload, key).to_bytes().to_vec(),
    }
}

/// Trust in `server`'s moderation list (`guild` `None`) or in one of its guilds' bans.
pub fn trust(server: &PublicKey, guild: Option<&str>) -> TrustedBanList {
    TrustedBanList {
        server: server.to_hex(),
        guild: guild.map(str::to_owned),
    }
}

/// Ban notices a node holds: (origin, guild, user, applied).
pub fn notices(node: &TestNode) -> Vec<(String, String, String, bool)> {
    let db = rusqlite::Connection::open_with_flags(
        node.config.database_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open db");
    let mut stmt = db
        .prepare("SELECT origin_key, guild_id, user_id, applied FROM ban_notices ORDER BY guild_id")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read")
}

/// `ListBanNotices` on `node` by `admin`.
pub async fn held_bans(
    node: &TestNode,
    admin: &TestUser,
    advisories_only: bool,
) -> Result<Vec<pb::HeldBan>, tonic::Status> {
    node.client()
        .await
        .list_ban_notices(authed(
            &admin.token,
            pb::ListBanNoticesRequest {
                advisories_only,
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().bans)
}

/// Whether `user` is a member of `guild` on `node`, as its `owner` lists the members.
pub async fn is_member(node: &TestNode, owner: &TestUser, guild: &str, user: &str) -> bool {
    node.client()
        .await
        .list_guild_members(authed(
            &owner.token,
            pb::ListGuildMembersRequest {
                guild_id: guild.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("members")
        .into_inner()
        .members
        .iter()
        .any(|m| m.user.as_ref().is_some_and(|u| u.id == user))
}

/// `who` tries to join `node`'s guild with `invite` (a signed `JoinInvite`).
pub async fn try_join(
    node: &TestNode,
    who: &TestUser,
    invite: &str,
) -> Result<pb::JoinInviteResponse, tonic::Status> {
    node.client()
        .await
        .join_invite(who.identity.join_invite_request(
            &node.audience(),
            invite,
            "Member",
            guildhall::identity::freshness::now_ms(),
        ))
        .await
        .map(tonic::Response::into_inner)
}
