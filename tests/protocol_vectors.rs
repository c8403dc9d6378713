//! Checks the test vectors in `docs/PROTOCOL.md` against the signing code, so the document a client
//! in another language is written from can never drift from what the node verifies.
//!
//! Run with `GUILDHALL_PRINT_VECTORS=1` to print the blocks (used to write the document).

use guildhall::identity::SecretKey;
use guildhall::identity::signing::{
    self, AccountStatusPayload, BanPayload, DeviceCertPayload, DeviceRevocationPayload,
    DmInvitePayload, HomeserverMovePayload, HomeserverMoveV2Payload, IdProofPayload,
    JoinInvitePayload, LoginPayload, RegisterPayload, RelationshipPayload, S2sRequestPayload,
    ServerBanPayload, ServerEventPayload, ServerKeyRotationPayload, Signable, UpdateUserPayload,
    UpdateUserV2Payload, VerifyUserPayload,
};

const T: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const EXPIRY: u64 = 1_798_761_600_000; // 2027-01-01T00:00:00Z

struct Vector {
    name: &'static str,
    signer: &'static str,
    bytes: Vec<u8>,
    signature: String,
}

fn vector<P: Signable>(
    name: &'static str,
    signer_name: &'static str,
    signer: &SecretKey,
    payload: &P,
) -> Vector {
    Vector {
        name,
        signer: signer_name,
        bytes: payload.signing_bytes(),
        signature: signing::sign(payload, signer).to_hex(),
    }
}

fn vectors() -> Vec<Vector> {
    let id = SecretKey::from_seed(&[1; 32]);
    let dev = SecretKey::from_seed(&[2; 32]);
    let server = SecretKey::from_seed(&[3; 32]);
    let (kid, kdev, aud) = (id.public(), dev.public(), server.public());
    // The second server: destination of the s2s-request vector, new key of the rotation vector.
    let next = SecretKey::from_seed(&[4; 32]);
    let moved = HomeserverMovePayload {
        id_key: kid,
        new_homeserver: "https://new.example".into(),
        timestamp: T,
    };
    let migration_signature = signing::sign(&moved, &id).to_hex();
    vec![
        vector(
            "device-cert",
            "K_id",
            &id,
            &DeviceCertPayload {
                id_key: kid,
                device_key: kdev,
                device_id: "phone".into(),
                issued_at: T,
                expiry: EXPIRY,
            },
        ),
        vector(
            "id-proof",
            "K_id",
            &id,
            &IdProofPayload {
                audience: aud,
                id_key: kid,
                timestamp: T,
            },
        ),
        vector(
            "register",
            "K_dev",
            &dev,
            &RegisterPayload {
                audience: aud,
                id_key: kid,
                device_key: kdev,
                display_name: "Ada Lovelace".into(),
                device_name: Some("Phone".into()),
                timestamp: T,
            },
        ),
        vector("homeserver-move", "K_id", &id, &moved),
        vector(
            "login",
            "K_dev",
            &dev,
            &LoginPayload {
                audience: aud,
                id_key: kid,
                device_key: kdev,
                device_name: None,
                new_homeserver: Some("https://new.example".into()),
                migration_timestamp: Some(T),
                migration_signature: Some(migration_signature),
                migration_targets: vec![
                    "https://old.example".into(),
                    "https://other.example".into(),
                ],
                timestamp: T,
            },
        ),
        vector(
            "update-user",
            "K_dev",
            &dev,
            &UpdateUserPayload {
                id_key: kid,
                device_key: kdev,
                name: Some("Ada".into()),
                avatar_url: Some(String::new()),
                presence_preference: None,
                bio: Some("hi".into()),
                guild_order: None,
                is_profile_synced: Some(true),
                irc_name: None,
                timestamp: T,
            },
        ),
        vector(
            "update-user-v2",
            "K_dev",
            &dev,
            &UpdateUserV2Payload {
                v1: UpdateUserPayload {
                    id_key: kid,
                    device_key: kdev,
                    name: None,
                    avatar_url: None,
                    presence_preference: None,
                    bio: None,
                    guild_order: None,
                    is_profile_synced: None,
                    irc_name: None,
                    timestamp: T,
                },
                pronouns: Some("she/her".into()),
                banner_url: Some(String::new()),
                accent_color: Some("#ff8800".into()),
            },
        ),
        vector(
            "account-status",
            "K_id",
            &id,
            &AccountStatusPayload {
                id_key: kid,
                status: "deleted".into(),
                timestamp: T,
            },
        ),
        vector(
            "verify-user",
            "K_id",
            &id,
            &VerifyUserPayload {
                audience: aud,
                id_key: kid,
                timestamp: T,
            },
        ),
        vector(
            "join-invite",
            "K_dev",
            &dev,
            &JoinInvitePayload {
                audience: aud,
                id_key: kid,
                device_key: kdev,
                token: "0123456789abcdef".into(),
                display_name: "Ada".into(),
                avatar_url: String::new(),
                homeserver_url: "https://home.example".into(),
                timestamp: T,
            },
        ),
        vector(
            "s2s-request",
            "server",
            &server,
            &S2sRequestPayload {
                audience: next.public(),
                origin_key: aud,
                origin: "https://a.example".into(),
                method: "/guildhall.v1.GuildHall/VerifyUser".into(),
                body_sha256: sha256(&GRPC_BODY),
                timestamp: T,
                nonce: [0x5a; 16],
            },
        ),
        vector(
            "server-key-rotation",
            "server",
            &server,
            &ServerKeyRotationPayload {
                old_key: aud,
                new_key: next.public(),
                new_key_valid_until: EXPIRY,
                timestamp: T,
            },
        ),
        vector(
            "ban",
            "server",
            &server,
            &BanPayload {
                origin: aud,
                banned: kid,
                guild_id: "123456789".into(),
                reason: "spam".into(),
                evidence_hash: EVIDENCE_HASH.into(),
                timestamp: T,
            },
        ),
        vector(
            "homeserver-move-v2",
            "K_id",
            &id,
            &HomeserverMoveV2Payload {
                id_key: kid,
                new_homeserver: "https://new.example".into(),
                timestamp: T,
                sequence: 2,
                prev: vec![0xab; 32],
            },
        ),
        vector(
            "device-revocation",
            "K_id",
            &id,
            &DeviceRevocationPayload {
                id_key: kid,
                device_key: kdev,
                timestamp: T,
            },
        ),
        vector(
            "dm-invite",
            "K_dev",
            &dev,
            &DmInvitePayload {
                audience: next.public(),
                inviter_key: kid,
                device_key: kdev,
                target: next.public(),
                token: "0123456789abcdef".into(),
                guild_id: "42".into(),
                host_server_url: "https://a.example".into(),
                timestamp: T,
            },
        ),
        vector(
            "relationship",
            "K_dev",
            &dev,
            &RelationshipPayload {
                audience: next.public(),
                user_key: kid,
                device_key: kdev,
                other: next.public(),
                action: "request".into(),
                homeserver_url: "https://a.example".into(),
                timestamp: T,
            },
        ),
        vector(
            "server-event",
            "server",
            &server,
            &ServerEventPayload {
                origin_key: aud,
                kind: "test-note".into(),
                sequence: 7,
                timestamp: T,
                payload: b"hello".to_vec(),
            },
        ),
        vector(
            "server-ban",
            "server",
            &server,
            &ServerBanPayload {
                origin: aud,
                user: kid,
                banned: true,
                reason: "spam".into(),
                timestamp: T,
            },
        ),
    ]
}

/// The `ban` vector's evidence hash: SHA-256 of the three bytes `foo`.
const EVIDENCE_HASH: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// The `s2s-request` vector's body: a gRPC frame (flag 0, length 2) around the message bytes `0a00`.
const GRPC_BODY: [u8; 7] = [0, 0, 0, 0, 2, 0x0a, 0x00];

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Parses the ```` ```vector ```` blocks of PROTOCOL.md: `key: value` lines; a value may continue
/// on following indented lines (long hex is wrapped).
fn doc_vectors() -> Vec<std::collections::HashMap<String, String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md is readable");
    let mut out = Vec::new();
    let mut current: Option<std::collections::HashMap<String, String>> = None;
    let mut last_key = String::new();
    for line in doc.lines() {
        if line.trim() == "```vector" {
            current = Some(Default::default());
        } else if line.trim() == "```" {
            if let Some(block) = current.take() {
                out.push(block);
            }
        } else if let Some(block) = current.as_mut() {
            if line.starts_with(' ') {
                block
                    .get_mut(&last_key)
                    .expect("continuation follows a key")
                    .push_str(line.trim());
            } else if let Some((k, v)) = line.split_once(':') {
                last_key = k.trim().to_owned();
                block.insert(last_key.clone(), v.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn protocol_md_vectors_match_the_code() {
    let computed = vectors();
    if std::env::var_os("GUILDHALL_PRINT_VECTORS").is_some() {
        for v in &computed {
            println!(
                "```vector\nlabel: {}\nsigner: {}\nsigning_bytes:",
                v.name, v.signer
            );
            for chunk in hex::encode(&v.bytes).as_bytes().chunks(64) {
                println!("  {}", std::str::from_utf8(chunk).expect("hex"));
            }
            println!("signature:");
            for chunk in v.signature.as_bytes().chunks(64) {
                println!("  {}", std::str::from_utf8(chunk).expect("hex"));
            }
            println!("```\n");
        }
    }
    let documented = doc_vectors();
    assert_eq!(
        documented.len(),
        computed.len(),
        "one documented vector per signed kind"
    );
    for v in &computed {
        let doc = documented
            .iter()
            .find(|d| d.get("label").map(String::as_str) == Some(v.name))
            .unwrap_or_else(|| panic!("PROTOCOL.md has no vector for {}", v.name));
        assert_eq!(doc["signer"], v.signer, "{}: signer", v.name);
        assert_eq!(
            doc["signing_bytes"],
            hex::encode(&v.bytes),
            "{}: signing bytes",
            v.name
        );
        assert_eq!(doc["signature"], v.signature, "{}: signature", v.name);
    }
}

#[test]
fn the_documented_keys_are_the_vector_keys() {
    // PROTOCOL.md lists these public keys for the seeds 0x01.., 0x02.., 0x03...
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("readable");
    for seed in [1u8, 2, 3, 4] {
        let public = SecretKey::from_seed(&[seed; 32]).public().to_hex();
        assert!(
            doc.contains(&public),
            "PROTOCOL.md lists the public key for seed {seed:#04x}"
        );
    }
}

#[test]
fn flipping_any_bit_breaks_verification() {
    for v in vectors() {
        let signer = match v.signer {
            "K_id" => [1u8; 32],
            "server" => [3u8; 32],
            _ => [2u8; 32],
        };
        let key = SecretKey::from_seed(&signer).public();
        let sig = guildhall::identity::Signature::from_hex(&v.signature).expect("sig");
        assert!(key.verify(&v.bytes, &sig), "{} verifies", v.name);
        for i in 0..v.bytes.len() {
            let mut bytes = v.bytes.clone();
            bytes[i] ^= 1 << (i % 8);
            assert!(
                !key.verify(&bytes, &sig),
                "{}: flipping byte {i} must break it",
                v.name
            );
        }
        let mut raw = sig.to_bytes();
        raw[7] ^= 0x10;
        let flipped = guildhall::identity::Signature::from_bytes(&raw).expect("64 bytes");
        assert!(
            !key.verify(&v.bytes, &flipped),
            "{}: flipped signature",
            v.name
        );
    }
}
