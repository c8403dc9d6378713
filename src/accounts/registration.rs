//! Who may register: the node's `registration` policy and the registration tokens admins make.
//!
//! One check serves `Register` and a `JoinInvite` that would create a user of this node, so the
//! two ways in can't disagree. The check reads first and answers with the precise refusal; the
//! token's use is then spent inside the registration's own transaction
//! ([`crate::store::registration_tokens::spend_token`]), so a token's last use can't be spent twice.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Store;

/// The `registration` setting: who may create an account on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationPolicy {
    /// Anyone who reaches the node may register.
    Open,
    /// Only with a registration token made by a server admin (`guildhall admin tokens create`).
    Token,
    /// Nobody registers (existing users keep logging in; an invite made by an admin with
    /// `allow_registration` still admits new people).
    Closed,
}

impl RegistrationPolicy {
    /// The setting's value as written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Token => "token",
            Self::Closed => "closed",
        }
    }
}

/// How a would-be new user came: the request field a refusal names differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// `Register`.
    Register,
    /// `JoinInvite` with an invite; `true` when the invite was made with `allow_registration`.
    Invite(bool),
}

/// Checks that a new user may register under `policy`, presenting `token` (empty: none), and
/// returns the hash of the token whose use the registration must spend in its transaction
/// (`None` when no token is needed). Refusals name the field and the rule: `PERMISSION_DENIED`
/// when the policy refuses or the token is unknown, `FAILED_PRECONDITION` when the token was
/// revoked, has expired or is used up.
pub async fn admit(
    store: &Store,
    policy: RegistrationPolicy,
    way: Way,
    token: &str,
    now: u64,
) -> Result<Option<[u8; 32]>> {
    if way == Way::Invite(true) || policy == RegistrationPolicy::Open {
        return Ok(None);
    }
    if policy == RegistrationPolicy::Closed {
        let field = match way {
            Way::Register => "registration",
            Way::Invite(_) => "token",
        };
        let how = match way {
            Way::Register => "",
            Way::Invite(_) => {
                "; this invite does not let new people register (an admin's invite can, with \
                 allow_registration)"
            }
        };
        return Err(Error::PermissionDenied(format!(
            "{field}: this server does not register new accounts (registration = \"closed\"){how}"
        )));
    }
    if token.is_empty() {
        let or = match way {
            Way::Register => "",
            Way::Invite(_) => " or an admin's invite made with allow_registration",
        };
        return Err(Error::PermissionDenied(format!(
            "registration_token: is required: this server registers new accounts only with a \
             registration token from its admins{or} (registration = \"token\")"
        )));
    }
    let hash = super::tokens::hash(token);
    let record = store
        .read(move |c| crate::store::admin::token_by_hash(c, &hash))
        .await?
        .ok_or_else(|| {
            Error::PermissionDenied(
                "registration_token: no such registration token on this server".into(),
            )
        })?;
    if let Some(problem) = record.problem(now) {
        return Err(Error::FailedPrecondition(format!(
            "registration_token: {problem}"
        )));
    }
    Ok(Some(hash))
}
