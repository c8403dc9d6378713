//! Signed server-to-server calls between nodes on loopback: a signed call goes through and the
//! destination learns its origin; forged, misdirected, stale, future, altered and replayed calls
//! are refused and leave no trace; peers' keys are pinned on first use and change only through a
//! rotation signed by the pinned key.

mod common;

use common::*;
use guildhall::federation::Peer;
use guildhall::federation::local::sign_rotation;
use guildhall::federation::wire::{SignedCall, grpc_frame, random_nonce};
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use prost::Message;
use tonic::Code;

const METHOD: &str = "/guildhall.v1.GuildHall/VerifyUser";
const SKEW: u64 = 300_000;

/// A `VerifyUser` request `user` signs for `node`, made distinct by `offset` ms before a fixed
/// base time (so two offsets never give the same challenge).
fn challenge(node: &TestNode, user: &TestUser, offset: u64) -> pb::VerifyUserRequest {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(now_ms);
    pb::VerifyUserRequest {
        user_id: user.user.id.clone(),
        challenge: user
            .identity
            .verify_challenge(&node.audience(), base - offset),
    }
}

/// A request carrying `call`'s headers, built by hand so tests can forge any part.
fn with_headers(
    call: &SignedCall,
    message: pb::VerifyUserRequest,
) -> tonic::Request<pb::VerifyUserRequest> {
    let mut request = tonic::Request::new(message);
    for (name, value) in call.header_values() {
        request
            .metadata_mut()
            .insert(name, value.parse().expect("ascii header"));
    }
    request
}

/// Signs `message` as a `VerifyUser` call from `origin` (key `key`) to `destination`'s key.
fn sign(
    key: &SecretKey,
    origin: &str,
    destination: guildhall::identity::PublicKey,
    message: &pb::VerifyUserRequest,
    timestamp: u64,
) -> SignedCall {
    let body = grpc_frame(&message.encode_to_vec());
    SignedCall::sign(
        key,
        origin,
        destination,
        METHOD,
        &body,
        timestamp,
        random_nonce(),
    )
}

/// What a refusal must leave unchanged on the destination.
/// The pins `node` holds (address, key, validity, when pinned or changed), without when each peer
/// was last seen: background catch-up calls between the nodes move that, and nothing a refused
/// call does may change the rest.
async fn pins(node: &TestNode) -> Vec<Peer> {
    let mut peers = node
        .node()
        .federation
        .directory()
        .list()
        .await
        .expect("peers");
    for peer in &mut peers {
        peer.last_seen_at = 0;
    }
    peers
}

/// Whether `node` recorded `call` as accepted (its nonce is remembered).
async fn accepted(node: &TestNode, call: &SignedCall) -> bool {
    node.node()
        .federation
        .nonce_remembered(&call.payload.origin_key, call.payload.nonce)
        .await
        .expect("nonce")
}

/// `call` was refused without a trace at `node`: its nonce is not stored and the pins are as
/// `before`.
async fn no_trace(node: &TestNode, call: &SignedCall, before: &[Peer], what: &str) {
    assert!(!accepted(node, call).await, "{what}: the nonce was stored");
    assert_eq!(pins(node).await, before, "{what}: the pins changed");
}

#[tokio::test]
async fn signed_calls_reach_the_destination_with_their_origin() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let ada = register(&b, "Ada").await;

    let reply = a
        .federation_client(&b)
        .await
        .verify_user(challenge(&b, &ada, 0))
        .await
        .expect("signed VerifyUser from A")
        .into_inner();
    assert_eq!(reply.user.expect("user").id, ada.user.id);
    let reply = c
        .federation_client(&b)
        .await
        .verify_user(challenge(&b, &ada, 1))
        .await
        .expect("signed VerifyUser from C");
    assert_eq!(reply.into_inner().push_delegation_token.len(), 64);

    // B pinned both callers under their addresses, with the keys that signed, and saw them call.
    let peers = b.node().federation.directory().list().await.expect("peers");
    assert_eq!(peers.len(), 2);
    for origin in [&a, &c] {
        let peer = b
            .node()
            .federation
            .directory()
            .get(&origin.address())
            .await
            .expect("read")
            .expect("origin pinned at B");
        assert_eq!(peer.key, origin.audience());
        assert!(peer.last_seen_at > 0, "B recorded the accepted call");
        assert!(peer.key_valid_until > now_ms());
    }
    // Both calls' nonces (and those of catch-up calls the nodes make once they have met).
    assert!(b.node().federation.remembered_nonces().await.expect("n") >= 2);
    // A pinned B before calling it (to sign for B's key).
    let pinned = a
        .node()
        .federation
        .directory()
        .get(&b.address())
        .await
        .expect("read");
    assert_eq!(pinned.expect("B pinned at A").key, b.audience());

    // Unsigned calls to server methods are refused outright.
    assert_status(
        b.client().await.verify_user(challenge(&b, &ada, 2)).await,
        Code::Unauthenticated,
        "guildhall-origin: missing",
    );
}

#[tokio::test]
async fn forged_misdirected_stale_and_replayed_calls_are_refused_without_trace() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let ada = register(&b, "Ada").await;
    // A is known to B after one good call.
    a.federation_client(&b)
        .await
        .verify_user(challenge(&b, &ada, 0))
        .await
        .expect("first call");
    let (a_key, a_addr, b_key) = (a.server_key(), a.address(), b.audience());
    let mut raw = b.client().await;
    let before = pins(&b).await;
    let mut offset = 10;
    let mut next = || {
        offset += 1;
        challenge(&b, &ada, offset)
    };

    // Unknown origin: nothing answers at the claimed address.
    let stranger = SecretKey::generate();
    let msg = next();
    let call = sign(&stranger, "http://127.0.0.1:1", b_key, &msg, now_ms());
    assert_status(
        raw.verify_user(with_headers(&call, msg)).await,
        Code::Unauthenticated,
        "guildhall-origin: http://127.0.0.1:1 is not a known server",
    );
    no_trace(&b, &call, &before, "an unknown origin").await;

    // Unknown origin: the claimed address (C, unknown to B) publishes another key.
    let msg = next();
    let call = sign(&stranger, &c.address(), b_key, &msg, now_ms());
    assert_status(
        raw.verify_user(with_headers(&call, msg)).await,
        Code::PermissionDenied,
        "guildhall-origin-key",
    );
    no_trace(&b, &call, &before, "a stranger's key").await;

    // A changed key for a pinned address (A's) without a rotation.
    let msg = next();
    let call = sign(&stranger, &a_addr, b_key, &msg, now_ms());
    assert_status(
        raw.verify_user(with_headers(&call, msg)).await,
        Code::PermissionDenied,
        "is pinned to key",
    );
    no_trace(&b, &call, &before, "a changed key").await;

    // Wrong destination: A's call signed for C, sent to B.
    let msg = next();
    let call = sign(&a_key, &a_addr, c.audience(), &msg, now_ms());
    assert_status(
        raw.verify_user(with_headers(&call, msg)).await,
        Code::PermissionDenied,
        "guildhall-destination",
    );
    no_trace(&b, &call, &before, "a wrong destination").await;

    // Bad signature: the headers say A, a stranger signed.
    let msg = next();
    let mut call = sign(&a_key, &a_addr, b_key, &msg, now_ms());
    call.signature = sign(&stranger, &a_addr, b_key, &msg, now_ms()).signature;
    assert_status(
        raw.verify_user(with_headers(&call, msg)).await,
        Code::Unauthenticated,
        "guildhall-signature",
    );
    no_trace(&b, &call, &before, "a bad signature").await;

    // Body altered after signing.
    let signed_for = next();
    let call = sign(&a_key, &a_addr, b_key, &signed_for, now_ms());
    assert_status(
        raw.verify_user(with_headers(&call, next())).await,
        Code::Unauthenticated,
        "guildhall-signature",
    );
    no_trace(&b, &call, &before, "an altered body").await;

    // Stale and future timestamps.
    for (ts, rule) in [
        (now_ms() - SKEW - 60_000, "in the past"),
        (now_ms() + SKEW + 60_000, "in the future"),
    ] {
        let msg = next();
        let call = sign(&a_key, &a_addr, b_key, &msg, ts);
        assert_status(
            raw.verify_user(with_headers(&call, msg)).await,
            Code::Unauthenticated,
            rule,
        );
        no_trace(&b, &call, &before, "a stale or future timestamp").await;
    }

    // Malformed nonce header.
    let msg = next();
    let call = sign(&a_key, &a_addr, b_key, &msg, now_ms());
    let mut request = with_headers(&call, msg);
    request
        .metadata_mut()
        .insert("guildhall-nonce", "XYZ".parse().expect("ascii"));
    assert_status(
        raw.verify_user(request).await,
        Code::Unauthenticated,
        "guildhall-nonce",
    );
    no_trace(&b, &call, &before, "a malformed nonce").await;

    // Replay: the same signed request twice. The first is accepted (one nonce stored), the second
    // refused, storing nothing more.
    let msg = next();
    let call = sign(&a_key, &a_addr, b_key, &msg, now_ms());
    raw.verify_user(with_headers(&call, msg.clone()))
        .await
        .expect("first delivery is accepted");
    assert!(accepted(&b, &call).await);
    assert_status(
        raw.verify_user(with_headers(&call, msg)).await,
        Code::Unauthenticated,
        "guildhall-nonce: already used",
    );
    assert_eq!(pins(&b).await, before, "a replay changed the pins");

    // Still exactly one peer at B (A); neither C's address nor a stranger got pinned.
    assert!(
        b.node()
            .federation
            .directory()
            .get(&c.address())
            .await
            .expect("read")
            .is_none()
    );
}

fn info(address: &str, key: &SecretKey, valid_until: u64) -> pb::ServerInfoResponse {
    pb::ServerInfoResponse {
        canonical_address: address.into(),
        server_pubkey: key.public().to_hex(),
        key_valid_until: valid_until,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_pinned_key_changes_only_through_a_rotation_signed_by_it() {
    let node = TestNode::spawn().await;
    let directory = node.node().federation.directory();
    let addr = "http://peer.example";
    let day = 24 * 3600 * 1000;
    let now = now_ms();
    let (k1, k2, other) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    let pinned_key = || async {
        directory
            .get(addr)
            .await
            .expect("read")
            .expect("pinned")
            .key
    };

    // First use pins.
    assert_eq!(
        directory
            .observe(addr, &info(addr, &k1, now + day))
            .await
            .expect("pin"),
        k1.public()
    );

    // A different key, with no rotation: refused.
    let err = directory
        .observe(addr, &info(addr, &k2, now + day))
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("no rotation signed by the pinned key"),
        "{err}"
    );
    // A rotation naming the pinned key but signed by another key: refused.
    let mut forged = info(addr, &k2, now + 2 * day);
    let mut rotation = sign_rotation(&other, k2.public(), now + 2 * day, now);
    rotation.old_key = k1.public().to_hex();
    forged.key_rotation = Some(rotation);
    let err = directory.observe(addr, &forged).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("not a signature by the pinned key"),
        "{err}"
    );
    // A rotation from some other key (signed by it): refused.
    let mut forged = info(addr, &k2, now + 2 * day);
    forged.key_rotation = Some(sign_rotation(&other, k2.public(), now + 2 * day, now));
    let err = directory.observe(addr, &forged).await.expect_err("refused");
    assert!(
        err.to_string().contains("must be signed by the pinned key"),
        "{err}"
    );
    // A statement published under another address does not pin this one.
    assert!(
        directory
            .observe(addr, &info("http://elsewhere.example", &k2, now + day))
            .await
            .is_err()
    );
    assert_eq!(pinned_key().await, k1.public(), "nothing replaced the pin");

    // The rotation signed by the pinned key: accepted.
    let mut rotated = info(addr, &k2, now + 2 * day);
    rotated.key_rotation = Some(sign_rotation(&k1, k2.public(), now + 2 * day, now));
    assert_eq!(
        directory.observe(addr, &rotated).await.expect("rotation"),
        k2.public()
    );
    assert_eq!(pinned_key().await, k2.public());
    // The old key is no longer accepted.
    assert!(
        directory
            .observe(addr, &info(addr, &k1, now + day))
            .await
            .is_err()
    );

    // A renewal (same key, signed by it) extends the validity.
    let mut renewed = info(addr, &k2, now + 3 * day);
    renewed.key_rotation = Some(sign_rotation(&k2, k2.public(), now + 3 * day, now));
    directory.observe(addr, &renewed).await.expect("renewal");
    let peer = directory.get(addr).await.expect("read").expect("pinned");
    assert_eq!(peer.key_valid_until, now + 3 * day);
    // An expired published key is refused.
    assert!(
        directory
            .observe(addr, &info(addr, &k2, now - 1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_rotated_node_is_followed_by_its_peers() {
    let a = TestNode::spawn().await;
    let mut b = TestNode::spawn().await;
    let ada = register(&a, "Ada").await;
    // B calls A: A pins B's first key.
    b.federation_client(&a)
        .await
        .verify_user(challenge(&a, &ada, 0))
        .await
        .expect("call before rotation");
    let old_key = b.audience();
    let addr = b.address();

    // B rotates its key while stopped and comes back at the same address.
    let listen = b.node().grpc_addr;
    b.node().shutdown();
    b.node.take().expect("running").stopped().await;
    let rotation =
        guildhall::federation::local::rotate_key_file(&b.config.server_key_path()).expect("rotate");
    assert_eq!(rotation.old_key, old_key.to_hex());
    b.config.listen = listen;
    b.restart().await;
    assert_ne!(b.audience(), old_key);
    assert_eq!(b.address(), addr);

    // B's calls, signed by the new key, are accepted: A follows the rotation it publishes.
    b.federation_client(&a)
        .await
        .verify_user(challenge(&a, &ada, 1))
        .await
        .expect("call after rotation");
    let pinned = a
        .node()
        .federation
        .directory()
        .get(&addr)
        .await
        .expect("read")
        .expect("pinned");
    assert_eq!(pinned.key, b.audience());
    // And A signs its own calls to B for B's new key.
    let bob = register(&b, "Bob").await;
    a.federation_client(&b)
        .await
        .verify_user(challenge(&b, &bob, 0))
        .await
        .expect("call to the rotated node");
}
