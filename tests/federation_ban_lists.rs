//! Ban trust is scoped: a node trusts a server's **moderation list** (entries the server signs as
//! `server-ban`, only at one of its admins' request) or one guild's bans, never every guild owner
//! on a server. Entries travel as `server-ban` server events (gossip, catch-up,
//! `ReceiveServerEvent`); a node checks each itself and enforces it only if it trusts the list.

mod common;

use std::time::Duration;

use common::bans::{held_bans, is_member, list_entry, notice, trust, try_join};
use common::*;
use guildhall::federation::bans::SERVER_BAN_KIND;
use guildhall::gossip::ServerEvent;
use guildhall::identity::freshness::now_ms;
use guildhall::identity::signing::{self, ServerBanPayload};
use guildhall::identity::{PublicKey, SecretKey, Signature};
use guildhall::proto::guildhall::v1 as pb;
use prost::Message;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// A node whose server admin is `admin` (registered there), and that admin's session.
async fn node_with_admin(
    edit: impl FnOnce(&mut guildhall::config::Config),
) -> (TestNode, TestUser) {
    let admin = new_identity("phone");
    let id = admin.user_id();
    let node = TestNode::spawn_with(|c| {
        c.admins = vec![id];
        edit(c);
    })
    .await;
    let admin = register_as(&node, &admin, "Admin").await;
    (node, admin)
}

/// `AddServerBan` (`banned`) or `RemoveServerBan` of `user_id` by `caller` on `node`.
async fn server_ban(
    node: &TestNode,
    caller: &TestUser,
    user_id: &str,
    banned: bool,
) -> Result<pb::ServerBanEntry, tonic::Status> {
    let request = authed(
        &caller.token,
        pb::ServerBanRequest {
            user_id: user_id.into(),
            reason: "spam".into(),
        },
    );
    let mut client = node.client().await;
    let reply = if banned {
        client.add_server_ban(request).await
    } else {
        client.remove_server_ban(request).await
    };
    reply.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_guild_owner_on_a_trusted_server_cannot_touch_the_trusting_nodes_guilds() {
    let b = TestNode::spawn_fast_outbox().await;
    let b_key = b.audience();
    // `old` trusts B the old way (`trusted_ban_origins`, now B's moderation list only); `new`
    // trusts B's moderation list by name. Mallory's homeserver is `old`.
    let (old, old_admin) = node_with_admin(|c| c.trusted_ban_origins = vec![b_key.to_hex()]).await;
    let (new, new_admin) =
        node_with_admin(|c| c.trusted_ban_lists = vec![trust(&b_key, None)]).await;
    meet(&new, &b).await;
    b.meshed("ban").await;

    // On each trusting node, Mallory is a member of a local guild.
    let mallory = register(&old, "Mallory").await;
    let mallory_at_new = register_as(&new, &mallory.identity, "Mallory").await;
    let mut locals = Vec::new();
    for (node, m) in [(&old, &mallory), (&new, &mallory_at_new)] {
        let owner = register(node, "Owner").await;
        let room = create_room(node, &owner, "Local").await;
        join_room(node, m, &room.invite).await;
        locals.push((owner, room));
    }
    // Eve, an ordinary user of B, makes a guild there; Mallory joins it from her homeserver.
    let eve = register(&b, "Eve").await;
    let evil = create_room(&b, &eve, "Eve's guild").await;
    remote_join(&b, &mallory, &old.address(), &evil.invite, "Mallory")
        .await
        .expect("Mallory joins Eve's guild on B");

    // Eve bans Mallory from her guild. The ban is authoritative on B, for that guild.
    b.client()
        .await
        .ban_user(authed(
            &eve.token,
            pb::BanUserRequest {
                guild_id: evil.guild.clone(),
                user_id: mallory.user.id.clone(),
                reason: "I can".into(),
            },
        ))
        .await
        .expect("a guild owner bans from their own guild");
    assert!(!is_member(&b, &eve, &evil.guild, &mallory.user.id).await);

    // `old` gets the notice through B's outbox (it is Mallory's homeserver), `new` by gossip.
    // Both keep it as an advisory that their admins see, and enforce nothing.
    for (node, admin) in [(&old, &old_admin), (&new, &new_admin)] {
        wait_for(WAIT, || async {
            held_bans(node, admin, true)
                .await
                .expect("admin lists advisories")
                .iter()
                .any(|h| {
                    h.origin_server_id == b_key.to_hex()
                        && h.guild_id == evil.guild
                        && h.user_id == mallory.user.id
                        && h.banned
                        && !h.applied
                })
        })
        .await;
    }
    for (node, (owner, room)) in [&old, &new].into_iter().zip(&locals) {
        assert!(
            is_member(node, owner, &room.guild, &mallory.user.id).await,
            "a guild owner on a trusted server removed no one here"
        );
        let fresh = create_room(node, owner, "Fresh").await;
        try_join(node, &mallory, &fresh.invite)
            .await
            .expect("and keeps no one out");
    }
    // Only admins see what the node holds.
    assert_status(
        held_bans(&old, &locals[0].0, false).await,
        Code::PermissionDenied,
        "only server admins",
    );
}

#[tokio::test]
async fn a_server_admins_moderation_list_is_applied_and_lifted_where_trusted() {
    let (b, b_admin) = node_with_admin(|_| {}).await;
    let b_key = b.audience();
    let (t, t_admin) = node_with_admin(|c| c.trusted_ban_lists = vec![trust(&b_key, None)]).await;
    meet(&t, &b).await;
    b.meshed(SERVER_BAN_KIND).await;

    // Mallory is a member of a guild on T and of one on B.
    let mallory = register(&t, "Mallory").await;
    let owner = register(&t, "Owner").await;
    let room = create_room(&t, &owner, "Local").await;
    join_room(&t, &mallory, &room.invite).await;
    let b_owner = register(&b, "Owner").await;
    let b_mallory = register_as(&b, &mallory.identity, "Mallory").await;
    let b_room = create_room(&b, &b_owner, "B's").await;
    join_room(&b, &b_mallory, &b_room.invite).await;

    // B's admin puts Mallory on B's moderation list: a `server-ban` entry signed by B's key.
    let entry = server_ban(&b, &b_admin, &mallory.user.id, true)
        .await
        .expect("an admin adds to the list");
    assert_eq!(
        (entry.origin_server_id.as_str(), entry.banned),
        (b_key.to_hex().as_str(), true)
    );
    signing::verify(
        ServerBanPayload {
            origin: b_key,
            user: PublicKey::from_hex(&mallory.user.id).expect("key"),
            banned: true,
            reason: entry.reason.clone(),
            timestamp: entry.timestamp,
        },
        &b_key,
        &Signature::from_bytes(&entry.signature).expect("64 bytes"),
    )
    .expect("signed by B's server key");
    // B enforces its own list at once; T once the entry arrives.
    assert!(!is_member(&b, &b_owner, &b_room.guild, &mallory.user.id).await);
    wait_for(WAIT, || async {
        !is_member(&t, &owner, &room.guild, &mallory.user.id).await
    })
    .await;
    assert_status(
        try_join(&t, &mallory, &room.invite).await,
        Code::PermissionDenied,
        "by a ban list it trusts",
    );
    let held = held_bans(&t, &t_admin, false).await.expect("held");
    assert_eq!(held.len(), 1);
    assert!(held[0].guild_id.is_empty() && held[0].banned && held[0].applied);
    assert!(
        held_bans(&t, &t_admin, true)
            .await
            .expect("advisories")
            .is_empty()
    );

    // The admin lifts it; T applies the lift too, and Mallory may join again.
    let lift = server_ban(&b, &b_admin, &mallory.user.id, false)
        .await
        .expect("an admin lifts the ban");
    assert!(!lift.banned && lift.timestamp > entry.timestamp);
    try_join(&b, &b_mallory, &b_room.invite)
        .await
        .expect("lifted on B");
    wait_for(WAIT, || async {
        try_join(&t, &mallory, &room.invite).await.is_ok()
    })
    .await;
    assert!(is_member(&t, &owner, &room.guild, &mallory.user.id).await);
    let held = held_bans(&t, &t_admin, false).await.expect("held");
    assert!(held.len() == 1 && !held[0].banned && !held[0].applied);
    // Lifting again: she is not on the list.
    assert_status(
        server_ban(&b, &b_admin, &mallory.user.id, false).await,
        Code::NotFound,
        "user_id: not banned on this server's moderation list",
    );
}

#[tokio::test]
async fn a_list_entry_goes_straight_to_the_users_homeserver() {
    let (b, b_admin) = node_with_admin(fast_outbox).await;
    let (mut t, _) =
        node_with_admin(|c| c.trusted_ban_lists = vec![trust(&b.audience(), None)]).await;
    // Mallory lives on T and joined a guild on B from there: B knows T is her homeserver.
    let mallory = register(&t, "Mallory").await;
    let owner = register(&t, "Owner").await;
    let room = create_room(&t, &owner, "Local").await;
    join_room(&t, &mallory, &room.invite).await;
    let b_owner = register(&b, "Owner").await;
    let b_room = create_room(&b, &b_owner, "B's").await;
    remote_join(&b, &mallory, &t.address(), &b_room.invite, "Mallory")
        .await
        .expect("Mallory joins B's guild from T");
    b.outbox_drained(WAIT).await;

    // T is down when B's admin bans her: the entry waits in B's outbox, for T.
    let t_address = t.address();
    let t_addr = t.stop().await;
    let entry = server_ban(&b, &b_admin, &mallory.user.id, true)
        .await
        .expect("banned");
    let queued = b.outbox_head_failed(WAIT).await;
    assert_eq!(
        (queued.destination.as_str(), queued.method.as_str()),
        (t_address.as_str(), "ReceiveServerEvent")
    );
    let event = pb::ServerEvent::decode(&queued.body[..]).expect("a ServerEvent");
    assert_eq!(event.kind, SERVER_BAN_KIND);
    assert_eq!(
        pb::ServerBanEntry::decode(&event.payload[..]).expect("an entry"),
        entry
    );
    t.start_on(t_addr).await;
    wait_for(WAIT, || async {
        !is_member(&t, &owner, &room.guild, &mallory.user.id).await
    })
    .await;
    // B enforces its own list on remote members too: it removed her, and she can't join back.
    assert!(!is_member(&b, &b_owner, &b_room.guild, &mallory.user.id).await);
    assert_status(
        remote_join(&b, &mallory, &t.address(), &b_room.invite, "Mallory").await,
        Code::PermissionDenied,
        "by a ban list it trusts",
    );
    server_ban(&b, &b_admin, &mallory.user.id, false)
        .await
        .expect("lifted");
    wait_for(WAIT, || async {
        try_join(&t, &mallory, &room.invite).await.is_ok()
    })
    .await;
    b.outbox_drained(WAIT).await;
}

#[tokio::test]
async fn only_a_servers_admins_change_its_moderation_list() {
    let (b, admin) = node_with_admin(|_| {}).await;
    let user = register(&b, "User").await;
    let mallory = register(&b, "Mallory").await;
    for banned in [true, false] {
        assert_status(
            server_ban(&b, &user, &mallory.user.id, banned).await,
            Code::PermissionDenied,
            "only server admins may change this server's moderation list",
        );
    }
    assert_status(
        b.client()
            .await
            .add_server_ban(pb::ServerBanRequest {
                user_id: mallory.user.id.clone(),
                reason: String::new(),
            })
            .await,
        Code::Unauthenticated,
        "",
    );
    assert_status(
        server_ban(&b, &admin, "zz", true).await,
        Code::InvalidArgument,
        "user_id",
    );
    assert_status(
        b.client()
            .await
            .add_server_ban(authed(
                &admin.token,
                pb::ServerBanRequest {
                    user_id: mallory.user.id.clone(),
                    reason: "x".repeat(513),
                },
            ))
            .await,
        Code::InvalidArgument,
        "reason: must be at most 512 characters",
    );
    assert_status(
        server_ban(&b, &admin, &mallory.user.id, false).await,
        Code::NotFound,
        "user_id: not banned",
    );
    assert_status(
        b.client()
            .await
            .list_ban_notices(authed(
                &admin.token,
                pb::ListBanNoticesRequest {
                    limit: -1,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "limit",
    );
    // Nothing was listed, signed or published.
    assert!(held_bans(&b, &admin, false).await.expect("held").is_empty());
    assert_eq!(
        b.node()
            .server_events
            .accepted_count(SERVER_BAN_KIND)
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn forged_and_unsigned_moderation_list_entries_are_refused() {
    let b = TestNode::spawn().await;
    let b_key = b.server_key();
    let c = TestNode::spawn().await;
    let (t, t_admin) =
        node_with_admin(|cfg| cfg.trusted_ban_lists = vec![trust(&b_key.public(), None)]).await;
    let owner = register(&t, "Owner").await;
    let mallory = register(&t, "Mallory").await;
    let room = create_room(&t, &owner, "Local").await;
    join_room(&t, &mallory, &room.invite).await;
    let mut from_b = b.federation_client(&t).await;
    let at = now_ms();
    // B's own event carrying `entry`, as B's outbox would deliver it.
    let event = |sequence: u64, entry: &pb::ServerBanEntry| {
        ServerEvent::sign(&b_key, SERVER_BAN_KIND, sequence, at, entry.encode_to_vec()).to_proto()
    };

    // An entry naming B but signed by another key.
    let other = SecretKey::generate();
    let forged = list_entry(&other, &b_key, &mallory.user.id, true, at);
    assert_status(
        from_b.receive_server_event(event(1, &forged)).await,
        Code::FailedPrecondition,
        "signature: not a `server-ban` signature by origin_server_id",
    );
    // Unsigned.
    let mut unsigned = list_entry(&b_key, &b_key, &mallory.user.id, true, at);
    unsigned.signature.clear();
    assert_status(
        from_b.receive_server_event(event(2, &unsigned)).await,
        Code::FailedPrecondition,
        "signature",
    );
    // A guild ban's signature by B (what any guild owner on B gets signed) is not a list entry.
    let mut guild_ban = list_entry(&b_key, &b_key, &mallory.user.id, true, at);
    guild_ban.signature = notice(&b_key, &b_key, &mallory.user.id, "777", at).signature;
    assert_status(
        from_b.receive_server_event(event(3, &guild_ban)).await,
        Code::FailedPrecondition,
        "signature: not a `server-ban` signature",
    );
    // An event claiming B as origin, not signed by B.
    let good = list_entry(&b_key, &b_key, &mallory.user.id, true, at);
    let mut not_b = event(4, &good);
    not_b.signature = ServerEvent::sign(&other, SERVER_BAN_KIND, 4, at, good.encode_to_vec())
        .to_proto()
        .signature;
    assert_status(
        from_b.receive_server_event(not_b).await,
        Code::InvalidArgument,
        "event",
    );
    // B's entry inside C's event: a server speaks only for its own list.
    let from_c = ServerEvent::sign(
        &c.server_key(),
        SERVER_BAN_KIND,
        1,
        at,
        good.encode_to_vec(),
    );
    assert_status(
        c.federation_client(&t)
            .await
            .receive_server_event(from_c.to_proto())
            .await,
        Code::FailedPrecondition,
        "origin_server_id: not the event's origin",
    );
    // Not an entry at all; fields that break the rules (each re-signed by B, so only the rule
    // is wrong).
    let junk = ServerEvent::sign(&b_key, SERVER_BAN_KIND, 10, at, b"junk".to_vec()).to_proto();
    assert_status(
        from_b.receive_server_event(junk).await,
        Code::FailedPrecondition,
        "payload: not a ServerBanEntry",
    );
    let mut bad_user = list_entry(&b_key, &b_key, &mallory.user.id, true, at);
    bad_user.user_id = "zz".into();
    let mut long_reason = list_entry(&b_key, &b_key, &mallory.user.id, true, at);
    long_reason.reason = "x".repeat(513);
    let future = list_entry(&b_key, &b_key, &mallory.user.id, true, at + 3_600_000);
    for (sequence, entry, field) in [
        (11, bad_user, "user_id"),
        (12, long_reason, "reason: must be at most 512 characters"),
        (13, future, "timestamp: is in the future"),
    ] {
        assert_status(
            from_b.receive_server_event(event(sequence, &entry)).await,
            Code::FailedPrecondition,
            field,
        );
    }
    // An event dated past the clock window is not judged now and not kept: B's outbox is told
    // to deliver it again later.
    let ahead = ServerEvent::sign(
        &b_key,
        SERVER_BAN_KIND,
        14,
        at + 3_600_000,
        good.encode_to_vec(),
    )
    .to_proto();
    assert_status(
        from_b.receive_server_event(ahead).await,
        Code::Unavailable,
        "event: not judged now (timestamp is in the future); deliver it again later",
    );
    assert!(is_member(&t, &owner, &room.guild, &mallory.user.id).await);
    assert!(
        held_bans(&t, &t_admin, false)
            .await
            .expect("held")
            .is_empty()
    );

    // The same entry, signed by B for B's list, is applied.
    from_b
        .receive_server_event(event(5, &good))
        .await
        .expect("B's own entry is taken");
    assert!(!is_member(&t, &owner, &room.guild, &mallory.user.id).await);
}
