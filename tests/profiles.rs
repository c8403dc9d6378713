//! Profiles (docs/PEOPLE.md, "Profiles"): pronouns, banner and accent colour in the signed
//! `update-user-v2` statement, on the homeserver and at a host of the user; usernames and their
//! lookup; `GetUserProfile` with mutual guilds and friends; per-guild nicknames; every refusal.

mod common;

use common::*;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use pb::stream_response::Event;
use tonic::Code;

/// `who`'s signed profile change made by `edit` (signed as the fields it sets require).
fn signed(who: &TestUser, edit: impl FnOnce(&mut pb::UpdateUserRequest)) -> pb::UpdateUserRequest {
    let mut update = pb::UpdateUserRequest {
        timestamp: now_ms(),
        ..Default::default()
    };
    edit(&mut update);
    who.identity.sign_update(&mut update);
    update
}

async fn update(
    node: &TestNode,
    who: &TestUser,
    request: pb::UpdateUserRequest,
) -> Result<pb::User, tonic::Status> {
    node.client()
        .await
        .update_user(authed(&who.token, request))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn pronouns_banner_and_accent_colour_are_signed_and_reach_the_users_hosts() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Profiles").await;
    let bob = register(&b, "Bob").await;
    remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("remote join");
    let mut owner_sees = subscribe(&a, &owner.token).await;
    // The legacy K_dev field: the asking device's key in answers about oneself, empty for others.
    assert_eq!(bob.user.public_key, bob.identity.device().device_key_hex());
    assert!(
        get_user(&a, &owner.token, &bob.user.id)
            .await
            .public_key
            .is_empty()
    );

    let set = update(
        &b,
        &bob,
        signed(&bob, |u| {
            u.pronouns = Some("  he/him ".into());
            u.banner_url = Some("https://cdn.example/banner.png".into());
            u.accent_color = Some("#FF8800".into());
        }),
    )
    .await
    .expect("a v2 profile change");
    assert_eq!(
        (
            set.pronouns.as_str(),
            set.banner_url.as_str(),
            set.accent_color
        ),
        ("he/him", "https://cdn.example/banner.png", Some(0xff8800))
    );

    // The host checks Bob's own signature and shows the same profile.
    let seen = until(&mut owner_sees, |e| match e {
        Event::UserUpdated(u) => u.user.clone().filter(|u| u.id == bob.user.id),
        _ => None,
    })
    .await;
    assert_eq!(
        (seen.pronouns.as_str(), seen.accent_color),
        ("he/him", Some(0xff8800))
    );
    assert_eq!(
        get_user(&a, &owner.token, &bob.user.id).await.banner_url,
        "https://cdn.example/banner.png"
    );

    // Clearing: empty pronouns and colour; the banner stays (absent leaves a field as it is).
    let cleared = update(
        &b,
        &bob,
        signed(&bob, |u| {
            u.pronouns = Some(String::new());
            u.accent_color = Some(String::new());
        }),
    )
    .await
    .expect("clear");
    assert_eq!(
        (
            cleared.pronouns.as_str(),
            cleared.accent_color,
            cleared.banner_url.as_str()
        ),
        ("", None, "https://cdn.example/banner.png")
    );

    // A forged forwarded change (pronouns altered after signing), from Bob's real homeserver.
    let mut forged = signed(&bob, |u| u.pronouns = Some("they/them".into()));
    forged.pronouns = Some("it/its".into());
    assert_status(
        b.federation_client(&a)
            .await
            .update_federated_profile(pb::UpdateFederatedProfileRequest {
                user_id: bob.user.id.clone(),
                update: Some(forged),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "update.signature",
    );
    assert_eq!(get_user(&a, &owner.token, &bob.user.id).await.pronouns, "");

    // Refusals at the homeserver, each changing nothing.
    let v1_with_pronouns = {
        let mut r = signed(&bob, |u| u.name = Some("Bob".into()));
        r.pronouns = Some("he/him".into());
        r.signature_version = 1;
        r
    };
    assert_status(
        update(&b, &bob, v1_with_pronouns).await,
        Code::InvalidArgument,
        "pronouns: is signed only by update-user-v2",
    );
    let v3 = {
        let mut r = signed(&bob, |u| u.name = Some("Bob".into()));
        r.signature_version = 3;
        r
    };
    assert_status(
        update(&b, &bob, v3).await,
        Code::InvalidArgument,
        "signature_version: must be 0, 1 or 2",
    );
    // A version-2 signature presented as version 1 covers other bytes (the label differs).
    let relabelled = {
        let mut r = signed(&bob, |u| {
            u.name = Some("Bobby".into());
            u.signature_version = 2;
        });
        r.signature_version = 1;
        r
    };
    assert_status(
        update(&b, &bob, relabelled).await,
        Code::Unauthenticated,
        "signature",
    );
    for (edit, field) in [
        (
            Box::new(|u: &mut pb::UpdateUserRequest| u.accent_color = Some("orange".into()))
                as Box<dyn Fn(&mut pb::UpdateUserRequest)>,
            "accent_color",
        ),
        (
            Box::new(|u: &mut pb::UpdateUserRequest| u.pronouns = Some("x".repeat(41))),
            "pronouns",
        ),
        (
            Box::new(|u: &mut pb::UpdateUserRequest| u.pronouns = Some("a\u{200B}b".into())),
            "pronouns",
        ),
        (
            Box::new(|u: &mut pb::UpdateUserRequest| u.banner_url = Some("ftp://x".into())),
            "banner_url",
        ),
    ] {
        assert_status(
            update(&b, &bob, signed(&bob, |u| edit(u))).await,
            Code::InvalidArgument,
            field,
        );
    }
    let now = get_user(&b, &bob.token, &bob.user.id).await;
    assert_eq!(
        (now.name.as_str(), now.pronouns.as_str(), now.accent_color),
        ("Bob", "", None)
    );
}

#[tokio::test]
async fn usernames_are_unique_reserved_and_found_by_lookup() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    update(
        &node,
        &ada,
        signed(&ada, |u| u.irc_name = Some("ada.l".into())),
    )
    .await
    .expect("claim a username");
    assert_status(
        update(
            &node,
            &bob,
            signed(&bob, |u| u.irc_name = Some("ada.l".into())),
        )
        .await,
        Code::AlreadyExists,
        "irc_name: already taken",
    );
    for (name, rule) in [
        ("everyone", "reserved"),
        ("here", "reserved"),
        ("the_guildhall_team", "guildhall"),
        ("Ada", "lowercase"),
        ("a..b", "consecutive periods"),
        ("a", "2-32"),
    ] {
        assert_status(
            update(
                &node,
                &bob,
                signed(&bob, |u| u.irc_name = Some(name.into())),
            )
            .await,
            Code::InvalidArgument,
            rule,
        );
    }

    let lookup = |name: &'static str| {
        let node = &node;
        let token = bob.token.clone();
        async move {
            node.client()
                .await
                .get_user_by_username(authed(
                    &token,
                    pb::GetUserByUsernameRequest {
                        username: name.into(),
                    },
                ))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let found = lookup("ada.l").await.expect("lookup");
    assert_eq!(
        (found.id, found.irc_name),
        (ada.user.id.clone(), "ada.l".into())
    );
    assert_status(lookup("nobody").await, Code::NotFound, "username");
    assert_status(lookup("Ada.L").await, Code::InvalidArgument, "username");

    // Giving the name up frees it for someone else.
    update(
        &node,
        &ada,
        signed(&ada, |u| u.irc_name = Some(String::new())),
    )
    .await
    .expect("clear");
    update(
        &node,
        &bob,
        signed(&bob, |u| u.irc_name = Some("ada.l".into())),
    )
    .await
    .expect("now free");
    assert_eq!(lookup("ada.l").await.expect("lookup").id, bob.user.id);
}

async fn relate(node: &TestNode, token: &str, user_id: &str, block: bool) {
    let mut c = node.client().await;
    let request = authed(
        token,
        pb::RelationshipRequest {
            user_id: user_id.into(),
            ..Default::default()
        },
    );
    if block {
        c.block_user(request).await.expect("block");
    } else {
        c.send_friend_request(request)
            .await
            .expect("friend request");
    }
}

async fn set_nick(
    node: &TestNode,
    token: &str,
    guild: &str,
    user_id: &str,
    nick: &str,
) -> Result<pb::GuildMemberSummary, tonic::Status> {
    node.client()
        .await
        .set_member_nickname(authed(
            token,
            pb::SetMemberNicknameRequest {
                guild_id: guild.into(),
                user_id: user_id.into(),
                nick: nick.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn profile(
    node: &TestNode,
    token: &str,
    user_id: &str,
    guild: &str,
) -> Result<pb::UserProfile, tonic::Status> {
    node.client()
        .await
        .get_user_profile(authed(
            token,
            pb::GetUserProfileRequest {
                user_id: user_id.into(),
                guild_id: guild.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn profiles_show_what_two_users_share_and_nicknames_follow_the_roles() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let cy = register(&node, "Cy").await;
    let shared = create_room(&node, &ada, "Shared").await;
    let alone = create_room(&node, &ada, "Ada only").await;
    join_room(&node, &bob, &shared.invite).await;
    join_room(&node, &cy, &shared.invite).await;
    let dm = create_dm(&node, &ada, &bob.user.id).await;
    // Cy is a friend of both Ada and Bob.
    for who in [&ada, &bob] {
        relate(&node, &who.token, &cy.user.id, false).await;
        node.client()
            .await
            .accept_friend_request(authed(
                &cy.token,
                pb::RelationshipRequest {
                    user_id: who.user.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("accept");
    }
    let mut ada_sees = subscribe(&node, &ada.token).await;

    // Bob names himself; members are told; the owner renames him; Cy (no permission) can't.
    let own = set_nick(&node, &bob.token, &shared.guild, "", "  Bobby  ")
        .await
        .expect("own nickname");
    assert_eq!(own.nick, "Bobby");
    let told = until(&mut ada_sees, |e| match e {
        Event::MemberUpdated(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    let member = told.member.expect("member");
    assert_eq!(
        (told.guild_id.as_str(), member.nick.as_str()),
        (shared.guild.as_str(), "Bobby")
    );
    assert_eq!(member.user.expect("user").id, bob.user.id);
    set_nick(&node, &ada.token, &shared.guild, &bob.user.id, "Robert")
        .await
        .expect("the owner sets another's nickname");
    assert_status(
        set_nick(&node, &cy.token, &shared.guild, &bob.user.id, "Bobo").await,
        Code::PermissionDenied,
        "members.nicknames",
    );
    assert_status(
        set_nick(&node, &bob.token, &shared.guild, &ada.user.id, "Boss").await,
        Code::PermissionDenied,
        "members.nicknames",
    );
    assert_status(
        set_nick(&node, &bob.token, &shared.guild, "", &"x".repeat(33)).await,
        Code::InvalidArgument,
        "nick",
    );
    assert_status(
        set_nick(&node, &bob.token, &shared.guild, "", "everyone").await,
        Code::InvalidArgument,
        "nick",
    );
    assert_status(
        set_nick(&node, &ada.token, &alone.guild, &bob.user.id, "Bob").await,
        Code::NotFound,
        "not a member",
    );
    assert_status(
        set_nick(&node, &ada.token, &dm.guild.expect("dm").id, "", "Me").await,
        Code::FailedPrecondition,
        "DM",
    );
    let listed = node
        .client()
        .await
        .list_guild_members(authed(
            &ada.token,
            pb::ListGuildMembersRequest {
                guild_id: shared.guild.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("members")
        .into_inner();
    let nick_of = |id: &str| {
        listed
            .members
            .iter()
            .find(|m| m.user.as_ref().is_some_and(|u| u.id == id))
            .map(|m| m.nick.clone())
    };
    assert_eq!(nick_of(&bob.user.id).as_deref(), Some("Robert"));
    assert_eq!(nick_of(&cy.user.id).as_deref(), Some(""));

    // Ada's view of Bob: the guild they share (not the DM, not Ada's own), Cy as mutual friend.
    let seen = profile(&node, &ada.token, &bob.user.id, "")
        .await
        .expect("profile");
    assert_eq!(seen.user.expect("user").id, bob.user.id);
    assert_eq!(
        seen.mutual_guilds
            .iter()
            .map(|g| (g.guild_id.as_str(), g.nick.as_str()))
            .collect::<Vec<_>>(),
        vec![(shared.guild.as_str(), "Robert")]
    );
    assert_eq!(seen.mutual_friends_count, 1);
    assert_eq!(seen.mutual_friends[0].id, cy.user.id);
    let in_guild = profile(&node, &ada.token, &bob.user.id, &shared.guild)
        .await
        .expect("profile in a guild");
    assert_eq!(in_guild.nick, "Robert");

    // Clearing the nickname; a profile in a guild the user is not in; a caller not in the guild.
    let cleared = set_nick(&node, &bob.token, &shared.guild, "", "")
        .await
        .expect("clear");
    assert_eq!(cleared.nick, "");
    assert_status(
        profile(&node, &ada.token, &bob.user.id, &alone.guild).await,
        Code::NotFound,
        "not a member",
    );
    assert_status(
        profile(&node, &bob.token, &ada.user.id, &alone.guild).await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        profile(&node, &ada.token, "zz", "").await,
        Code::InvalidArgument,
        "user_id",
    );
    let stranger = new_identity("phone");
    assert_status(
        profile(&node, &ada.token, &stranger.id_key.public().to_hex(), "").await,
        Code::NotFound,
        "user_id",
    );

    // Bob blocks Ada: she still sees his user record, but nothing they share.
    relate(&node, &bob.token, &ada.user.id, true).await;
    let blocked = profile(&node, &ada.token, &bob.user.id, "")
        .await
        .expect("profile");
    assert!(blocked.user.is_some());
    assert!(blocked.mutual_guilds.is_empty() && blocked.mutual_friends.is_empty());
    assert_eq!(blocked.mutual_friends_count, 0);
}
