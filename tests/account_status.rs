//! A user's own account statements (docs/PEOPLE.md, "Accounts"): disabling ends every session
//! and enabling lets the user back in; deleting wipes the profile, ends memberships, keeps the
//! messages under a tombstone and refuses the key from then on, on the homeserver, at the user's
//! hosts and at a host that was down when it happened; and every refusal.

mod common;

use std::time::Duration;

use common::*;
use guildhall::account_status::{self, Status};
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use pb::stream_response::Event;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

async fn set_status(
    node: &TestNode,
    statement: pb::AccountStatusStatement,
) -> Result<(), tonic::Status> {
    node.client()
        .await
        .set_account_status(statement)
        .await
        .map(|_| ())
}

fn statement(who: &TestUser, status: Status, at: u64) -> pb::AccountStatusStatement {
    account_status::sign(&who.identity.id_key, status, at)
}

async fn login(node: &TestNode, who: &TestUser) -> Result<pb::LoginResponse, tonic::Status> {
    node.client()
        .await
        .login(who.identity.login_request(&node.audience(), now_ms()))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn disabling_ends_every_session_until_the_user_enables_the_account() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &bob, "Room").await;
    join_room(&node, &ada, &room.invite).await;
    let mut bob_sees = subscribe(&node, &bob.token).await;
    let mut ada_sees = subscribe(&node, &ada.token).await;

    let disabled_at = now_ms();
    set_status(&node, statement(&ada, Status::Disabled, disabled_at))
        .await
        .expect("disable");
    let seen = until(&mut bob_sees, |e| match e {
        Event::UserUpdated(u) => u.user.clone().filter(|u| u.id == ada.user.id),
        _ => None,
    })
    .await;
    assert!(seen.is_disabled);
    // Ada's own open stream carries the news, then ends.
    let mut ended = None;
    for _ in 0..100 {
        match tokio::time::timeout(WAIT, ada_sees.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Err(status)) => {
                ended = Some(status);
                break;
            }
            other => panic!("the stream should end with a status, got {other:?}"),
        }
    }
    let ended = ended.expect("the disabled user's stream ends");
    assert_eq!(ended.code(), Code::Unauthenticated);
    assert!(
        ended.message().contains("disabled by its owner"),
        "{ended:?}"
    );
    assert_status(
        node.client()
            .await
            .get_my_data(authed(&ada.token, pb::Empty {}))
            .await,
        Code::Unauthenticated,
        "",
    );
    assert_status(
        login(&node, &ada).await,
        Code::FailedPrecondition,
        "disabled by its owner",
    );
    assert_status(
        node.client()
            .await
            .refresh(pb::RefreshRequest {
                refresh_token: ada.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "",
    );

    // The same statement again, and an older one, change nothing.
    assert_status(
        set_status(&node, statement(&ada, Status::Disabled, disabled_at)).await,
        Code::AlreadyExists,
        "timestamp",
    );
    assert_status(
        set_status(&node, statement(&ada, Status::Enabled, disabled_at - 1)).await,
        Code::AlreadyExists,
        "timestamp",
    );
    assert_status(
        login(&node, &ada).await,
        Code::FailedPrecondition,
        "disabled",
    );

    // Refusals: another key's signature, an unknown user, no status, a stale statement.
    let mut forged = statement(&ada, Status::Enabled, now_ms());
    forged.signature =
        account_status::sign(&SecretKey::generate(), Status::Enabled, forged.timestamp).signature;
    assert_status(
        set_status(&node, forged).await,
        Code::Unauthenticated,
        "signature",
    );
    let stranger = new_identity("phone");
    assert_status(
        set_status(
            &node,
            account_status::sign(&stranger.id_key, Status::Disabled, now_ms()),
        )
        .await,
        Code::NotFound,
        "user_id",
    );
    let mut no_status = statement(&ada, Status::Enabled, now_ms());
    no_status.status = 0;
    assert_status(
        set_status(&node, no_status).await,
        Code::InvalidArgument,
        "status",
    );
    assert_status(
        set_status(
            &node,
            statement(&ada, Status::Enabled, now_ms() - 3_600_000),
        )
        .await,
        Code::Unauthenticated,
        "timestamp",
    );

    // Enabled again: the user logs in as before, still a member.
    set_status(&node, statement(&ada, Status::Enabled, now_ms()))
        .await
        .expect("enable");
    let back = login(&node, &ada).await.expect("login after enabling");
    assert!(!back.user.expect("user").is_disabled);
    assert!(
        member_ids(&node, &bob.token, &room.guild)
            .await
            .contains(&ada.user.id)
    );
}

#[tokio::test]
async fn deleting_wipes_the_person_keeps_the_messages_and_refuses_the_key() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Room").await;
    join_room(&node, &bob, &room.invite).await;
    let said = send_text(&node, &bob.token, &room.channel, "bye all").await;
    node.client()
        .await
        .send_friend_request(authed(
            &ada.token,
            pb::RelationshipRequest {
                user_id: bob.user.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("friend request");
    node.client()
        .await
        .set_user_note(authed(
            &ada.token,
            pb::SetUserNoteRequest {
                user_id: bob.user.id.clone(),
                note: "met at the meetup".into(),
            },
        ))
        .await
        .expect("note");

    // Ada owns a guild: she hands it over or deletes it first.
    assert_status(
        set_status(&node, statement(&ada, Status::Deleted, now_ms())).await,
        Code::FailedPrecondition,
        "you own guild",
    );

    let mut ada_sees = subscribe(&node, &ada.token).await;
    set_status(&node, statement(&bob, Status::Deleted, now_ms()))
        .await
        .expect("delete");
    let left = until(&mut ada_sees, |e| match e {
        Event::MemberRemoved(r) if r.user_id == bob.user.id => Some(r.guild_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(left, room.guild);
    assert!(
        !member_ids(&node, &ada.token, &room.guild)
            .await
            .contains(&bob.user.id)
    );
    let tomb = get_user(&node, &ada.token, &bob.user.id).await;
    assert!(tomb.is_deleted);
    assert_eq!(
        (
            tomb.name.as_str(),
            tomb.bio.as_str(),
            tomb.avatar_url.as_str()
        ),
        ("Deleted User", "", "")
    );
    // The message stays, under the tombstone.
    let history = node
        .client()
        .await
        .get_history(authed(
            &ada.token,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                limit: 50,
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages;
    let kept = history
        .iter()
        .find(|m| m.id == said.id)
        .expect("the deleted user's message stays");
    assert_eq!(kept.sender_id, bob.user.id);
    // Nothing personal about them stays: the friend request and Ada's note are gone.
    let relationships = node
        .client()
        .await
        .list_relationships(authed(&ada.token, pb::Empty {}))
        .await
        .expect("relationships")
        .into_inner()
        .relationships;
    assert!(relationships.is_empty());
    let note = node
        .client()
        .await
        .get_user_note(authed(
            &ada.token,
            pb::GetUserNoteRequest {
                user_id: bob.user.id.clone(),
            },
        ))
        .await
        .expect("note")
        .into_inner();
    assert_eq!(note.note, "");

    // The key is refused from then on: no session, no login, no new account, no statement.
    assert_status(
        node.client()
            .await
            .get_my_data(authed(&bob.token, pb::Empty {}))
            .await,
        Code::Unauthenticated,
        "",
    );
    assert_status(
        login(&node, &bob).await,
        Code::FailedPrecondition,
        "deleted",
    );
    let again = node
        .client()
        .await
        .register(
            bob.identity
                .register_request(&node.audience(), "Bob again", None, now_ms()),
        )
        .await;
    assert!(
        matches!(
            again.as_ref().map_err(tonic::Status::code),
            Err(Code::FailedPrecondition | Code::AlreadyExists)
        ),
        "registering a deleted key again: {again:?}"
    );
    assert_status(
        set_status(&node, statement(&bob, Status::Deleted, now_ms())).await,
        Code::AlreadyExists,
        "deleted already",
    );
    assert_status(
        set_status(&node, statement(&bob, Status::Enabled, now_ms())).await,
        Code::FailedPrecondition,
        "deleted",
    );
}

#[tokio::test]
async fn a_deletion_reaches_the_users_hosts_and_a_host_that_was_down() {
    let a = TestNode::spawn().await;
    let b = TestNode::spawn_fast_outbox().await;
    let mut c = TestNode::spawn().await;
    let owner_a = register(&a, "Owner A").await;
    let owner_c = register(&c, "Owner C").await;
    let room_a = create_room(&a, &owner_a, "On A").await;
    let room_c = create_room(&c, &owner_c, "On C").await;
    let bob = register(&b, "Bob").await;
    remote_join(&a, &bob, &b.address(), &room_a.invite, "Bob")
        .await
        .expect("join A");
    remote_join(&c, &bob, &b.address(), &room_c.invite, "Bob")
        .await
        .expect("join C");

    // A forged deletion, sent by a real server: refused, nothing changes.
    let mut forged = statement(&bob, Status::Deleted, now_ms());
    forged.signature =
        account_status::sign(&SecretKey::generate(), Status::Deleted, forged.timestamp).signature;
    assert_status(
        b.federation_client(&a)
            .await
            .receive_account_status(forged)
            .await,
        Code::Unauthenticated,
        "signature",
    );
    assert!(!get_user(&a, &owner_a.token, &bob.user.id).await.is_deleted);

    // Disabling at the homeserver reaches the hosts too: Bob's sessions there end.
    let on_a = remote_join(&a, &bob, &b.address(), &room_a.invite, "Bob")
        .await
        .expect("a session on A");
    set_status(&b, statement(&bob, Status::Disabled, now_ms()))
        .await
        .expect("disable at the homeserver");
    wait_for(WAIT, || async {
        get_user(&a, &owner_a.token, &bob.user.id).await.is_disabled
    })
    .await;
    assert_status(
        a.client()
            .await
            .get_my_data(authed(&on_a.token, pb::Empty {}))
            .await,
        Code::Unauthenticated,
        "",
    );

    // C is down when Bob deletes his account at B.
    let c_addr = c.stop().await;
    set_status(&b, statement(&bob, Status::Deleted, now_ms()))
        .await
        .expect("delete at the homeserver");
    wait_for(WAIT, || async {
        get_user(&a, &owner_a.token, &bob.user.id).await.is_deleted
    })
    .await;
    assert!(
        !member_ids(&a, &owner_a.token, &room_a.guild)
            .await
            .contains(&bob.user.id)
    );

    // C comes back and learns it (the outbox's retry, or gossip's catch-up).
    c.start_on(c_addr).await;
    wait_for(WAIT, || async {
        get_user(&c, &owner_c.token, &bob.user.id).await.is_deleted
    })
    .await;
    assert!(
        !member_ids(&c, &owner_c.token, &room_c.guild)
            .await
            .contains(&bob.user.id)
    );

    // Bob's key can't join the host again.
    assert!(
        remote_join(&a, &bob, &b.address(), &room_a.invite, "Bob")
            .await
            .is_err()
    );
}
