//! The fuzz targets of `fuzz/` on stable, in plain `cargo test`: every target body
//! (`fuzz/src/targets.rs`, included here by path, the very functions libFuzzer runs) is run on
//! seed inputs (valid encodings made here: signed gossip events, signed server calls, device
//! certificates, webhook bodies, real images…) and on a bounded, deterministic set of mutations of
//! them (bit flips, interesting bytes, truncations, inflated length fields, insertions, splices).
//! Inputs that once broke a target are kept in [`regressions`]. See `docs/FUZZING.md`.
//!
//! With `GUILDHALL_FUZZ_SEEDS=<dir>` set, the seeds are also written to `<dir>/<target>/` as a
//! starting corpus for `cargo fuzz run`.

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::io::Cursor;

use prost::Message;

use guildhall::api::text::TextRules;
use guildhall::federation::{moves, revocation, wire};
use guildhall::gossip::ServerEvent;
use guildhall::identity::signing::{self, BanPayload, ServerBanPayload, UpdateUserPayload};
use guildhall::identity::{DeviceCert, SecretKey};
use guildhall::proto::guildhall::v1 as pb;
use targets::{KINDS, NOW, OWN_ADDRESS, own_key, user_key};

/// Mutations run per target (spread over its seeds).
const MUTATIONS: usize = 2_000;

/// The servers and device the seeds are made by.
fn origin_key() -> SecretKey {
    SecretKey::from_seed(&[0x0a; 32])
}

fn device_key() -> SecretKey {
    SecretKey::from_seed(&[0xde; 32])
}

fn cert() -> DeviceCert {
    DeviceCert::issue(
        &user_key(),
        device_key().public(),
        "laptop",
        NOW - 60_000,
        NOW + 86_400_000,
    )
}

fn pb_cert() -> pb::DeviceCert {
    guildhall::convert::device_cert_to_proto(&cert())
}

fn ban_notice() -> pb::BanNotification {
    let origin = origin_key();
    let payload = BanPayload {
        origin: origin.public(),
        banned: user_key().public(),
        guild_id: "g-1".into(),
        reason: "spam".into(),
        evidence_hash: String::new(),
        timestamp: NOW - 1_000,
    };
    pb::BanNotification {
        origin_server_id: origin.public().to_hex(),
        banned_user_pubkey: user_key().public().to_hex(),
        guild_id: payload.guild_id.clone(),
        reason: payload.reason.clone(),
        evidence_hash: String::new(),
        timestamp: payload.timestamp,
        signature: signing::sign(&payload, &origin).to_bytes().to_vec(),
    }
}

fn server_ban() -> pb::ServerBanEntry {
    let origin = origin_key();
    let payload = ServerBanPayload {
        origin: origin.public(),
        user: user_key().public(),
        banned: true,
        reason: "abuse".into(),
        timestamp: NOW - 1_000,
    };
    pb::ServerBanEntry {
        origin_server_id: origin.public().to_hex(),
        user_id: user_key().public().to_hex(),
        banned: true,
        reason: payload.reason.clone(),
        timestamp: payload.timestamp,
        signature: signing::sign(&payload, &origin).to_bytes().to_vec(),
    }
}

fn membership() -> pb::MembershipChange {
    pb::MembershipChange {
        guild_id: "g-1".into(),
        user_id: user_key().public().to_hex(),
        homeserver: "https://home.example".into(),
        joined: true,
    }
}

fn move_request() -> pb::UpdateHomeServerRequest {
    let first =
        moves::MoveStatement::sign(&user_key(), "https://b.example", NOW - 5_000, 1, vec![]);
    moves::MoveStatement::sign(
        &user_key(),
        OWN_ADDRESS,
        NOW - 1_000,
        2,
        first.hash().to_vec(),
    )
    .to_request()
}

fn device_revocation() -> pb::DeviceRevocation {
    revocation::sign(&user_key(), &device_key().public(), NOW - 1_000)
}

fn profile_update() -> pb::UpdateFederatedProfileRequest {
    let payload = UpdateUserPayload {
        id_key: user_key().public(),
        device_key: device_key().public(),
        name: Some("Ada".into()),
        avatar_url: None,
        presence_preference: None,
        bio: Some("line one\nline two".into()),
        guild_order: None,
        is_profile_synced: None,
        irc_name: None,
        timestamp: NOW - 1_000,
    };
    pb::UpdateFederatedProfileRequest {
        user_id: user_key().public().to_hex(),
        update: Some(pb::UpdateUserRequest {
            name: payload.name.clone(),
            bio: payload.bio.clone(),
            device_cert: Some(pb_cert()),
            timestamp: payload.timestamp,
            signature: signing::sign(&payload, &device_key()).to_bytes().to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn join_request() -> pb::JoinInviteRequest {
    let payload = signing::JoinInvitePayload {
        audience: origin_key().public(),
        id_key: user_key().public(),
        device_key: device_key().public(),
        token: "invite-token".into(),
        display_name: "Ada".into(),
        avatar_url: String::new(),
        homeserver_url: OWN_ADDRESS.into(),
        timestamp: NOW - 1_000,
    };
    pb::JoinInviteRequest {
        token: payload.token.clone(),
        public_key: user_key().public().to_hex(),
        device_cert: Some(pb_cert()),
        signature: signing::sign(&payload, &device_key()).to_bytes().to_vec(),
        timestamp: payload.timestamp,
        display_name: payload.display_name.clone(),
        avatar_url: String::new(),
        homeserver_url: payload.homeserver_url.clone(),
        registration_token: String::new(),
    }
}

fn verify_user_challenge() -> String {
    let payload = signing::VerifyUserPayload {
        audience: own_key().public(),
        id_key: user_key().public(),
        timestamp: NOW - 1_000,
    };
    format!(
        "{}:{}",
        payload.timestamp,
        signing::sign(&payload, &user_key()).to_hex()
    )
}

/// One signed server event of each kind the node validates, with a valid payload.
fn events() -> Vec<ServerEvent> {
    let payloads: [Vec<u8>; 6] = [
        ban_notice().encode_to_vec(),
        server_ban().encode_to_vec(),
        membership().encode_to_vec(),
        move_request().encode_to_vec(),
        device_revocation().encode_to_vec(),
        profile_update().encode_to_vec(),
    ];
    KINDS
        .iter()
        .zip(payloads)
        .enumerate()
        .map(|(i, (kind, payload))| {
            ServerEvent::sign(&origin_key(), kind, i as u64 + 1, NOW - 2_000, payload)
        })
        .collect()
}

fn gossip_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = events().iter().map(ServerEvent::encode).collect();
    seeds.push(ServerEvent::sign(&origin_key(), "test-note", 1, NOW, b"hi".to_vec()).encode());
    seeds
}

/// A signed call in the header text form of [`targets::s2s_headers`].
fn s2s_header_seed(method: &str, body: &[u8]) -> Vec<u8> {
    let call = wire::SignedCall::sign(
        &origin_key(),
        "https://origin.example",
        own_key().public(),
        method,
        body,
        NOW - 1_000,
        [7; 16],
    );
    let mut text = format!("{method}\n");
    for (name, value) in call.header_values() {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    let mut seed = text.into_bytes();
    seed.extend_from_slice(body);
    seed
}

fn s2s_header_seeds() -> Vec<Vec<u8>> {
    let verify = pb::VerifyUserRequest {
        user_id: user_key().public().to_hex(),
        challenge: verify_user_challenge(),
    };
    vec![
        s2s_header_seed(
            "/guildhall.v1.GuildHall/VerifyUser",
            &wire::grpc_frame(&verify.encode_to_vec()),
        ),
        s2s_header_seed(
            "/guildhall.v1.GuildHall/PropagateBan",
            &wire::grpc_frame(&ban_notice().encode_to_vec()),
        ),
        s2s_header_seed("/guildhall.v1.GuildHall/PullServerEvents", &[]),
    ]
}

/// The body of a call to `method`, with the target's selector byte in front.
fn s2s_body_seed(method: &str, message: &[u8]) -> Vec<u8> {
    let index = wire::S2S_METHODS
        .iter()
        .position(|m| *m == method)
        .expect("a server method");
    let mut seed = vec![u8::try_from(index).expect("few methods")];
    seed.extend(wire::grpc_frame(message));
    seed
}

fn s2s_body_seeds() -> Vec<Vec<u8>> {
    let join = join_request();
    let federate = pb::FederationRequest {
        origin_server_id: "https://origin.example".into(),
        origin_server_pubkey: origin_key().public().to_hex(),
        user_pubkey: join.public_key.clone(),
        user_display_name: join.display_name.clone(),
        guild_id: "g-1".into(),
        timestamp: join.timestamp,
        signature: join.signature.clone(),
        join: Some(join),
    };
    let push = pb::PushNotificationRequest {
        target_user_id: user_key().public().to_hex(),
        push_delegation_token: "t".repeat(32),
        payload: r#"{"type":"mention","guild_id":"g1","channel_id":"c1","message_id":"m1","sender_id":"s1"}"#
            .into(),
    };
    let invite = pb::ReceiveDmInviteRequest {
        invite: Some(pb::DmInvite {
            token: "dm-token".into(),
            guild_id: "dm-1".into(),
            host_server_url: "https://origin.example".into(),
            timestamp: NOW - 1_000,
            inviter_pubkey: user_key().public().to_hex(),
            device_cert: Some(pb_cert()),
            target_user_id: origin_key().public().to_hex(),
            ..Default::default()
        }),
    };
    let rejection = pb::ReceiveDmInviteRejectionRequest {
        token: "dm-token".into(),
        target_user_id: user_key().public().to_hex(),
    };
    let heads = pb::PullServerEventsRequest {
        kinds: KINDS.iter().map(|k| (*k).to_owned()).collect(),
        ..Default::default()
    };
    let after = pb::PullServerEventsRequest {
        origin: origin_key().public().to_hex(),
        kind: "ban".into(),
        after_sequence: 3,
        limit: 10,
        ..Default::default()
    };
    let verify = pb::VerifyUserRequest {
        user_id: user_key().public().to_hex(),
        challenge: verify_user_challenge(),
    };
    let mut seeds = vec![
        s2s_body_seed("Federate", &federate.encode_to_vec()),
        s2s_body_seed("PropagateBan", &ban_notice().encode_to_vec()),
        s2s_body_seed("VerifyUser", &verify.encode_to_vec()),
        s2s_body_seed("PushNotification", &push.encode_to_vec()),
        s2s_body_seed("UpdateHomeServer", &move_request().encode_to_vec()),
        s2s_body_seed("UpdateFederatedProfile", &profile_update().encode_to_vec()),
        s2s_body_seed("ReceiveDMInvite", &invite.encode_to_vec()),
        s2s_body_seed(
            "ReceiveDeviceRevocation",
            &device_revocation().encode_to_vec(),
        ),
        s2s_body_seed("ReceiveDMInviteRejection", &rejection.encode_to_vec()),
        s2s_body_seed("PullServerEvents", &heads.encode_to_vec()),
        s2s_body_seed("PullServerEvents", &after.encode_to_vec()),
    ];
    for event in events() {
        seeds.push(s2s_body_seed(
            "ReceiveServerEvent",
            &event.to_proto().encode_to_vec(),
        ));
    }
    seeds
}

fn with_selector(selector: u8, rest: &[u8]) -> Vec<u8> {
    let mut seed = vec![selector];
    seed.extend_from_slice(rest);
    seed
}

fn identity_seeds() -> Vec<Vec<u8>> {
    let first = moves::MoveStatement::sign(&user_key(), OWN_ADDRESS, NOW - 1_000, 1, vec![]);
    let mut login = pb::LoginRequest::default();
    first.apply_to_login(&mut login);
    login.migration_targets = vec!["https://a.example".into(), OWN_ADDRESS.into()];
    vec![
        with_selector(0, user_key().public().to_hex().as_bytes()),
        with_selector(0, user_key().public().as_bytes()),
        with_selector(1, cert().signature.to_hex().as_bytes()),
        with_selector(1, &cert().signature.to_bytes()),
        with_selector(2, hex_seed().as_bytes()),
        with_selector(3, &pb_cert().encode_to_vec()),
        with_selector(4, &login.encode_to_vec()),
        with_selector(5, &move_request().encode_to_vec()),
        with_selector(6, &device_revocation().encode_to_vec()),
        with_selector(
            7,
            format!(
                "{}\n{}",
                user_key().public().to_hex(),
                verify_user_challenge()
            )
            .as_bytes(),
        ),
    ]
}

fn hex_seed() -> String {
    user_key()
        .to_seed()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn webhook_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"content":"hello"}"#,
        r#"{"content":"deploy done\n<@abc> <@&role>","username":"Deploy bot","avatar_url":"https://cdn.example/a.png"}"#,
        r#"{"content":"x","username":"everyone"}"#,
        r#"{"content":"\u0007bell","username":null,"avatar_url":null}"#,
        r#"{"username":"Grafana","tts":false,"embeds":[{"title":"CPU","url":"https://g.example","description":"97%","fields":[{"name":"host","value":"db1"}],"footer":{"text":"am"}}]}"#,
        r#"{"text":"alert","icon_url":"https://i.example/x.png","attachments":[{"fallback":"fb","title":"disk","text":"92%"}],"blocks":[{"type":"header","text":{"type":"plain_text","text":"Disk"}},{"type":"context","elements":[{"type":"mrkdwn","text":"*db1*"}]}]}"#,
        "&payload=%7B%22text%22%3A%22from%20a%20form%22%7D",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn encode_image(format: image::ImageFormat, width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let rgba = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([
            (x * 7) as u8,
            (y * 5) as u8,
            90,
            if alpha { 128 } else { 255 },
        ])
    });
    let image = if alpha || format == image::ImageFormat::Gif {
        image::DynamicImage::ImageRgba8(rgba)
    } else {
        image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(rgba).to_rgb8())
    };
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encodes");
    bytes
}

fn upload_seeds() -> Vec<Vec<u8>> {
    use image::ImageFormat::{Gif, Jpeg, Png, WebP};
    let begin = pb::UploadBeginRequest {
        upload_token: "t".into(),
        filename: "cat.png".into(),
        mime_type: "Image/PNG".into(),
        total_size: 5_000,
        chunk_size: 1_024,
    };
    let chunk = pb::UploadChunkRequest {
        upload_token: "t".into(),
        chunk_index: 1,
        data: vec![1; 16],
        sha256: "AB".repeat(32),
    };
    vec![
        with_selector(0, &begin.encode_to_vec()),
        with_selector(0, &chunk.encode_to_vec()),
        with_selector(1, &encode_image(Png, 8, 6, true)),
        with_selector(1, &encode_image(Png, 330, 2, false)),
        with_selector(1, &encode_image(Jpeg, 16, 16, false)),
        with_selector(1, &encode_image(Gif, 4, 4, true)),
        with_selector(1, &encode_image(WebP, 4, 4, true)),
    ]
}

fn request_text_seeds() -> Vec<Vec<u8>> {
    let rules =
        TextRules::from_descriptors(guildhall::proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let paths = rules.method_paths();
    let seed = |method: &str, message: Vec<u8>| {
        let path = format!("/guildhall.v1.GuildHall/{method}");
        let index = paths.iter().position(|p| *p == path).expect("a method");
        let mut seed = u16::try_from(index)
            .expect("few methods")
            .to_be_bytes()
            .to_vec();
        seed.extend(message);
        seed
    };
    let send = pb::SendMessageRequest {
        channel_id: "c-1".into(),
        text: "hello\nworld".into(),
        metadata: [("k".to_owned(), "v\tw".to_owned())].into(),
        ..Default::default()
    };
    vec![
        seed("SendMessage", send.encode_to_vec()),
        seed("JoinInvite", join_request().encode_to_vec()),
        seed("UpdateFederatedProfile", profile_update().encode_to_vec()),
        seed("Login", pb::LoginRequest::default().encode_to_vec()),
    ]
}

/// A deterministic generator (xorshift64*), so every run mutates alike.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `input`: a bit flip, an interesting byte, a truncation, an inflated length
/// field (a byte made a long varint or a big-endian length), an insertion, a duplicated run, or a
/// splice with another seed.
fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0, 1, 0x7f, 0x80, 0xff, b'\n', b':', 0x1b][rng.below(8)];
            }
            2 => out.truncate(rng.below(len + 1)),
            3 if len > 0 => {
                // A length field made huge: a 5-byte varint near 4 GiB, or 0xff bytes.
                let i = rng.below(len);
                let inflated: &[u8] = if rng.below(2) == 0 {
                    &[0xff, 0xff, 0xff, 0xff, 0x0f]
                } else {
                    &[0x7f, 0xff, 0xff, 0xff]
                };
                out.splice(i..(i + 1).min(len), inflated.iter().copied());
            }
            4 => {
                let i = rng.below(len + 1);
                let extra: Vec<u8> = (0..=rng.below(16)).map(|_| rng.next() as u8).collect();
                out.splice(i..i, extra);
            }
            5 if len > 1 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let run = out[start..end].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, run);
            }
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                if len > 0 {
                    let i = rng.below(len);
                    out.remove(i);
                }
            }
        }
    }
    out
}

/// Runs `target` on every seed, then on [`MUTATIONS`] mutations of them; with
/// `GUILDHALL_FUZZ_SEEDS` set, writes the seeds out as a corpus.
fn exercise(name: &str, target: fn(&[u8]), seeds: &[Vec<u8>]) {
    assert!(!seeds.is_empty());
    if let Some(dir) = std::env::var_os("GUILDHALL_FUZZ_SEEDS") {
        let dir = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).expect("seed written");
        }
    }
    for seed in seeds {
        target(seed);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for i in 0..MUTATIONS {
        let input = mutate(&mut rng, &seeds[i % seeds.len()], seeds);
        target(&input);
    }
}

#[test]
fn seeds_are_valid_encodings() {
    // The seeds reach past the signature checks, so mutations start deep in each decoder.
    for event in events() {
        let decoded = ServerEvent::decode(&event.encode()).expect("decodes");
        decoded.verify().expect("verifies");
    }
    guildhall::federation::bans::verify_notice(&ban_notice(), NOW, targets::SKEW_MS)
        .expect("a valid notice");
    guildhall::federation::bans::verify_server_ban(&server_ban(), NOW, targets::SKEW_MS)
        .expect("a valid entry");
    moves::MoveStatement::from_request(&move_request())
        .expect("parses")
        .verify()
        .expect("verifies");
    revocation::verify(&device_revocation()).expect("verifies");
    let (key, input) =
        guildhall::harmony::forwarded::parse(profile_update()).expect("a valid profile change");
    input
        .cert
        .verify(&key, NOW, targets::SKEW_MS)
        .expect("a valid cert");
    guildhall::accounts::check_verify_user(
        &user_key().public().to_hex(),
        &verify_user_challenge(),
        own_key().public(),
        NOW,
        targets::SKEW_MS,
    )
    .expect("a valid challenge");
    let seed = &s2s_header_seeds()[0];
    let split = seed.windows(2).position(|w| w == b"\n\n").expect("a head");
    let mut headers = http::HeaderMap::new();
    let text = std::str::from_utf8(&seed[..split]).expect("text");
    let mut lines = text.lines();
    let method = lines.next().expect("a method");
    for line in lines {
        let (name, value) = line.split_once(": ").expect("a header");
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
            http::HeaderValue::from_str(value).expect("a value"),
        );
    }
    guildhall::federation::verify::check_call(
        &headers,
        method,
        &seed[split + 2..],
        own_key().public(),
        NOW,
        targets::SKEW_MS,
    )
    .expect("a valid signed call");
    for seed in upload_seeds().iter().filter(|s| s[0] == 1) {
        guildhall::media::probe::probe_bytes(&seed[1..]).expect("a valid image");
    }
}

#[test]
fn gossip_event() {
    exercise("gossip_event", targets::gossip_event, &gossip_seeds());
}

#[test]
fn s2s_headers() {
    exercise("s2s_headers", targets::s2s_headers, &s2s_header_seeds());
}

#[test]
fn s2s_body() {
    exercise("s2s_body", targets::s2s_body, &s2s_body_seeds());
}

#[test]
fn identity() {
    exercise("identity", targets::identity, &identity_seeds());
}

#[test]
fn webhook_json() {
    exercise("webhook_json", targets::webhook_json, &webhook_seeds());
}

#[test]
fn upload() {
    exercise("upload", targets::upload, &upload_seeds());
}

#[test]
fn request_text() {
    exercise("request_text", targets::request_text, &request_text_seeds());
}

/// Inputs that once broke a target (`docs/FUZZING.md`, "Findings"), kept so they never do again.
#[test]
fn regressions() {
    // A signed timestamp near u64::MAX overflowed the clock-window check
    // (`identity::freshness::check`): a panic in debug builds, a wrapped comparison in release.
    // Reached by a `VerifyUser` challenge and by `guildhall-timestamp` on any server call.
    let max = u64::MAX.to_string();
    let challenge = format!("{max}:{}", "ab".repeat(64));
    targets::identity(&with_selector(
        7,
        format!("{}\n{challenge}", user_key().public().to_hex()).as_bytes(),
    ));
    let verify = pb::VerifyUserRequest {
        user_id: user_key().public().to_hex(),
        challenge,
    };
    targets::s2s_body(&s2s_body_seed("VerifyUser", &verify.encode_to_vec()));
    let seed = String::from_utf8(s2s_header_seed(
        "/guildhall.v1.GuildHall/PullServerEvents",
        &[],
    ))
    .expect("text");
    let stamp = (NOW - 1_000).to_string();
    targets::s2s_headers(seed.replace(&stamp, &max).as_bytes());

    // A 26-byte lossless WebP header declaring 16384×9622 RGB pixels: within `max_alloc` for the
    // image (473 MB), but the WebP decoder's RGBA frame beside it asked for 631 MB more
    // (`upload` long run, libFuzzer `-malloc_limit_mb=512`). Now refused from the header.
    let bomb = b"\x01RIFF\xc2\x00\x00\x00WEBPVP8L\xb6\x00\x00\x00/U;\"\ni";
    targets::upload(bomb);
    assert!(matches!(
        guildhall::media::probe::probe_bytes(&bomb[1..]),
        Err(guildhall::media::probe::ProbeError::TooLarge)
    ));
}
