//! Membership changes as gossiped server events (kind [`MEMBERSHIP_KIND`], docs/PROTOCOL.md §13):
//! a guild's host announces that a member whose homeserver is another node joined or left one of
//! its guilds, and the member's homeserver keeps the list of where its user is a member
//! (`GetMyData`, each server's `guild_ids`).
//!
//! - **Announcing (host).** [`MembershipAnnouncer`] is the event log's commit hook: every write
//!   that logs a `member_joined` or `member_removed` event (joins, kicks, bans, bans applied from a
//!   trusted server) appends the signed server event in the same transaction, so no path can change
//!   a remote membership without announcing it, and a crash can't lose the announcement. The
//!   member's homeserver must have it, so the event also goes straight there
//!   (`ReceiveServerEvent`, through the durable outbox); gossip carries it to the rest. Members
//!   whose homeserver is this node are not announced: nobody else needs to know. DMs are not
//!   announced either.
//! - **Receiving (homeserver).** The host speaks for its own guilds only, which the event's
//!   signature proves, so the rules are about the member: the event is applied only by the
//!   member's homeserver, only from a server it has met, a join only from a server in the member's
//!   server list (one they joined through, which `Federate` added with their own signature, or one
//!   they added themselves), and only if newer than what is held for that guild. Every other node
//!   ignores it (stored and served to peers catching up, not forwarded). A malformed payload is
//!   rejected: the peer that sent it is penalised.

use prost::Message;
use rusqlite::Connection;

use super::PeerDirectory;
use super::outbox::Outbox;
use crate::accounts::remote::normalise_address;
use crate::accounts::rules;
use crate::events::{AfterCommit, CommitHook};
use crate::gossip::event::EventError;
use crate::gossip::server_events::Subject;
use crate::gossip::{ServerEvent, ServerEvents, Verdict, VerifiedServerEvent};
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::memberships::{Announced, Recorded};
use crate::store::{EventRow, StorageError, Store, accounts::load_user};

/// The server-event kind of a membership change (payload: an encoded `MembershipChange`).
pub const MEMBERSHIP_KIND: &str = "membership";

/// Longest guild id accepted in a `MembershipChange`, in bytes.
pub const GUILD_ID_MAX: usize = 128;

/// The host's side: announces remote members' joins and leaves in the transaction that makes them.
#[derive(Debug)]
pub struct MembershipAnnouncer {
    events: ServerEvents,
    outbox: Outbox,
    address: String,
}

impl MembershipAnnouncer {
    /// The announcer of the node at `address` (its canonical address: members whose homeserver it
    /// is are not announced), delivering to the members' homeservers through `outbox`.
    pub fn new(events: ServerEvents, outbox: Outbox, address: String) -> Self {
        Self {
            events,
            outbox,
            address,
        }
    }

    /// The signed event announcing `change`, appended to the log inside `tx`; `None` when the
    /// member is this node's own user or unknown, or the guild is a DM (who talks to whom is no
    /// business of the mesh; the member's homeserver knows their DMs from the DM invites).
    fn announce_in(
        &self,
        tx: &Connection,
        change: &crate::store::MembershipMark,
        now: u64,
    ) -> Result<Option<ServerEvent>, StorageError> {
        if change.is_dm {
            return Ok(None);
        }
        let Some(user) = load_user(tx, &change.user_id)? else {
            return Ok(None);
        };
        if normalise_address(&user.homeserver) == normalise_address(&self.address) {
            return Ok(None);
        }
        let payload = pb::MembershipChange {
            guild_id: change.guild_id.clone(),
            user_id: change.user_id.clone(),
            homeserver: user.homeserver.clone(),
            joined: change.joined,
        };
        let event = self
            .events
            .append_in(tx, MEMBERSHIP_KIND, payload.encode_to_vec(), now)?;
        // The homeserver must have it: straight there through the outbox, besides gossip.
        crate::store::outbox::enqueue(
            tx,
            &user.homeserver,
            "ReceiveServerEvent",
            &event.to_proto().encode_to_vec(),
            now,
        )?;
        Ok(Some(event))
    }
}

impl CommitHook for MembershipAnnouncer {
    fn in_transaction(
        &self,
        tx: &Connection,
        rows: &[EventRow],
        now: u64,
    ) -> Result<Option<AfterCommit>, StorageError> {
        let mut announced = Vec::new();
        for change in rows.iter().filter_map(|r| r.membership.as_ref()) {
            announced.extend(self.announce_in(tx, change, now)?);
        }
        if announced.is_empty() {
            return Ok(None);
        }
        let (events, outbox) = (self.events.clone(), self.outbox.clone());
        Ok(Some(Box::pin(async move {
            outbox.wake();
            for event in &announced {
                events.announce(event).await;
            }
        })))
    }
}

/// Checks a `MembershipChange` against the field rules (the `field` of a refusal names it) and
/// answers the member's key: the storage-free part of the `membership` validator. Public so the
/// fuzz targets (`fuzz/`, `tests/fuzz.rs`) run these very checks.
pub fn check(change: &pb::MembershipChange) -> Result<PublicKey, (&'static str, String)> {
    let guild_ok = !change.guild_id.is_empty()
        && change.guild_id.len() <= GUILD_ID_MAX
        && change
            .guild_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !guild_ok {
        return Err((
            "guild_id",
            format!("must be 1 to {GUILD_ID_MAX} letters, digits, '-' or '_'"),
        ));
    }
    rules::http_url(&change.homeserver).map_err(|rule| ("homeserver", rule))?;
    PublicKey::from_hex(&change.user_id).map_err(|e| ("user_id", e.to_string()))
}

/// The homeserver's side: judges and applies one verified `membership` event.
async fn judge(
    store: &Store,
    directory: &PeerDirectory,
    own_address: &str,
    event: VerifiedServerEvent,
) -> Verdict {
    let Ok(change) = pb::MembershipChange::decode(event.payload()) else {
        return Verdict::Reject("payload: not a MembershipChange".into());
    };
    let user_key = match check(&change) {
        Ok(key) => key,
        Err((field, rule)) => return Verdict::Reject(format!("payload.{field}: {rule}")),
    };
    if normalise_address(&change.homeserver) != normalise_address(own_address) {
        return Verdict::Ignore("user_id: not a user of this node".into());
    }
    let user = match store.user(user_key.to_hex()).await {
        Ok(Some(user)) if normalise_address(&user.homeserver) == normalise_address(own_address) => {
            user
        }
        Ok(_) => {
            return Verdict::Ignore("user_id: not a user whose homeserver is this node".into());
        }
        Err(e) => return Verdict::Ignore(e.to_string()),
    };
    let host_url = match directory.address_of(&event.origin()).await {
        Ok(Some(address)) => normalise_address(&address).to_owned(),
        Ok(None) => return Verdict::Ignore("origin: not a server this node has met".into()),
        Err(e) => return Verdict::Ignore(e.to_string()),
    };
    if change.joined {
        let listed = match store.servers(user.id.clone()).await {
            Ok(servers) => servers
                .iter()
                .any(|(url, _)| normalise_address(url) == host_url),
            Err(e) => return Verdict::Ignore(e.to_string()),
        };
        if !listed {
            return Verdict::Ignore(format!(
                "origin: {host_url} is not in the user's server list (they did not join through it)"
            ));
        }
    }
    let announced = Announced {
        user_id: user.id,
        host_key: event.origin().to_hex(),
        host_url,
        guild_id: change.guild_id,
        joined: change.joined,
        seq: event.sequence(),
    };
    match store.record_membership(announced, now_ms()).await {
        Ok(Recorded::Applied) => Verdict::Accept,
        Ok(Recorded::Stale(held)) => Verdict::Ignore(format!(
            "sequence: not newer than the change held for this guild ({held})"
        )),
        Err(e) => Verdict::Ignore(e.to_string()),
    }
}

/// A membership change is about one user in one guild: the newest says whether they are in it.
fn subject(payload: &[u8]) -> Option<Subject> {
    let change = pb::MembershipChange::decode(payload).ok()?;
    let mut key = change.guild_id.into_bytes();
    key.push(b'\n');
    key.extend_from_slice(change.user_id.as_bytes());
    Some(Subject { key, fields: 1 })
}

/// Registers the validator (and applier) of [`MEMBERSHIP_KIND`] for the node at `own_address`;
/// its events are pruned down to the newest per guild and user.
pub async fn register(
    events: &ServerEvents,
    store: Store,
    directory: PeerDirectory,
    own_address: String,
) -> Result<(), EventError> {
    events
        .register_pruned(
            MEMBERSHIP_KIND,
            subject,
            move |event: VerifiedServerEvent| {
                let (store, directory, own_address) =
                    (store.clone(), directory.clone(), own_address.clone());
                async move { judge(&store, &directory, &own_address, event).await }
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> pb::MembershipChange {
        pb::MembershipChange {
            guild_id: "123".into(),
            user_id: crate::identity::SecretKey::generate().public().to_hex(),
            homeserver: "https://home.example".into(),
            joined: true,
        }
    }

    #[test]
    fn fields_follow_the_rules() {
        assert!(check(&change()).is_ok());
        let mut bad = change();
        bad.guild_id = String::new();
        assert_eq!(check(&bad).map_err(|e| e.0), Err("guild_id"));
        bad.guild_id = "a b".into();
        assert_eq!(check(&bad).map_err(|e| e.0), Err("guild_id"));
        bad.guild_id = "9".repeat(GUILD_ID_MAX + 1);
        assert_eq!(check(&bad).map_err(|e| e.0), Err("guild_id"));
        let mut bad = change();
        bad.user_id = "zz".into();
        assert_eq!(check(&bad).map_err(|e| e.0), Err("user_id"));
        let mut bad = change();
        bad.homeserver = "ftp://x".into();
        assert_eq!(check(&bad).map_err(|e| e.0), Err("homeserver"));
    }
}
