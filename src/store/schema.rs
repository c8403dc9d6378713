//! Numbered schema migrations. Append new ones; never edit one that has shipped.

use rusqlite_migration::{M, Migrations};

/// Every migration, oldest first.
pub(super) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(ACCOUNTS_V1)])
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

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
