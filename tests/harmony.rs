//! Harmony's `protocol.profile.v1` on the same node, over the same users, through the generated
//! `ProfileServiceClient`: profiles by numeric id, name rules and refusals, status as presence,
//! app data across devices and restarts, `h.overrides`, and `ProfileUpdated` reaching co-members
//! and not strangers.

mod common;

use std::time::Duration;

use common::{TestNode, TestUser, assert_status, authed, register};
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::protocol::profile::v1 as hp;
use guildhall::proto::protocol::profile::v1::profile_service_client::ProfileServiceClient;
use pb::stream_response::Event;
use prost::Message as _;
use tonic::Code;
use tonic::codec::Streaming;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(10);

async fn profiles(node: &TestNode) -> ProfileServiceClient<Channel> {
    ProfileServiceClient::connect(format!("http://{}", node.node().grpc_addr))
        .await
        .expect("connect")
}

/// `GetProfile` by guildhall id: the profile and the user's numeric id.
async fn profile_of(node: &TestNode, token: &str, hex: &str) -> hp::GetProfileResponse {
    profiles(node)
        .await
        .get_profile(authed(
            token,
            hp::GetProfileRequest {
                user_id: 0,
                guildhall_user_id: hex.into(),
            },
        ))
        .await
        .expect("get profile")
        .into_inner()
}

async fn update(
    node: &TestNode,
    who: &TestUser,
    request: hp::UpdateProfileRequest,
) -> Result<hp::UpdateProfileResponse, tonic::Status> {
    profiles(node)
        .await
        .update_profile(authed(&who.token, request))
        .await
        .map(tonic::Response::into_inner)
}

async fn set_data(
    node: &TestNode,
    token: &str,
    app_id: &str,
    data: Vec<u8>,
) -> Result<hp::SetAppDataResponse, tonic::Status> {
    profiles(node)
        .await
        .set_app_data(authed(
            token,
            hp::SetAppDataRequest {
                app_id: app_id.into(),
                app_data: data,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn get_data(node: &TestNode, token: &str, app_id: &str) -> Result<Vec<u8>, tonic::Status> {
    profiles(node)
        .await
        .get_app_data(authed(
            token,
            hp::GetAppDataRequest {
                app_id: app_id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().app_data)
}

async fn name_of(node: &TestNode, asker: &TestUser, user_id: &str) -> String {
    node.client()
        .await
        .get_users(authed(
            &asker.token,
            pb::GetUsersRequest {
                user_ids: vec![user_id.into()],
                ..Default::default()
            },
        ))
        .await
        .expect("get users")
        .into_inner()
        .users[0]
        .name
        .clone()
}

async fn subscribe(node: &TestNode, token: &str) -> Streaming<pb::StreamResponse> {
    node.client()
        .await
        .subscribe_events(authed(token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::StreamResponse>) -> Event {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an event within the wait")
        .expect("stream ok")
        .expect("stream open")
        .event
        .expect("event set")
}

#[tokio::test]
async fn get_profile_of_self_others_and_unknown_ids() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;

    let me = profile_of(&node, &ada.token, &ada.user.id).await;
    assert_eq!(me.guildhall_user_id, ada.user.id);
    let profile = me.profile.expect("profile");
    assert_eq!(profile.user_name, "Ada");
    assert_eq!(profile.user_avatar, None);
    assert!(!profile.is_bot);
    assert_ne!(me.user_id, 0, "Harmony ids start at 1");

    // The numeric id names the same user, for anyone.
    let bobs_view = profiles(&node)
        .await
        .get_profile(authed(
            &bob.token,
            hp::GetProfileRequest {
                user_id: me.user_id,
                guildhall_user_id: String::new(),
            },
        ))
        .await
        .expect("by number")
        .into_inner();
    assert_eq!(bobs_view.guildhall_user_id, ada.user.id);
    assert_eq!(bobs_view.profile.expect("profile").user_name, "Ada");
    let bob_num = profile_of(&node, &ada.token, &bob.user.id).await.user_id;
    assert_ne!(bob_num, me.user_id, "every user has their own number");

    let mut c = profiles(&node).await;
    let ask = |user_id: u64, hex: &str| {
        authed(
            &ada.token,
            hp::GetProfileRequest {
                user_id,
                guildhall_user_id: hex.into(),
            },
        )
    };
    assert_status(
        c.get_profile(ask(bob_num + 1000, "")).await,
        Code::NotFound,
        "user_id",
    );
    assert_status(
        c.get_profile(ask(u64::MAX, "")).await,
        Code::NotFound,
        "user_id",
    );
    let stranger = common::new_identity("x").user_id();
    assert_status(
        c.get_profile(ask(0, &stranger)).await,
        Code::NotFound,
        "user_id",
    );
    assert_status(
        c.get_profile(ask(0, "")).await,
        Code::InvalidArgument,
        "user_id",
    );
    assert_status(
        c.get_profile(ask(0, "not-hex")).await,
        Code::InvalidArgument,
        "guildhall_user_id",
    );
    assert_status(
        c.get_profile(ask(me.user_id, &ada.user.id)).await,
        Code::InvalidArgument,
        "not both",
    );
    // No session, no profile.
    assert_status(
        c.get_profile(hp::GetProfileRequest {
            user_id: me.user_id,
            guildhall_user_id: String::new(),
        })
        .await,
        Code::Unauthenticated,
        "authorization",
    );
}

#[tokio::test]
async fn update_profile_follows_the_user_rules_and_a_refusal_changes_nothing() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;

    update(
        &node,
        &ada,
        hp::UpdateProfileRequest {
            new_user_name: Some("  Ada   Lovelace ".into()),
            new_user_avatar: Some("https://example.com/ada.png".into()),
            new_is_bot: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("update");
    // The guildhall API sees the same user, normalised as UpdateUser would.
    assert_eq!(name_of(&node, &ada, &ada.user.id).await, "Ada Lovelace");
    let p = profile_of(&node, &ada.token, &ada.user.id)
        .await
        .profile
        .expect("profile");
    assert_eq!(p.user_name, "Ada Lovelace");
    assert_eq!(
        p.user_avatar.as_deref(),
        Some("https://example.com/ada.png")
    );
    assert!(p.is_bot);

    let refusals = [
        (
            hp::UpdateProfileRequest {
                new_user_name: Some("everyone".into()),
                ..Default::default()
            },
            "new_user_name: \"everyone\" is reserved",
        ),
        (
            hp::UpdateProfileRequest {
                new_user_name: Some("   ".into()),
                ..Default::default()
            },
            "new_user_name: must be 1-32 characters",
        ),
        (
            hp::UpdateProfileRequest {
                new_user_name: Some("a\u{200B}b".into()),
                ..Default::default()
            },
            "new_user_name: must not contain zero-width",
        ),
        (
            // A good name with a bad avatar: the name is not applied either.
            hp::UpdateProfileRequest {
                new_user_name: Some("Countess".into()),
                new_user_avatar: Some("ftp://example.com/a.png".into()),
                ..Default::default()
            },
            "new_user_avatar",
        ),
        (
            hp::UpdateProfileRequest {
                new_user_name: Some("Countess".into()),
                new_user_status: Some(9),
                new_is_bot: Some(false),
                ..Default::default()
            },
            "new_user_status: must be a UserStatus value",
        ),
    ];
    for (request, needle) in refusals {
        assert_status(
            update(&node, &ada, request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    let p = profile_of(&node, &ada.token, &ada.user.id)
        .await
        .profile
        .expect("profile");
    assert_eq!(p.user_name, "Ada Lovelace", "refusals changed nothing");
    assert!(p.is_bot, "refusals changed nothing");

    // An empty avatar removes it.
    update(
        &node,
        &ada,
        hp::UpdateProfileRequest {
            new_user_avatar: Some(String::new()),
            new_is_bot: Some(false),
            ..Default::default()
        },
    )
    .await
    .expect("remove avatar");
    let p = profile_of(&node, &ada.token, &ada.user.id)
        .await
        .profile
        .expect("profile");
    assert_eq!(p.user_avatar, None);
    assert!(!p.is_bot);
}

#[tokio::test]
async fn status_is_presence_and_seen_only_by_co_members() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let eve = register(&node, "Eve").await;
    let room = common::create_room(&node, &ada, "Room").await;
    common::join_room(&node, &bob, &room.invite).await;

    let presence_seen_by_bob = || async {
        node.client()
            .await
            .get_presence(authed(
                &bob.token,
                pb::GetPresenceRequest {
                    user_ids: vec![ada.user.id.clone()],
                },
            ))
            .await
            .expect("presence")
            .into_inner()
            .presence[0]
            .status
    };
    let status_seen = |asker: &TestUser| {
        let (node, token, id) = (&node, asker.token.clone(), ada.user.id.clone());
        async move {
            profile_of(node, &token, &id)
                .await
                .profile
                .expect("profile")
                .user_status
        }
    };

    let set = |status: hp::UserStatus| hp::UpdateProfileRequest {
        new_user_status: Some(status as i32),
        ..Default::default()
    };
    update(&node, &ada, set(hp::UserStatus::DoNotDisturb))
        .await
        .expect("dnd");
    assert_eq!(
        presence_seen_by_bob().await,
        pb::PresenceStatus::Busy as i32
    );
    assert_eq!(status_seen(&bob).await, hp::UserStatus::DoNotDisturb as i32);
    assert_eq!(
        status_seen(&eve).await,
        hp::UserStatus::OfflineUnspecified as i32,
        "a stranger does not see Ada's status"
    );

    // Idle is online to guildhall clients and idle to Harmony ones.
    update(&node, &ada, set(hp::UserStatus::Idle))
        .await
        .expect("idle");
    assert_eq!(
        presence_seen_by_bob().await,
        pb::PresenceStatus::Online as i32
    );
    assert_eq!(status_seen(&bob).await, hp::UserStatus::Idle as i32);
    assert_eq!(status_seen(&ada).await, hp::UserStatus::Idle as i32);

    // A status set through the guildhall API is what Harmony reports afterwards.
    node.client()
        .await
        .update_presence(authed(
            &ada.token,
            pb::UpdatePresenceRequest {
                status: pb::PresenceStatus::Offline as i32,
                active_call_channel_id: String::new(),
            },
        ))
        .await
        .expect("offline");
    assert_eq!(
        status_seen(&bob).await,
        hp::UserStatus::OfflineUnspecified as i32
    );
}

#[tokio::test]
async fn app_data_is_per_user_and_app_and_shared_by_the_users_devices() {
    let mut node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;

    assert_eq!(
        get_data(&node, &ada.token, "com.example.notes")
            .await
            .expect("get"),
        Vec::<u8>::new(),
        "nothing set reads as empty"
    );
    set_data(&node, &ada.token, "com.example.notes", b"v1".to_vec())
        .await
        .expect("set");
    set_data(&node, &ada.token, "com.example.theme", b"dark".to_vec())
        .await
        .expect("set another app");
    set_data(&node, &ada.token, "com.example.notes", b"v2".to_vec())
        .await
        .expect("overwrite");
    assert_eq!(
        get_data(&node, &ada.token, "com.example.notes")
            .await
            .expect("get"),
        b"v2"
    );
    assert_eq!(
        get_data(&node, &bob.token, "com.example.notes")
            .await
            .expect("bob's own"),
        Vec::<u8>::new(),
        "app data is per user"
    );

    // A second device of Ada's reads the latest and hears of the next change.
    let aud = node.audience();
    let laptop = ada.identity.new_device("laptop", now_ms() - 1000);
    let mut request = laptop.login_request(&aud, now_ms());
    laptop.sign_login(&aud, &mut request);
    let laptop_token = node
        .client()
        .await
        .login(request)
        .await
        .expect("second device")
        .into_inner()
        .token;
    assert_eq!(
        get_data(&node, &laptop_token, "com.example.notes")
            .await
            .expect("laptop reads"),
        b"v2"
    );
    let mut laptop_events = subscribe(&node, &laptop_token).await;
    let mut bob_events = subscribe(&node, &bob.token).await;
    set_data(&node, &ada.token, "com.example.notes", b"v3".to_vec())
        .await
        .expect("phone writes");
    match next(&mut laptop_events).await {
        Event::AppDataUpdated(a) => assert_eq!(a.app_id, "com.example.notes"),
        other => panic!("expected app_data_updated, got {other:?}"),
    }
    assert_eq!(
        get_data(&node, &laptop_token, "com.example.notes")
            .await
            .expect("laptop reads"),
        b"v3"
    );
    // Bob hears nothing of it: his first event is his own.
    set_data(&node, &bob.token, "com.example.mine", b"b".to_vec())
        .await
        .expect("bob writes");
    match next(&mut bob_events).await {
        Event::AppDataUpdated(a) => assert_eq!(a.app_id, "com.example.mine"),
        other => panic!("expected Bob's own app_data_updated, got {other:?}"),
    }

    // Empty data clears the entry.
    set_data(&node, &ada.token, "com.example.theme", Vec::new())
        .await
        .expect("clear");
    assert!(
        get_data(&node, &ada.token, "com.example.theme")
            .await
            .expect("get")
            .is_empty()
    );

    // Stored, not cached: the data and the numeric ids survive a restart.
    let num_before = profile_of(&node, &ada.token, &ada.user.id).await.user_id;
    node.restart().await;
    assert_eq!(
        get_data(&node, &laptop_token, "com.example.notes")
            .await
            .expect("after restart"),
        b"v3"
    );
    assert_eq!(
        profile_of(&node, &ada.token, &ada.user.id).await.user_id,
        num_before
    );
}

#[tokio::test]
async fn app_data_refusals_name_the_field_and_store_nothing() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let t = &ada.token;

    for bad in ["", "two words", "tab\tbed", "ünïcode", &"a".repeat(129)] {
        assert_status(
            set_data(&node, t, bad, b"x".to_vec()).await,
            Code::InvalidArgument,
            "app_id",
        );
        assert_status(
            get_data(&node, t, bad).await,
            Code::InvalidArgument,
            "app_id",
        );
    }
    let id = "a".repeat(128);
    set_data(&node, t, &id, b"longest id".to_vec())
        .await
        .expect("128 bytes is fine");

    set_data(&node, t, "big", vec![7; 64 * 1024])
        .await
        .expect("64 KiB is fine");
    assert_status(
        set_data(&node, t, "big", vec![8; 64 * 1024 + 1]).await,
        Code::InvalidArgument,
        "app_data: must be at most 65536 bytes",
    );
    assert_eq!(
        get_data(&node, t, "big").await.expect("get"),
        vec![7; 64 * 1024],
        "the refused write changed nothing"
    );

    // At most 64 apps per user; overwriting one of them is still fine.
    for i in 2..64 {
        set_data(&node, t, &format!("app.{i}"), vec![1])
            .await
            .expect("within the cap");
    }
    assert_status(
        set_data(&node, t, "app.one-too-many", vec![1]).await,
        Code::FailedPrecondition,
        "app_id: you already keep data for 64 apps",
    );
    assert!(
        get_data(&node, t, "app.one-too-many")
            .await
            .expect("get")
            .is_empty()
    );
    set_data(&node, t, "app.2", vec![2])
        .await
        .expect("overwrite within the cap");
    set_data(&node, t, "app.3", Vec::new())
        .await
        .expect("clear one");
    set_data(&node, t, "app.one-too-many", vec![1])
        .await
        .expect("room again");
}

#[tokio::test]
async fn overrides_round_trip_and_garbage_is_refused() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let overrides = hp::AppDataOverrides {
        overrides: vec![
            hp::ProfileOverride {
                username: Some("Sam".into()),
                avatar: Some("https://example.com/sam.png".into()),
                tags: vec![hp::OverrideTag {
                    before: "sam:".into(),
                    after: String::new(),
                }],
                reason: Some(hp::profile_override::Reason::SystemPlurality(
                    guildhall::proto::protocol::harmonytypes::v1::Empty {},
                )),
            },
            hp::ProfileOverride {
                username: Some("Robin".into()),
                avatar: None,
                tags: vec![hp::OverrideTag {
                    before: "[".into(),
                    after: "]".into(),
                }],
                reason: Some(hp::profile_override::Reason::UserDefined("roleplay".into())),
            },
        ],
    };
    let bytes = overrides.encode_to_vec();
    set_data(&node, &ada.token, "h.overrides", bytes.clone())
        .await
        .expect("set overrides");
    let back = get_data(&node, &ada.token, "h.overrides")
        .await
        .expect("get");
    assert_eq!(back, bytes);
    assert_eq!(
        hp::AppDataOverrides::decode(back.as_slice()).expect("decodes"),
        overrides
    );

    assert_status(
        set_data(&node, &ada.token, "h.overrides", vec![0xff, 0xff, 0xff]).await,
        Code::InvalidArgument,
        "app_data: for app_id \"h.overrides\" must be a protocol.profile.v1.AppDataOverrides",
    );
    let mut bad = overrides.clone();
    bad.overrides[1].username = Some("here".into());
    assert_status(
        set_data(&node, &ada.token, "h.overrides", bad.encode_to_vec()).await,
        Code::InvalidArgument,
        "app_data.overrides[1].username",
    );
    let mut many = overrides.clone();
    many.overrides = vec![overrides.overrides[0].clone(); 65];
    assert_status(
        set_data(&node, &ada.token, "h.overrides", many.encode_to_vec()).await,
        Code::InvalidArgument,
        "app_data.overrides: at most 64",
    );
    assert_eq!(
        get_data(&node, &ada.token, "h.overrides")
            .await
            .expect("get"),
        bytes,
        "refusals kept the stored overrides"
    );
    // The same bytes under another app id are just bytes.
    set_data(&node, &ada.token, "com.example.raw", vec![0xff, 0xff, 0xff])
        .await
        .expect("other apps store anything");
}

#[tokio::test]
async fn profile_updated_reaches_co_members_and_not_strangers() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let eve = register(&node, "Eve").await;
    let room = common::create_room(&node, &ada, "Room").await;
    common::join_room(&node, &bob, &room.invite).await;
    let ada_num = profile_of(&node, &ada.token, &ada.user.id).await.user_id;

    let mut bobs = subscribe(&node, &bob.token).await;
    let mut eves = subscribe(&node, &eve.token).await;
    let mut adas = subscribe(&node, &ada.token).await;
    update(
        &node,
        &ada,
        hp::UpdateProfileRequest {
            new_user_name: Some("Countess".into()),
            new_user_status: Some(hp::UserStatus::Streaming as i32),
            ..Default::default()
        },
    )
    .await
    .expect("update");

    for (who, stream) in [("Bob", &mut bobs), ("Ada", &mut adas)] {
        match next(stream).await {
            Event::UserUpdated(u) => {
                let user = u.user.expect("user");
                assert_eq!(
                    (user.id.as_str(), user.name.as_str()),
                    (ada.user.id.as_str(), "Countess")
                );
            }
            other => panic!("{who}: expected user_updated, got {other:?}"),
        }
        match next(stream).await {
            Event::ProfileUpdated(p) => {
                assert_eq!(p.user_id, ada_num);
                assert_eq!(p.new_username.as_deref(), Some("Countess"));
                assert_eq!(p.new_avatar, None);
                assert_eq!(p.new_status, Some(hp::UserStatus::Streaming as i32));
                assert_eq!(p.new_is_bot, None);
            }
            other => panic!("{who}: expected profile_updated, got {other:?}"),
        }
        match next(stream).await {
            Event::Presence(p) => {
                assert_eq!(p.user_id, ada.user.id);
                assert_eq!(p.status, pb::PresenceStatus::Online as i32);
            }
            other => panic!("{who}: expected presence, got {other:?}"),
        }
    }

    // Eve shares no guild with Ada: the first event she gets is her own presence.
    node.client()
        .await
        .signal_online(authed(&eve.token, pb::Empty {}))
        .await
        .expect("online");
    match next(&mut eves).await {
        Event::Presence(p) => assert_eq!(p.user_id, eve.user.id),
        other => panic!("Eve must see nothing of Ada's, got {other:?}"),
    }

    // A flag-only change is a ProfileUpdated with only the flag (the record did not change).
    update(
        &node,
        &ada,
        hp::UpdateProfileRequest {
            new_is_bot: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("bot flag");
    match next(&mut bobs).await {
        Event::ProfileUpdated(p) => {
            assert_eq!(p.user_id, ada_num);
            assert_eq!(p.new_is_bot, Some(true));
            assert_eq!(p.new_username, None);
        }
        other => panic!("expected profile_updated only, got {other:?}"),
    }
}

#[tokio::test]
async fn a_signed_update_user_is_announced_to_both_kinds_of_client() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = common::create_room(&node, &ada, "Room").await;
    common::join_room(&node, &bob, &room.invite).await;
    let ada_num = profile_of(&node, &bob.token, &ada.user.id).await.user_id;

    let mut bobs = subscribe(&node, &bob.token).await;
    let mut request = pb::UpdateUserRequest {
        name: Some("Lady Ada".into()),
        bio: Some("engines".into()),
        timestamp: now_ms(),
        ..Default::default()
    };
    ada.identity.sign_update(&mut request);
    node.client()
        .await
        .update_user(authed(&ada.token, request))
        .await
        .expect("signed update");
    match next(&mut bobs).await {
        Event::UserUpdated(u) => {
            let user = u.user.expect("user");
            assert_eq!(
                (user.name.as_str(), user.bio.as_str()),
                ("Lady Ada", "engines")
            );
        }
        other => panic!("expected user_updated, got {other:?}"),
    }
    match next(&mut bobs).await {
        Event::ProfileUpdated(p) => {
            assert_eq!(p.user_id, ada_num);
            assert_eq!(p.new_username.as_deref(), Some("Lady Ada"));
            assert_eq!(p.new_avatar, None, "the avatar was not in the request");
        }
        other => panic!("expected profile_updated, got {other:?}"),
    }
    let p = profile_of(&node, &bob.token, &ada.user.id)
        .await
        .profile
        .expect("profile");
    assert_eq!(p.user_name, "Lady Ada");
}
