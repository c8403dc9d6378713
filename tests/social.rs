//! Presence (seen only by co-members) and direct messages between users of one node.

mod common;

use std::time::Duration;

use common::{TestNode, TestUser, assert_status, authed, new_identity, register};
use guildhall::proto::guildhall::v1 as pb;
use pb::stream_response::Event;
use tonic::Code;

async fn shared_guild(
    node: &TestNode,
    owner: &TestUser,
    members: &[&TestUser],
) -> (String, String) {
    let room = common::create_room(node, owner, "Room").await;
    for m in members {
        common::join_room(node, m, &room.invite).await;
    }
    (room.guild, room.channel)
}

async fn next(stream: &mut tonic::codec::Streaming<pb::StreamResponse>) -> pb::StreamResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open")
}

#[tokio::test]
async fn presence_reaches_co_members_only() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let eve = register(&node, "Eve").await;
    let (_, channel) = shared_guild(&node, &ada, &[&bob]).await;
    let mut c = node.client().await;
    let mut bobs = c
        .subscribe_events(authed(&bob.token, pb::SubscribeRequest::default()))
        .await
        .expect("sub")
        .into_inner();
    let mut eves = c
        .subscribe_events(authed(&eve.token, pb::SubscribeRequest::default()))
        .await
        .expect("sub")
        .into_inner();

    c.update_presence(authed(
        &ada.token,
        pb::UpdatePresenceRequest {
            status: pb::PresenceStatus::Busy as i32,
            active_call_channel_id: channel.clone(),
        },
    ))
    .await
    .expect("presence");
    let seen = next(&mut bobs).await;
    match seen.event {
        Some(Event::Presence(p)) => {
            assert_eq!(p.user_id, ada.user.id);
            assert_eq!(p.status, pb::PresenceStatus::Busy as i32);
            assert_eq!(p.active_call_channel_id, channel);
        }
        other => panic!("expected presence, got {other:?}"),
    }
    // Eve shares no guild with Ada: her first event is her own presence, nothing of Ada's.
    c.signal_online(authed(&eve.token, pb::Empty {}))
        .await
        .expect("online");
    match next(&mut eves).await.event {
        Some(Event::Presence(p)) => assert_eq!(p.user_id, eve.user.id),
        other => panic!("expected Eve's own presence, got {other:?}"),
    }

    let got = c
        .get_presence(authed(
            &bob.token,
            pb::GetPresenceRequest {
                user_ids: vec![ada.user.id.clone(), eve.user.id.clone()],
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .presence;
    assert_eq!(got.len(), 1, "Eve is not visible to Bob");
    assert_eq!(got[0].status, pb::PresenceStatus::Busy as i32);

    c.signal_offline(authed(&ada.token, pb::Empty {}))
        .await
        .expect("offline");
    let got = c
        .get_presence(authed(
            &bob.token,
            pb::GetPresenceRequest {
                user_ids: vec![ada.user.id.clone()],
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .presence;
    assert_eq!(got[0].status, pb::PresenceStatus::Offline as i32);

    assert_status(
        c.update_presence(authed(
            &ada.token,
            pb::UpdatePresenceRequest {
                status: 2,
                active_call_channel_id: String::new(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "status",
    );
    let (_, eves_channel) = shared_guild(&node, &eve, &[]).await;
    assert_status(
        c.update_presence(authed(
            &ada.token,
            pb::UpdatePresenceRequest {
                status: 1,
                active_call_channel_id: eves_channel,
            },
        ))
        .await,
        Code::InvalidArgument,
        "active_call_channel_id",
    );
    assert_status(
        c.get_presence(authed(
            &ada.token,
            pb::GetPresenceRequest {
                user_ids: vec![ada.user.id.clone(); 101],
            },
        ))
        .await,
        Code::InvalidArgument,
        "user_ids",
    );
}

#[tokio::test]
async fn direct_messages_invite_accept_and_reject() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let carol = register(&node, "Carol").await;
    let mut c = node.client().await;

    let dm = c
        .create_dm(authed(
            &ada.token,
            pb::CreateDmRequest {
                target_user_id: bob.user.id.clone(),
            },
        ))
        .await
        .expect("dm")
        .into_inner();
    let guild = dm.guild.expect("guild");
    assert!(guild.is_dm);
    assert_eq!(guild.name, "Ada & Bob");
    let again = c
        .create_dm(authed(
            &bob.token,
            pb::CreateDmRequest {
                target_user_id: ada.user.id.clone(),
            },
        ))
        .await
        .expect("again")
        .into_inner();
    assert_eq!(again.guild.expect("guild").id, guild.id, "one DM per pair");

    let invites = c
        .list_dm_invites(authed(&bob.token, pb::ListDmInvitesRequest {}))
        .await
        .expect("list")
        .into_inner()
        .invites;
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0].inviter_id, ada.user.id);
    assert_eq!(invites[0].status, "pending");
    let invite_id = invites[0].invite_id.clone();

    assert_status(
        c.accept_dm_invite(authed(
            &carol.token,
            pb::AcceptDmInviteRequest {
                invite_id: invite_id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "invite_id",
    );
    let accepted = c
        .accept_dm_invite(authed(
            &bob.token,
            pb::AcceptDmInviteRequest {
                invite_id: invite_id.clone(),
            },
        ))
        .await
        .expect("accept")
        .into_inner();
    assert_eq!(accepted.guild_id, guild.id);
    assert_eq!(accepted.host_server_url, node.node().info.canonical_address);
    assert_status(
        c.accept_dm_invite(authed(&bob.token, pb::AcceptDmInviteRequest { invite_id }))
            .await,
        Code::FailedPrecondition,
        "already accepted",
    );

    // Both can talk; nobody can invite a third person into a DM.
    let channel = c
        .list_channels(authed(
            &bob.token,
            pb::ListChannelsRequest {
                guild_id: guild.id.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels[0]
        .id
        .clone();
    c.send_message(authed(
        &bob.token,
        pb::SendMessageRequest {
            channel_id: channel.clone(),
            text: "hi ada".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("send");
    let history = c
        .get_history(authed(
            &ada.token,
            pb::GetHistoryRequest {
                channel_id: channel.clone(),
                cursor: String::new(),
                limit: 0,
                reverse: false,
            },
        ))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.messages[0].text, "hi ada");
    assert_status(
        c.generate_invite(authed(
            &ada.token,
            pb::GenerateInviteRequest {
                channel_id: channel.clone(),
                max_age_secs: None,
                max_uses: None,
                allow_registration: false,
            },
        ))
        .await,
        Code::PermissionDenied,
        "invites.create",
    );
    assert_status(
        c.get_history(authed(
            &carol.token,
            pb::GetHistoryRequest {
                channel_id: channel,
                cursor: String::new(),
                limit: 0,
                reverse: false,
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );

    // Rejection, and refusals.
    c.create_dm(authed(
        &ada.token,
        pb::CreateDmRequest {
            target_user_id: carol.user.id.clone(),
        },
    ))
    .await
    .expect("dm carol");
    let carols = c
        .list_dm_invites(authed(&carol.token, pb::ListDmInvitesRequest {}))
        .await
        .expect("list")
        .into_inner()
        .invites;
    c.reject_dm_invite(authed(
        &carol.token,
        pb::RejectDmInviteRequest {
            invite_id: carols[0].invite_id.clone(),
        },
    ))
    .await
    .expect("reject");
    assert!(
        c.list_dm_invites(authed(&carol.token, pb::ListDmInvitesRequest {}))
            .await
            .expect("list")
            .into_inner()
            .invites
            .is_empty()
    );
    assert_status(
        c.create_dm(authed(
            &ada.token,
            pb::CreateDmRequest {
                target_user_id: ada.user.id.clone(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "yourself",
    );
    assert_status(
        c.create_dm(authed(
            &ada.token,
            pb::CreateDmRequest {
                target_user_id: "xyz".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "target_user_id",
    );
    // A user of another server gets a DM here too; the invite reaches them with SendDMInvite
    // (tests/federation_dms.rs).
    let remote = c
        .create_dm(authed(
            &ada.token,
            pb::CreateDmRequest {
                target_user_id: new_identity("x").user_id(),
            },
        ))
        .await
        .expect("DM with a user of another server")
        .into_inner();
    assert!(remote.guild.expect("guild").is_dm);
}
