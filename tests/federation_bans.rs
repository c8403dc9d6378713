//! Bans across servers: `BanUser` on a guild's host stores a signed notice; `PropagateBan` checks
//! a notice itself (the origin's signature, that the origin is not claiming a guild hosted here),
//! keeps it, and applies it to this node's guilds only when the operator trusts that guild's bans
//! (`trusted_ban_lists` naming the server and the guild). Trusting a server's moderation list
//! (`tests/federation_ban_lists.rs`) does not trust its guild owners.

mod common;

use common::bans::{is_member, notice, notices, trust, try_join};
use common::*;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn a_ban_on_the_host_stores_its_signed_notice() {
    let host = TestNode::spawn().await;
    let owner = register(&host, "Owner").await;
    let mallory = register(&host, "Mallory").await;
    let room = create_room(&host, &owner, "Town").await;
    join_room(&host, &mallory, &room.invite).await;
    host.client()
        .await
        .ban_user(authed(
            &owner.token,
            pb::BanUserRequest {
                guild_id: room.guild.clone(),
                user_id: mallory.user.id.clone(),
                reason: "spam".into(),
            },
        ))
        .await
        .expect("ban");
    assert_eq!(
        notices(&host),
        vec![(
            host.audience().to_hex(),
            room.guild.clone(),
            mallory.user.id.clone(),
            false
        )]
    );
}

#[tokio::test]
async fn a_trusted_guilds_bans_apply_another_guilds_are_advisories_and_trust_is_read_at_start() {
    let host = TestNode::spawn().await;
    let host_key = host.server_key();
    // `trusting` applies the bans of the host's guild 777 only; `wary` trusts nothing.
    let mut trusting = TestNode::spawn_with(|c| {
        c.trusted_ban_lists = vec![trust(&host_key.public(), Some("777"))];
    })
    .await;
    let wary = TestNode::spawn().await;
    let mut rooms = Vec::new();
    let mut mallories = Vec::new();
    for node in [&trusting, &wary] {
        let owner = register(node, "Owner").await;
        let mallory = register(node, "Mallory").await;
        let room = create_room(node, &owner, "Local").await;
        join_room(node, &mallory, &room.invite).await;
        rooms.push((owner, room));
        mallories.push(mallory);
    }
    // Trudy is banned from another guild of the same host, 778.
    let (owner, room) = &rooms[0];
    let trudy = register(&trusting, "Trudy").await;
    join_room(&trusting, &trudy, &room.invite).await;
    let at = now_ms();
    for (i, node) in [&trusting, &wary].into_iter().enumerate() {
        let ban = notice(&host_key, &host_key, &mallories[i].user.id, "777", at);
        let mut peer = host.federation_client(node).await;
        peer.propagate_ban(ban.clone())
            .await
            .expect("notice accepted");
        // Delivering it again is harmless.
        peer.propagate_ban(ban).await.expect("again");
        assert_eq!(notices(node).len(), 1);
    }
    host.federation_client(&trusting)
        .await
        .propagate_ban(notice(&host_key, &host_key, &trudy.user.id, "778", at))
        .await
        .expect("a ban from guild 778 is kept");

    // The trusting node removed Mallory from its guild and keeps her out of every guild here.
    assert!(!is_member(&trusting, owner, &room.guild, &mallories[0].user.id).await);
    let held = notices(&trusting);
    assert_eq!(
        held.iter().map(|n| (n.1.as_str(), n.3)).collect::<Vec<_>>(),
        vec![("777", true), ("778", false)],
        "777 applied, 778 an advisory"
    );
    assert_status(
        try_join(&trusting, &mallories[0], &room.invite).await,
        Code::PermissionDenied,
        "by a ban list it trusts",
    );
    let fresh = create_room(&trusting, owner, "Fresh").await;
    assert_status(
        try_join(&trusting, &mallories[0], &fresh.invite).await,
        Code::PermissionDenied,
        "by a ban list it trusts",
    );
    // Guild 778's ban is not trusted: Trudy stays, and may join another guild.
    assert!(is_member(&trusting, owner, &room.guild, &trudy.user.id).await);
    try_join(&trusting, &trudy, &fresh.invite)
        .await
        .expect("a ban from an untrusted guild keeps no one out");

    // The wary node kept the notice as an advisory; Mallory stays.
    let (wary_owner, wary_room) = &rooms[1];
    assert!(is_member(&wary, wary_owner, &wary_room.guild, &mallories[1].user.id).await);
    assert!(!notices(&wary)[0].3, "not applied");

    // The operator stops trusting guild 777 and trusts 778 instead: at start the node re-decides
    // the bans it holds. Mallory may join again; Trudy is removed.
    trusting.config.trusted_ban_lists = vec![trust(&host_key.public(), Some("778"))];
    let addr = trusting.stop().await;
    trusting.start_on(addr).await;
    assert_eq!(
        notices(&trusting)
            .iter()
            .map(|n| (n.1.as_str(), n.3))
            .collect::<Vec<_>>(),
        vec![("777", false), ("778", true)]
    );
    try_join(&trusting, &mallories[0], &room.invite)
        .await
        .expect("no longer trusted: Mallory may join again");
    assert!(!is_member(&trusting, owner, &room.guild, &trudy.user.id).await);
    assert!(!is_member(&trusting, owner, &fresh.guild, &trudy.user.id).await);
}

#[tokio::test]
async fn forged_misplaced_and_malformed_notices_are_refused_and_change_nothing() {
    let host = TestNode::spawn().await;
    let host_key = host.server_key();
    let other = TestNode::spawn().await;
    let node = TestNode::spawn_with(|c| {
        c.trusted_ban_lists = vec![trust(&host_key.public(), Some("777"))];
    })
    .await;
    let owner = register(&node, "Owner").await;
    let mallory = register(&node, "Mallory").await;
    let room = create_room(&node, &owner, "Local").await;
    join_room(&node, &mallory, &room.invite).await;
    let mut peer = other.federation_client(&node).await;
    let at = now_ms();

    // Signed by another server's key while naming the trusted host as origin.
    assert_status(
        peer.propagate_ban(notice(
            &other.server_key(),
            &host_key,
            &mallory.user.id,
            "777",
            at,
        ))
        .await,
        Code::Unauthenticated,
        "signature: not a `ban` signature by origin_server_id",
    );
    // The host claiming a guild this node hosts.
    assert_status(
        peer.propagate_ban(notice(
            &host_key,
            &host_key,
            &mallory.user.id,
            &room.guild,
            at,
        ))
        .await,
        Code::PermissionDenied,
        "origin_server_id: is not the host of guild",
    );
    let mut bad = notice(&host_key, &host_key, &mallory.user.id, "777", at);
    bad.evidence_hash = "not hex".into();
    assert_status(
        peer.propagate_ban(bad).await,
        Code::InvalidArgument,
        "evidence_hash",
    );
    let mut bad = notice(&host_key, &host_key, &mallory.user.id, "777", at);
    bad.origin_server_id = "zz".into();
    assert_status(
        peer.propagate_ban(bad).await,
        Code::InvalidArgument,
        "origin_server_id",
    );
    let long_guild = "9".repeat(65);
    assert_status(
        peer.propagate_ban(notice(
            &host_key,
            &host_key,
            &mallory.user.id,
            &long_guild,
            at,
        ))
        .await,
        Code::InvalidArgument,
        "guild_id",
    );
    let mut bad = notice(&host_key, &host_key, &mallory.user.id, "777", at);
    bad.reason = "x".repeat(513);
    assert_status(
        peer.propagate_ban(bad).await,
        Code::InvalidArgument,
        "reason",
    );
    let mut bad = notice(&host_key, &host_key, &mallory.user.id, "777", at);
    bad.signature.truncate(10);
    assert_status(
        peer.propagate_ban(bad).await,
        Code::InvalidArgument,
        "signature",
    );
    let mut bad = notice(&host_key, &host_key, &mallory.user.id, "777", at);
    bad.banned_user_pubkey = "zz".into();
    assert_status(
        peer.propagate_ban(bad).await,
        Code::InvalidArgument,
        "banned_user_pubkey",
    );
    assert_status(
        peer.propagate_ban(notice(
            &host_key,
            &host_key,
            &mallory.user.id,
            "777",
            at + 3_600_000,
        ))
        .await,
        Code::InvalidArgument,
        "timestamp: is in the future",
    );
    // Not a server call at all.
    assert_status(
        node.client()
            .await
            .propagate_ban(notice(&host_key, &host_key, &mallory.user.id, "777", at))
            .await,
        Code::Unauthenticated,
        "guildhall-origin",
    );
    assert!(notices(&node).is_empty(), "nothing kept");
    assert!(is_member(&node, &owner, &room.guild, &mallory.user.id).await);

    // A valid notice relayed by a third server is accepted (notices are self-certifying); an
    // older one for the same ban changes nothing.
    peer.propagate_ban(notice(&host_key, &host_key, &mallory.user.id, "777", at))
        .await
        .expect("relayed notice");
    peer.propagate_ban(notice(
        &host_key,
        &host_key,
        &mallory.user.id,
        "777",
        at - 1000,
    ))
    .await
    .expect("older notice answers OK");
    assert_eq!(notices(&node).len(), 1);
    assert!(!is_member(&node, &owner, &room.guild, &mallory.user.id).await);
}

#[tokio::test]
async fn a_ban_is_gossiped_to_every_node_and_caught_up_after_a_restart() {
    let wait = std::time::Duration::from_secs(20);
    let host = TestNode::spawn().await;
    let mallory = new_identity("phone");
    let mut rooms = Vec::new();
    let owner = register(&host, "Owner").await;
    let m = register_as(&host, &mallory, "Mallory").await;
    let room = create_room(&host, &owner, "Local").await;
    join_room(&host, &m, &room.invite).await;
    // near and far trust the bans of the host's guild.
    let trusted = vec![trust(&host.audience(), Some(&room.guild))];
    rooms.push((owner, room));
    let near = TestNode::spawn_with(|c| c.trusted_ban_lists = trusted.clone()).await;
    let mut far = TestNode::spawn_with(|c| c.trusted_ban_lists = trusted.clone()).await;
    for node in [&near, &far] {
        let owner = register(node, "Owner").await;
        let m = register_as(node, &mallory, "Mallory").await;
        let room = create_room(node, &owner, "Local").await;
        join_room(node, &m, &room.invite).await;
        rooms.push((owner, room));
    }
    // near meets the host through gossip; far pins the host in its directory (as federation
    // would) so it can catch up from it, then stops before the ban.
    meet(&near, &host).await;
    far.node()
        .federation
        .directory()
        .refresh(&host.address())
        .await
        .expect("far pins the host");
    host.meshed("ban").await;
    if let Some(node) = far.node.take() {
        node.shutdown();
        node.stopped().await;
    }

    let (owner, room) = &rooms[0];
    host.client()
        .await
        .ban_user(authed(
            &owner.token,
            pb::BanUserRequest {
                guild_id: room.guild.clone(),
                user_id: mallory.user_id(),
                reason: "spam".into(),
            },
        ))
        .await
        .expect("ban on the host");

    // near learns of it through gossip alone (no member of the host's guild lives there).
    let (owner, room) = &rooms[1];
    wait_for(wait, || async {
        !is_member(&near, owner, &room.guild, &mallory.user_id()).await
    })
    .await;
    // far was down; it pulls the notice from the host when it starts again.
    far.node = Some(
        guildhall::node::Node::start(far.config.clone())
            .await
            .expect("far restarts"),
    );
    let (owner, room) = &rooms[2];
    wait_for(wait, || async {
        !is_member(&far, owner, &room.guild, &mallory.user_id()).await
    })
    .await;
    assert!(notices(&far)[0].3, "applied on far");
}
