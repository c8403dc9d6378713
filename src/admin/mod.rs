//! Server administration: what the node's configured admins may do through `guildhall.admin.v1`
//! (registration tokens, users in [`users`], the node's status and federation in [`node`],
//! content in [`content`]), and the audit log every admin call is recorded in.
//!
//! Who is an admin is decided once, by the adapter's gate ([`crate::api::admin`]) from the
//! `admins` setting; the functions here take the admin's id as the actor and trust it.

pub mod content;
pub mod node;
pub mod users;

use crate::accounts::{Accounts, tokens};
use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::store::Store;
use crate::store::admin::{self as db, AuditRecord, RegistrationTokenRecord};

/// Most accounts one registration token may register (0 means unlimited).
pub const MAX_TOKEN_USES: u32 = 1_000_000;
/// Longest lifetime of a registration token, seconds (one year; 0 means never expires).
pub const MAX_TOKEN_AGE_SECS: u64 = 365 * 24 * 60 * 60;
/// How long a registration token lives when the request does not say, ms (7 days).
pub const DEFAULT_TOKEN_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Longest note on a registration token, characters.
pub const NOTE_MAX: usize = 200;
/// Most registration tokens one `ListRegistrationTokens` answer holds (newest first): bounds
/// one read and one answer.
pub const TOKENS_LIST_MAX: usize = 1000;
/// Page of `ListAuditLog` when the request asks for 0.
pub const AUDIT_PAGE_DEFAULT: u32 = 100;
/// Largest page of `ListAuditLog`.
pub const AUDIT_PAGE_MAX: u32 = 1000;

/// The admin operations of one node.
#[derive(Debug, Clone)]
pub struct Admin {
    store: Store,
    accounts: Accounts,
    guilds: crate::guilds::Guilds,
    node: Option<node::NodeView>,
    content: Option<content::ContentView>,
}

/// A page of the audit log.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Entries, newest first.
    pub entries: Vec<AuditRecord>,
    /// Where the next (older) page starts; 0 when there is none.
    pub next_before_id: u64,
}

impl Admin {
    /// The admin operations over the node's store, accounts (sessions, who is an admin) and
    /// guilds (their event log, for the events admin actions send).
    pub fn new(store: Store, accounts: Accounts, guilds: crate::guilds::Guilds) -> Self {
        Self {
            store,
            accounts,
            guilds,
            node: None,
            content: None,
        }
    }

    /// Records an admin action in the audit log and logs it at INFO. A failure to record is
    /// logged, not returned: the action it describes has already happened (or been refused).
    pub async fn record(&self, actor: &str, action: &str, target: &str, result: &str) {
        tracing::info!(actor, action, target, result, "admin action");
        let (actor, action, target, result) = (
            actor.to_owned(),
            action.to_owned(),
            target.to_owned(),
            result.to_owned(),
        );
        let now = now_ms();
        if let Err(e) = self
            .store
            .write(move |tx| db::insert_audit(tx, now, &actor, &action, &target, &result))
            .await
        {
            tracing::error!(error = %e, "recording an admin action in the audit log failed");
        }
    }

    /// `ListAuditLog`: a page of the audit log, newest first.
    pub async fn audit_log(
        &self,
        before_id: u64,
        limit: u32,
        actor: &str,
        action: &str,
    ) -> Result<AuditPage> {
        let limit = page(limit, AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX)?;
        let (actor, action) = (actor.to_owned(), action.to_owned());
        let mut entries = self
            .store
            .read(move |c| db::audit_page(c, before_id, &actor, &action, limit + 1))
            .await?;
        let next_before_id = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map_or(0, |e| e.id)
        } else {
            0
        };
        Ok(AuditPage {
            entries,
            next_before_id,
        })
    }

    /// `CreateRegistrationToken`: a new token (the secret, shown only now, and its listing).
    pub async fn create_token(
        &self,
        actor: &str,
        max_uses: u32,
        max_age_secs: Option<u64>,
        note: &str,
    ) -> Result<(String, RegistrationTokenRecord)> {
        if max_uses > MAX_TOKEN_USES {
            return Err(Error::invalid(
                "max_uses",
                format!("must be 0 (unlimited) to {MAX_TOKEN_USES}"),
            ));
        }
        if max_age_secs.is_some_and(|s| s > MAX_TOKEN_AGE_SECS) {
            return Err(Error::invalid(
                "max_age_secs",
                format!("must be at most {MAX_TOKEN_AGE_SECS} (one year); 0 means never"),
            ));
        }
        if note.chars().count() > NOTE_MAX {
            return Err(Error::invalid(
                "note",
                format!("must be at most {NOTE_MAX} characters"),
            ));
        }
        let now = now_ms();
        let expires_at = match max_age_secs {
            None => now.saturating_add(DEFAULT_TOKEN_AGE_MS),
            Some(0) => 0,
            Some(s) => now.saturating_add(s.saturating_mul(1000)),
        };
        let secret = tokens::generate();
        let record = RegistrationTokenRecord {
            id: tokens::generate()[..12].to_owned(),
            created_by: actor.to_owned(),
            created_at: now,
            expires_at,
            max_uses,
            uses: 0,
            revoked_at: None,
            note: note.to_owned(),
        };
        let (r, hash) = (record.clone(), tokens::hash(&secret));
        self.store
            .write(move |tx| db::insert_token(tx, &r, &hash))
            .await?;
        Ok((secret, record))
    }

    /// `ListRegistrationTokens`: newest first, only those that can still register someone unless
    /// `include_inactive`.
    pub async fn list_tokens(
        &self,
        include_inactive: bool,
    ) -> Result<Vec<RegistrationTokenRecord>> {
        let all = self.store.read(|c| db::tokens(c, TOKENS_LIST_MAX)).await?;
        let now = now_ms();
        Ok(all
            .into_iter()
            .filter(|t| include_inactive || t.problem(now).is_none())
            .collect())
    }

    /// `RevokeRegistrationToken`: the token registers nobody from now on.
    pub async fn revoke_token(&self, id: &str) -> Result<RegistrationTokenRecord> {
        if id.is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        let i = id.to_owned();
        self.store
            .write(move |tx| db::revoke_token(tx, &i, now_ms()))
            .await?
            .ok_or_else(|| Error::NotFound(format!("id: no registration token {id:?}")))
    }
}

/// A page size: `requested`, or `default` for 0; more than `max` is refused.
fn page(requested: u32, default: u32, max: u32) -> Result<usize> {
    match requested {
        0 => Ok(default as usize),
        n if n > max => Err(Error::invalid(
            "limit",
            format!("must be 0 (default {default}) to {max}"),
        )),
        n => Ok(n as usize),
    }
}
