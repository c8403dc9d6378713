//! Who may register (the `registration` policy, registration tokens, invites that register) and
//! the admin service `guildhall.admin.v1`: every method refused to non-admins with nothing
//! changed, and every admin action recorded in the audit log. Over the network, with real gRPC
//! clients.

mod common;

use common::*;
use guildhall::accounts::registration::RegistrationPolicy;
use guildhall::client::ClientIdentity;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::admin::v1 as ad;
use guildhall::proto::guildhall::admin::v1::admin_client::AdminClient;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

/// Uploads `data` as a text file in one chunk.
async fn upload_text(node: &TestNode, who: &TestUser, data: &[u8]) -> pb::UploadMediaResponse {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(data));
    let mut c = node.client().await;
    let token = c
        .initiate_media_upload(authed(&who.token, pb::InitiateMediaUploadRequest {}))
        .await
        .expect("initiate")
        .into_inner()
        .upload_token;
    c.upload_begin(authed(
        &who.token,
        pb::UploadBeginRequest {
            upload_token: token.clone(),
            filename: "note.txt".into(),
            mime_type: "text/plain".into(),
            total_size: data.len() as u64,
            chunk_size: 64 * 1024,
        },
    ))
    .await
    .expect("begin");
    c.upload_chunk(authed(
        &who.token,
        pb::UploadChunkRequest {
            upload_token: token.clone(),
            chunk_index: 0,
            data: data.to_vec(),
            sha256: sha.clone(),
        },
    ))
    .await
    .expect("chunk");
    c.upload_finish(authed(
        &who.token,
        pb::UploadFinishRequest {
            upload_token: token,
            sha256: sha,
        },
    ))
    .await
    .expect("finish")
    .into_inner()
}

/// The HTTP status of a GET of `url`'s path on the node's port.
async fn http_get(node: &TestNode, url: &str) -> u16 {
    use http_body_util::Empty;
    let path = &url[url.find("/media/").expect("media url")..];
    let stream = tokio::net::TcpStream::connect(node.node().grpc_addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    sender
        .send_request(request)
        .await
        .expect("response")
        .status()
        .as_u16()
}

/// An address nothing listens on (port 1 refuses connections): deliveries to it stay queued.
const DEAD_PEER: &str = "http://127.0.0.1:1";

/// A node with `policy` whose server admin is registered, and that admin.
async fn node_with_admin(policy: Option<RegistrationPolicy>) -> (TestNode, TestUser) {
    let admin = new_identity("phone");
    let id = admin.user_id();
    let node = TestNode::spawn_with(|c| {
        c.admins = vec![id];
        c.registration = policy;
    })
    .await;
    // Admins register whatever the policy.
    let admin = register_as(&node, &admin, "Admin").await;
    (node, admin)
}

async fn admin_client(node: &TestNode) -> AdminClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(node.address())
        .expect("address")
        .connect()
        .await
        .expect("connect");
    AdminClient::new(channel)
}

/// `identity` asks to register with `token` (empty: none).
async fn try_register(
    node: &TestNode,
    identity: &ClientIdentity,
    token: &str,
) -> Result<pb::RegisterResponse, tonic::Status> {
    let mut request = identity.register_request(&node.audience(), "New", None, now_ms());
    request.registration_token = token.to_owned();
    node.client()
        .await
        .register(request)
        .await
        .map(|r| r.into_inner())
}

/// `identity` asks to join with `invite`, presenting `token` (empty: none).
async fn try_join(
    node: &TestNode,
    identity: &ClientIdentity,
    invite: &str,
    token: &str,
) -> Result<pb::JoinInviteResponse, tonic::Status> {
    let mut request = identity.join_invite_request(&node.audience(), invite, "Joiner", now_ms());
    request.registration_token = token.to_owned();
    node.client()
        .await
        .join_invite(request)
        .await
        .map(|r| r.into_inner())
}

async fn create_token(
    node: &TestNode,
    admin: &TestUser,
    max_uses: u32,
) -> ad::CreateRegistrationTokenResponse {
    admin_client(node)
        .await
        .create_registration_token(authed(
            &admin.token,
            ad::CreateRegistrationTokenRequest {
                max_uses,
                max_age_secs: None,
                note: "for a test".into(),
            },
        ))
        .await
        .expect("admin makes a token")
        .into_inner()
}

async fn invite(
    node: &TestNode,
    who: &TestUser,
    channel: &str,
    allow: bool,
) -> Result<String, tonic::Status> {
    node.client()
        .await
        .generate_invite(authed(
            &who.token,
            pb::GenerateInviteRequest {
                channel_id: channel.into(),
                max_age_secs: None,
                max_uses: None,
                allow_registration: allow,
            },
        ))
        .await
        .map(|r| r.into_inner().token)
}

#[tokio::test]
async fn a_loopback_node_is_open_by_default_and_a_token_is_ignored_there() {
    let node = TestNode::spawn().await;
    try_register(&node, &new_identity("a"), "")
        .await
        .expect("open on loopback");
    try_register(&node, &new_identity("b"), "not-a-token")
        .await
        .expect("an open node ignores the token");
}

#[tokio::test]
async fn a_closed_node_registers_nobody_but_its_admins_and_their_invites() {
    let (node, admin) = node_with_admin(Some(RegistrationPolicy::Closed)).await;
    let stranger = new_identity("s");
    assert_status(
        try_register(&node, &stranger, "").await,
        Code::PermissionDenied,
        "registration: this server does not register new accounts (registration = \"closed\")",
    );
    let room = create_room(&node, &admin, "Hall").await;
    // An ordinary invite doesn't register new people on a closed node.
    assert_status(
        try_join(&node, &stranger, &room.invite, "").await,
        Code::PermissionDenied,
        "token: this server does not register new accounts (registration = \"closed\"); this \
         invite does not let new people register",
    );
    // An admin's invite made to register does.
    let open_invite = invite(&node, &admin, &room.channel, true)
        .await
        .expect("admins may make invites that register");
    try_join(&node, &stranger, &open_invite, "")
        .await
        .expect("the admin's invite registers");
    let listed = node
        .client()
        .await
        .list_invites(authed(
            &admin.token,
            pb::ListInvitesRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .invites;
    assert!(
        listed
            .iter()
            .any(|i| i.token == open_invite && i.allows_registration)
    );
    assert!(
        listed
            .iter()
            .any(|i| i.token == room.invite && !i.allows_registration)
    );
}

#[tokio::test]
async fn only_server_admins_make_invites_that_register() {
    let node = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    assert_status(
        invite(&node, &owner, &room.channel, true).await,
        Code::PermissionDenied,
        "allow_registration: only server admins may make invites that register new accounts",
    );
}

#[tokio::test]
async fn a_token_node_registers_with_a_valid_token_only() {
    let (node, admin) = node_with_admin(Some(RegistrationPolicy::Token)).await;
    assert_status(
        try_register(&node, &new_identity("a"), "").await,
        Code::PermissionDenied,
        "registration_token: is required: this server registers new accounts only with a \
         registration token from its admins (registration = \"token\")",
    );
    assert_status(
        try_register(&node, &new_identity("a"), "0123").await,
        Code::PermissionDenied,
        "registration_token: no such registration token on this server",
    );
    let one = create_token(&node, &admin, 1).await;
    let info = one.info.clone().expect("info");
    assert_eq!((info.uses, info.max_uses), (0, 1));
    assert!(info.expires_at.is_some(), "tokens expire by default");
    try_register(&node, &new_identity("a"), &one.token)
        .await
        .expect("a valid token registers");
    assert_status(
        try_register(&node, &new_identity("b"), &one.token).await,
        Code::FailedPrecondition,
        "registration_token: this registration token has been used its maximum number of times",
    );

    // Joining as a new user: the same policy; a known user needs nothing.
    let room = create_room(&node, &admin, "Hall").await;
    let joiner = new_identity("j");
    assert_status(
        try_join(&node, &joiner, &room.invite, "").await,
        Code::PermissionDenied,
        "registration_token: is required",
    );
    let many = create_token(&node, &admin, 0).await;
    try_join(&node, &joiner, &room.invite, &many.token)
        .await
        .expect("a token lets a new user join");
    try_join(&node, &joiner, &room.invite, "")
        .await
        .expect("a known user joins without a token");

    // Revoked: refused from then on, and listed only with --all.
    let mut a = admin_client(&node).await;
    let revoked = a
        .revoke_registration_token(authed(
            &admin.token,
            ad::RevokeRegistrationTokenRequest {
                id: many.info.expect("info").id.clone(),
            },
        ))
        .await
        .expect("revoke")
        .into_inner();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.uses, 1, "the join spent one use");
    assert_status(
        try_register(&node, &new_identity("c"), &many.token).await,
        Code::FailedPrecondition,
        "registration_token: this registration token was revoked by a server admin",
    );
    let list = |all: bool| {
        let mut a = a.clone();
        let token = admin.token.clone();
        async move {
            a.list_registration_tokens(authed(
                &token,
                ad::ListRegistrationTokensRequest {
                    include_inactive: all,
                },
            ))
            .await
            .expect("list")
            .into_inner()
            .tokens
        }
    };
    assert!(list(false).await.is_empty(), "both are used up or revoked");
    assert_eq!(list(true).await.len(), 2);
}

#[tokio::test]
async fn every_admin_action_is_audited_with_its_result() {
    let (node, admin) = node_with_admin(None).await;
    let made = create_token(&node, &admin, 3).await;
    let id = made.info.expect("info").id;
    let mut a = admin_client(&node).await;
    assert_status(
        a.create_registration_token(authed(
            &admin.token,
            ad::CreateRegistrationTokenRequest {
                max_uses: 2_000_000,
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "max_uses: must be 0 (unlimited) to 1000000",
    );
    assert_status(
        a.revoke_registration_token(authed(
            &admin.token,
            ad::RevokeRegistrationTokenRequest { id: "nope".into() },
        ))
        .await,
        Code::NotFound,
        "id: no registration token \"nope\"",
    );
    a.revoke_registration_token(authed(
        &admin.token,
        ad::RevokeRegistrationTokenRequest { id: id.clone() },
    ))
    .await
    .expect("revoke");
    let log = a
        .list_audit_log(authed(&admin.token, ad::ListAuditLogRequest::default()))
        .await
        .expect("audit log")
        .into_inner();
    let seen: Vec<(&str, &str, &str)> = log
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str(), e.result.as_str()))
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], ("RevokeRegistrationToken", id.as_str(), "ok"));
    assert_eq!(seen[1].0, "RevokeRegistrationToken");
    assert!(seen[1].2.starts_with("NotFound: id:"), "{seen:?}");
    assert_eq!(seen[2].0, "CreateRegistrationToken");
    assert!(
        seen[2].2.starts_with("InvalidArgument: max_uses:"),
        "{seen:?}"
    );
    assert_eq!(seen[3], ("CreateRegistrationToken", id.as_str(), "ok"));
    assert!(
        log.entries
            .iter()
            .all(|e| e.actor == admin.user.id && e.at.is_some())
    );
    // Paging and filters.
    let page = a
        .list_audit_log(authed(
            &admin.token,
            ad::ListAuditLogRequest {
                limit: 3,
                ..Default::default()
            },
        ))
        .await
        .expect("page")
        .into_inner();
    assert_eq!(page.entries.len(), 3);
    let rest = a
        .list_audit_log(authed(
            &admin.token,
            ad::ListAuditLogRequest {
                before_id: page.next_before_id,
                ..Default::default()
            },
        ))
        .await
        .expect("next page")
        .into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(rest.next_before_id, 0);
    let creates = a
        .list_audit_log(authed(
            &admin.token,
            ad::ListAuditLogRequest {
                action: "CreateRegistrationToken".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("filtered")
        .into_inner();
    assert_eq!(creates.entries.len(), 2);
}

/// Every method of the admin service, called by `token` with a request that an admin's call
/// would act on.
/// Every method of `guildhall.admin.v1.Admin`, from the node's descriptor set, sorted.
fn admin_methods() -> Vec<String> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(guildhall::proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let file = set
        .file
        .iter()
        .find(|f| f.package() == "guildhall.admin.v1")
        .expect("the admin package");
    let mut names: Vec<String> = file.service[0]
        .method
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    names.sort_unstable();
    names
}

/// What the refusal table's calls name: things that exist, so an admin's calls act on them.
struct Targets {
    token_id: String,
    user: String,
    guild: String,
    channel: String,
    message: String,
    file: String,
}

async fn call_every_method(
    a: &mut AdminClient<Channel>,
    token: &str,
    t: &Targets,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let (token_id, target_user) = (t.token_id.as_str(), t.user.as_str());
    let mut results = Vec::new();
    results.push((
        "CreateRegistrationToken",
        a.create_registration_token(authed(token, ad::CreateRegistrationTokenRequest::default()))
            .await
            .map(drop),
    ));
    results.push((
        "ListRegistrationTokens",
        a.list_registration_tokens(authed(token, ad::ListRegistrationTokensRequest::default()))
            .await
            .map(drop),
    ));
    results.push((
        "RevokeRegistrationToken",
        a.revoke_registration_token(authed(
            token,
            ad::RevokeRegistrationTokenRequest {
                id: token_id.into(),
            },
        ))
        .await
        .map(drop),
    ));
    results.push((
        "ListUsers",
        a.list_users(authed(token, ad::ListUsersRequest::default()))
            .await
            .map(drop),
    ));
    let user = || ad::UserRequest {
        user_id: target_user.into(),
    };
    results.push(("GetUser", a.get_user(authed(token, user())).await.map(drop)));
    // Reactivating first: an admin's pass through the table leaves the user active.
    results.push((
        "ReactivateUser",
        a.reactivate_user(authed(token, user())).await.map(drop),
    ));
    results.push((
        "DeactivateUser",
        a.deactivate_user(authed(token, user())).await.map(drop),
    ));
    results.push((
        "ReactivateUser",
        a.reactivate_user(authed(token, user())).await.map(drop),
    ));
    // Content: the message and the file first, the channel, then the guild.
    results.push((
        "DeleteMessage",
        a.delete_message(authed(
            token,
            ad::DeleteMessageRequest {
                channel_id: t.channel.clone(),
                message_id: t.message.clone(),
            },
        ))
        .await
        .map(drop),
    ));
    results.push((
        "QuarantineFile",
        a.quarantine_file(authed(
            token,
            ad::QuarantineFileRequest {
                file_id: t.file.clone(),
            },
        ))
        .await
        .map(drop),
    ));
    results.push((
        "DeleteChannel",
        a.delete_channel(authed(
            token,
            ad::DeleteChannelRequest {
                channel_id: t.channel.clone(),
            },
        ))
        .await
        .map(drop),
    ));
    results.push((
        "DeleteGuild",
        a.delete_guild(authed(
            token,
            ad::DeleteGuildRequest {
                guild_id: t.guild.clone(),
            },
        ))
        .await
        .map(drop),
    ));
    results.push((
        "GetNodeStatus",
        a.get_node_status(authed(token, ad::GetNodeStatusRequest {}))
            .await
            .map(drop),
    ));
    results.push((
        "ListPeers",
        a.list_peers(authed(token, ad::ListPeersRequest {}))
            .await
            .map(drop),
    ));
    results.push((
        "ListOutbox",
        a.list_outbox(authed(token, ad::ListOutboxRequest {}))
            .await
            .map(drop),
    ));
    let destination = || ad::OutboxDestinationRequest {
        destination: DEAD_PEER.into(),
    };
    results.push((
        "RetryOutbox",
        a.retry_outbox(authed(token, destination())).await.map(drop),
    ));
    results.push((
        "ListGossipMesh",
        a.list_gossip_mesh(authed(token, ad::ListGossipMeshRequest {}))
            .await
            .map(drop),
    ));
    results.push((
        "ListBanLists",
        a.list_ban_lists(authed(token, ad::ListBanListsRequest::default()))
            .await
            .map(drop),
    ));
    // Last: an admin's pass drops the queue the others looked at.
    results.push((
        "DropOutbox",
        a.drop_outbox(authed(token, destination())).await.map(drop),
    ));
    results.push((
        "ListAuditLog",
        a.list_audit_log(authed(token, ad::ListAuditLogRequest::default()))
            .await
            .map(drop),
    ));
    results
}

#[tokio::test]
async fn every_admin_method_is_refused_to_non_admins_and_changes_nothing() {
    let (node, admin) = node_with_admin(None).await;
    let user = register(&node, "User").await;
    let victim = register(&node, "Victim").await;
    let made = create_token(&node, &admin, 1).await;
    // Something queued for a peer that never answers, for the outbox methods to act on.
    node.node()
        .outbox
        .enqueue(DEAD_PEER, "UpdateHomeServer", Vec::new())
        .await
        .expect("enqueue");
    let id = made.info.expect("info").id;
    let room = create_room(&node, &victim, "Hall").await;
    let message = send_text(&node, &victim.token, &room.channel, "hello").await;
    let file = upload_text(&node, &victim, b"some bytes").await;
    let targets = Targets {
        token_id: id.clone(),
        user: victim.user.id.clone(),
        guild: room.guild.clone(),
        channel: room.channel.clone(),
        message: message.id.clone(),
        file: file.file_id.clone(),
    };
    let mut a = admin_client(&node).await;
    let audit_before = a
        .list_audit_log(authed(&admin.token, ad::ListAuditLogRequest::default()))
        .await
        .expect("log")
        .into_inner()
        .entries;

    let results = call_every_method(&mut a, &user.token, &targets).await;
    // The table covers every method the service has (a new one can't be left out).
    let mut called: Vec<String> = results.iter().map(|(m, _)| (*m).to_owned()).collect();
    called.sort_unstable();
    called.dedup();
    assert_eq!(called, admin_methods());
    for (method, result) in results {
        match result {
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "{method}: {status:?}"
                );
                assert!(
                    status
                        .message()
                        .contains("only this server's admins (the `admins` setting)"),
                    "{method}: {status:?}"
                );
            }
            Ok(()) => panic!("{method}: a non-admin was let through"),
        }
    }
    for (method, result) in call_every_method(&mut a, "not-a-session", &targets).await {
        let status = result.expect_err(method);
        assert_eq!(status.code(), Code::Unauthenticated, "{method}: {status:?}");
    }
    let mut no_session = admin_client(&node).await;
    let status = no_session
        .list_audit_log(ad::ListAuditLogRequest::default())
        .await
        .expect_err("no session");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Nothing changed: the token is live and unused, no token was made, nothing was recorded.
    let tokens = a
        .list_registration_tokens(authed(
            &admin.token,
            ad::ListRegistrationTokensRequest {
                include_inactive: true,
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].revoked_at.is_none());
    // The queue the non-admin tried to drop is still there.
    assert_eq!(node.node().outbox.stats().await.expect("stats").pending, 1);
    // The message, the file, the channel and the guild are all still there.
    let history = node
        .client()
        .await
        .get_history(authed(
            &victim.token,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                limit: 10,
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner();
    assert!(history.messages.iter().any(|m| m.id == message.id));
    assert_eq!(http_get(&node, &file.public_url).await, 200);
    // The user the non-admin tried to deactivate still has their session.
    node.client()
        .await
        .get_my_data(authed(&victim.token, pb::Empty {}))
        .await
        .expect("the victim's session still works");
    let audit_after = a
        .list_audit_log(authed(&admin.token, ad::ListAuditLogRequest::default()))
        .await
        .expect("log")
        .into_inner()
        .entries;
    // The admin's own list above is the only new entry.
    assert_eq!(audit_after.len(), audit_before.len() + 1);
    assert!(audit_after.iter().all(|e| e.actor == admin.user.id));

    // The same calls by the admin go through.
    for (method, result) in call_every_method(&mut a, &admin.token, &targets).await {
        result.unwrap_or_else(|s| panic!("{method} by an admin: {s:?}"));
    }
}

#[tokio::test]
async fn admins_list_search_and_show_users() {
    let (node, admin) = node_with_admin(None).await;
    let ada = register(&node, "Ada Lovelace").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Engines").await;
    join_room(&node, &bob, &room.invite).await;
    let mut a = admin_client(&node).await;
    let list = |query: &str, page_token: &str, limit: u32| {
        let mut a = a.clone();
        let request = authed(
            &admin.token,
            ad::ListUsersRequest {
                query: query.into(),
                page_token: page_token.into(),
                limit,
            },
        );
        async move { a.list_users(request).await.map(|r| r.into_inner()) }
    };
    // Paged by id: everyone exactly once.
    let first = list("", "", 2).await.expect("page");
    assert_eq!(first.users.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let rest = list("", &first.next_page_token, 2).await.expect("page");
    assert_eq!(rest.users.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let mut ids: Vec<String> = first
        .users
        .iter()
        .chain(&rest.users)
        .map(|u| u.id.clone())
        .collect();
    ids.sort();
    let mut expected = vec![
        admin.user.id.clone(),
        ada.user.id.clone(),
        bob.user.id.clone(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    // Search: part of a name, any case; an id prefix.
    let found = list("lovel", "", 0).await.expect("search");
    assert_eq!(found.users.len(), 1);
    assert_eq!(found.users[0].id, ada.user.id);
    assert_eq!(found.users[0].guild_count, 1);
    assert_eq!(found.users[0].device_count, 1);
    assert!(found.users[0].last_seen_at.is_some());
    assert!(!found.users[0].is_server_admin);
    let by_id = list(&bob.user.id[..10], "", 0).await.expect("search");
    assert!(by_id.users.iter().any(|u| u.id == bob.user.id));
    assert_status(
        list(&"x".repeat(101), "", 0).await,
        Code::InvalidArgument,
        "query: must be at most 100 characters",
    );
    assert_status(
        list("", "", 1001).await,
        Code::InvalidArgument,
        "limit: must be 0 (default 100) to 1000",
    );

    let shown = a
        .get_user(authed(
            &admin.token,
            ad::UserRequest {
                user_id: ada.user.id.clone(),
            },
        ))
        .await
        .expect("show")
        .into_inner();
    assert_eq!(shown.user.as_ref().expect("user").name, "Ada Lovelace");
    assert_eq!(shown.devices.len(), 1);
    assert_eq!(
        shown.devices[0].pubkey,
        ada.identity.cert.device_key.to_hex()
    );
    assert_eq!(shown.guilds.len(), 1);
    assert_eq!(shown.guilds[0].guild_id, room.guild);
    assert!(shown.guilds[0].is_owner);
    assert!(shown.open_sessions >= 1);
    assert_status(
        a.get_user(authed(
            &admin.token,
            ad::UserRequest {
                user_id: "00ff".into(),
            },
        ))
        .await,
        Code::NotFound,
        "user_id: no user \"00ff\" on this server",
    );
}

/// The next `user_updated` about `user_id` on `stream`, skipping other events.
async fn user_updated(
    stream: &mut tonic::Streaming<pb::StreamResponse>,
    user_id: &str,
) -> pb::User {
    next_matching(stream, |event| match event {
        pb::stream_response::Event::UserUpdated(u) => {
            u.user.clone().filter(|user| user.id == user_id)
        }
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_deactivated_account_loses_its_sessions_and_co_members_are_told() {
    let (node, admin) = node_with_admin(None).await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Hall").await;
    join_room(&node, &bob, &room.invite).await;
    let mut events = node
        .client()
        .await
        .subscribe_events(authed(&ada.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut bobs_events = node
        .client()
        .await
        .subscribe_events(authed(&bob.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut a = admin_client(&node).await;
    let bob_id = || ad::UserRequest {
        user_id: bob.user.id.clone(),
    };

    let details = a
        .deactivate_user(authed(&admin.token, bob_id()))
        .await
        .expect("deactivate")
        .into_inner();
    assert!(details.user.expect("user").deactivated_at.is_some());
    assert_eq!(details.open_sessions, 0);
    assert!(user_updated(&mut events, &bob.user.id).await.is_deactivated);
    // Bob's open stream hears it, then ends.
    assert!(
        user_updated(&mut bobs_events, &bob.user.id)
            .await
            .is_deactivated
    );
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), bobs_events.message())
        .await
        .expect("the stream ends within the wait");
    let status = end.expect_err("ends with a status");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("deactivated by a server admin"),
        "{status:?}"
    );

    // Sessions revoked, and none can be opened.
    let mut c = node.client().await;
    assert_status(
        c.get_my_data(authed(&bob.token, pb::Empty {})).await,
        Code::Unauthenticated,
        "authorization: token is unknown, expired or revoked",
    );
    assert_status(
        c.refresh(pb::RefreshRequest {
            refresh_token: bob.refresh_token.clone(),
        })
        .await,
        Code::Unauthenticated,
        "refresh_token: unknown or revoked",
    );
    assert_status(
        c.login(bob.identity.login_request(&node.audience(), now_ms()))
            .await,
        Code::FailedPrecondition,
        "user_id: this account was deactivated by a server admin",
    );
    assert_status(
        c.join_invite(bob.identity.join_invite_request(
            &node.audience(),
            &room.invite,
            "Bob",
            now_ms(),
        ))
        .await,
        Code::FailedPrecondition,
        "user_id: this account was deactivated by a server admin",
    );
    // Still a member: reactivating restores the account as it was.
    assert!(
        member_ids(&node, &ada.token, &room.guild)
            .await
            .contains(&bob.user.id)
    );
    // Deactivating twice changes nothing; admins can't be deactivated.
    a.deactivate_user(authed(&admin.token, bob_id()))
        .await
        .expect("again");
    assert_status(
        a.deactivate_user(authed(
            &admin.token,
            ad::UserRequest {
                user_id: admin.user.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        "is a server admin (the `admins` setting)",
    );

    let details = a
        .reactivate_user(authed(&admin.token, bob_id()))
        .await
        .expect("reactivate")
        .into_inner();
    assert!(details.user.expect("user").deactivated_at.is_none());
    assert!(!user_updated(&mut events, &bob.user.id).await.is_deactivated);
    let login = c
        .login(bob.identity.login_request(&node.audience(), now_ms()))
        .await
        .expect("a reactivated account logs in")
        .into_inner();
    c.get_my_data(authed(&login.token, pb::Empty {}))
        .await
        .expect("its new session works");

    let log = a
        .list_audit_log(authed(&admin.token, ad::ListAuditLogRequest::default()))
        .await
        .expect("log")
        .into_inner()
        .entries;
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.result.as_str()))
        .collect();
    assert_eq!(actions[0], ("ReactivateUser", "ok"));
    assert_eq!(actions[1].0, "DeactivateUser");
    assert!(
        actions[1].1.starts_with("FailedPrecondition: user_id:"),
        "{actions:?}"
    );
    assert_eq!(log[2].target, bob.user.id);
}

#[tokio::test]
async fn the_node_status_counts_what_the_node_holds() {
    let (node, admin) = node_with_admin(None).await;
    let ada = register(&node, "Ada").await;
    create_room(&node, &ada, "Hall").await;
    let _stream = node
        .client()
        .await
        .subscribe_events(authed(&ada.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let status = admin_client(&node)
        .await
        .get_node_status(authed(&admin.token, ad::GetNodeStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.server_id, node.audience().to_hex());
    assert_eq!(status.canonical_address, node.address());
    assert_eq!((status.users, status.deactivated_users), (2, 0));
    assert_eq!((status.guilds, status.dms), (1, 0));
    assert!(status.channels >= 1);
    assert_eq!(status.event_streams, 1);
    assert!(status.database_bytes > 0);
    assert!(status.started_at.is_some());
    assert_eq!(status.outbox_pending, 0);
}

#[tokio::test]
async fn admins_see_peers_the_outbox_per_destination_and_act_on_it() {
    let (a_node, admin) = node_with_admin(None).await;
    let b_node = TestNode::spawn().await;
    // A pins B's key by calling it.
    a_node.federation_client(&b_node).await;
    let mut a = admin_client(&a_node).await;
    let peers = a
        .list_peers(authed(&admin.token, ad::ListPeersRequest {}))
        .await
        .expect("peers")
        .into_inner()
        .peers;
    let b = peers
        .iter()
        .find(|p| p.address == b_node.address())
        .expect("B is pinned");
    assert_eq!(b.server_key, b_node.audience().to_hex());
    assert!(b.pinned_at.is_some() && b.key_valid_until.is_some());
    assert!(b.outbox.is_none(), "nothing queued for B");

    a_node
        .node()
        .outbox
        .enqueue(DEAD_PEER, "UpdateHomeServer", Vec::new())
        .await
        .expect("enqueue");
    a_node
        .node()
        .outbox
        .enqueue(DEAD_PEER, "RevokeDevice", Vec::new())
        .await
        .expect("enqueue");
    a_node
        .outbox_head_failed(std::time::Duration::from_secs(20))
        .await;
    let listed = a
        .list_outbox(authed(&admin.token, ad::ListOutboxRequest {}))
        .await
        .expect("outbox")
        .into_inner();
    assert_eq!(listed.destinations.len(), 1);
    let queue = &listed.destinations[0];
    assert_eq!(queue.destination, DEAD_PEER);
    assert_eq!(queue.depth, 2);
    assert_eq!(queue.head_method, "UpdateHomeServer");
    assert!(queue.head_attempts >= 1);
    assert!(!queue.last_error.is_empty(), "{queue:?}");

    let dest = |d: &str| {
        authed(
            &admin.token,
            ad::OutboxDestinationRequest {
                destination: d.into(),
            },
        )
    };
    let retried = a
        .retry_outbox(dest(DEAD_PEER))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.depth, 2);
    assert_status(
        a.retry_outbox(dest("http://nowhere.example")).await,
        Code::NotFound,
        "destination: nothing is queued for \"http://nowhere.example\"",
    );
    assert_status(
        a.drop_outbox(dest("")).await,
        Code::InvalidArgument,
        "destination: is required",
    );
    let dropped = a
        .drop_outbox(dest(DEAD_PEER))
        .await
        .expect("drop")
        .into_inner();
    assert_eq!(dropped.dropped, 2);
    let after = a
        .list_outbox(authed(&admin.token, ad::ListOutboxRequest {}))
        .await
        .expect("outbox")
        .into_inner();
    assert!(after.destinations.is_empty());
    assert_eq!(after.failed, 2, "dropped deliveries are kept as given up");
    let failed = a_node.node().outbox.failed(10).await.expect("failed");
    assert!(
        failed
            .iter()
            .all(|f| f.reason == format!("dropped by server admin {}", admin.user.id))
    );
    assert_status(
        a.drop_outbox(dest(DEAD_PEER)).await,
        Code::NotFound,
        "destination: nothing is queued",
    );
}

#[tokio::test]
async fn admins_see_the_gossip_mesh_and_the_ban_lists() {
    let other = guildhall::identity::SecretKey::generate().public();
    let admin_id = new_identity("phone");
    let id = admin_id.user_id();
    let trusted = other.to_hex();
    let a_node = TestNode::spawn_with(|c| {
        c.admins = vec![id];
        c.trusted_ban_lists = vec![guildhall::config::TrustedBanList {
            server: trusted.clone(),
            guild: Some("777".into()),
        }];
    })
    .await;
    let admin = register_as(&a_node, &admin_id, "Admin").await;
    let b_node = TestNode::spawn().await;
    meet(&a_node, &b_node).await;
    let kind = a_node.node().server_events.kinds()[0].clone();
    a_node.meshed(&kind).await;
    let mut a = admin_client(&a_node).await;
    let mesh = a
        .list_gossip_mesh(authed(&admin.token, ad::ListGossipMeshRequest {}))
        .await
        .expect("mesh")
        .into_inner();
    assert!(mesh.connected_peers >= 1);
    let topic = mesh.topics.iter().find(|t| t.kind == kind).expect("topic");
    assert!(
        topic.peer_ids.contains(&b_node.node().info.peer_id),
        "{topic:?}"
    );

    let lists = a
        .list_ban_lists(authed(&admin.token, ad::ListBanListsRequest::default()))
        .await
        .expect("ban lists")
        .into_inner();
    assert_eq!(lists.trusted.len(), 2);
    assert!(lists.trusted[0].own);
    assert_eq!(lists.trusted[0].server, a_node.audience().to_hex());
    assert_eq!(lists.trusted[1].server, other.to_hex());
    assert_eq!(lists.trusted[1].guild, "777");
    assert!(lists.held.is_empty());
    assert_eq!(lists.total, 0);
    assert_status(
        a.list_ban_lists(authed(
            &admin.token,
            ad::ListBanListsRequest {
                limit: 1001,
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "limit: must be 0 (default 100) to 1000",
    );
}

/// The next event on `stream` that `pick` recognises.
async fn next_matching<T>(
    stream: &mut tonic::Streaming<pb::StreamResponse>,
    pick: impl Fn(&pb::stream_response::Event) -> Option<T>,
) -> T {
    for _ in 0..1000 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("an event within the wait")
            .expect("stream ok")
            .expect("stream open");
        if let Some(found) = event.event.as_ref().and_then(&pick) {
            return found;
        }
    }
    panic!("no such event");
}

#[tokio::test]
async fn admins_delete_content_with_the_events_clients_expect() {
    use pb::stream_response::Event;
    let (node, admin) = node_with_admin(None).await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Hall").await;
    join_room(&node, &bob, &room.invite).await;
    let mut c = node.client().await;
    let side = c
        .create_channel(authed(
            &ada.token,
            pb::CreateChannelRequest {
                guild_id: room.guild.clone(),
                name: "side".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("channel")
        .into_inner();
    let message = send_text(&node, &bob.token, &room.channel, "spam").await;
    let mut events = c
        .subscribe_events(authed(&ada.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut bobs_events = c
        .subscribe_events(authed(&bob.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut a = admin_client(&node).await;

    // A message: the admin is no member of the guild; the guild hears message_deleted.
    a.delete_message(authed(
        &admin.token,
        ad::DeleteMessageRequest {
            channel_id: room.channel.clone(),
            message_id: message.id.clone(),
        },
    ))
    .await
    .expect("delete message");
    let deleted = next_matching(&mut events, |e| match e {
        Event::MessageDeleted(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert_eq!(deleted.channel_id, room.channel);
    assert_eq!(deleted.message_id, message.id);
    assert_eq!(
        deleted.deleted_by, "",
        "a server admin's removal names no member"
    );
    assert_status(
        a.delete_message(authed(
            &admin.token,
            ad::DeleteMessageRequest {
                channel_id: room.channel.clone(),
                message_id: message.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "message_id: no such message in this channel",
    );

    // A channel: channel_deleted, and it is gone from the list.
    let reply = a
        .delete_channel(authed(
            &admin.token,
            ad::DeleteChannelRequest {
                channel_id: side.id.clone(),
            },
        ))
        .await
        .expect("delete channel")
        .into_inner();
    assert_eq!(reply.deleted_channel_ids, vec![side.id.clone()]);
    let gone = next_matching(&mut events, |e| match e {
        Event::ChannelDeleted(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert_eq!(gone.guild_id, room.guild);
    assert_eq!(gone.channel_id, side.id);
    let channels = c
        .list_channels(authed(
            &ada.token,
            pb::ListChannelsRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels;
    assert!(channels.iter().all(|ch| ch.id != side.id));

    // The guild: every member is removed (member_removed, as a kick), then it is gone.
    let reply = a
        .delete_guild(authed(
            &admin.token,
            ad::DeleteGuildRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("delete guild")
        .into_inner();
    assert_eq!(reply.members_removed, 2);
    // Each member hears their own removal (a removed member hears nothing of the guild after).
    for (stream, who) in [(&mut events, &ada), (&mut bobs_events, &bob)] {
        let removed = next_matching(stream, |e| match e {
            Event::MemberRemoved(r) if r.user_id == who.user.id => Some(r.clone()),
            _ => None,
        })
        .await;
        assert_eq!(removed.guild_id, room.guild);
    }
    let guilds = c
        .list_guilds(authed(&bob.token, pb::ListGuildsRequest {}))
        .await
        .expect("guilds")
        .into_inner()
        .guilds;
    assert!(guilds.is_empty());
    assert_status(
        a.delete_guild(authed(
            &admin.token,
            ad::DeleteGuildRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "guild_id: no guild",
    );
}

#[tokio::test]
async fn a_quarantined_file_is_no_longer_served() {
    let (node, admin) = node_with_admin(None).await;
    let ada = register(&node, "Ada").await;
    let file = upload_text(&node, &ada, b"the same bytes").await;
    let again = upload_text(&node, &ada, b"the same bytes").await;
    assert_eq!(http_get(&node, &file.public_url).await, 200);
    let mut a = admin_client(&node).await;
    let quarantine = |id: &str| {
        authed(
            &admin.token,
            ad::QuarantineFileRequest { file_id: id.into() },
        )
    };
    let reply = a
        .quarantine_file(quarantine(&file.file_id))
        .await
        .expect("quarantine")
        .into_inner();
    assert_eq!(reply.blobs_quarantined, 1);
    assert_eq!(http_get(&node, &file.public_url).await, 404);
    // The same bytes under another id are not served either.
    assert_eq!(http_get(&node, &again.public_url).await, 404);
    assert_status(
        a.quarantine_file(quarantine(&file.file_id)).await,
        Code::NotFound,
        "file_id: no file",
    );
}
