//! What people keep about each other (docs/PEOPLE.md) over gRPC: private notes; friend requests,
//! friendships and blocks with what a block refuses (on one node, across nodes as signed
//! statements, and a DM invite from another node); recent mentions paged, removed and acknowledged; and every refusal.

mod common;

use common::*;
use guildhall::proto::guildhall::v1 as pb;
use pb::stream_response::Event;
use tonic::Code;

async fn set_note(
    node: &TestNode,
    token: &str,
    user_id: &str,
    note: &str,
) -> Result<pb::UserNote, tonic::Status> {
    node.client()
        .await
        .set_user_note(authed(
            token,
            pb::SetUserNoteRequest {
                user_id: user_id.into(),
                note: note.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn get_note(node: &TestNode, token: &str, user_id: &str) -> pb::UserNote {
    node.client()
        .await
        .get_user_note(authed(
            token,
            pb::GetUserNoteRequest {
                user_id: user_id.into(),
            },
        ))
        .await
        .expect("get note")
        .into_inner()
}

async fn list_notes(node: &TestNode, token: &str) -> Vec<(String, String)> {
    node.client()
        .await
        .list_user_notes(authed(token, pb::Empty {}))
        .await
        .expect("list notes")
        .into_inner()
        .notes
        .into_iter()
        .map(|n| (n.user_id, n.note))
        .collect()
}

#[tokio::test]
async fn notes_are_private_and_reach_the_keepers_other_sessions() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let cy = register(&node, "Cy").await;
    let mut ada_sees = subscribe(&node, &ada.token).await;

    let set = set_note(&node, &ada.token, &bob.user.id, "met at the\nmeetup")
        .await
        .expect("set");
    assert_eq!(set.note, "met at the\nmeetup");
    assert!(set.updated_at.is_some());
    let note = until(&mut ada_sees, |e| match e {
        Event::UserNoteUpdated(n) => Some(n.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (note.user_id.as_str(), note.note.as_str()),
        (bob.user.id.as_str(), "met at the\nmeetup")
    );
    set_note(&node, &ada.token, &cy.user.id, "owes me lunch")
        .await
        .expect("second note");
    assert_eq!(
        get_note(&node, &ada.token, &bob.user.id).await.note,
        "met at the\nmeetup"
    );
    let mut expected = vec![
        (bob.user.id.clone(), "met at the\nmeetup".to_owned()),
        (cy.user.id.clone(), "owes me lunch".to_owned()),
    ];
    expected.sort();
    assert_eq!(list_notes(&node, &ada.token).await, expected);

    // Nobody else sees them: Bob has no note about anyone, and none about Ada.
    assert!(list_notes(&node, &bob.token).await.is_empty());
    assert_eq!(get_note(&node, &bob.token, &ada.user.id).await.note, "");

    // Replacing and clearing.
    set_note(&node, &ada.token, &bob.user.id, "colleague")
        .await
        .expect("replace");
    assert_eq!(
        get_note(&node, &ada.token, &bob.user.id).await.note,
        "colleague"
    );
    let cleared = set_note(&node, &ada.token, &bob.user.id, "")
        .await
        .expect("clear");
    assert_eq!(cleared.note, "");
    assert!(cleared.updated_at.is_none());
    assert_eq!(
        list_notes(&node, &ada.token).await,
        vec![(cy.user.id.clone(), "owes me lunch".to_owned())]
    );

    // Refusals change nothing.
    assert_status(
        set_note(&node, &ada.token, &bob.user.id, &"x".repeat(257)).await,
        Code::InvalidArgument,
        "note: must be at most 256 characters",
    );
    assert_status(
        set_note(&node, &ada.token, &ada.user.id, "me").await,
        Code::InvalidArgument,
        "notes are about other users",
    );
    assert_status(
        set_note(&node, &ada.token, "not-a-key", "x").await,
        Code::InvalidArgument,
        "user_id",
    );
    let stranger = new_identity("phone").user_id();
    assert_status(
        set_note(&node, &ada.token, &stranger, "who?").await,
        Code::NotFound,
        "no such user",
    );
    assert_status(
        set_note(&node, &ada.token, &cy.user.id, "bell\u{7}").await,
        Code::InvalidArgument,
        "note",
    );
    assert_eq!(
        list_notes(&node, &ada.token).await,
        vec![(cy.user.id.clone(), "owes me lunch".to_owned())]
    );
}

async fn relate(
    node: &TestNode,
    token: &str,
    user_id: &str,
    verb: &str,
) -> Result<pb::RelationshipType, tonic::Status> {
    let mut c = node.client().await;
    let request = || {
        authed(
            token,
            pb::RelationshipRequest {
                user_id: user_id.into(),
                ..Default::default()
            },
        )
    };
    let none = |_| pb::RelationshipType::None;
    let kind = |r: tonic::Response<pb::Relationship>| {
        pb::RelationshipType::try_from(r.into_inner().r#type).expect("a relationship type")
    };
    match verb {
        "request" => c.send_friend_request(request()).await.map(kind),
        "accept" => c.accept_friend_request(request()).await.map(kind),
        "decline" => c.decline_friend_request(request()).await.map(none),
        "cancel" => c.cancel_friend_request(request()).await.map(none),
        "unfriend" => c.remove_friend(request()).await.map(none),
        "block" => c.block_user(request()).await.map(kind),
        "unblock" => c.unblock_user(request()).await.map(none),
        other => panic!("no verb {other}"),
    }
}

/// `token`'s relationships: (other user, type).
async fn relationships(node: &TestNode, token: &str) -> Vec<(String, pb::RelationshipType)> {
    node.client()
        .await
        .list_relationships(authed(token, pb::Empty {}))
        .await
        .expect("list")
        .into_inner()
        .relationships
        .into_iter()
        .map(|r| {
            (
                r.user_id,
                pb::RelationshipType::try_from(r.r#type).expect("type"),
            )
        })
        .collect()
}

/// Waits for the next `relationship_updated` on `stream`: (other user, type).
async fn next_relationship(
    stream: &mut tonic::codec::Streaming<pb::StreamResponse>,
) -> (String, pb::RelationshipType) {
    until(stream, |e| match e {
        Event::RelationshipUpdated(r) => Some((
            r.user_id.clone(),
            pb::RelationshipType::try_from(r.r#type).expect("type"),
        )),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn friend_requests_are_sent_answered_and_both_sides_are_told() {
    use pb::RelationshipType as T;
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let (a, b) = (ada.user.id.clone(), bob.user.id.clone());
    let mut ada_sees = subscribe(&node, &ada.token).await;
    let mut bob_sees = subscribe(&node, &bob.token).await;

    // Ada asks, Bob declines.
    assert_eq!(
        relate(&node, &ada.token, &b, "request").await.expect("ask"),
        T::PendingOutgoing
    );
    assert_eq!(
        next_relationship(&mut ada_sees).await,
        (b.clone(), T::PendingOutgoing)
    );
    assert_eq!(
        next_relationship(&mut bob_sees).await,
        (a.clone(), T::PendingIncoming)
    );
    assert_eq!(
        relationships(&node, &bob.token).await,
        vec![(a.clone(), T::PendingIncoming)]
    );
    // Asking twice changes nothing.
    assert_eq!(
        relate(&node, &ada.token, &b, "request")
            .await
            .expect("again"),
        T::PendingOutgoing
    );
    relate(&node, &bob.token, &a, "decline")
        .await
        .expect("decline");
    assert_eq!(next_relationship(&mut bob_sees).await, (a.clone(), T::None));
    assert_eq!(next_relationship(&mut ada_sees).await, (b.clone(), T::None));
    assert!(relationships(&node, &ada.token).await.is_empty());

    // Ada asks and withdraws.
    relate(&node, &ada.token, &b, "request").await.expect("ask");
    relate(&node, &ada.token, &b, "cancel")
        .await
        .expect("cancel");
    assert!(relationships(&node, &bob.token).await.is_empty());

    // Ada asks, Bob accepts: friends on both sides.
    relate(&node, &ada.token, &b, "request").await.expect("ask");
    assert_eq!(
        relate(&node, &bob.token, &a, "accept")
            .await
            .expect("accept"),
        T::Friend
    );
    assert_eq!(
        relationships(&node, &ada.token).await,
        vec![(b.clone(), T::Friend)]
    );
    assert_eq!(
        relationships(&node, &bob.token).await,
        vec![(a.clone(), T::Friend)]
    );
    assert_status(
        relate(&node, &ada.token, &b, "request").await,
        Code::AlreadyExists,
        "friends already",
    );
    // Either ends it, for both.
    relate(&node, &bob.token, &a, "unfriend")
        .await
        .expect("unfriend");
    assert!(relationships(&node, &ada.token).await.is_empty());

    // Two requests crossing make friends.
    relate(&node, &ada.token, &b, "request").await.expect("ask");
    assert_eq!(
        relate(&node, &bob.token, &a, "request")
            .await
            .expect("ask back"),
        T::Friend
    );

    // Refusals change nothing.
    assert_status(
        relate(&node, &ada.token, &a, "request").await,
        Code::InvalidArgument,
        "another user",
    );
    assert_status(
        relate(&node, &ada.token, "zz", "request").await,
        Code::InvalidArgument,
        "user_id",
    );
    let nobody = new_identity("phone").user_id();
    assert_status(
        relate(&node, &ada.token, &nobody, "request").await,
        Code::NotFound,
        "not a user this server knows",
    );
    assert_status(
        relate(&node, &ada.token, &b, "accept").await,
        Code::NotFound,
        "no friend request",
    );
    assert_status(
        relate(&node, &ada.token, &b, "decline").await,
        Code::NotFound,
        "no friend request",
    );
    assert_status(
        relate(&node, &ada.token, &b, "cancel").await,
        Code::NotFound,
        "no friend request",
    );
    assert_status(
        relate(&node, &ada.token, &b, "unblock").await,
        Code::NotFound,
        "not blocked",
    );
    assert_eq!(
        relationships(&node, &ada.token).await,
        vec![(b.clone(), T::Friend)]
    );
}

#[tokio::test]
async fn a_block_ends_the_friendship_and_refuses_requests_dms_and_their_messages() {
    use pb::RelationshipType as T;
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let (a, b) = (ada.user.id.clone(), bob.user.id.clone());
    // A DM opened before the block.
    let dm = create_dm(&node, &ada, &b).await;
    let dm_guild = dm.guild.expect("dm guild").id;
    let bob_in_dm = join_room(&node, &bob, &dm.token).await;
    let dm_channel = node
        .client()
        .await
        .list_channels(authed(
            &ada.token,
            pb::ListChannelsRequest {
                guild_id: dm_guild.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels[0]
        .id
        .clone();
    send_text(&node, &bob_in_dm, &dm_channel, "hi before").await;
    relate(&node, &ada.token, &b, "request").await.expect("ask");
    relate(&node, &bob.token, &a, "accept")
        .await
        .expect("friends");
    let mut bob_sees = subscribe(&node, &bob.token).await;

    assert_eq!(
        relate(&node, &ada.token, &b, "block").await.expect("block"),
        T::Blocked
    );
    // Bob learns the friendship ended, not that he is blocked.
    assert_eq!(next_relationship(&mut bob_sees).await, (a.clone(), T::None));
    assert_eq!(
        relationships(&node, &ada.token).await,
        vec![(b.clone(), T::Blocked)]
    );
    assert!(relationships(&node, &bob.token).await.is_empty());

    assert_status(
        relate(&node, &bob.token, &a, "request").await,
        Code::FailedPrecondition,
        "does not take friend requests from you",
    );
    assert_status(
        relate(&node, &ada.token, &b, "request").await,
        Code::FailedPrecondition,
        "you blocked this user",
    );
    assert_status(
        node.client()
            .await
            .send_message(authed(
                &bob_in_dm,
                pb::SendMessageRequest {
                    channel_id: dm_channel.clone(),
                    text: "hello?".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::FailedPrecondition,
        "blocked",
    );
    // A new DM either way is refused.
    let cy = register(&node, "Cy").await;
    relate(&node, &ada.token, &cy.user.id, "block")
        .await
        .expect("block Cy");
    assert_status(
        node.client()
            .await
            .create_dm(authed(
                &cy.token,
                pb::CreateDmRequest {
                    target_user_id: a.clone(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "blocked",
    );

    // Unblocking lifts it: they may talk and ask again.
    relate(&node, &ada.token, &b, "unblock")
        .await
        .expect("unblock");
    assert_eq!(
        relationships(&node, &ada.token).await,
        vec![(cy.user.id.clone(), T::Blocked)]
    );
    send_text(&node, &bob_in_dm, &dm_channel, "hi again").await;
    relate(&node, &bob.token, &a, "request")
        .await
        .expect("ask again");
}

/// A user of another node, blocked by Bob at his homeserver, can't reach him with a DM invite:
/// the homeserver holds the block and refuses the host's delivery (final, so the host's outbox
/// gives it up); once unblocked, the same invite is taken.
#[tokio::test]
async fn a_dm_invite_from_a_blocked_user_is_refused_at_the_targets_homeserver() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    // B has never seen Ada: a block may name any user key.
    assert_eq!(
        relate(&b, &bob.token, &ada.user.id, "block")
            .await
            .expect("block a user of another node"),
        pb::RelationshipType::Blocked
    );
    let reply = a
        .client()
        .await
        .create_dm(authed(
            &ada.token,
            pb::CreateDmRequest {
                target_user_id: bob.user.id.clone(),
            },
        ))
        .await
        .expect("create DM")
        .into_inner();
    let mut invite = pb::DmInvite {
        token: reply.token,
        guild_id: reply.guild.expect("guild").id,
        host_server_url: a.address(),
        timestamp: guildhall::identity::freshness::now_ms(),
        target_user_id: bob.user.id.clone(),
        ..Default::default()
    };
    ada.identity
        .sign_dm_invite(&b.audience(), &mut invite)
        .expect("target is a key");
    let deliver = || async {
        a.federation_client(&b)
            .await
            .receive_dm_invite(pb::ReceiveDmInviteRequest {
                invite: Some(invite.clone()),
            })
            .await
    };
    assert_status(
        deliver().await,
        Code::FailedPrecondition,
        "does not take DM invites from the inviter",
    );
    let listed = || async {
        b.client()
            .await
            .list_dm_invites(authed(&bob.token, pb::ListDmInvitesRequest {}))
            .await
            .expect("list")
            .into_inner()
            .invites
    };
    assert!(listed().await.is_empty(), "nothing reached Bob");

    relate(&b, &bob.token, &ada.user.id, "unblock")
        .await
        .expect("unblock");
    deliver().await.expect("taken once unblocked");
    assert_eq!(listed().await.len(), 1);
}

async fn mentions_page(
    node: &TestNode,
    token: &str,
    before: &str,
    limit: i32,
    guild: &str,
) -> (Vec<String>, String) {
    let page = node
        .client()
        .await
        .list_recent_mentions(authed(
            token,
            pb::ListRecentMentionsRequest {
                before_message_id: before.into(),
                limit,
                guild_id: guild.into(),
            },
        ))
        .await
        .expect("recent mentions")
        .into_inner();
    (
        page.messages.into_iter().map(|m| m.text).collect(),
        page.next_before_message_id,
    )
}

#[tokio::test]
async fn recent_mentions_gather_user_role_and_everyone_mentions_page_and_leave_the_list() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Hall").await;
    let other = create_room(&node, &ada, "Annex").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    join_room(&node, &bob, &other.invite).await;
    let mut c = node.client().await;
    let role = c
        .create_role(authed(
            &ada.token,
            pb::CreateRoleRequest {
                guild_id: room.guild.clone(),
                name: "crew".into(),
                position: 1,
                ..Default::default()
            },
        ))
        .await
        .expect("role")
        .into_inner();
    c.assign_role(authed(
        &ada.token,
        pb::AssignRoleRequest {
            guild_id: room.guild.clone(),
            user_id: bob.user.id.clone(),
            role_id: role.id.clone(),
        },
    ))
    .await
    .expect("assign");

    let b = format!("<@{}>", bob.user.id);
    send_text(&node, &ada.token, &room.channel, &format!("one {b}")).await;
    send_text(&node, &ada.token, &room.channel, "nobody").await;
    send_text(
        &node,
        &ada.token,
        &room.channel,
        &format!("two <@&{}>", role.id),
    )
    .await;
    send_text(
        &node,
        &ada.token,
        &other.channel,
        &format!("three <@&{}>", other.guild),
    )
    .await;
    // His own mention of himself is not news to him.
    send_text(&node, &bob_token, &room.channel, &format!("me {b}")).await;
    let four = send_text(&node, &ada.token, &room.channel, "four").await;
    // An edit that adds a mention counts; one that takes it away removes it.
    node.client()
        .await
        .edit_message(authed(
            &ada.token,
            pb::EditMessageRequest {
                channel_id: room.channel.clone(),
                message_id: four.id.clone(),
                text: format!("four {b}"),
            },
        ))
        .await
        .expect("edit");

    let all = mentions_page(&node, &bob.token, "", 0, "").await.0;
    assert_eq!(
        all,
        vec![
            format!("four {b}"),
            "three <@&".to_owned() + &other.guild + ">",
            format!("two <@&{}>", role.id),
            format!("one {b}"),
        ]
    );
    // Paged, two at a time, without gaps.
    let (first, next) = mentions_page(&node, &bob.token, "", 2, "").await;
    let (second, _) = mentions_page(&node, &bob.token, &next, 2, "").await;
    assert_eq!([first, second].concat(), all);
    // One guild only.
    assert_eq!(
        mentions_page(&node, &bob.token, "", 0, &other.guild)
            .await
            .0,
        vec!["three <@&".to_owned() + &other.guild + ">"]
    );
    // Ada, who sent them, has none.
    assert!(
        mentions_page(&node, &ada.token, "", 0, "")
            .await
            .0
            .is_empty()
    );

    // Removing one, acknowledging the rest up to a message.
    node.client()
        .await
        .remove_recent_mention(authed(
            &bob.token,
            pb::RemoveRecentMentionRequest {
                message_id: four.id.clone(),
            },
        ))
        .await
        .expect("remove");
    assert_eq!(mentions_page(&node, &bob.token, "", 0, "").await.0.len(), 3);
    let page = node
        .client()
        .await
        .list_recent_mentions(authed(&bob.token, pb::ListRecentMentionsRequest::default()))
        .await
        .expect("page")
        .into_inner();
    let two_id = page.messages[1].id.clone();
    node.client()
        .await
        .ack_recent_mentions(authed(
            &bob.token,
            pb::AckRecentMentionsRequest {
                through_message_id: two_id,
            },
        ))
        .await
        .expect("ack");
    assert_eq!(
        mentions_page(&node, &bob.token, "", 0, "").await.0,
        vec!["three <@&".to_owned() + &other.guild + ">"]
    );

    // A blocked sender's mentions are left out; so are guilds he left.
    let cy = register(&node, "Cy").await;
    let cy_token = join_room(&node, &cy, &other.invite).await;
    send_text(&node, &cy_token, &other.channel, &format!("psst {b}")).await;
    assert_eq!(mentions_page(&node, &bob.token, "", 0, "").await.0.len(), 2);
    relate(&node, &bob.token, &cy.user.id, "block")
        .await
        .expect("block");
    assert_eq!(mentions_page(&node, &bob.token, "", 0, "").await.0.len(), 1);
    node.client()
        .await
        .leave_guild(authed(
            &bob.token,
            pb::LeaveGuildRequest {
                guild_id: other.guild.clone(),
            },
        ))
        .await
        .expect("leave");
    assert!(
        mentions_page(&node, &bob.token, "", 0, "")
            .await
            .0
            .is_empty()
    );

    assert_status(
        node.client()
            .await
            .list_recent_mentions(authed(
                &bob.token,
                pb::ListRecentMentionsRequest {
                    before_message_id: "x".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "before_message_id",
    );
}

/// A relationship method towards a user of another node: `user` signs a `relationship`
/// statement with `action` for `signed_for`'s key and calls `verb` on `node`, naming `home` as
/// the other user's homeserver.
async fn relate_across(
    node: &TestNode,
    user: &TestUser,
    other_id: &str,
    (verb, action): (&str, &str),
    home: &TestNode,
    signed_for: &TestNode,
) -> Result<pb::RelationshipType, tonic::Status> {
    let statement = user
        .identity
        .sign_relationship(
            &signed_for.audience(),
            other_id,
            action,
            &node.address(),
            guildhall::identity::freshness::now_ms(),
        )
        .expect("a key");
    relate_with(
        node,
        &user.token,
        verb,
        pb::RelationshipRequest {
            user_id: other_id.into(),
            statement: Some(statement),
            homeserver_url: home.address(),
        },
    )
    .await
}

/// `verb` with the whole `request`.
async fn relate_with(
    node: &TestNode,
    token: &str,
    verb: &str,
    request: pb::RelationshipRequest,
) -> Result<pb::RelationshipType, tonic::Status> {
    let mut c = node.client().await;
    let request = authed(token, request);
    let none = |_| pb::RelationshipType::None;
    let kind = |r: tonic::Response<pb::Relationship>| {
        pb::RelationshipType::try_from(r.into_inner().r#type).expect("a relationship type")
    };
    match verb {
        "request" => c.send_friend_request(request).await.map(kind),
        "accept" => c.accept_friend_request(request).await.map(kind),
        "unfriend" => c.remove_friend(request).await.map(none),
        "block" => c.block_user(request).await.map(kind),
        other => panic!("no verb {other}"),
    }
}

/// Friends across nodes: Ada (node A) asks Bob (node B) with her signed statement, which A
/// checks and queues for B and B checks again; Bob accepts the same way; each homeserver keeps
/// its own user's side and tells them. Bob's block ends the friendship on Ada's side as a plain
/// `remove`, and B then refuses her new request, which stays pending on A only. Every refusal:
/// no statement, one for the wrong server, one naming someone else, a forged delivery, a
/// delivery from a server that is not the signer's homeserver, and a replay.
#[tokio::test]
async fn friend_requests_and_blocks_cross_nodes_as_signed_statements() {
    use pb::RelationshipType as T;
    let (a, b) = (
        TestNode::spawn_fast_outbox().await,
        TestNode::spawn_fast_outbox().await,
    );
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    let (ada_id, bob_id) = (ada.user.id.clone(), bob.user.id.clone());
    let mut ada_sees = subscribe(&a, &ada.token).await;
    let mut bob_sees = subscribe(&b, &bob.token).await;

    // A has never met Bob: without his homeserver it can't place him; without a statement it
    // can't tell B; a statement for A's own key or about someone else is refused.
    assert_status(
        relate(&a, &ada.token, &bob_id, "request").await,
        Code::NotFound,
        "give their homeserver_url",
    );
    let unsigned = pb::RelationshipRequest {
        user_id: bob_id.clone(),
        statement: None,
        homeserver_url: b.address(),
    };
    assert_status(
        relate_with(&a, &ada.token, "request", unsigned).await,
        Code::InvalidArgument,
        "statement: is required",
    );
    assert_status(
        relate_across(&a, &ada, &bob_id, ("request", "request"), &b, &a).await,
        Code::Unauthenticated,
        "statement.signature",
    );
    assert_status(
        relate_across(&a, &ada, &bob_id, ("request", "accept"), &b, &b).await,
        Code::InvalidArgument,
        "statement.action",
    );
    assert!(relationships(&a, &ada.token).await.is_empty());

    // Ada asks; B hears it from A's outbox and tells Bob.
    assert_eq!(
        relate_across(&a, &ada, &bob_id, ("request", "request"), &b, &b)
            .await
            .expect("ask across nodes"),
        T::PendingOutgoing
    );
    assert_eq!(
        next_relationship(&mut ada_sees).await,
        (bob_id.clone(), T::PendingOutgoing)
    );
    assert_eq!(
        next_relationship(&mut bob_sees).await,
        (ada_id.clone(), T::PendingIncoming)
    );

    // Bob accepts; B knows where Ada lives from her statement's delivery.
    let accept = bob
        .identity
        .sign_relationship(
            &a.audience(),
            &ada_id,
            "accept",
            &b.address(),
            guildhall::identity::freshness::now_ms(),
        )
        .expect("a key");
    let accepted = relate_with(
        &b,
        &bob.token,
        "accept",
        pb::RelationshipRequest {
            user_id: ada_id.clone(),
            statement: Some(accept.clone()),
            homeserver_url: String::new(),
        },
    )
    .await
    .expect("accept across nodes");
    assert_eq!(accepted, T::Friend);
    assert_eq!(
        next_relationship(&mut ada_sees).await,
        (bob_id.clone(), T::Friend)
    );
    assert_eq!(
        relationships(&a, &ada.token).await,
        vec![(bob_id.clone(), T::Friend)]
    );

    // Bob blocks Ada: she hears the friendship ended, not why.
    assert_eq!(
        relate_across(&b, &bob, &ada_id, ("block", "remove"), &a, &a)
            .await
            .expect("block across nodes"),
        T::Blocked
    );
    assert_eq!(
        next_relationship(&mut ada_sees).await,
        (bob_id.clone(), T::None)
    );
    assert!(relationships(&a, &ada.token).await.is_empty());

    // Replaying Bob's older accept changes nothing (it is not newer than his remove).
    b.federation_client(&a)
        .await
        .receive_relationship(accept)
        .await
        .expect("a replay is taken and ignored");
    assert!(relationships(&a, &ada.token).await.is_empty());

    // Her new request is taken by A and refused by B, which holds Bob's block; a direct
    // delivery shows the refusal.
    let request = ada
        .identity
        .sign_relationship(
            &b.audience(),
            &bob_id,
            "request",
            &a.address(),
            guildhall::identity::freshness::now_ms(),
        )
        .expect("a key");
    assert_eq!(
        relate_with(
            &a,
            &ada.token,
            "request",
            pb::RelationshipRequest {
                user_id: bob_id.clone(),
                statement: Some(request.clone()),
                homeserver_url: String::new(),
            },
        )
        .await
        .expect("A takes it"),
        T::PendingOutgoing
    );
    a.outbox_drained(std::time::Duration::from_secs(20)).await;
    assert_status(
        a.federation_client(&b)
            .await
            .receive_relationship(request.clone())
            .await,
        Code::FailedPrecondition,
        "does not take friend requests",
    );
    assert_eq!(
        relationships(&b, &bob.token).await,
        vec![(ada_id.clone(), T::Blocked)]
    );

    // Forged: a server that is not Ada's homeserver delivering her statement; a statement
    // signed for A delivered to B.
    let c = TestNode::spawn().await;
    assert_status(
        c.federation_client(&b)
            .await
            .receive_relationship(request)
            .await,
        Code::PermissionDenied,
        "homeserver_url",
    );
    let for_a = ada
        .identity
        .sign_relationship(
            &a.audience(),
            &bob_id,
            "remove",
            &a.address(),
            guildhall::identity::freshness::now_ms(),
        )
        .expect("a key");
    assert_status(
        a.federation_client(&b)
            .await
            .receive_relationship(for_a)
            .await,
        Code::Unauthenticated,
        "statement.signature",
    );
}

/// Relationships are kept at one's homeserver: one made with a session on a host is refused;
/// removing a friendship that does not exist is refused.
#[tokio::test]
async fn relationships_from_host_sessions_and_of_nothing_are_refused() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let ada = register(&a, "Ada").await;
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Hall").await;
    let bob = register(&b, "Bob").await;
    let bob_on_a = remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("Bob joins A from B")
        .token;
    assert_status(
        relate(&a, &bob_on_a, &ada.user.id, "request").await,
        Code::FailedPrecondition,
        "kept at your homeserver",
    );
    assert_status(
        relate(&a, &ada.token, &owner.user.id, "unfriend").await,
        Code::NotFound,
        "not your friend",
    );
    assert!(relationships(&a, &ada.token).await.is_empty());
}

#[tokio::test]
async fn a_blocked_senders_guild_messages_stay_and_are_flagged_for_the_blocker_only() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let cy = register(&node, "Cy").await;
    let room = create_room(&node, &ada, "Room").await;
    join_room(&node, &bob, &room.invite).await;
    join_room(&node, &cy, &room.invite).await;
    let said = send_text(&node, &bob.token, &room.channel, "pineapple on pizza").await;
    send_text(&node, &cy.token, &room.channel, "pineapple? no").await;
    relate(&node, &ada.token, &bob.user.id, "block")
        .await
        .expect("block");

    let flags = |token: String| {
        let node = &node;
        let channel = room.channel.clone();
        async move {
            let mut c = node.client().await;
            let history = c
                .get_history(authed(
                    &token,
                    pb::GetHistoryRequest {
                        channel_id: channel.clone(),
                        limit: 50,
                        ..Default::default()
                    },
                ))
                .await
                .expect("history")
                .into_inner()
                .messages;
            let search = c
                .search_messages(authed(
                    &token,
                    pb::SearchMessagesRequest {
                        channel_id: channel,
                        query: "pineapple".into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("search")
                .into_inner()
                .messages;
            let flagged = |ms: &[pb::Message]| {
                let mut f: Vec<(String, bool)> = ms
                    .iter()
                    .filter(|m| m.action.is_none())
                    .map(|m| (m.text.clone(), m.sender_blocked))
                    .collect();
                f.sort();
                f
            };
            (flagged(&history), flagged(&search))
        }
    };
    let expected_for_ada = vec![
        ("pineapple on pizza".to_owned(), true),
        ("pineapple? no".to_owned(), false),
    ];
    let (history, search) = flags(ada.token.clone()).await;
    assert_eq!(history, expected_for_ada, "still there, flagged");
    assert_eq!(search, expected_for_ada);
    let (history, _) = flags(cy.token.clone()).await;
    assert!(
        history.iter().all(|(_, blocked)| !blocked),
        "only for the blocker"
    );
    assert!(history.iter().any(|(text, _)| *text == said.text));
}

/// `@everyone` notifies only from a sender holding `messages.mention_everyone`: a plain member's
/// `<@&GUILD_ID>` is sent with its text but mentions no one, and counts once a role grants it.
#[tokio::test]
async fn everyone_mentions_need_the_mention_everyone_permission() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Hall").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    let everyone = format!("all of you <@&{}>", room.guild);

    let sent = send_text(&node, &bob_token, &room.channel, &everyone).await;
    assert_eq!(sent.text, everyone, "the text is kept");
    assert!(sent.mentioned_role_ids.is_empty(), "the mention is dropped");
    assert!(
        mentions_page(&node, &ada.token, "", 0, "")
            .await
            .0
            .is_empty()
    );

    grant(
        &node,
        &ada.token,
        &room.guild,
        &bob.user.id,
        &["messages.mention_everyone"],
    )
    .await;
    let sent = send_text(&node, &bob_token, &room.channel, &everyone).await;
    assert_eq!(sent.mentioned_role_ids, vec![room.guild.clone()]);
    assert_eq!(
        mentions_page(&node, &ada.token, "", 0, "").await.0,
        vec![everyone]
    );
}

/// A member from another node gathers their mentions through their homeserver: B asks host A
/// with Bob's session there and streams A's answer; a server that can't be reached answers with
/// an error and holds nothing up.
#[tokio::test]
async fn recent_mentions_on_other_servers_come_through_the_homeserver() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let ada = register(&a, "Ada").await;
    let room = create_room(&a, &ada, "Hall").await;
    let bob = register(&b, "Bob").await;
    let bob_on_a = remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("Bob joins A from B")
        .token;
    let text = format!("look <@{}>", bob.user.id);
    send_text(&a, &ada.token, &room.channel, &text).await;
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut stream = b
        .client()
        .await
        .proxied_recent_mentions(authed(
            &bob.token,
            pb::ProxiedRecentMentionsRequest {
                queries: vec![
                    pb::ServerQuery {
                        url: a.address(),
                        token: bob_on_a,
                    },
                    pb::ServerQuery {
                        url: dead.clone(),
                        token: "t".into(),
                    },
                ],
                limit: 10,
            },
        ))
        .await
        .expect("ProxiedRecentMentions")
        .into_inner();
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(
            tokio::time::timeout(std::time::Duration::from_secs(15), stream.message())
                .await
                .expect("an answer in time")
                .expect("stream ok")
                .expect("an answer"),
        );
    }
    let at_a = answers.iter().find(|r| r.server == a.address()).expect("A");
    assert_eq!(at_a.error, None);
    assert_eq!(
        at_a.messages
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        vec![text.as_str()]
    );
    let at_dead = answers.iter().find(|r| r.server == dead).expect("dead");
    assert!(at_dead.error.is_some() && at_dead.messages.is_empty());
}

/// `User.status` in `GetUsers` is the presence word of users whose presence the caller may see
/// (co-members and themselves), and empty for anyone else.
#[tokio::test]
async fn get_users_shows_the_status_of_co_members_only() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let cy = register(&node, "Cy").await;
    let room = create_room(&node, &ada, "Hall").await;
    join_room(&node, &bob, &room.invite).await;
    let mut c = node.client().await;
    for who in [&bob, &cy] {
        c.update_presence(authed(
            &who.token,
            pb::UpdatePresenceRequest {
                status: pb::PresenceStatus::Busy as i32,
                active_call_channel_id: String::new(),
            },
        ))
        .await
        .expect("presence");
    }
    let users = c
        .get_users(authed(
            &ada.token,
            pb::GetUsersRequest {
                user_ids: vec![ada.user.id.clone(), bob.user.id.clone(), cy.user.id.clone()],
                ..Default::default()
            },
        ))
        .await
        .expect("users")
        .into_inner()
        .users;
    let status = |id: &str| {
        users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.status.clone())
            .expect("listed")
    };
    assert_eq!(status(&bob.user.id), "busy");
    assert_eq!(status(&ada.user.id), "offline", "never seen online");
    assert_eq!(status(&cy.user.id), "", "shares no guild with Ada");
}

/// Every refusal of a relationship statement, at the sender's homeserver and at the other
/// user's: someone else's statement, one about another user, one naming another homeserver, a
/// stale one; and on delivery an unknown action, a statement about a user who does not live
/// there, one by a user who does, and an accept of a request never made.
#[tokio::test]
async fn relationship_statement_refusals_at_both_ends() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    let cy = register(&b, "Cy").await;
    let now = guildhall::identity::freshness::now_ms();
    let sign = |who: &TestUser, about: &str, action: &str, home: &str, at: u64| {
        who.identity
            .sign_relationship(&b.audience(), about, action, home, at)
            .expect("a key")
    };
    let request = |statement| pb::RelationshipRequest {
        user_id: bob.user.id.clone(),
        statement: Some(statement),
        homeserver_url: b.address(),
    };
    for (statement, field) in [
        (
            sign(&cy, &bob.user.id, "request", &a.address(), now),
            "statement.user_id",
        ),
        (
            sign(&ada, &cy.user.id, "request", &a.address(), now),
            "statement.other_user_id",
        ),
        (
            sign(&ada, &bob.user.id, "request", &b.address(), now),
            "statement.homeserver_url",
        ),
        (
            sign(&ada, &bob.user.id, "request", &a.address(), now - 3_600_000),
            "statement.timestamp",
        ),
    ] {
        assert_status(
            relate_with(&a, &ada.token, "request", request(statement)).await,
            Code::InvalidArgument,
            field,
        );
    }
    assert!(relationships(&a, &ada.token).await.is_empty());

    let deliver = |statement: pb::RelationshipStatement| async {
        a.federation_client(&b)
            .await
            .receive_relationship(statement)
            .await
    };
    let mut hug = sign(&ada, &bob.user.id, "request", &a.address(), now);
    hug.action = "hug".into();
    assert_status(deliver(hug).await, Code::InvalidArgument, "action");
    let nobody = new_identity("phone").user_id();
    assert_status(
        deliver(sign(&ada, &nobody, "request", &a.address(), now)).await,
        Code::NotFound,
        "other_user_id: not a user of this server",
    );
    assert_status(
        deliver(sign(&cy, &bob.user.id, "request", &a.address(), now)).await,
        Code::PermissionDenied,
        "user_id: a user of this server",
    );
    assert_status(
        deliver(sign(&ada, &bob.user.id, "accept", &a.address(), now)).await,
        Code::FailedPrecondition,
        "sent the signer no friend request",
    );
    assert!(relationships(&b, &bob.token).await.is_empty());
}
