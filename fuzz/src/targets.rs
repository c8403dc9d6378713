//! The fuzz target bodies: one plain function per target, each feeding arbitrary bytes to the
//! node's own decoders and checks (the very functions the node runs on network input) and
//! asserting what must hold: no panic, and where a decode succeeds, that re-encoding or
//! re-parsing gives the same value.
//!
//! This file is used twice: by the cargo-fuzz crate in `fuzz/` (each `fuzz_targets/<name>.rs`
//! calls one function here under libFuzzer, on nightly), and by `tests/fuzz.rs` in the node's
//! own test suite (`#[path]`-included), which runs every function on seed inputs and a bounded
//! number of their mutations on stable. So it may use only `guildhall` and crates the node itself
//! depends on. `docs/FUZZING.md` describes the targets.

use std::sync::OnceLock;

use prost::Message;

use guildhall::accounts::rules;
use guildhall::api::text::TextRules;
use guildhall::convert;
use guildhall::federation::{bans, gossiped, membership, moves, revocation, verify, wire};
use guildhall::gossip::ServerEvent;
use guildhall::gossip::pull::{self, PullQuery};
use guildhall::identity::{PublicKey, SecretKey, Signature};
use guildhall::media::probe;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::store::media::UploadPlan;

/// The clock every target checks timestamps against: 2026-12-04T00:00:00Z, so seeds signed near
/// it stay valid whenever the targets run.
pub const NOW: u64 = 1_796_342_400_000;
/// The clock-skew window the targets allow (the node's default).
pub const SKEW_MS: u64 = 300_000;
/// The largest upload the upload target allows (the node's default `max_upload_size`).
pub const UPLOAD_LIMIT: u64 = 25 * 1024 * 1024;
/// The address the targets' own node has.
pub const OWN_ADDRESS: &str = "https://own.example";

/// This node's key: s2s calls must be addressed to it, `VerifyUser` challenges signed for it.
pub fn own_key() -> SecretKey {
    SecretKey::from_seed(&[0x5e; 32])
}

/// The user whose device certificates and logins the identity target checks.
pub fn user_key() -> SecretKey {
    SecretKey::from_seed(&[0x75; 32])
}

/// The server-event kinds the node registers validators for, in the order the targets name them.
pub const KINDS: [&str; 6] = [
    bans::BAN_KIND,
    bans::SERVER_BAN_KIND,
    membership::MEMBERSHIP_KIND,
    gossiped::MOVE_KIND,
    gossiped::REVOCATION_KIND,
    gossiped::PROFILE_KIND,
];

/// `gossip_event`: a gossip message (an encoded `ServerEvent`) as the receive path takes it:
/// decode and format checks, the content id, the stored row, the origin's signature, then the
/// storage-free checks of the validator of its kind on its payload.
pub fn gossip_event(data: &[u8]) {
    let Ok(event) = ServerEvent::decode(data) else {
        return;
    };
    server_event(event);
}

/// A decoded server event: the invariants of its encodings, its signature, its payload.
fn server_event(event: ServerEvent) {
    let again = ServerEvent::decode(&event.encode()).expect("a decoded event re-encodes");
    assert_eq!(again, event);
    assert_eq!(again.content_id(), event.content_id());
    let stored = ServerEvent::from_row(event.to_row()).expect("a decoded event's row reads back");
    assert_eq!(stored, event);
    let (kind, origin) = (event.kind().to_owned(), event.origin());
    let payload = event.payload().to_vec();
    if let Ok(verified) = event.verify() {
        assert_eq!(verified.origin(), origin);
    }
    event_payload(&kind, &payload, origin);
}

/// The storage-free checks each kind's validator runs on an event's payload.
fn event_payload(kind: &str, payload: &[u8], origin: PublicKey) {
    match kind {
        bans::BAN_KIND => {
            if let Ok(n) = pb::BanNotification::decode(payload)
                && n.origin_server_id == origin.to_hex()
            {
                ban_notice(&n);
            }
        }
        bans::SERVER_BAN_KIND => {
            if let Ok(n) = pb::ServerBanEntry::decode(payload)
                && n.origin_server_id == origin.to_hex()
            {
                server_ban(&n);
            }
        }
        membership::MEMBERSHIP_KIND => {
            if let Ok(change) = pb::MembershipChange::decode(payload)
                && let Ok(key) = membership::check(&change)
            {
                assert_eq!(key.to_hex(), change.user_id);
            }
        }
        gossiped::MOVE_KIND => {
            if let Ok(r) = pb::UpdateHomeServerRequest::decode(payload) {
                move_statement(&r);
            }
        }
        gossiped::REVOCATION_KIND => {
            if let Ok(r) = pb::DeviceRevocation::decode(payload) {
                device_revocation(&r);
            }
        }
        gossiped::PROFILE_KIND => {
            if let Ok(r) = pb::UpdateFederatedProfileRequest::decode(payload) {
                forwarded_profile(r);
            }
        }
        _ => {}
    }
}

fn ban_notice(n: &pb::BanNotification) {
    if let Ok(v) = bans::verify_notice(n, NOW, SKEW_MS) {
        assert_eq!(v.origin.to_hex(), n.origin_server_id);
        assert_eq!(v.banned.to_hex(), n.banned_user_pubkey);
        assert_eq!(v.signature.to_bytes().as_slice(), n.signature.as_slice());
    }
}

fn server_ban(n: &pb::ServerBanEntry) {
    if let Ok((origin, user, _, payload)) = bans::verify_server_ban(n, NOW, SKEW_MS) {
        assert_eq!(origin.to_hex(), n.origin_server_id);
        assert_eq!(user.to_hex(), n.user_id);
        assert_eq!(payload.reason, n.reason);
    }
}

fn move_statement(r: &pb::UpdateHomeServerRequest) {
    let Ok(statement) = moves::MoveStatement::from_request(r) else {
        return;
    };
    // Field rules accepted it: the canonical request carries the same statement.
    let again = moves::MoveStatement::from_request(&statement.to_request())
        .expect("a parsed statement's request parses");
    assert_eq!(again, statement);
    if let Ok(verified) = statement.verify() {
        assert_eq!(verified.record().user_id, r.user_id);
    }
}

fn device_revocation(r: &pb::DeviceRevocation) {
    if let Ok(v) = revocation::verify(r) {
        // Keys and signatures have one spelling, so the verified message is the one received.
        assert_eq!(&v.to_proto(), r);
    }
}

fn forwarded_profile(r: pb::UpdateFederatedProfileRequest) {
    let user_id = r.user_id.clone();
    if let Ok((key, input)) = guildhall::harmony::forwarded::parse(r) {
        assert_eq!(key.to_hex(), user_id);
        // The cert is then checked against the user on record; its own rules need no storage.
        let _ = input.cert.verify(&key, NOW, SKEW_MS);
    }
}

/// Splits `data` into a request line, header lines and a body: `<path>\n(<name>: <value>\n)*\n
/// <body>`. Header lines that are not a valid HTTP header are skipped (HTTP/2 would not deliver
/// them).
fn http_request(data: &[u8]) -> (String, http::HeaderMap, &[u8]) {
    let mut headers = http::HeaderMap::new();
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let path = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (path, headers, body)
}

/// `s2s_headers`: a signed server call's `guildhall-*` headers, method and body, through the
/// verifier's storage-free checks (formats, destination, clock window, signature).
pub fn s2s_headers(data: &[u8]) {
    let (path, headers, body) = http_request(data);
    let _ = wire::is_s2s_path(&path);
    if let Ok(call) = wire::SignedCall::parse(&headers, &path, body) {
        // What was parsed writes back to headers that parse to the same call.
        let mut written = http::HeaderMap::new();
        call.write_headers(&mut written)
            .expect("parsed header values are valid header values");
        let again = wire::SignedCall::parse(&written, &path, body).expect("written headers parse");
        assert_eq!(again, call);
        assert_eq!(call.payload.body_sha256, wire::body_sha256(body));
    }
    let own = own_key().public();
    if let Ok(verified) = verify::check_call(&headers, &path, body, own, NOW, SKEW_MS) {
        assert_eq!(verified.audience, own);
        assert_eq!(verified.method, path);
    }
}

/// `s2s_body`: the body of a server call (a gRPC frame), the method chosen by the first byte from
/// [`wire::S2S_METHODS`], decoded as that method's request and checked as its handler does before
/// it touches storage.
pub fn s2s_body(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let method = wire::S2S_METHODS[usize::from(selector) % wire::S2S_METHODS.len()];
    // tonic's framing: an uncompressed frame of exactly the declared length; anything else is
    // refused before a handler runs.
    if body.len() < 5 || body[0] != 0 {
        return;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let Some(message) = body.get(5..).filter(|m| m.len() == len) else {
        return;
    };
    s2s_message(method, message);
}

fn s2s_message(method: &str, m: &[u8]) {
    match method {
        "Federate" => {
            if let Ok(f) = pb::FederationRequest::decode(m)
                && let Some(join) = f.join
                && let Ok(input) = guildhall::api::remote::join_input(&join, "join")
            {
                assert_eq!(input.id_key.to_hex(), join.public_key);
                let _ = input.cert.verify(&input.id_key, NOW, SKEW_MS);
            }
        }
        "PropagateBan" => {
            if let Ok(n) = pb::BanNotification::decode(m) {
                ban_notice(&n);
            }
        }
        "VerifyUser" => {
            if let Ok(r) = pb::VerifyUserRequest::decode(m) {
                verify_user(&r.user_id, &r.challenge);
            }
        }
        "PushNotification" => {
            if let Ok(r) = pb::PushNotificationRequest::decode(m) {
                let _ = PublicKey::from_hex(&r.target_user_id);
                if let Ok((body, id)) =
                    guildhall::push::delegated::forwarded(OWN_ADDRESS, &r.payload)
                {
                    let json: serde_json::Value =
                        serde_json::from_str(&body).expect("the forwarded notice is JSON");
                    assert_eq!(json["message_id"], id.as_str());
                }
            }
        }
        "UpdateHomeServer" => {
            if let Ok(r) = pb::UpdateHomeServerRequest::decode(m) {
                move_statement(&r);
            }
        }
        "UpdateFederatedProfile" => {
            if let Ok(r) = pb::UpdateFederatedProfileRequest::decode(m) {
                forwarded_profile(r);
            }
        }
        "ReceiveDMInvite" => {
            if let Ok(r) = pb::ReceiveDmInviteRequest::decode(m)
                && let Some(invite) = r.invite
            {
                let _ = convert::device_cert(invite.device_cert);
                let _ = PublicKey::from_hex(&invite.inviter_pubkey);
                let _ = PublicKey::from_hex(&invite.target_user_id);
            }
        }
        "ReceiveDeviceRevocation" => {
            if let Ok(r) = pb::DeviceRevocation::decode(m) {
                device_revocation(&r);
            }
        }
        "ReceiveAccountStatus" => {
            if let Ok(s) = pb::AccountStatusStatement::decode(m)
                && let Ok(v) = guildhall::account_status::verify(&s)
            {
                // One spelling per key, signature and status: the verified statement is the one
                // received.
                assert_eq!(v.to_proto(), s);
            }
        }
        "ReceiveRelationship" => {
            if let Ok(s) = pb::RelationshipStatement::decode(m) {
                let _ = convert::device_cert(s.device_cert);
                let _ = PublicKey::from_hex(&s.user_id);
                let _ = PublicKey::from_hex(&s.other_user_id);
            }
        }
        "ReceivePresence" => {
            if let Ok(b) = pb::PresenceBatch::decode(m) {
                for e in &b.entries {
                    let _ = PublicKey::from_hex(&e.user_id);
                }
            }
        }
        "ReceiveDMInviteRejection" => {
            let _ = pb::ReceiveDmInviteRejectionRequest::decode(m);
        }
        "PullServerEvents" => {
            if let Ok(r) = pb::PullServerEventsRequest::decode(m) {
                match pull::check_pull(r) {
                    Ok(PullQuery::Heads(kinds)) => assert!(kinds.len() <= pull::MAX_KINDS),
                    Ok(PullQuery::Events { limit, .. }) => {
                        assert!((1..=pull::MAX_EVENTS).contains(&limit));
                    }
                    Err(_) => {}
                }
            }
        }
        "ReceiveServerEvent" => {
            if let Ok(e) = pb::ServerEvent::decode(m)
                && let Ok(event) = ServerEvent::from_proto(e)
            {
                server_event(event);
            }
        }
        other => unreachable!("S2S_METHODS names {other}, which this target does not know"),
    }
}

fn verify_user(user_id: &str, challenge: &str) {
    let audience = own_key().public();
    if let Ok((key, timestamp, _)) =
        guildhall::accounts::check_verify_user(user_id, challenge, audience, NOW, SKEW_MS)
    {
        assert_eq!(key.to_hex(), user_id);
        assert!(timestamp.abs_diff(NOW) <= SKEW_MS);
    }
}

/// `identity`: the signed structures of `src/identity/` and the statements built on them, the
/// first byte choosing which: keys and signatures from hex and bytes, device certificates (as
/// every request carries them), a login's homeserver move, a `homeserver-move-v2` statement, a
/// device revocation, a `VerifyUser` challenge.
pub fn identity(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 8 {
        0 => {
            if let Ok(key) = PublicKey::from_hex(&text) {
                assert_eq!(key.to_hex(), text);
            }
            if let Ok(key) = PublicKey::from_bytes(rest) {
                assert_eq!(key.as_bytes().as_slice(), rest);
            }
        }
        1 => {
            if let Ok(sig) = Signature::from_hex(&text) {
                assert_eq!(sig.to_hex(), text);
            }
            if let Ok(sig) = Signature::from_bytes(rest) {
                assert_eq!(sig.to_bytes().as_slice(), rest);
            }
        }
        2 => {
            if let Ok(key) = SecretKey::from_hex(&text) {
                assert_eq!(SecretKey::from_seed(&key.to_seed()).public(), key.public());
            }
        }
        3 => {
            if let Ok(c) = pb::DeviceCert::decode(rest)
                && let Ok(cert) = convert::device_cert(Some(c.clone()))
            {
                assert_eq!(convert::device_cert_to_proto(&cert), c);
                let _ = cert.verify(&user_key().public(), NOW, SKEW_MS);
            }
        }
        4 => {
            if let Ok(r) = pb::LoginRequest::decode(rest) {
                let fields = moves::LoginMoveFields {
                    new_homeserver: r.new_homeserver,
                    timestamp: r.migration_timestamp,
                    signature: r.migration_signature,
                    sequence: r.migration_sequence,
                    prev: r.migration_prev,
                    targets: r.migration_targets,
                };
                if let Ok(Some(applied)) =
                    moves::login_move(&fields, &user_key().public(), OWN_ADDRESS)
                {
                    assert!(applied.deliveries.len() <= moves::MAX_TARGETS);
                }
            }
        }
        5 => {
            if let Ok(r) = pb::UpdateHomeServerRequest::decode(rest) {
                move_statement(&r);
            }
        }
        6 => {
            if let Ok(r) = pb::DeviceRevocation::decode(rest) {
                device_revocation(&r);
            }
        }
        _ => match text.split_once('\n') {
            Some((user_id, challenge)) => verify_user(user_id, challenge),
            None => verify_user(&user_key().public().to_hex(), &text),
        },
    }
}

/// `webhook_json`: a webhook post's body, as `POST /webhooks/{id}/{token}` reads it (guildhall's,
/// Discord's or Slack's shape, JSON or Slack's form payload, by the first byte) into one post,
/// then the rules its fields meet before a message is posted (the name rules for `username`,
/// the avatar URL rule, multi-line text without controls for `content`, mentions).
pub fn webhook_json(data: &[u8]) {
    use guildhall::api::webhook_body::{Encoding, parse};
    let (encoding, data) = match data.split_first() {
        Some((b'&', rest)) => (Encoding::Form, rest),
        _ => (Encoding::Json, data),
    };
    let Ok(body) = parse(encoding, data) else {
        return;
    };
    if let Some(name) = &body.username
        && let Ok(normalised) = guildhall::webhooks::check_name("username", name)
    {
        // A normalised name is a valid name, and stays as it is.
        let again = guildhall::webhooks::check_name("username", &normalised)
            .expect("a normalised name passes again");
        assert_eq!(again, normalised);
    }
    if let Some(url) = &body.avatar_url {
        let _ = rules::avatar_url(url);
    }
    if rules::no_controls(&body.content, rules::Lines::Multi).is_ok() {
        let (users, roles) = guildhall::messages::mentions::parse(&body.content);
        assert!(users.len() + roles.len() <= body.content.len());
    }
}

/// `upload`: what the node parses of an upload, the first byte choosing which: even, the
/// `UploadBegin` declaration and the `sha256` fields of `UploadChunk` / `UploadFinish`; odd, the
/// uploaded bytes themselves through the bounded image probe (format, size, blurhash,
/// thumbnail).
pub fn upload(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector % 2 == 1 {
        image(rest);
        return;
    }
    if let Ok(r) = pb::UploadBeginRequest::decode(rest) {
        let plan = UploadPlan {
            filename: r.filename,
            mime_type: r.mime_type,
            total_size: r.total_size,
            chunk_size: u64::from(r.chunk_size),
        };
        if let Ok(plan) = guildhall::media::check_plan(plan, UPLOAD_LIMIT) {
            let count = plan.chunk_count();
            assert!(count >= 1);
            assert!(plan.chunk_len(count - 1) >= 1);
            assert_eq!(plan.chunk_len(count), 0);
        }
    }
    if let Ok(r) = pb::UploadChunkRequest::decode(rest)
        && let Ok(sha) = guildhall::media::check_sha256("sha256", &r.sha256)
    {
        assert_eq!(sha, r.sha256.to_ascii_lowercase());
    }
    if let Ok(r) = pb::UploadFinishRequest::decode(rest) {
        let _ = guildhall::media::check_sha256("sha256", &r.sha256);
    }
}

fn image(bytes: &[u8]) {
    if let Ok(facts) = probe::probe_bytes(bytes) {
        assert!(probe::IMAGE_TYPES.contains(&facts.mime_type));
        assert!(facts.width <= probe::MAX_SIDE && facts.height <= probe::MAX_SIDE);
        if let Some(thumb) = facts.thumbnail {
            assert!(thumb.width <= probe::THUMB_SIDE && thumb.height <= probe::THUMB_SIDE);
        }
    }
}

fn text_rules() -> &'static TextRules {
    static RULES: OnceLock<TextRules> = OnceLock::new();
    RULES.get_or_init(|| {
        TextRules::from_descriptors(guildhall::proto::FILE_DESCRIPTOR_SET)
            .expect("the node's descriptors decode")
    })
}

/// `request_text`: the one text check of every gRPC request (`src/api/text.rs`), the method
/// chosen by the first two bytes among the node's methods, on the rest framed as one gRPC message
/// and as a raw body of frames.
pub fn request_text(data: &[u8]) {
    let rules = text_rules();
    let paths = rules.method_paths();
    let [a, b, rest @ ..] = data else {
        return;
    };
    let path = paths[usize::from(u16::from_be_bytes([*a, *b])) % paths.len()];
    let _ = rules.check_request(path, &wire::grpc_frame(rest));
    let _ = rules.check_request(path, rest);
}
