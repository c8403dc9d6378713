//! Users, devices, the user's server list, push distributors, homeserver moves and push
//! delegation tokens.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sessions::{NewSession, insert_session};
use super::{StorageError, Store, from_sql_int, remember_signature, to_sql_int};

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Lowercase hex of K_id.
    pub id: String,
    /// Display name (already normalised).
    pub display_name: String,
    /// Avatar URL, empty for none.
    pub avatar_url: String,
    /// Bio, at most 190 characters.
    pub bio: String,
    /// `PresenceStatus` number the user prefers.
    pub presence_preference: i32,
    /// JSON array of guild ids, or empty.
    pub guild_order: String,
    /// Whether the profile is synchronised across servers.
    pub is_profile_synced: bool,
    /// Unique IRC-style name on this node, if chosen.
    pub irc_name: Option<String>,
    /// Address of the user's homeserver.
    pub homeserver: String,
    /// Timestamp of the newest signed profile change applied (ms).
    pub profile_updated_at: u64,
    /// When the user registered here (ms).
    pub created_at: u64,
    /// When a server admin deactivated the account (ms); `None` while it is active.
    pub deactivated_at: Option<u64>,
    /// Pronouns, at most 40 characters; empty for none.
    pub pronouns: String,
    /// Profile banner URL, empty for none.
    pub banner_url: String,
    /// Accent colour as `0xRRGGBB`; `None` for none.
    pub accent_color: Option<u32>,
    /// When the user disabled their account (the statement's ms); `None` while enabled.
    pub disabled_at: Option<u64>,
    /// When this node applied the user's deletion (ms); the record is a tombstone from then on.
    pub deleted_at: Option<u64>,
    /// Made from an IRC client (`REGISTER`): the node holds the account's keys (docs/IRC.md).
    pub is_irc: bool,
}

/// A user to create at registration.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Lowercase hex of K_id.
    pub id: String,
    /// Normalised display name.
    pub display_name: String,
    /// The user's homeserver address.
    pub homeserver: String,
    /// Registration time (ms); also the profile's first timestamp.
    pub created_at: u64,
}

/// A device and its certificate, to insert or renew.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Lowercase hex of K_dev.
    pub pubkey: String,
    /// Owner (hex of K_id).
    pub user_id: String,
    /// The cert's device id.
    pub device_id: String,
    /// Human name for the device, if given.
    pub name: Option<String>,
    /// The cert's issue time.
    pub issued_at: u64,
    /// The cert's expiry.
    pub expiry: u64,
    /// The cert's signature (hex).
    pub cert_signature: String,
    /// Now (ms).
    pub now: u64,
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Lowercase hex of K_dev.
    pub pubkey: String,
    /// The cert's device id.
    pub device_id: String,
    /// Human name, or empty.
    pub name: String,
    /// Last time the device registered, logged in or refreshed (ms).
    pub last_seen_at: u64,
}

/// A verified profile change. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// New display name.
    pub display_name: Option<String>,
    /// New avatar URL (empty removes it).
    pub avatar_url: Option<String>,
    /// New presence preference.
    pub presence_preference: Option<i32>,
    /// New bio (empty clears it).
    pub bio: Option<String>,
    /// New guild order.
    pub guild_order: Option<String>,
    /// New sync flag.
    pub is_profile_synced: Option<bool>,
    /// New IRC name (empty clears it).
    pub irc_name: Option<String>,
    /// New pronouns (empty clears them).
    pub pronouns: Option<String>,
    /// New banner URL (empty removes it).
    pub banner_url: Option<String>,
    /// New accent colour: `Some(None)` clears it.
    pub accent_color: Option<Option<u32>>,
    /// The signed change's timestamp: it must be newer than the stored one.
    pub timestamp: u64,
}

pub use super::moves::HomeserverMove;

/// The columns [`user_from_row`] reads, in its order (unqualified: select from `users` alone).
pub(crate) const USER_COLUMNS: &str = "id, display_name, avatar_url, bio, presence_preference, \
     guild_order, is_profile_synced, irc_name, homeserver, profile_updated_at, created_at, \
     deactivated_at, pronouns, banner_url, accent_color, disabled_at, deleted_at, is_irc";

/// How many columns [`USER_COLUMNS`] names: a query's own columns after them start here.
pub(crate) const USER_COLUMN_COUNT: usize = 18;

/// A user from a row of [`USER_COLUMNS`] (further columns after them are the caller's).
pub(crate) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        display_name: row.get(1)?,
        avatar_url: row.get(2)?,
        bio: row.get(3)?,
        presence_preference: row.get(4)?,
        guild_order: row.get(5)?,
        is_profile_synced: row.get(6)?,
        irc_name: row.get(7)?,
        homeserver: row.get(8)?,
        profile_updated_at: from_sql_int(row.get(9)?),
        created_at: from_sql_int(row.get(10)?),
        deactivated_at: row.get::<_, Option<i64>>(11)?.map(from_sql_int),
        pronouns: row.get(12)?,
        banner_url: row.get(13)?,
        accent_color: row.get(14)?,
        disabled_at: row.get::<_, Option<i64>>(15)?.map(from_sql_int),
        deleted_at: row.get::<_, Option<i64>>(16)?.map(from_sql_int),
        is_irc: row.get(17)?,
    })
}

/// Applies the fields `update-user-v2` added (pronouns, banner, accent colour) of a verified change,
/// inside the caller's transaction; fields the change leaves out stay as they are.
pub(crate) fn apply_profile_v2_fields(
    tx: &Connection,
    user_id: &str,
    change: &ProfileChange,
) -> Result<(), StorageError> {
    tx.execute(
        "UPDATE users SET
             pronouns = coalesce(?2, pronouns),
             banner_url = coalesce(?3, banner_url),
             accent_color = CASE WHEN ?4 THEN ?5 ELSE accent_color END
         WHERE id = ?1",
        params![
            user_id,
            change.pronouns,
            change.banner_url,
            change.accent_color.is_some(),
            change.accent_color.flatten(),
        ],
    )?;
    Ok(())
}

/// The user whose username (`irc_name`) is `name`, inside any connection or transaction.
pub fn load_user_by_irc_name(
    conn: &Connection,
    name: &str,
) -> Result<Option<UserRecord>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE irc_name = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([name], user_from_row)
        .optional()?)
}

/// One user by id, inside any connection or transaction.
pub fn load_user(conn: &Connection, id: &str) -> Result<Option<UserRecord>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], user_from_row).optional()?)
}

/// Inside one transaction: creates `new_user` if given and not yet registered, adds or renews the
/// device, and opens the session. Refuses (`Conflict`) if the user does not exist and none is
/// given. The caller records the request's signature first.
pub fn sign_in(
    tx: &Connection,
    new_user: Option<&NewUser>,
    device: &NewDevice,
    session: &NewSession,
) -> Result<UserRecord, StorageError> {
    if load_user(tx, &device.user_id)?.is_none() {
        let Some(user) = new_user else {
            return Err(StorageError::Conflict("user is not registered here".into()));
        };
        tx.execute(
            "INSERT INTO users (id, display_name, homeserver, profile_updated_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![
                user.id,
                user.display_name,
                user.homeserver,
                to_sql_int(user.created_at)
            ],
        )?;
    }
    upsert_device(tx, device)?;
    insert_session(tx, session)?;
    load_user(tx, &device.user_id)?.ok_or_else(|| StorageError::Task("user vanished".into()))
}

/// Inserts a device, or renews its certificate if this user already has it. A key held by another
/// user is refused: one device key belongs to one identity.
fn upsert_device(tx: &Connection, device: &NewDevice) -> Result<(), StorageError> {
    let owner: Option<String> = tx
        .query_row(
            "SELECT user_id FROM devices WHERE pubkey = ?1",
            [&device.pubkey],
            |r| r.get(0),
        )
        .optional()?;
    if owner.as_deref().is_some_and(|o| o != device.user_id) {
        return Err(StorageError::Conflict(
            "device_cert.pubkey: this device key belongs to another identity".into(),
        ));
    }
    tx.execute(
        "INSERT INTO devices (pubkey, user_id, device_id, name, cert_issued_at, cert_expiry, \
             cert_signature, created_at, last_seen_at)
         VALUES (?1, ?2, ?3, coalesce(?4, ''), ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (pubkey) DO UPDATE SET
             device_id = excluded.device_id,
             name = coalesce(?4, devices.name),
             cert_issued_at = excluded.cert_issued_at,
             cert_expiry = excluded.cert_expiry,
             cert_signature = excluded.cert_signature,
             last_seen_at = excluded.last_seen_at",
        params![
            device.pubkey,
            device.user_id,
            device.device_id,
            device.name,
            to_sql_int(device.issued_at),
            to_sql_int(device.expiry),
            device.cert_signature,
            to_sql_int(device.now),
        ],
    )?;
    Ok(())
}

impl Store {
    /// Creates a user with its first device and session, recording the request's signature in the
    /// replay cache and spending one use of the registration token that admitted them (if one
    /// was needed), all in one transaction.
    pub async fn register(
        &self,
        user: NewUser,
        device: NewDevice,
        session: NewSession,
        signature: [u8; 64],
        signature_expires_at: u64,
        registration_token: Option<[u8; 32]>,
    ) -> Result<UserRecord, StorageError> {
        self.write(move |tx| {
            remember_signature(tx, &signature, signature_expires_at)?;
            if load_user(tx, &user.id)?.is_some() {
                return Err(StorageError::Conflict(
                    "public_key: this identity is already registered on this server; use Login"
                        .into(),
                ));
            }
            if let Some(hash) = registration_token {
                super::registration_tokens::spend_token(tx, &hash, user.created_at)?;
            }
            sign_in(tx, Some(&user), &device, &session)
        })
        .await
    }

    /// Logs a device in: records the signature, adds or renews the device, opens a session, and
    /// applies a homeserver move if the login carried one (queuing its deliveries). Fails with `Ok(None)` if the user is
    /// not registered here (and then changes nothing).
    pub async fn login<T, F>(
        &self,
        device: NewDevice,
        session: NewSession,
        signature: [u8; 64],
        signature_expires_at: u64,
        homeserver_move: Option<HomeserverMove>,
        then: F,
    ) -> Result<Option<(UserRecord, T)>, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &UserRecord) -> Result<T, StorageError> + Send + 'static,
    {
        self.write(move |tx| {
            let Some(user) = load_user(tx, &device.user_id)? else {
                return Ok(None);
            };
            remember_signature(tx, &signature, signature_expires_at)?;
            upsert_device(tx, &device)?;
            insert_session(tx, &session)?;
            let user = match homeserver_move {
                Some(m) => {
                    super::moves::apply_login_move(tx, &m, device.now)?;
                    // The answer shows the user as the move left them: at their new homeserver.
                    load_user(tx, &device.user_id)?.unwrap_or(user)
                }
                None => user,
            };
            let value = then(tx, &user)?;
            Ok(Some((user, value)))
        })
        .await
    }

    /// The owner (hex K_id) of a device key, if the device is known here.
    pub async fn device_owner(&self, pubkey: String) -> Result<Option<String>, StorageError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT user_id FROM devices WHERE pubkey = ?1",
                    [pubkey],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// One user by id.
    pub async fn user(&self, id: String) -> Result<Option<UserRecord>, StorageError> {
        self.read(move |conn| load_user(conn, &id)).await
    }

    /// The user whose username (`irc_name`) on this server is `name`, if any.
    pub async fn user_by_irc_name(&self, name: String) -> Result<Option<UserRecord>, StorageError> {
        self.read(move |conn| load_user_by_irc_name(conn, &name))
            .await
    }

    /// The users among `ids` that are known here, in the order asked.
    pub async fn users(&self, ids: Vec<String>) -> Result<Vec<UserRecord>, StorageError> {
        self.read(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(user) = stmt.query_row([id], user_from_row).optional()? {
                    out.push(user);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Applies a verified profile change if it is newer than the stored profile, then runs
    /// `then` with the updated user in the same transaction (the homeserver queues the change
    /// for the user's other servers there). Returns the updated user and what `then` returned,
    /// or `Conflict` naming the rule that refused the change.
    pub async fn update_profile<T, F>(
        &self,
        user_id: String,
        change: ProfileChange,
        signature: [u8; 64],
        signature_expires_at: u64,
        then: F,
    ) -> Result<(UserRecord, T), StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &UserRecord) -> Result<T, StorageError> + Send + 'static,
    {
        self.write(move |tx| {
            remember_signature(tx, &signature, signature_expires_at)?;
            let user = load_user(tx, &user_id)?
                .ok_or_else(|| StorageError::Conflict("user is not registered here".into()))?;
            if change.timestamp <= user.profile_updated_at {
                return Err(StorageError::Conflict(format!(
                    "timestamp: must be newer than the last profile change ({} ms)",
                    user.profile_updated_at
                )));
            }
            if let Some(name) = change.irc_name.as_deref().filter(|n| !n.is_empty()) {
                let taken: Option<String> = tx
                    .query_row(
                        "SELECT id FROM users WHERE irc_name = ?1 AND id != ?2",
                        params![name, user_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if taken.is_some() {
                    return Err(StorageError::Conflict(
                        "irc_name: already taken on this server".into(),
                    ));
                }
            }
            let irc_name = change
                .irc_name
                .clone()
                .map(|n| if n.is_empty() { None } else { Some(n) });
            tx.execute(
                "UPDATE users SET
                     display_name = coalesce(?2, display_name),
                     avatar_url = coalesce(?3, avatar_url),
                     presence_preference = coalesce(?4, presence_preference),
                     bio = coalesce(?5, bio),
                     guild_order = coalesce(?6, guild_order),
                     is_profile_synced = coalesce(?7, is_profile_synced),
                     irc_name = CASE WHEN ?8 THEN ?9 ELSE irc_name END,
                     profile_updated_at = ?10
                 WHERE id = ?1",
                params![
                    user_id,
                    change.display_name,
                    change.avatar_url,
                    change.presence_preference,
                    change.bio,
                    change.guild_order,
                    change.is_profile_synced,
                    irc_name.is_some(),
                    irc_name.flatten(),
                    to_sql_int(change.timestamp),
                ],
            )?;
            apply_profile_v2_fields(tx, &user_id, &change)?;
            let user = load_user(tx, &user_id)?
                .ok_or_else(|| StorageError::Task("user vanished".into()))?;
            let value = then(tx, &user)?;
            Ok((user, value))
        })
        .await
    }

    /// The user's devices, newest first.
    pub async fn devices(&self, user_id: String) -> Result<Vec<DeviceRecord>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT pubkey, device_id, name, last_seen_at FROM devices
                 WHERE user_id = ?1 ORDER BY created_at DESC, pubkey",
            )?;
            let rows = stmt.query_map([user_id], |r| {
                Ok(DeviceRecord {
                    pubkey: r.get(0)?,
                    device_id: r.get(1)?,
                    name: r.get(2)?,
                    last_seen_at: from_sql_int(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The servers the user says they belong to, with when each was added.
    pub async fn servers(&self, user_id: String) -> Result<Vec<(String, u64)>, StorageError> {
        self.read(move |conn| servers_of(conn, &user_id)).await
    }

    /// Adds a server to the user's list; adding one already there changes nothing.
    pub async fn add_server(
        &self,
        user_id: String,
        server_url: String,
        now: u64,
    ) -> Result<(), StorageError> {
        self.write(move |tx| list_server(tx, &user_id, &server_url, now))
            .await
    }

    /// Removes a server from the user's list; `false` if it was not there.
    pub async fn remove_server(
        &self,
        user_id: String,
        server_url: String,
    ) -> Result<bool, StorageError> {
        self.write(move |tx| {
            let removed = tx.execute(
                "DELETE FROM user_servers WHERE user_id = ?1 AND server_url = ?2",
                params![user_id, server_url],
            )?;
            // A server the user dropped may no longer push to them.
            tx.execute(
                "DELETE FROM push_delegations WHERE user_id = ?1 AND origin = ?2",
                params![user_id, server_url.trim_end_matches('/')],
            )?;
            Ok(removed > 0)
        })
        .await
    }

    /// The user's push distributor URLs.
    pub async fn push_distributors(&self, user_id: String) -> Result<Vec<String>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT url FROM push_distributors WHERE user_id = ?1 ORDER BY created_at, url",
            )?;
            let rows = stmt.query_map([user_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Stores a push delegation token (its hash) handed to the server `origin` that verified the
    /// user, and records the challenge's signature so it can't be used twice.
    pub async fn create_push_delegation(
        &self,
        user_id: String,
        origin: String,
        token_hash: [u8; 32],
        now: u64,
        signature: [u8; 64],
        signature_expires_at: u64,
    ) -> Result<(), StorageError> {
        self.write(move |tx| {
            remember_signature(tx, &signature, signature_expires_at)?;
            delegate_push(tx, &user_id, &origin, &token_hash, now)
        })
        .await
    }

    /// `Federate` said yes: adds the host `server_url` to the user's server list and hands it a
    /// push delegation (`token_hash`: the hash of the token it is given), in one transaction.
    pub async fn vouch_for(
        &self,
        user_id: String,
        server_url: String,
        token_hash: [u8; 32],
        now: u64,
    ) -> Result<(), StorageError> {
        self.write(move |tx| {
            list_server(tx, &user_id, &server_url, now)?;
            delegate_push(tx, &user_id, &server_url, &token_hash, now)
        })
        .await
    }
}

/// The servers in the user's list, with when each was added, oldest first.
pub fn servers_of(conn: &Connection, user_id: &str) -> Result<Vec<(String, u64)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT server_url, created_at FROM user_servers WHERE user_id = ?1
         ORDER BY created_at, server_url",
    )?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, from_sql_int(r.get(1)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds `server_url` to the user's server list; one already there changes nothing.
fn list_server(
    tx: &Connection,
    user_id: &str,
    server_url: &str,
    now: u64,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT OR IGNORE INTO user_servers (user_id, server_url, created_at) VALUES (?1, ?2, ?3)",
        params![user_id, server_url, to_sql_int(now)],
    )?;
    Ok(())
}

/// Makes `token_hash` the one live push delegation of `user_id` to the server `origin`: a newer
/// delegation replaces the older, so tokens don't pile up with every join or `VerifyUser`.
fn delegate_push(
    tx: &Connection,
    user_id: &str,
    origin: &str,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO push_delegations (token_hash, user_id, created_at, origin)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, origin) DO UPDATE
             SET token_hash = excluded.token_hash, created_at = excluded.created_at",
        params![&token_hash[..], user_id, to_sql_int(now), origin],
    )?;
    Ok(())
}
