//! Registration, login, sessions, identity proofs and profile changes, over real gRPC on loopback.
//! Every refusal is checked for its status code and for leaving no trace.

mod common;

use common::{TestNode, assert_status, authed, new_identity, register};
use guildhall::client::ClientIdentity;
use guildhall::identity::freshness::now_ms;
use guildhall::identity::{DeviceCert, SecretKey};
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

const SKEW: u64 = 5 * 60 * 1000;

/// Whether `user_id` exists on the node, as seen by a separate observer account.
async fn exists(node: &TestNode, user_id: &str) -> bool {
    let observer = register(node, "Observer").await;
    let users = node
        .client()
        .await
        .get_users(authed(
            &observer.token,
            pb::GetUsersRequest {
                user_ids: vec![user_id.to_owned()],
                guild_id: String::new(),
            },
        ))
        .await
        .expect("get_users")
        .into_inner()
        .users;
    !users.is_empty()
}

/// Sends a register request and asserts it is refused with `code`/`needle` and creates no user.
async fn refused_register(node: &TestNode, request: pb::RegisterRequest, code: Code, needle: &str) {
    let user_id = request.public_key.clone();
    let result = node.client().await.register(request).await;
    assert_status(result, code, needle);
    assert!(
        !exists(node, &user_id).await,
        "a refused registration created a user"
    );
}

#[tokio::test]
async fn register_returns_a_working_session() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "  Ada   Lovelace ").await;
    assert_eq!(ada.user.name, "Ada Lovelace");
    assert_eq!(ada.user.id, ada.identity.user_id());
    assert_eq!(ada.user.id_pubkey, ada.identity.user_id());
    assert_eq!(ada.user.homeserver, node.node().info.canonical_address);
    assert!(ada.user.avatar_color.starts_with('#'));

    let data = node
        .client()
        .await
        .get_my_data(authed(&ada.token, pb::Empty {}))
        .await
        .expect("get_my_data")
        .into_inner();
    assert_eq!(data.user.expect("user").id, ada.user.id);
    assert_eq!(data.device_certificates.len(), 1);
    assert_eq!(
        data.device_certificates[0].id,
        ada.identity.cert.device_key.to_hex()
    );
    assert_eq!(data.device_certificates[0].name, "Phone");
}

#[tokio::test]
async fn register_refuses_forged_and_misdirected_proofs() {
    let node = TestNode::spawn().await;
    let aud = node.audience();
    let now = now_ms();
    let id = new_identity("laptop");

    // id_proof signed by some other key.
    let mut r = id.register_request(&aud, "Eve", None, now);
    let impostor = ClientIdentity::from_keys(
        SecretKey::generate(),
        id.device_key.clone(),
        "laptop",
        now - 1000,
    );
    r.id_proof = impostor.register_request(&aud, "Eve", None, now).id_proof;
    refused_register(&node, r, Code::Unauthenticated, "id_proof").await;

    // Device cert signed by another K_id.
    let other = SecretKey::generate();
    let mut r = id.register_request(&aud, "Eve", None, now);
    let foreign = DeviceCert::issue(
        &other,
        id.device_key.public(),
        "laptop",
        now - 1000,
        now + 100_000,
    );
    r.device_cert = Some(guildhall::convert::device_cert_to_proto(&foreign));
    refused_register(&node, r, Code::Unauthenticated, "device_cert").await;

    // Expired and not-yet-valid certs.
    for (issued, expiry, needle) in [
        (now - 10_000, now - 1, "expired"),
        (now + SKEW + 60_000, now + SKEW + 120_000, "not valid until"),
    ] {
        let dev = SecretKey::generate();
        let mut ident = ClientIdentity::from_keys(SecretKey::generate(), dev, "laptop", now);
        ident.cert = DeviceCert::issue(
            &ident.id_key,
            ident.device_key.public(),
            "laptop",
            issued,
            expiry,
        );
        let r = ident.register_request(&aud, "Eve", None, now);
        refused_register(&node, r, Code::Unauthenticated, needle).await;
    }

    // Signature by a key other than the certified device key.
    let mut r = id.register_request(&aud, "Eve", None, now);
    let wrong_device = ClientIdentity::from_keys(
        id.id_key.clone(),
        SecretKey::generate(),
        "laptop",
        now - 1000,
    );
    r.signature = wrong_device
        .register_request(&aud, "Eve", None, now)
        .signature;
    refused_register(&node, r, Code::Unauthenticated, "signature").await;

    // A request signed for another server.
    let elsewhere = SecretKey::generate().public();
    let r = id.register_request(&elsewhere, "Eve", None, now);
    refused_register(&node, r, Code::Unauthenticated, "for this server").await;

    // Timestamps outside the window, either way.
    let r = id.register_request(&aud, "Eve", None, now - SKEW - 60_000);
    refused_register(&node, r, Code::Unauthenticated, "in the past").await;
    let r = id.register_request(&aud, "Eve", None, now + SKEW + 60_000);
    refused_register(&node, r, Code::Unauthenticated, "in the future").await;

    // Tampering with a signed field after signing.
    let mut r = id.register_request(&aud, "Eve", None, now);
    r.display_name = "Mallory".into();
    refused_register(&node, r, Code::Unauthenticated, "signature").await;

    // Malformed encodings.
    let mut r = id.register_request(&aud, "Eve", None, now);
    r.public_key = "zz".into();
    assert_status(
        node.client().await.register(r).await,
        Code::InvalidArgument,
        "public_key",
    );
    let mut r = id.register_request(&aud, "Eve", None, now);
    r.signature.truncate(10);
    refused_register(
        &node,
        r,
        Code::InvalidArgument,
        "signature: must be 64 bytes",
    )
    .await;
    let mut r = id.register_request(&aud, "Eve", None, now);
    r.device_cert = None;
    refused_register(&node, r, Code::InvalidArgument, "device_cert: is required").await;

    // After all that, the genuine request still works.
    node.client()
        .await
        .register(id.register_request(&aud, "Eve", None, now))
        .await
        .expect("genuine registration succeeds");
}

#[tokio::test]
async fn register_refuses_replays_and_duplicates() {
    let node = TestNode::spawn().await;
    let id = new_identity("laptop");
    let request = id.register_request(&node.audience(), "Bob", None, now_ms());
    node.client()
        .await
        .register(request.clone())
        .await
        .expect("first");
    assert_status(
        node.client().await.register(request).await,
        Code::Unauthenticated,
        "already used",
    );
    // A fresh request for the same identity: already registered.
    let again = id.register_request(&node.audience(), "Bob", None, now_ms() + 1);
    assert_status(
        node.client().await.register(again).await,
        Code::AlreadyExists,
        "already registered",
    );
}

#[tokio::test]
async fn register_refuses_bad_names_and_sizes() {
    let node = TestNode::spawn().await;
    let aud = node.audience();
    let id = new_identity("laptop");
    for (name, needle) in [
        ("", "display_name: must be 1-32"),
        ("   ", "display_name: must be 1-32"),
        (&"x".repeat(33), "display_name: must be 1-32"),
        ("everyone", "display_name: \"everyone\" is reserved"),
        ("Here", "reserved"),
        ("sys\u{200B}tem", "zero-width"),
    ] {
        let r = id.register_request(&aud, name, None, now_ms());
        refused_register(&node, r, Code::InvalidArgument, needle).await;
    }
    let r = id.register_request(&aud, "Fine", Some(&"d".repeat(65)), now_ms());
    refused_register(&node, r, Code::InvalidArgument, "device_name").await;
}

#[tokio::test]
async fn login_known_and_new_devices() {
    let node = TestNode::spawn().await;
    let aud = node.audience();
    let ada = register(&node, "Ada").await;

    // The registered device, without user_id: found by its key.
    let mut request = ada.identity.login_request(&aud, now_ms());
    request.user_id = None;
    ada.identity.sign_login(&aud, &mut request);
    let reply = node
        .client()
        .await
        .login(request)
        .await
        .expect("login")
        .into_inner();
    assert_eq!(reply.user.expect("user").id, ada.user.id);

    // A new device certified by the same K_id, with user_id.
    let laptop = ada.identity.new_device("laptop", now_ms() - 1000);
    let mut request = laptop.login_request(&aud, now_ms());
    request.device_name = Some("Laptop".into());
    laptop.sign_login(&aud, &mut request);
    let reply = node
        .client()
        .await
        .login(request)
        .await
        .expect("new device")
        .into_inner();
    let data = node
        .client()
        .await
        .get_my_data(authed(&reply.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner();
    assert_eq!(data.device_certificates.len(), 2);

    // A new device without user_id can't be resolved.
    let tablet = ada.identity.new_device("tablet", now_ms() - 1000);
    let mut request = tablet.login_request(&aud, now_ms());
    request.user_id = None;
    tablet.sign_login(&aud, &mut request);
    assert_status(
        node.client().await.login(request).await,
        Code::NotFound,
        "unknown device",
    );
}

#[tokio::test]
async fn login_refusals() {
    let node = TestNode::spawn().await;
    let aud = node.audience();
    let ada = register(&node, "Ada").await;

    // Replay of the same signed login.
    let request = ada.identity.login_request(&aud, now_ms());
    node.client()
        .await
        .login(request.clone())
        .await
        .expect("first login");
    assert_status(
        node.client().await.login(request).await,
        Code::Unauthenticated,
        "already used",
    );

    // Signed for another server.
    let request = ada
        .identity
        .login_request(&SecretKey::generate().public(), now_ms());
    assert_status(
        node.client().await.login(request).await,
        Code::Unauthenticated,
        "signature",
    );

    // Stale timestamp.
    let request = ada.identity.login_request(&aud, now_ms() - SKEW - 1000);
    assert_status(
        node.client().await.login(request).await,
        Code::Unauthenticated,
        "timestamp",
    );

    // A device certified by someone else claiming Ada's id.
    let mallory = new_identity("evil");
    let mut request = mallory.login_request(&aud, now_ms());
    request.user_id = Some(ada.user.id.clone());
    mallory.sign_login(&aud, &mut request);
    assert_status(
        node.client().await.login(request).await,
        Code::Unauthenticated,
        "device_cert",
    );

    // An identity that never registered here.
    let stranger = new_identity("x");
    assert_status(
        node.client()
            .await
            .login(stranger.login_request(&aud, now_ms()))
            .await,
        Code::NotFound,
        "registered",
    );

    // Migration fields: partial, or signed by the wrong key.
    let mut request = ada.identity.login_request(&aud, now_ms());
    request.new_homeserver = Some("https://new.example".into());
    ada.identity.sign_login(&aud, &mut request);
    assert_status(
        node.client().await.login(request).await,
        Code::InvalidArgument,
        "go together",
    );
    let mut request = ada.identity.login_request(&aud, now_ms());
    // Signed by another identity than the one logging in.
    stranger
        .homeserver_move(&node.address(), now_ms(), 1, Vec::new())
        .apply_to_login(&mut request);
    ada.identity.sign_login(&aud, &mut request);
    assert_status(
        node.client().await.login(request).await,
        Code::Unauthenticated,
        "migration_signature",
    );
}

#[tokio::test]
async fn login_with_a_valid_migration_is_accepted() {
    let node = TestNode::spawn().await;
    let aud = node.audience();
    let ada = register(&node, "Ada").await;
    let mut request = ada.identity.login_request(&aud, now_ms());
    ada.identity
        .homeserver_move(&node.address(), now_ms(), 1, Vec::new())
        .apply_to_login(&mut request);
    request.migration_targets = vec!["https://old.example".into()];
    ada.identity.sign_login(&aud, &mut request);
    node.client()
        .await
        .login(request)
        .await
        .expect("login with migration");
}

#[tokio::test]
async fn tokens_missing_unknown_and_revoked() {
    let node = TestNode::spawn().await;
    let mut client = node.client().await;
    assert_status(
        client.get_my_data(pb::Empty {}).await,
        Code::Unauthenticated,
        "authorization: missing",
    );
    assert_status(
        client.get_my_data(authed("deadbeef", pb::Empty {})).await,
        Code::Unauthenticated,
        "unknown",
    );
    let mut request = tonic::Request::new(pb::Empty {});
    request
        .metadata_mut()
        .insert("authorization", "Basic abc".parse().expect("ascii"));
    assert_status(
        client.get_my_data(request).await,
        Code::Unauthenticated,
        "Bearer",
    );

    // Refresh rotates: the old access token stops working, the new one works.
    let ada = register(&node, "Ada").await;
    let rotated = client
        .refresh(pb::RefreshRequest {
            refresh_token: ada.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner();
    assert_ne!(rotated.token, ada.token);
    assert_status(
        client.get_my_data(authed(&ada.token, pb::Empty {})).await,
        Code::Unauthenticated,
        "revoked",
    );
    client
        .get_my_data(authed(&rotated.token, pb::Empty {}))
        .await
        .expect("new token works");
    let mut lower = tonic::Request::new(pb::Empty {});
    lower.metadata_mut().insert(
        "authorization",
        format!("bearer {}", rotated.token).parse().expect("ascii"),
    );
    client
        .get_my_data(lower)
        .await
        .expect("the scheme is case-insensitive");

    // Presenting the spent refresh token again revokes the whole family.
    assert_status(
        client
            .refresh(pb::RefreshRequest {
                refresh_token: ada.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "already used",
    );
    assert_status(
        client
            .get_my_data(authed(&rotated.token, pb::Empty {}))
            .await,
        Code::Unauthenticated,
        "revoked",
    );
    assert_status(
        client
            .refresh(pb::RefreshRequest {
                refresh_token: rotated.refresh_token,
            })
            .await,
        Code::Unauthenticated,
        "already used",
    );
    assert_status(
        client
            .refresh(pb::RefreshRequest {
                refresh_token: "nope".into(),
            })
            .await,
        Code::Unauthenticated,
        "unknown",
    );
    assert_status(
        client
            .refresh(pb::RefreshRequest {
                refresh_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "refresh_token",
    );
}

#[tokio::test]
async fn verify_user_vouches_with_a_delegation_token() {
    let node = TestNode::spawn().await;
    let aud = node.audience();
    let ada = register(&node, "Ada").await;
    // VerifyUser is a server-to-server call: another node asks, signing the call.
    let peer = TestNode::spawn().await;
    let mut client = peer.federation_client(&node).await;
    let challenge = ada.identity.verify_challenge(&aud, now_ms());
    let reply = client
        .verify_user(pb::VerifyUserRequest {
            user_id: ada.user.id.clone(),
            challenge: challenge.clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(reply.user.expect("user").id, ada.user.id);
    assert_eq!(reply.push_delegation_token.len(), 64);

    let replay = pb::VerifyUserRequest {
        user_id: ada.user.id.clone(),
        challenge,
    };
    assert_status(
        client.verify_user(replay).await,
        Code::Unauthenticated,
        "already used",
    );
    let elsewhere = pb::VerifyUserRequest {
        user_id: ada.user.id.clone(),
        challenge: ada
            .identity
            .verify_challenge(&SecretKey::generate().public(), now_ms()),
    };
    assert_status(
        client.verify_user(elsewhere).await,
        Code::Unauthenticated,
        "challenge",
    );
    let stale = pb::VerifyUserRequest {
        user_id: ada.user.id.clone(),
        challenge: ada.identity.verify_challenge(&aud, now_ms() - SKEW - 1000),
    };
    assert_status(
        client.verify_user(stale).await,
        Code::Unauthenticated,
        "clock skew",
    );
    let garbled = pb::VerifyUserRequest {
        user_id: ada.user.id.clone(),
        challenge: "hello".into(),
    };
    assert_status(
        client.verify_user(garbled).await,
        Code::InvalidArgument,
        "challenge",
    );
    let stranger = new_identity("x");
    let unknown = pb::VerifyUserRequest {
        user_id: stranger.user_id(),
        challenge: stranger.verify_challenge(&aud, now_ms()),
    };
    assert_status(client.verify_user(unknown).await, Code::NotFound, "user_id");
}

fn update(
    ada: &common::TestUser,
    edit: impl FnOnce(&mut pb::UpdateUserRequest),
) -> pb::UpdateUserRequest {
    let mut request = pb::UpdateUserRequest {
        timestamp: now_ms(),
        ..Default::default()
    };
    edit(&mut request);
    ada.identity.sign_update(&mut request);
    request
}

#[tokio::test]
async fn update_user_applies_signed_changes() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let mut client = node.client().await;
    let request = update(&ada, |r| {
        r.name = Some("Countess".into());
        r.bio = Some("first programmer".into());
        r.irc_name = Some("ada.l".into());
        r.avatar_url = Some("https://example.org/ada.png".into());
        r.presence_preference = Some(4);
        r.guild_order = Some("[\"g1\"]".into());
        r.is_profile_synced = Some(true);
    });
    let user = client
        .update_user(authed(&ada.token, request))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(user.name, "Countess");
    assert_eq!(user.bio, "first programmer");
    assert_eq!(user.irc_name, "ada.l");
    assert_eq!(user.presence_preference, 4);
    assert!(user.is_profile_synced);

    // Only the fields sent change; an empty bio clears it.
    let request = update(&ada, |r| r.bio = Some(String::new()));
    let user = client
        .update_user(authed(&ada.token, request))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(user.bio, "");
    assert_eq!(user.name, "Countess");
}

#[tokio::test]
async fn update_user_refusals_change_nothing() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let mut client = node.client().await;
    let taken = update(&bob, |r| r.irc_name = Some("bob".into()));
    client
        .update_user(authed(&bob.token, taken))
        .await
        .expect("bob's irc name");

    let cases: Vec<(pb::UpdateUserRequest, Code, &str)> = vec![
        (
            update(&ada, |r| r.name = Some("everyone".into())),
            Code::InvalidArgument,
            "name",
        ),
        (
            update(&ada, |r| r.bio = Some("b".repeat(191))),
            Code::InvalidArgument,
            "bio: must be at most 190",
        ),
        (
            update(&ada, |r| r.irc_name = Some("A..b".into())),
            Code::InvalidArgument,
            "irc_name",
        ),
        (
            update(&ada, |r| r.irc_name = Some("bob".into())),
            Code::AlreadyExists,
            "irc_name: already taken",
        ),
        (
            update(&ada, |r| r.avatar_url = Some("javascript:alert(1)".into())),
            Code::InvalidArgument,
            "avatar_url",
        ),
        (
            update(&ada, |r| r.presence_preference = Some(2)),
            Code::InvalidArgument,
            "presence_preference",
        ),
        (
            update(&ada, |r| r.guild_order = Some("nope".into())),
            Code::InvalidArgument,
            "guild_order",
        ),
        (
            update(&ada, |r| r.timestamp = now_ms() - SKEW - 1000),
            Code::Unauthenticated,
            "timestamp",
        ),
        (
            {
                let mut r = update(&ada, |r| r.name = Some("Signed".into()));
                r.name = Some("Tampered".into());
                r
            },
            Code::Unauthenticated,
            "signature",
        ),
        (
            // Signed by Bob's device for Ada's session.
            update(&bob, |r| r.name = Some("Hijack".into())),
            Code::Unauthenticated,
            "device_cert",
        ),
    ];
    for (request, code, needle) in cases {
        assert_status(
            client.update_user(authed(&ada.token, request)).await,
            code,
            needle,
        );
    }
    // A different device of Ada's, used over the phone's session.
    let laptop = common::TestUser {
        identity: ada.identity.new_device("laptop", now_ms() - 1000),
        token: String::new(),
        refresh_token: String::new(),
        user: ada.user.clone(),
    };
    let request = update(&laptop, |r| r.name = Some("Other".into()));
    assert_status(
        client.update_user(authed(&ada.token, request)).await,
        Code::PermissionDenied,
        "not the device",
    );

    // Replays and older timestamps.
    let request = update(&ada, |r| r.name = Some("Newer".into()));
    let older = update(&ada, |r| {
        r.name = Some("Older".into());
        r.timestamp = now_ms() - 10_000;
    });
    client
        .update_user(authed(&ada.token, request.clone()))
        .await
        .expect("newer applies");
    assert_status(
        client.update_user(authed(&ada.token, request)).await,
        Code::Unauthenticated,
        "already used",
    );
    assert_status(
        client.update_user(authed(&ada.token, older)).await,
        Code::FailedPrecondition,
        "newer",
    );

    let me = client
        .get_my_data(authed(&ada.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(me.name, "Newer");
    assert_eq!(me.bio, "");
    assert_eq!(me.irc_name, "");
}

#[tokio::test]
async fn get_users_and_server_list() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let mut client = node.client().await;
    let users = client
        .get_users(authed(
            &ada.token,
            pb::GetUsersRequest {
                user_ids: vec![
                    bob.user.id.clone(),
                    new_identity("x").user_id(),
                    ada.user.id.clone(),
                ],
                guild_id: String::new(),
            },
        ))
        .await
        .expect("get users")
        .into_inner()
        .users;
    let names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["Bob", "Ada"]);
    assert_status(
        client
            .get_users(authed(
                &ada.token,
                pb::GetUsersRequest {
                    user_ids: vec!["not-hex".into()],
                    guild_id: String::new(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "user_ids[0]",
    );
    assert_status(
        client
            .get_users(authed(
                &ada.token,
                pb::GetUsersRequest {
                    user_ids: vec![bob.user.id.clone(); 101],
                    guild_id: String::new(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "at most 100",
    );

    let add = |url: &str| {
        authed(
            &ada.token,
            pb::AddServerRequest {
                server_url: url.into(),
            },
        )
    };
    client
        .add_server(add("https://a.example"))
        .await
        .expect("add");
    client
        .add_server(add("https://a.example"))
        .await
        .expect("add twice is a no-op");
    client
        .add_server(add("https://b.example:8443"))
        .await
        .expect("add");
    assert_status(
        client.add_server(add("not a url")).await,
        Code::InvalidArgument,
        "server_url",
    );
    let servers: Vec<_> = client
        .get_my_data(authed(&ada.token, pb::Empty {}))
        .await
        .expect("data")
        .into_inner()
        .servers
        .into_iter()
        .map(|s| s.server_url)
        .collect();
    assert_eq!(servers, ["https://a.example", "https://b.example:8443"]);
    let remove = |url: &str| {
        authed(
            &ada.token,
            pb::RemoveServerRequest {
                server_url: url.into(),
            },
        )
    };
    client
        .remove_server(remove("https://a.example"))
        .await
        .expect("remove");
    assert_status(
        client.remove_server(remove("https://a.example")).await,
        Code::NotFound,
        "server_url",
    );
}

#[tokio::test]
async fn remaining_refusals() {
    let node = TestNode::spawn().await;
    let aud = node.audience();
    let ada = register(&node, "Ada").await;

    // Another identity certifying Ada's device key: the key belongs to Ada.
    let mallory_id = SecretKey::generate();
    let stolen = ClientIdentity {
        cert: DeviceCert::issue(
            &mallory_id,
            ada.identity.device_key.public(),
            "phone",
            now_ms() - 1000,
            now_ms() + 100_000,
        ),
        id_key: mallory_id,
        device_key: ada.identity.device_key.clone(),
    };
    let request = stolen.register_request(&aud, "Mallory", None, now_ms());
    refused_register(
        &node,
        request,
        Code::AlreadyExists,
        "belongs to another identity",
    )
    .await;

    // Migration targets without a move.
    let mut request = ada.identity.login_request(&aud, now_ms());
    request.migration_targets = vec!["https://old.example".into()];
    ada.identity.sign_login(&aud, &mut request);
    assert_status(
        node.client().await.login(request).await,
        Code::InvalidArgument,
        "migration_targets",
    );

    // Filtering users by a guild that does not exist.
    assert_status(
        node.client()
            .await
            .get_users(authed(
                &ada.token,
                pb::GetUsersRequest {
                    user_ids: vec![ada.user.id.clone()],
                    guild_id: "g1".into(),
                },
            ))
            .await,
        Code::NotFound,
        "guild_id",
    );
}
