//! Numbered schema migrations. Append new ones; never edit one that has shipped.

use rusqlite_migration::{M, Migrations};

/// Every migration, oldest first.
pub(super) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(ACCOUNTS_V1),
        M::up(GUILDS_V2),
        M::up(EVENTS_V3),
        M::up(MESSAGES_V4),
        M::up(DMS_V5),
        M::up(WEBHOOKS_V6),
        M::up(SETTINGS_V7),
        M::up(MEDIA_V8),
        M::up(HARMONY_V9),
        M::up(PUSH_V10),
        M::up(FEDERATION_V11),
        M::up(OUTBOX_V13),
        M::up(GOSSIP_V14),
        M::up(DM_PUSH_V15),
        M::up(BANS_V16),
        M::up(REMOTE_PUSH_V17),
        M::up(MEMBERSHIPS_V18),
        M::up(PEERS_BY_KEY_V19),
        M::up(BAN_LISTS_V20),
        M::up(REVOKED_KEYS_V21),
        M::up(WEBHOOK_MESSAGES_V22),
        M::up(REGISTRATION_TOKENS_V23),
        M::up(USER_DEACTIVATION_V24),
        M::up(QUARANTINE_V25),
        M::up(SERVER_EVENT_PRUNING_V26),
        M::up(RATE_LIMITS_V27),
        M::up(SYSTEM_MESSAGES_V28),
        M::up(NOTES_V29),
        M::up(RELATIONSHIPS_V30),
        M::up(MENTIONS_V31),
        M::up(PROFILES_V32),
        M::up(ACCOUNT_STATUS_V33),
        M::up(RELATIONSHIP_PEERS_V34),
        M::up(IRC_TOKENS_V35),
        M::up(FCM_QUEUE_V36),
        M::up(IRC_ACCOUNTS_V37),
    ])
}

/// Users, their devices, sessions and refresh tokens, their server list and push distributors,
/// the replay cache, homeserver moves, and push delegation tokens.
const ACCOUNTS_V1: &str = r#"
CREATE TABLE users (
    id                  TEXT PRIMARY KEY NOT NULL,   -- lowercase hex of K_id
    display_name        TEXT NOT NULL,
    avatar_url          TEXT NOT NULL DEFAULT '',
    bio                 TEXT NOT NULL DEFAULT '',
    presence_preference INTEGER NOT NULL DEFAULT 0,
    guild_order         TEXT NOT NULL DEFAULT '',
    is_profile_synced   INTEGER NOT NULL DEFAULT 0,
    irc_name            TEXT UNIQUE,
    homeserver          TEXT NOT NULL,
    profile_updated_at  INTEGER NOT NULL,            -- timestamp of the last signed change (ms)
    created_at          INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    pubkey          TEXT PRIMARY KEY NOT NULL,       -- lowercase hex of K_dev
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id       TEXT NOT NULL,
    name            TEXT NOT NULL DEFAULT '',
    cert_issued_at  INTEGER NOT NULL,
    cert_expiry     INTEGER NOT NULL,
    cert_signature  TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX devices_by_user ON devices(user_id);

CREATE TABLE sessions (
    token_hash      BLOB PRIMARY KEY NOT NULL,       -- sha256 of the access token
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_pubkey   TEXT NOT NULL REFERENCES devices(pubkey) ON DELETE CASCADE,
    family_id       BLOB NOT NULL,                   -- one login and its refresh chain
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_family ON sessions(family_id);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

CREATE TABLE refresh_tokens (
    token_hash      BLOB PRIMARY KEY NOT NULL,       -- sha256 of the refresh token
    family_id       BLOB NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_pubkey   TEXT NOT NULL REFERENCES devices(pubkey) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    spent_at        INTEGER                          -- set on rotation; reuse revokes the family
) STRICT;
CREATE INDEX refresh_by_family ON refresh_tokens(family_id);
CREATE INDEX refresh_by_expiry ON refresh_tokens(expires_at);

CREATE TABLE user_servers (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_url  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, server_url)
) STRICT, WITHOUT ROWID;

CREATE TABLE push_distributors (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, url)
) STRICT, WITHOUT ROWID;

CREATE TABLE replay_cache (
    signature   BLOB PRIMARY KEY NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX replay_by_expiry ON replay_cache(expires_at);

CREATE TABLE homeserver_moves (
    user_id         TEXT NOT NULL,
    new_homeserver  TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    signature       TEXT NOT NULL,
    targets         TEXT NOT NULL,                   -- JSON array of server addresses
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (user_id, timestamp)
) STRICT;

CREATE TABLE push_delegations (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
) STRICT;
"#;

/// Guilds (DMs are guilds with `is_dm`), folders, channels and threads, roles, members, bans and
/// invites. Ids are decimal strings of time-ordered integers (see `crate::ids`).
const GUILDS_V2: &str = r#"
CREATE TABLE guilds (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    owner_id            TEXT NOT NULL,
    avatar_url          TEXT NOT NULL DEFAULT '',
    is_dm               INTEGER NOT NULL DEFAULT 0,
    latest_message_id   TEXT NOT NULL DEFAULT '',
    created_at          INTEGER NOT NULL
) STRICT;

CREATE TABLE folders (
    id                  TEXT PRIMARY KEY NOT NULL,
    guild_id            TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    parent_folder_id    TEXT NOT NULL DEFAULT '',
    name                TEXT NOT NULL,
    position            INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX folders_by_guild ON folders(guild_id);

CREATE TABLE channels (
    id                  TEXT PRIMARY KEY NOT NULL,
    guild_id            TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    folder_id           TEXT NOT NULL DEFAULT '',
    name                TEXT NOT NULL,
    position            INTEGER NOT NULL DEFAULT 0,
    latest_message_id   TEXT NOT NULL DEFAULT '',
    irc_name            TEXT,
    is_thread           INTEGER NOT NULL DEFAULT 0,
    parent_channel_id   TEXT NOT NULL DEFAULT '',
    root_message_id     TEXT NOT NULL DEFAULT '',
    UNIQUE (guild_id, irc_name)
) STRICT;
CREATE INDEX channels_by_guild ON channels(guild_id);

CREATE TABLE roles (
    id                  TEXT PRIMARY KEY NOT NULL,
    guild_id            TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    color               TEXT NOT NULL DEFAULT '',
    position            INTEGER NOT NULL DEFAULT 0,
    permissions         TEXT NOT NULL DEFAULT '[]',   -- JSON array of permission strings
    parent_role_ids     TEXT NOT NULL DEFAULT '[]'    -- JSON array of role ids
) STRICT;
CREATE INDEX roles_by_guild ON roles(guild_id);

CREATE TABLE members (
    guild_id    TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id);

CREATE TABLE member_roles (
    guild_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    role_id     TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (guild_id, user_id, role_id),
    FOREIGN KEY (guild_id, user_id) REFERENCES members(guild_id, user_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE bans (
    guild_id    TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    banned_by   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE invites (
    token           TEXT PRIMARY KEY NOT NULL,
    guild_id        TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    channel_id      TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL DEFAULT 0,            -- 0: never
    max_uses        INTEGER NOT NULL DEFAULT 0,            -- 0: unlimited
    uses            INTEGER NOT NULL DEFAULT 0,
    deactivated     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX invites_by_guild ON invites(guild_id);
"#;

/// The persistent event log behind `SubscribeEvents`: every event has an increasing id that is
/// never reused (AUTOINCREMENT), and one or more scopes saying who may see it.
const EVENTS_V3: &str = r#"
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  INTEGER NOT NULL,
    payload     BLOB NOT NULL                 -- protobuf StreamResponse, without event_id/timestamp
) STRICT;
CREATE INDEX events_by_time ON events(created_at);

CREATE TABLE event_scopes (
    scope       TEXT NOT NULL,                -- "g:<guild id>" or "u:<user id>"
    event_id    INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    PRIMARY KEY (scope, event_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX event_scopes_by_event ON event_scopes(event_id);
"#;

/// Messages (ids are time-ordered integers, so history pages by primary key), reactions, read
/// states, and the FTS5 index kept in step by triggers.
const MESSAGES_V4: &str = r#"
CREATE TABLE messages (
    id                  INTEGER PRIMARY KEY,
    channel_id          TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    guild_id            TEXT NOT NULL,
    sender_id           TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    edited_at           INTEGER,
    reply_to            INTEGER,
    text                TEXT NOT NULL DEFAULT '',
    components          BLOB,                       -- protobuf list of Component, NULL if none
    metadata            TEXT,                       -- JSON object, NULL if none
    mentioned_users     TEXT,                       -- JSON array, NULL if none
    mentioned_roles     TEXT,                       -- JSON array, NULL if none
    is_pinned           INTEGER NOT NULL DEFAULT 0,
    thread_id           TEXT,
    idempotency_key     TEXT,
    sender_name         TEXT,                       -- overrides the user's name (webhooks)
    sender_avatar       TEXT                        -- overrides the user's avatar (webhooks)
) STRICT;
CREATE INDEX messages_by_channel ON messages(channel_id, id);
CREATE INDEX messages_by_sender ON messages(guild_id, sender_id, id);
CREATE UNIQUE INDEX messages_idempotency ON messages(sender_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_pinned ON messages(channel_id) WHERE is_pinned = 1;

CREATE TABLE reactions (
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    emoji       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE read_states (
    user_id             TEXT NOT NULL,
    channel_id          TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    delivered_through   INTEGER NOT NULL DEFAULT 0,
    read_through        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, channel_id)
) STRICT, WITHOUT ROWID;

CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='id');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.text != '' BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.text != '' BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) SELECT 'delete', old.id, old.text WHERE old.text != '';
    INSERT INTO messages_fts (rowid, text) SELECT new.id, new.text WHERE new.text != '';
END;
"#;

/// Direct-message invites: a DM is a guild with `is_dm`; the invite asks its target to join it.
const DMS_V5: &str = r#"
CREATE TABLE dm_invites (
    invite_id       TEXT PRIMARY KEY NOT NULL,
    token           TEXT NOT NULL,
    inviter_id      TEXT NOT NULL,
    target_user_id  TEXT NOT NULL,
    guild_id        TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    host_server_url TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending | accepted | rejected
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX dm_invites_by_target ON dm_invites(target_user_id, status);
CREATE INDEX dm_invites_by_pair ON dm_invites(inviter_id, target_user_id);
"#;

/// Webhooks: a channel's URL that programs post messages to, with a token kept only as a hash.
const WEBHOOKS_V6: &str = r#"
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    guild_id    TEXT NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    channel_id  TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    avatar_url  TEXT NOT NULL DEFAULT '',
    token_hash  BLOB NOT NULL,
    creator_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX webhooks_by_guild ON webhooks(guild_id, channel_id);
"#;

/// Server settings an admin changed (the rest keep their built-in defaults).
const SETTINGS_V7: &str = r#"
CREATE TABLE server_settings (
    key     TEXT PRIMARY KEY NOT NULL,
    value   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"#;

/// Uploaded files (content-addressed blobs on disk, one row per upload), uploads in progress with
/// the chunks received so far, and a message's attached file.
const MEDIA_V8: &str = r#"
CREATE TABLE media_files (
    id          TEXT PRIMARY KEY NOT NULL,       -- random 32-hex id, the public name
    sha256      TEXT NOT NULL,                   -- hex; names the blob on disk
    uploader_id TEXT NOT NULL,
    filename    TEXT NOT NULL,
    mime_type   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    width       INTEGER,
    height      INTEGER,
    blurhash    TEXT,
    thumb_id    TEXT REFERENCES media_files(id),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX media_by_sha ON media_files(sha256);

CREATE TABLE uploads (
    token       TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('avatar', 'media')),
    filename    TEXT,                            -- NULL until UploadBegin
    mime_type   TEXT,
    total_size  INTEGER,
    chunk_size  INTEGER,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL                 -- pushed back by every chunk
) STRICT;
CREATE INDEX uploads_by_user ON uploads(user_id);
CREATE INDEX uploads_by_expiry ON uploads(expires_at);

CREATE TABLE upload_chunks (
    token   TEXT NOT NULL REFERENCES uploads(token) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (token, idx)
) STRICT, WITHOUT ROWID;

ALTER TABLE messages ADD COLUMN media_id TEXT REFERENCES media_files(id);
"#;

/// Harmony's `protocol.profile.v1`: every user's stable numeric id (Harmony ids are uint64, ours
/// are hex keys; AUTOINCREMENT never reuses a number, and a trigger numbers every new user so the
/// accounts code needs no change) with the Harmony-only `is_bot` flag, and app data per user and
/// app id. See docs/HARMONY.md.
const HARMONY_V9: &str = r#"
CREATE TABLE harmony_users (
    num         INTEGER PRIMARY KEY AUTOINCREMENT,  -- the user's Harmony id (uint64, from 1)
    user_id     TEXT NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    is_bot      INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO harmony_users (user_id) SELECT id FROM users ORDER BY created_at, id;
CREATE TRIGGER harmony_users_number_new_user AFTER INSERT ON users BEGIN
    INSERT INTO harmony_users (user_id) VALUES (new.id);
END;

CREATE TABLE app_data (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    app_id      TEXT NOT NULL,
    data        BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, app_id)
) STRICT, WITHOUT ROWID;
"#;

/// Push: FCM tokens per user, the durable queue of pushes to UnifiedPush distributors (a queued
/// push goes with its distributor), and how far the push fan-out has read the event log.
const PUSH_V10: &str = r#"
CREATE TABLE fcm_tokens (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, token)
) STRICT, WITHOUT ROWID;

CREATE TABLE push_queue (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    payload         TEXT NOT NULL,                  -- the body POSTed to the distributor
    dedup_key       TEXT,                           -- e.g. "m:<message id>"; NULL: no dedup
    attempts        INTEGER NOT NULL DEFAULT 0,     -- failed attempts so far
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_error      TEXT,
    FOREIGN KEY (user_id, url) REFERENCES push_distributors(user_id, url) ON DELETE CASCADE
) STRICT;
CREATE INDEX push_queue_due ON push_queue(next_attempt_at);
CREATE INDEX push_queue_by_distributor ON push_queue(user_id, url);
CREATE UNIQUE INDEX push_queue_dedup ON push_queue(dedup_key, user_id, url)
    WHERE dedup_key IS NOT NULL;

CREATE TABLE push_cursor (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    event_id    INTEGER NOT NULL
) STRICT;
"#;

/// Federation: peers' pinned keys by address, the nonces of accepted server-to-server calls, and
/// the validity of this node's own key.
const FEDERATION_V11: &str = r#"
CREATE TABLE federation_peers (
    address         TEXT PRIMARY KEY NOT NULL,   -- the peer's canonical address
    server_key      BLOB NOT NULL,               -- the pinned ed25519 key (32 bytes)
    key_valid_until INTEGER NOT NULL,
    peer_id         TEXT NOT NULL DEFAULT '',
    pinned_at       INTEGER NOT NULL,            -- first use
    key_changed_at  INTEGER NOT NULL,            -- first use, or the last rotation applied
    last_seen_at    INTEGER NOT NULL DEFAULT 0   -- last accepted signed call from it
) STRICT;
CREATE TABLE federation_nonces (
    origin_key  BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (origin_key, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX federation_nonces_by_expiry ON federation_nonces(expires_at);
CREATE TABLE local_server_keys (
    server_key  BLOB PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL,
    valid_until INTEGER NOT NULL
) STRICT;
"#;

/// Ban notices: every `BanNotification` this node made (as a guild's host) or accepted from
/// another server, newest per (origin, guild, user), and whether it was applied here by policy.
const BANS_V16: &str = r#"
CREATE TABLE ban_notices (
    origin_key      TEXT NOT NULL,                   -- hex key of the banning server (the host)
    guild_id        TEXT NOT NULL,                   -- as the host names it
    user_id         TEXT NOT NULL,                   -- hex K_id of the banned user
    reason          TEXT NOT NULL,
    evidence_hash   TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    signature       BLOB NOT NULL,                   -- by origin_key over the `ban` kind
    applied         INTEGER NOT NULL,                -- 1: enforced on this node's own guilds
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (origin_key, guild_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX ban_notices_by_user ON ban_notices(user_id);
"#;

/// Scoped ban trust (docs/PROTOCOL.md §15): servers' own moderation lists (`server-ban` entries,
/// this node's and those accepted from others, newest per origin and user), an index for the few
/// notices applied here, and no more per-guild copies of applied notices: an applied list entry is
/// the ban itself (it keeps the user out of every guild here), so lifting it or no longer trusting
/// its list ends it. The copies older nodes made (`bans` rows whose `banned_by` is the origin of an
/// applied notice for that user) are removed; the node re-decides `applied` at start from its
/// configured trust.
const BAN_LISTS_V20: &str = r#"
CREATE TABLE server_bans (
    origin_key      TEXT NOT NULL,                   -- hex key of the server whose list it is
    user_id         TEXT NOT NULL,                   -- hex K_id
    banned          INTEGER NOT NULL,                -- 1: banned; 0: lifted
    reason          TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,                -- signed; newest wins
    signature       BLOB NOT NULL,                   -- by origin_key over the `server-ban` kind
    applied         INTEGER NOT NULL,                -- 1: enforced on this node's guilds
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (origin_key, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX server_bans_by_user ON server_bans(user_id);
CREATE INDEX ban_notices_applied ON ban_notices(origin_key) WHERE applied = 1;
DELETE FROM bans WHERE EXISTS (
    SELECT 1 FROM ban_notices n
    WHERE n.applied = 1 AND n.origin_key = bans.banned_by AND n.user_id = bans.user_id);
"#;

/// Pushes for remote members: the push delegation tokens a host got from its remote members'
/// homeservers at their joins (docs/PROTOCOL.md §14.2), and one live delegation per user and
/// server on the homeserver's side, so repeated joins and `VerifyUser` calls don't pile up tokens.
const REMOTE_PUSH_V17: &str = r#"
CREATE TABLE remote_push_tokens (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    homeserver  TEXT NOT NULL,                   -- the homeserver that handed the token out
    token       TEXT NOT NULL,                   -- sent back in PushNotification
    received_at INTEGER NOT NULL
) STRICT;
DELETE FROM push_delegations WHERE rowid NOT IN
    (SELECT max(rowid) FROM push_delegations GROUP BY user_id, origin);
CREATE UNIQUE INDEX push_delegations_by_holder ON push_delegations(user_id, origin);
"#;

/// On a homeserver: its users' memberships in guilds hosted elsewhere, as the hosts' signed
/// `membership` server events announced them (docs/PROTOCOL.md §13). A row outlives a leave (as
/// `joined = 0`) so an older event arriving late can't bring the membership back.
const MEMBERSHIPS_V18: &str = r#"
CREATE TABLE remote_memberships (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    host_key    TEXT NOT NULL,                   -- hex key of the host (the events' origin)
    guild_id    TEXT NOT NULL,                   -- as the host names it
    host_url    TEXT NOT NULL,                   -- the host's address, as pinned here
    joined      INTEGER NOT NULL,                -- 1: a member now; 0: left or removed
    seq         INTEGER NOT NULL,                -- the event's sequence: only newer ones apply
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, host_key, guild_id)
) STRICT, WITHOUT ROWID;
"#;

/// Gossip validators look a server event's origin up by key, once per event.
const PEERS_BY_KEY_V19: &str = r#"
CREATE INDEX federation_peers_by_key ON federation_peers(server_key);
"#;

/// A revoked device key stays revoked for every identity, not only the one that revoked it: a key
/// this node knew as the revoker's device when the revocation arrived (`held`) can't come back
/// under another identity (docs/PROTOCOL.md §12.2). A revocation of a key the node never saw as
/// the revoker's keeps that identity from using it, and no other: anyone can sign a revocation of
/// any key, so it must not lock another identity out of a key it holds. Existing revocations count
/// as held unless another identity holds the key now. The triggers of `OUTBOX_V13` are replaced by
/// ones that check the key alone for held revocations.
const REVOKED_KEYS_V21: &str = r#"
ALTER TABLE revoked_devices ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
UPDATE revoked_devices SET held = 1 WHERE NOT EXISTS
    (SELECT 1 FROM devices d WHERE d.pubkey = revoked_devices.device_pubkey);
CREATE INDEX revoked_devices_by_key ON revoked_devices(device_pubkey);
DROP TRIGGER devices_refuse_revoked_insert;
DROP TRIGGER devices_refuse_revoked_update;
DROP TRIGGER sessions_refuse_revoked;
CREATE TRIGGER devices_refuse_revoked_insert BEFORE INSERT ON devices
WHEN EXISTS (SELECT 1 FROM revoked_devices WHERE device_pubkey = NEW.pubkey
             AND (user_id = NEW.user_id OR held = 1))
BEGIN SELECT RAISE(ABORT, 'refused: device_cert.pubkey: this device was revoked by its owner'); END;
CREATE TRIGGER devices_refuse_revoked_update BEFORE UPDATE ON devices
WHEN EXISTS (SELECT 1 FROM revoked_devices WHERE device_pubkey = NEW.pubkey
             AND (user_id = NEW.user_id OR held = 1))
BEGIN SELECT RAISE(ABORT, 'refused: device_cert.pubkey: this device was revoked by its owner'); END;
CREATE TRIGGER sessions_refuse_revoked BEFORE INSERT ON sessions
WHEN EXISTS (SELECT 1 FROM revoked_devices WHERE device_pubkey = NEW.device_pubkey
             AND (user_id = NEW.user_id OR held = 1))
BEGIN SELECT RAISE(ABORT, 'refused: device_cert.pubkey: this device was revoked by its owner'); END;
"#;

/// Which messages a webhook posted: `Message.webhook_id` marks them for clients, so a webhook
/// can't pass as a member whatever name it posts under. Before this, webhook posts were the only
/// messages with `sender_name` set, and their `sender_id` is the webhook's id.
const WEBHOOK_MESSAGES_V22: &str = r#"
ALTER TABLE messages ADD COLUMN webhook_id TEXT;
UPDATE messages SET webhook_id = sender_id WHERE sender_name IS NOT NULL;
"#;

/// Who may register: registration tokens that admins make (only their SHA-256 is kept, like
/// session tokens), invites that let people new to the node register whatever its policy, and
/// the audit log of admin actions (`guildhall.admin.v1`, docs/OPERATING.md).
const REGISTRATION_TOKENS_V23: &str = r#"
CREATE TABLE registration_tokens (
    id          TEXT PRIMARY KEY NOT NULL,           -- public id, for listing and revoking
    token_hash  BLOB NOT NULL UNIQUE,                -- sha256 of the secret token
    created_by  TEXT NOT NULL,                       -- the admin's user id
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL DEFAULT 0,          -- 0: never
    max_uses    INTEGER NOT NULL DEFAULT 0,          -- 0: unlimited
    uses        INTEGER NOT NULL DEFAULT 0,
    revoked_at  INTEGER,                             -- NULL: not revoked
    note        TEXT NOT NULL DEFAULT ''
) STRICT;
ALTER TABLE invites ADD COLUMN allow_registration INTEGER NOT NULL DEFAULT 0;
CREATE TABLE admin_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,                    -- ms
    actor       TEXT NOT NULL,                       -- the admin's user id
    action      TEXT NOT NULL,                       -- the Admin method
    target      TEXT NOT NULL,
    result      TEXT NOT NULL                        -- 'ok' or the refusal
) STRICT;
CREATE INDEX admin_audit_by_actor ON admin_audit(actor, id);
CREATE INDEX admin_audit_by_action ON admin_audit(action, id);
"#;

/// Accounts a server admin deactivated (`DeactivateUser`): while `deactivated_at` is set, no
/// session can be opened for the user, whatever path tries (login, a join, a refresh), as with
/// revoked devices; deactivating deletes the sessions they had.
const USER_DEACTIVATION_V24: &str = r#"
ALTER TABLE users ADD COLUMN deactivated_at INTEGER;         -- ms; NULL: active
CREATE TRIGGER sessions_refuse_deactivated BEFORE INSERT ON sessions
WHEN EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND deactivated_at IS NOT NULL)
BEGIN SELECT RAISE(ABORT, 'refused: user_id: this account was deactivated by a server admin'); END;
"#;

/// Uploaded bytes a server admin quarantined (`QuarantineFile`): no file with these bytes is
/// served or found any more, whatever its id (the same bytes uploaded again included). The bytes
/// stay on disk for the operator.
const QUARANTINE_V25: &str = r#"
CREATE TABLE quarantined_media (
    sha256          TEXT PRIMARY KEY NOT NULL,       -- the bytes, as media_files.sha256
    file_id         TEXT NOT NULL,                   -- the file the admin named (or its thumbnail)
    quarantined_by  TEXT NOT NULL,                   -- the admin's user id
    quarantined_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"#;

/// Pruning the server-event log (docs/PROTOCOL.md §13, "Pruning"): each event's `subject` (what
/// it is a statement about, per kind; NULL until computed, empty for events never superseded) and
/// `fields` (which parts of the subject it states, as bits: a later event of the same subject whose
/// bits cover these supersedes it), and per `(origin, kind)` the low-water mark below which every
/// event has been processed here, held or not.
const SERVER_EVENT_PRUNING_V26: &str = r#"
ALTER TABLE server_events ADD COLUMN subject BLOB;
ALTER TABLE server_events ADD COLUMN fields INTEGER NOT NULL DEFAULT 0;
CREATE INDEX server_events_by_subject ON server_events(origin, kind, subject, seq);
CREATE TABLE server_event_marks (
    origin          BLOB NOT NULL,               -- the origin server's key (32 bytes)
    kind            TEXT NOT NULL,
    pruned_through  INTEGER NOT NULL,            -- every sequence up to this one was processed
    PRIMARY KEY (origin, kind)
) STRICT, WITHOUT ROWID;
"#;

/// Rate-limit buckets saved every few seconds and at shutdown, so a restart or a crash does not
/// hand every user and address a fresh allowance: per limit (its setting's name) and key (a user
/// id, a client address, a mailbox session), when its bucket is full again (ms since the epoch).
const RATE_LIMITS_V27: &str = r#"
CREATE TABLE rate_limit_state (
    limit_name  TEXT NOT NULL,
    key         TEXT NOT NULL,
    until_ms    INTEGER NOT NULL,
    PRIMARY KEY (limit_name, key)
) STRICT, WITHOUT ROWID;
"#;

/// Messages the node posts about what happened in a guild (`Message.action`, a `SystemAction`:
/// a member joined or left, a message was pinned, a channel or the guild renamed), the encoded
/// `SystemAction`; NULL for every message a member or webhook sent.
const SYSTEM_MESSAGES_V28: &str = r#"
ALTER TABLE messages ADD COLUMN action BLOB;
"#;

/// Private notes a user keeps about other users (`SetUserNote`, docs/PEOPLE.md): one per pair,
/// seen only by the user who wrote it.
const NOTES_V29: &str = r#"
CREATE TABLE user_notes (
    owner_id    TEXT NOT NULL,                   -- who wrote it
    target_id   TEXT NOT NULL,                   -- whom it is about
    note        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,                -- ms
    PRIMARY KEY (owner_id, target_id)
) STRICT, WITHOUT ROWID;
"#;

/// Relationships (docs/PEOPLE.md): one row per user and other user, as that user sees it:
/// `friend` (both rows), `outgoing` / `incoming` (a pending friend request, one row each side),
/// `blocked` (only the blocker's row; the blocked user's row towards them is gone).
const RELATIONSHIPS_V30: &str = r#"
CREATE TABLE relationships (
    user_id     TEXT NOT NULL,
    other_id    TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('friend', 'outgoing', 'incoming', 'blocked')),
    since       INTEGER NOT NULL,                -- ms
    PRIMARY KEY (user_id, other_id)
) STRICT, WITHOUT ROWID;
"#;

/// Recent mentions (docs/PEOPLE.md): every message's mention targets (a user id, a role id, or a
/// guild id for `@everyone`), kept in step with `messages` by triggers as the search index is, so
/// a user's mentions are one index range per target; and what each user removed or acknowledged.
/// Existing messages are indexed here.
const MENTIONS_V31: &str = r#"
CREATE TABLE mentions (
    target      TEXT NOT NULL,
    message_id  INTEGER NOT NULL,
    PRIMARY KEY (target, message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX mentions_by_message ON mentions(message_id);
CREATE TRIGGER mentions_insert AFTER INSERT ON messages
WHEN new.mentioned_users IS NOT NULL OR new.mentioned_roles IS NOT NULL BEGIN
    INSERT OR IGNORE INTO mentions (target, message_id)
        SELECT value, new.id FROM json_each(CASE WHEN json_valid(new.mentioned_users) THEN new.mentioned_users ELSE '[]' END)
        UNION SELECT value, new.id FROM json_each(CASE WHEN json_valid(new.mentioned_roles) THEN new.mentioned_roles ELSE '[]' END);
END;
CREATE TRIGGER mentions_delete AFTER DELETE ON messages BEGIN
    DELETE FROM mentions WHERE message_id = old.id;
END;
CREATE TRIGGER mentions_update AFTER UPDATE OF mentioned_users, mentioned_roles ON messages BEGIN
    DELETE FROM mentions WHERE message_id = old.id;
    INSERT OR IGNORE INTO mentions (target, message_id)
        SELECT value, new.id FROM json_each(CASE WHEN json_valid(new.mentioned_users) THEN new.mentioned_users ELSE '[]' END)
        UNION SELECT value, new.id FROM json_each(CASE WHEN json_valid(new.mentioned_roles) THEN new.mentioned_roles ELSE '[]' END);
END;
INSERT OR IGNORE INTO mentions (target, message_id)
    SELECT j.value, m.id FROM messages m, json_each(CASE WHEN json_valid(m.mentioned_users) THEN m.mentioned_users ELSE '[]' END) j
    UNION SELECT j.value, m.id FROM messages m, json_each(CASE WHEN json_valid(m.mentioned_roles) THEN m.mentioned_roles ELSE '[]' END) j
;
CREATE TABLE mention_removals (
    user_id     TEXT NOT NULL,
    message_id  INTEGER NOT NULL,
    PRIMARY KEY (user_id, message_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE mention_acks (
    user_id         TEXT PRIMARY KEY NOT NULL,
    acked_through   INTEGER NOT NULL                -- every mention up to this message id is done
) STRICT, WITHOUT ROWID;
"#;

/// Richer profiles (docs/PEOPLE.md): pronouns, a banner and an accent colour travel in the user's
/// signed `update-user-v2` statement; a member's nickname is the guild's own (NULL: none).
const PROFILES_V32: &str = r#"
ALTER TABLE users ADD COLUMN pronouns TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN banner_url TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN accent_color INTEGER;
ALTER TABLE members ADD COLUMN nick TEXT;
"#;

/// A user's own statements about their account (docs/PEOPLE.md, "Accounts"): disabled (no session
/// opens until enabled again), and deleted keys, refused from then on by every path that would
/// make them a user, a device or a session again.
const ACCOUNT_STATUS_V33: &str = r#"
ALTER TABLE users ADD COLUMN disabled_at INTEGER;              -- ms of the statement; NULL: enabled
ALTER TABLE users ADD COLUMN deleted_at INTEGER;               -- ms; set on the tombstone row
ALTER TABLE users ADD COLUMN status_at INTEGER NOT NULL DEFAULT 0; -- newest statement applied (ms)
CREATE TABLE deleted_users (
    id          TEXT PRIMARY KEY NOT NULL,       -- hex K_id
    deleted_at  INTEGER NOT NULL,                -- when this node applied it (ms)
    timestamp   INTEGER NOT NULL,                -- the signed statement's timestamp (ms)
    signature   BLOB NOT NULL                    -- K_id's account-status signature
) STRICT, WITHOUT ROWID;
CREATE TRIGGER sessions_refuse_disabled BEFORE INSERT ON sessions
WHEN EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND disabled_at IS NOT NULL)
BEGIN SELECT RAISE(ABORT, 'refused: user_id: this account was disabled by its owner; a statement signed by its identity key enables it (SetAccountStatus)'); END;
CREATE TRIGGER sessions_refuse_deleted BEFORE INSERT ON sessions
WHEN EXISTS (SELECT 1 FROM deleted_users WHERE id = NEW.user_id)
BEGIN SELECT RAISE(ABORT, 'refused: user_id: this account was deleted by its owner'); END;
CREATE TRIGGER devices_refuse_deleted BEFORE INSERT ON devices
WHEN EXISTS (SELECT 1 FROM deleted_users WHERE id = NEW.user_id)
BEGIN SELECT RAISE(ABORT, 'refused: user_id: this account was deleted by its owner'); END;
CREATE TRIGGER users_refuse_deleted BEFORE INSERT ON users
WHEN EXISTS (SELECT 1 FROM deleted_users WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'refused: user_id: this account was deleted by its owner'); END;
"#;

/// Relationships with users of other nodes: where each such user's homeserver is (the server
/// this node's user's statements about them go to) and the newest statement from them applied
/// here, so a replayed or reordered one changes nothing (docs/PROTOCOL.md §14.4).
const RELATIONSHIP_PEERS_V34: &str = r#"
CREATE TABLE relationship_peers (
    user_id        TEXT NOT NULL,               -- a user of this node
    other_id       TEXT NOT NULL,               -- a user of another node
    homeserver     TEXT NOT NULL,               -- other_id's homeserver, canonical address
    last_received  INTEGER NOT NULL DEFAULT 0,  -- newest statement from other_id applied (ms)
    PRIMARY KEY (user_id, other_id)
) STRICT, WITHOUT ROWID;
"#;

/// IRC credentials: tokens users mint for their IRC clients, kept as SHA-256 hashes
/// (docs/IRC.md).
const IRC_TOKENS_V35: &str = r#"
CREATE TABLE irc_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL,               -- hex K_id
    token_hash    BLOB NOT NULL UNIQUE,        -- sha256 of the token
    label         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,            -- ms
    last_used_at  INTEGER                      -- ms of the last IRC login with it
) STRICT;
CREATE INDEX irc_tokens_by_user ON irc_tokens(user_id);
"#;

/// FCM delivery: pushes to FCM tokens wait in the same durable queue as pushes to UnifiedPush
/// distributors. A queued push names either a distributor (`url`) or an FCM token (`fcm_token`)
/// and goes with it; SQLite can't change a table's foreign keys in place, so the queue is rebuilt
/// with every row and id kept.
const FCM_QUEUE_V36: &str = r#"
CREATE TABLE push_queue_v36 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    url             TEXT,                           -- a UnifiedPush distributor; NULL for FCM
    fcm_token       TEXT,                           -- an FCM registration token; NULL for UnifiedPush
    payload         TEXT NOT NULL,                  -- the notice (JSON, ids only)
    dedup_key       TEXT,                           -- e.g. "m:<message id>"; NULL: no dedup
    attempts        INTEGER NOT NULL DEFAULT 0,     -- failed attempts so far
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_error      TEXT,
    CHECK ((url IS NULL) != (fcm_token IS NULL)),
    FOREIGN KEY (user_id, url) REFERENCES push_distributors(user_id, url) ON DELETE CASCADE,
    FOREIGN KEY (user_id, fcm_token) REFERENCES fcm_tokens(user_id, token) ON DELETE CASCADE
) STRICT;
INSERT INTO push_queue_v36 (id, user_id, url, payload, dedup_key, attempts, next_attempt_at,
                            created_at, last_error)
    SELECT id, user_id, url, payload, dedup_key, attempts, next_attempt_at, created_at, last_error
    FROM push_queue;
DROP TABLE push_queue;
ALTER TABLE push_queue_v36 RENAME TO push_queue;
CREATE INDEX push_queue_due ON push_queue(next_attempt_at);
CREATE INDEX push_queue_by_distributor ON push_queue(user_id, url);
CREATE INDEX push_queue_by_fcm_token ON push_queue(user_id, fcm_token);
CREATE UNIQUE INDEX push_queue_dedup ON push_queue(dedup_key, user_id, url)
    WHERE dedup_key IS NOT NULL AND url IS NOT NULL;
CREATE UNIQUE INDEX push_queue_fcm_dedup ON push_queue(dedup_key, user_id, fcm_token)
    WHERE dedup_key IS NOT NULL AND fcm_token IS NOT NULL;
"#;

/// Accounts made from an IRC client (`REGISTER`, docs/IRC.md): the node holds their keys, and a
/// password hash (Argon2id, PHC string) stands in for a token. `users.is_irc` marks them.
const IRC_ACCOUNTS_V37: &str = r#"
ALTER TABLE users ADD COLUMN is_irc INTEGER NOT NULL DEFAULT 0;
CREATE TABLE irc_accounts (
    user_id        TEXT PRIMARY KEY NOT NULL,   -- hex K_id
    id_secret      TEXT NOT NULL,               -- hex seed of K_id, held by the node
    device_secret  TEXT NOT NULL,               -- hex seed of the node-held K_dev
    password_hash  TEXT NOT NULL,               -- Argon2id PHC string
    created_at     INTEGER NOT NULL             -- ms
) STRICT;
"#;

/// The durable federation outbox (queued server calls per destination, and the ones given up),
/// users' chains of signed homeserver moves, and revoked devices, which triggers keep out of
/// `devices` and `sessions` whatever path tries to add them back. See docs/OPERATING.md and
/// docs/PROTOCOL.md §12.
const OUTBOX_V13: &str = r#"
CREATE TABLE federation_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- delivery order per destination
    destination     TEXT NOT NULL,                     -- the peer's canonical address
    method          TEXT NOT NULL,                     -- GuildHall method name, e.g. UpdateHomeServer
    body            BLOB NOT NULL,                     -- the encoded request message
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,        -- failed attempts so far
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT
) STRICT;
CREATE INDEX federation_outbox_by_destination ON federation_outbox(destination, id);
CREATE TABLE federation_outbox_failed (
    id              INTEGER PRIMARY KEY NOT NULL,      -- its id in federation_outbox
    destination     TEXT NOT NULL,
    method          TEXT NOT NULL,
    body            BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    failed_at       INTEGER NOT NULL,
    reason          TEXT NOT NULL
) STRICT;

CREATE TABLE homeserver_statements (
    user_id         TEXT NOT NULL,
    sequence        INTEGER NOT NULL,
    new_homeserver  TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    prev            BLOB NOT NULL,                     -- empty for sequence 1
    hash            BLOB NOT NULL,                     -- sha256 of its signing bytes
    signature       TEXT NOT NULL,                     -- hex, by K_id
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (user_id, sequence)
) STRICT, WITHOUT ROWID;

CREATE TABLE revoked_devices (
    user_id         TEXT NOT NULL,
    device_pubkey   TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    signature       TEXT NOT NULL,                     -- hex, by K_id
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_pubkey)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER devices_refuse_revoked_insert BEFORE INSERT ON devices
WHEN EXISTS (SELECT 1 FROM revoked_devices WHERE user_id = NEW.user_id AND device_pubkey = NEW.pubkey)
BEGIN SELECT RAISE(ABORT, 'refused: device_cert.pubkey: this device was revoked by its owner'); END;
CREATE TRIGGER devices_refuse_revoked_update BEFORE UPDATE ON devices
WHEN EXISTS (SELECT 1 FROM revoked_devices WHERE user_id = NEW.user_id AND device_pubkey = NEW.pubkey)
BEGIN SELECT RAISE(ABORT, 'refused: device_cert.pubkey: this device was revoked by its owner'); END;
CREATE TRIGGER sessions_refuse_revoked BEFORE INSERT ON sessions
WHEN EXISTS (SELECT 1 FROM revoked_devices WHERE user_id = NEW.user_id AND device_pubkey = NEW.device_pubkey)
BEGIN SELECT RAISE(ABORT, 'refused: device_cert.pubkey: this device was revoked by its owner'); END;
"#;

/// DM invites across nodes and push delegation: the inviter's `dm-invite` proof on invites this
/// node hosts (and the homeserver it was sent to), invites received from other hosts, and the
/// server each push delegation token was handed to.
const DM_PUSH_V15: &str = r#"
ALTER TABLE dm_invites ADD COLUMN signature BLOB;                       -- 64 raw bytes; NULL: not sent yet
ALTER TABLE dm_invites ADD COLUMN signed_at INTEGER NOT NULL DEFAULT 0; -- DMInvite.timestamp that was signed
ALTER TABLE dm_invites ADD COLUMN device_cert TEXT NOT NULL DEFAULT ''; -- the signer's cert, JSON
ALTER TABLE dm_invites ADD COLUMN target_server TEXT NOT NULL DEFAULT ''; -- homeserver sent to; '' = this node
CREATE UNIQUE INDEX dm_invites_by_token ON dm_invites(token);

CREATE TABLE received_dm_invites (
    invite_id       TEXT PRIMARY KEY NOT NULL,   -- this node's id for it
    host_invite_id  TEXT NOT NULL,               -- the host's id (DMInvite.invite_id as sent)
    token           TEXT NOT NULL,
    inviter_id      TEXT NOT NULL,
    target_user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    guild_id        TEXT NOT NULL,               -- on the host
    guild_name      TEXT NOT NULL,
    host_server_url TEXT NOT NULL,               -- the verified calling server
    timestamp       INTEGER NOT NULL,            -- DMInvite.timestamp (signed)
    signature       BLOB NOT NULL,               -- the inviter's dm-invite signature
    device_cert     TEXT NOT NULL,               -- the signer's cert, JSON
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending | accepted | rejected
    received_at     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (host_server_url, token)
) STRICT;
CREATE INDEX received_dm_invites_by_target ON received_dm_invites(target_user_id, status);

ALTER TABLE push_delegations ADD COLUMN origin TEXT NOT NULL DEFAULT '';  -- server it was handed to
"#;

/// Gossip: the durable log of server events (this node's own and those it received), which
/// de-duplicates them and answers peers catching up (`PullServerEvents`).
const GOSSIP_V14: &str = r#"
CREATE TABLE server_events (
    origin      BLOB NOT NULL,               -- the origin server's key (32 bytes)
    kind        TEXT NOT NULL,
    seq         INTEGER NOT NULL,            -- the origin's sequence for this kind, from 1
    timestamp   INTEGER NOT NULL,            -- when the origin signed it (ms)
    payload     BLOB NOT NULL,
    signature   BLOB NOT NULL,               -- 64 bytes, server-event
    content_id  BLOB NOT NULL UNIQUE,        -- SHA-256 of the signing bytes
    outcome     TEXT NOT NULL CHECK (outcome IN ('accepted', 'ignored', 'rejected')),
    received_at INTEGER NOT NULL,
    PRIMARY KEY (origin, kind, seq)
) STRICT;
"#;

/// A migrated in-memory database with foreign keys on, for the storage modules' unit tests.
#[cfg(test)]
pub(super) fn test_db() -> rusqlite::Connection {
    let mut c = rusqlite::Connection::open_in_memory().expect("open");
    c.pragma_update(None, "foreign_keys", "ON").expect("fk");
    migrations().to_latest(&mut c).expect("migrate");
    c
}

/// [`test_db`] with one user, `id`, whose homeserver is `homeserver`.
#[cfg(test)]
pub(super) fn test_db_with_user(id: &str, homeserver: &str) -> rusqlite::Connection {
    let c = test_db();
    c.execute(
        "INSERT INTO users (id, display_name, homeserver, profile_updated_at, created_at)
         VALUES (?1, 'U', ?2, 0, 0)",
        [id, homeserver],
    )
    .expect("user");
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }

    #[test]
    fn ban_lists_v20_drops_the_guild_copies_of_applied_notices() {
        let mut c = rusqlite::Connection::open_in_memory().expect("open");
        let migrations = super::migrations();
        // The version before V20: the last one without its table (names are not positions).
        let has_v20 = |version: usize| {
            let mut probe = rusqlite::Connection::open_in_memory().expect("open");
            migrations.to_version(&mut probe, version).expect("migrate");
            probe
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'server_bans'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .expect("schema")
                > 0
        };
        let before = (1..).find(|v| has_v20(*v)).expect("V20 is a step") - 1;
        migrations.to_version(&mut c, before).expect("to V19");
        // Guild rows are beside the point here.
        c.pragma_update(None, "foreign_keys", "OFF")
            .expect("fk off");
        let (origin, moderator) = ("o".repeat(64), "m".repeat(64));
        c.execute_batch(&format!(
            "INSERT INTO ban_notices VALUES ('{origin}', '777', 'u1', '', '', 1, x'00', 1, 1);
             INSERT INTO ban_notices VALUES ('{origin}', '778', 'u2', '', '', 1, x'00', 0, 1);
             INSERT INTO bans VALUES ('g', 'u1', 'copy', '{origin}', 1);
             INSERT INTO bans VALUES ('g', 'u2', 'not applied: not a copy', '{origin}', 1);
             INSERT INTO bans VALUES ('h', 'u1', 'a moderator''s own', '{moderator}', 1);"
        ))
        .expect("V19 rows");
        migrations.to_latest(&mut c).expect("to latest");
        let mut stmt = c
            .prepare("SELECT guild_id, user_id FROM bans ORDER BY guild_id, user_id")
            .expect("query");
        let left: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(
            left,
            vec![("g".into(), "u2".into()), ("h".into(), "u1".into())]
        );
    }
}

/// Upgrades from every earlier schema version keep every row: for each version, a database at
/// that version is filled with rows in every table (values made up from the column types, each
/// one distinct, so no migration's cleanup of duplicates or copies applies), migrated to the
/// latest, and compared table by table on the columns both versions have.
#[cfg(test)]
mod upgrades {
    use rusqlite::Connection;
    use rusqlite::types::Value;

    /// Rows per table in each fixture.
    const ROWS: i64 = 3;

    fn tables(c: &Connection) -> Vec<String> {
        let mut stmt = c
            // Ordinary tables only: a full-text index and its shadow tables are derived from the
            // rows, by the triggers that keep them.
            .prepare(
                "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table'
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .expect("tables");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("names")
    }

    /// (name, declared type, primary-key position) of each column.
    fn columns(c: &Connection, table: &str) -> Vec<(String, String, i64)> {
        let mut stmt = c
            .prepare(&format!("PRAGMA table_info(\"{table}\")"))
            .expect("table_info");
        stmt.query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(5)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("columns")
    }

    /// The values a CHECK (column IN ('a', 'b')) or CHECK (column = 1) allows, from the SQL.
    fn allowed(sql: &str, column: &str) -> Option<Value> {
        let at = sql.find(&format!("CHECK ({column} "))?;
        let rest = &sql[at..];
        if let Some(list) = rest.find("IN (") {
            let first = rest[list + 4..].split(',').next()?.trim();
            return Some(Value::Text(first.trim_matches('\'').to_owned()));
        }
        let eq = rest.find("= ")?;
        let n: String = rest[eq + 2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        n.parse().ok().map(Value::Integer)
    }

    fn value(table: &str, column: &str, ty: &str, row: i64, sql: &str) -> Value {
        if let Some(v) = allowed(sql, column) {
            return v;
        }
        // The second of two columns of which exactly one is set (CHECK ((a IS NULL) != (b IS
        // NULL))) stays unset.
        if sql.contains(&format!("!= ({column} IS NULL)")) {
            return Value::Null;
        }
        let unique = format!("{table}.{column}.{row}");
        match ty.to_ascii_uppercase().as_str() {
            "INTEGER" | "INT" => Value::Integer(row + 1),
            "REAL" => Value::Real(row as f64 + 0.5),
            "BLOB" => Value::Blob(unique.into_bytes()),
            _ => Value::Text(unique),
        }
    }

    fn fill(c: &Connection) {
        for table in tables(c) {
            let sql: String = c
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = ?1",
                    [&table],
                    |r| r.get(0),
                )
                .expect("sql");
            let cols = columns(c, &table);
            let names: Vec<String> = cols.iter().map(|(n, _, _)| format!("\"{n}\"")).collect();
            let marks = vec!["?"; cols.len()].join(", ");
            for row in 0..ROWS {
                let values: Vec<Value> = cols
                    .iter()
                    .map(|(n, ty, _)| value(&table, n, ty, row, &sql))
                    .collect();
                c.execute(
                    &format!(
                        "INSERT INTO \"{table}\" ({}) VALUES ({marks})",
                        names.join(", ")
                    ),
                    rusqlite::params_from_iter(values),
                )
                .unwrap_or_else(|e| panic!("fixture row for {table}: {e}"));
                if allowed(&sql, "id").is_some() {
                    break; // a one-row table (CHECK (id = 1))
                }
            }
        }
    }

    /// Each table's rows on `cols`, sorted, as text.
    fn rows(c: &Connection, table: &str, cols: &[String]) -> Vec<String> {
        let list: Vec<String> = cols.iter().map(|n| format!("quote(\"{n}\")")).collect();
        let mut stmt = c
            .prepare(&format!(
                "SELECT {} FROM \"{table}\"",
                list.join(" || '|' || ")
            ))
            .expect("select");
        let mut out: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("values");
        out.sort();
        out
    }

    #[test]
    fn every_earlier_version_upgrades_keeping_every_row() {
        let migrations = super::migrations();
        let mut probe = Connection::open_in_memory().expect("open");
        migrations.to_latest(&mut probe).expect("latest");
        let latest: usize = probe
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert!(latest > 20, "found {latest} migrations");
        for version in 1..latest {
            let mut c = Connection::open_in_memory().expect("open");
            migrations.to_version(&mut c, version).expect("to version");
            // Rows stand alone: their references need not exist.
            c.pragma_update(None, "foreign_keys", "OFF")
                .expect("fk off");
            fill(&c);
            let before: Vec<(String, Vec<String>, Vec<String>)> = tables(&c)
                .into_iter()
                .map(|t| {
                    let cols: Vec<String> =
                        columns(&c, &t).into_iter().map(|(n, _, _)| n).collect();
                    let rows = rows(&c, &t, &cols);
                    (t, cols, rows)
                })
                .collect();
            migrations
                .to_latest(&mut c)
                .unwrap_or_else(|e| panic!("upgrade from version {version}: {e}"));
            let now = tables(&c);
            for (table, cols, old_rows) in before {
                if !now.contains(&table) {
                    continue; // a table a migration replaced; its rows are checked where they went
                }
                let kept: Vec<String> = columns(&c, &table)
                    .into_iter()
                    .map(|(n, _, _)| n)
                    .filter(|n| cols.contains(n))
                    .collect();
                let old_rows = if kept.len() == cols.len() {
                    old_rows
                } else {
                    // Compare on the columns that survived.
                    let mut probe = Connection::open_in_memory().expect("open");
                    migrations.to_version(&mut probe, version).expect("again");
                    probe
                        .pragma_update(None, "foreign_keys", "OFF")
                        .expect("fk off");
                    fill(&probe);
                    rows(&probe, &table, &kept)
                };
                assert_eq!(
                    rows(&c, &table, &kept),
                    old_rows,
                    "table {table}: rows changed upgrading from version {version}"
                );
            }
        }
    }
}
