//! DM invites across nodes: the inviter's signed invite, its delivery to the target's homeserver,
//! and the answers (`docs/PROTOCOL.md` §14).
//!
//! The DM lives on its **host**, the inviter's node: `CreateDM` makes its guild and an invite
//! token there ([`crate::dms`]). The inviter's client signs the invite (`dm-invite`, by K_dev,
//! addressed to the target's homeserver) and calls `SendDMInvite`; the host checks the signature
//! and delivers it with a signed `ReceiveDMInvite` to the target's homeserver, which verifies the
//! signature itself through the device cert chain, stores it and tells the target. The target
//! lists it (`ListDMInvites`), accepts it (the answer says where and with which token to
//! `JoinInvite`) or rejects it (the homeserver tells the host with `ReceiveDMInviteRejection`, and
//! the host tells the inviter).
//!
//! Delivery goes through the durable federation outbox, like every server call that must arrive:
//! `SendDMInvite` records the signed invite and queues `ReceiveDMInvite` in one transaction, and
//! `RejectDMInvite` marks the invite rejected and queues `ReceiveDMInviteRejection` in one
//! transaction. Neither waits for the other node: one that is down gets the call when it is back
//! (`docs/PROTOCOL.md` §14.1, `docs/OPERATING.md` "Federation outbox").

use prost::Message as _;

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::events::{row, user_scope};
use crate::federation::PeerDirectory;
use crate::federation::outbox::Outbox;
use crate::guilds::Guilds;
use crate::identity::freshness::{self, now_ms};
use crate::identity::signing::{self, DmInvitePayload};
use crate::identity::{DeviceCert, PublicKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::dm_remote::{self as rdb, InviteProof, ReceivedInvite, StoredCert};
use crate::store::dms::{self as db, DmInviteRecord};
use crate::store::{SessionInfo, StorageError, accounts, guilds as gdb};

/// The server method that delivers an invite to the target's homeserver.
pub const RECEIVE_DM_INVITE: &str = "ReceiveDMInvite";
/// The server method that tells the DM's host its invite was rejected.
pub const RECEIVE_DM_INVITE_REJECTION: &str = "ReceiveDMInviteRejection";
/// A received invite signed longer ago than this is refused: 7 days (room for delayed delivery).
pub const MAX_INVITE_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Most pending invites from other nodes one user holds; more are refused until some are answered.
pub const MAX_PENDING_RECEIVED: u64 = 100;
/// Longest token, guild id or invite id accepted from another node, in bytes.
pub const ID_MAX: usize = 128;
/// Longest guild name accepted from another node, in bytes.
pub const GUILD_NAME_MAX: usize = 400;

/// Where and how to join an accepted DM (`AcceptDMInviteResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTarget {
    /// The token to give `JoinInvite` on the host.
    pub token: String,
    /// The host's address.
    pub host_server_url: String,
    /// The DM's guild on the host.
    pub guild_id: String,
}

/// The DM invite operations that cross nodes; cheap to clone.
#[derive(Debug, Clone)]
pub struct DmInvites {
    guilds: Guilds,
    directory: PeerDirectory,
    outbox: Outbox,
    own_key: PublicKey,
    address: String,
    skew_ms: u64,
}

/// Where `SendDMInvite` delivers.
enum Destination {
    /// The target is a user of this node.
    Local,
    /// The target's homeserver.
    Remote(String),
}

impl DmInvites {
    /// The operations of the node with key `own_key` at `address`, refusing signatures further
    /// than `skew_ms` from its clock; other servers' keys come from `directory`, and calls to them
    /// go through `outbox`.
    pub fn new(
        guilds: Guilds,
        directory: PeerDirectory,
        outbox: Outbox,
        own_key: PublicKey,
        address: String,
        skew_ms: u64,
    ) -> Self {
        Self {
            guilds,
            directory,
            outbox,
            own_key,
            address,
            skew_ms,
        }
    }

    /// `SendDMInvite`: checks the caller's signed invite against the DM they made with `CreateDM`
    /// and delivers it to the target: here at once, or to their homeserver through the outbox (in
    /// the transaction that records the invite as sent, so it arrives even if that server is down
    /// now).
    pub async fn send(
        &self,
        caller: &SessionInfo,
        target_user_id: &str,
        invite: Option<pb::DmInvite>,
        target_homeserver_url: &str,
    ) -> Result<()> {
        PublicKey::from_hex(target_user_id).map_err(|e| Error::invalid("target_user_id", e))?;
        let mut invite = invite.ok_or_else(|| Error::invalid("invite", "is required"))?;
        if invite.target_user_id != target_user_id {
            return Err(Error::invalid(
                "invite.target_user_id",
                "must equal target_user_id",
            ));
        }
        if invite.inviter_pubkey != caller.user_id {
            return Err(Error::invalid(
                "invite.inviter_pubkey",
                "must be your own user id (you sign your own invites)",
            ));
        }
        check_len("invite.token", &invite.token, 1)?;
        let token = invite.token.clone();
        let hosted = self
            .guilds
            .store()
            .read(move |c| rdb::hosted_by_token(c, &token))
            .await?
            .filter(|h| {
                h.invite.inviter_id == caller.user_id && h.invite.target_user_id == target_user_id
            })
            .ok_or_else(|| {
                Error::NotFound(
                    "invite.token: you have no DM invite with this token for target_user_id; \
                     make one with CreateDM"
                        .into(),
                )
            })?;
        let record = hosted.invite;
        if record.status != "pending" {
            return Err(Error::FailedPrecondition(format!(
                "invite.token: this invite was already {}",
                record.status
            )));
        }
        if invite.guild_id != record.guild_id {
            return Err(Error::invalid(
                "invite.guild_id",
                "must be the guild CreateDM returned for this token",
            ));
        }
        if invite.host_server_url != self.address {
            return Err(Error::invalid(
                "invite.host_server_url",
                format!("must be this server's address {}", self.address),
            ));
        }
        let now = now_ms();
        freshness::check(invite.timestamp, now, self.skew_ms)
            .map_err(|e| Error::invalid("invite.timestamp", e))?;
        let destination = self
            .destination(target_user_id, target_homeserver_url)
            .await?;
        let audience = match &destination {
            Destination::Local => Some(self.own_key),
            // Left to that server when it is down and was never met: it checks on delivery.
            Destination::Remote(url) => self.directory.audience_key(url).await?,
        };
        let proof = self.check_signature(&invite, audience, now).await?;
        let guild_id = record.guild_id.clone();
        let guild_name = self
            .guilds
            .store()
            .read(move |c| Ok(gdb::guild(c, &guild_id)?.map(|g| g.name)))
            .await?
            .unwrap_or_default();
        invite.invite_id = record.invite_id.clone();
        invite.inviter_id = caller.user_id.clone();
        invite.guild_name = guild_name;
        invite.status = "pending".into();
        let (id, target) = (record.invite_id.clone(), record.target_user_id.clone());
        let remote = matches!(destination, Destination::Remote(_));
        self.guilds
            .events()
            .write(now, move |tx| match destination {
                Destination::Local => {
                    rdb::record_sent(tx, &id, &proof, "")?;
                    let event = row(
                        vec![user_scope(&target)],
                        pb::stream_response::Event::DmInvite(invite),
                    );
                    Ok(((), vec![event]))
                }
                Destination::Remote(url) => {
                    rdb::record_sent(tx, &id, &proof, &url)?;
                    let request = pb::ReceiveDmInviteRequest {
                        invite: Some(invite),
                    };
                    crate::store::outbox::enqueue(
                        tx,
                        &url,
                        RECEIVE_DM_INVITE,
                        &request.encode_to_vec(),
                        now,
                    )?;
                    Ok(((), vec![]))
                }
            })
            .await?;
        if remote {
            self.outbox.wake();
        }
        Ok(())
    }

    /// Where the invite for `target` goes: this node for its own users, else the homeserver the
    /// request names or, failing that, the one this node knows for the target.
    async fn destination(&self, target: &str, requested: &str) -> Result<Destination> {
        let id = target.to_owned();
        let known = self
            .guilds
            .store()
            .read(move |c| accounts::load_user(c, &id))
            .await?;
        if let Some(user) = &known
            && user.homeserver == self.address
        {
            return Ok(Destination::Local);
        }
        let url = match (requested, known) {
            ("", Some(user)) => user.homeserver,
            ("", None) => {
                return Err(Error::invalid(
                    "target_homeserver_url",
                    "is required: target_user_id is not known to this server",
                ));
            }
            (url, _) => rules::http_url(url)
                .map_err(|rule| Error::invalid("target_homeserver_url", rule))?,
        };
        if url == self.address {
            return Err(Error::NotFound(
                "target_user_id: not a user of this server".into(),
            ));
        }
        Ok(Destination::Remote(url))
    }

    /// Checks `invite.signature` through the chain K_dev → DeviceCert → K_id (the inviter) for
    /// `audience`, refusing a device its owner revoked; returns what to keep as proof. Without an
    /// audience (the target's homeserver is down and was never met) the cert and the signature's
    /// form are checked, and the signature itself is left to that homeserver.
    async fn check_signature(
        &self,
        invite: &pb::DmInvite,
        audience: Option<PublicKey>,
        now: u64,
    ) -> Result<InviteProof> {
        let inviter = PublicKey::from_hex(&invite.inviter_pubkey)
            .map_err(|e| Error::invalid("invite.inviter_pubkey", e))?;
        if !invite.inviter_id.is_empty() && invite.inviter_id != invite.inviter_pubkey {
            return Err(Error::invalid(
                "invite.inviter_id",
                "must equal invite.inviter_pubkey",
            ));
        }
        let target = PublicKey::from_hex(&invite.target_user_id)
            .map_err(|e| Error::invalid("invite.target_user_id", e))?;
        let raw = invite
            .device_cert
            .clone()
            .ok_or_else(|| Error::invalid("invite.device_cert", "is required"))?;
        let cert = DeviceCert {
            device_key: PublicKey::from_hex(&raw.pubkey)
                .map_err(|e| Error::invalid("invite.device_cert.pubkey", e))?,
            device_id: raw.device_id.clone(),
            issued_at: raw.issued_at,
            expiry: raw.expiry,
            signature: Signature::from_hex(&raw.signature)
                .map_err(|e| Error::invalid("invite.device_cert.signature", e))?,
        };
        crate::accounts::check_device(
            self.guilds.store(),
            &inviter,
            &cert,
            now,
            self.skew_ms,
            "invite.device_cert",
        )
        .await?;
        let signature = Signature::from_bytes(&invite.signature)
            .map_err(|e| Error::invalid("invite.signature", e))?;
        if let Some(audience) = audience {
            verify_invite(invite, audience, inviter, target, &cert, &signature)?;
        }
        Ok(InviteProof {
            signature: invite.signature.clone(),
            signed_at: invite.timestamp,
            cert: StoredCert {
                pubkey: raw.pubkey,
                device_id: raw.device_id,
                issued_at: raw.issued_at,
                expiry: raw.expiry,
                signature: raw.signature,
            },
        })
    }

    /// `ReceiveDMInvite` (server call from the DM's host, at the verified address `origin`):
    /// verifies the inviter's signature itself, checks the target is a user of this node, stores
    /// the invite and tells the target. A repeated delivery of the same invite changes nothing.
    pub async fn receive(&self, origin: &str, invite: Option<pb::DmInvite>) -> Result<()> {
        let invite = invite.ok_or_else(|| Error::invalid("invite", "is required"))?;
        if invite.host_server_url != origin {
            return Err(Error::PermissionDenied(format!(
                "invite.host_server_url: must be the calling server's address {origin} (a server \
                 delivers only invites to DMs it hosts)"
            )));
        }
        check_len("invite.token", &invite.token, 1)?;
        check_len("invite.guild_id", &invite.guild_id, 1)?;
        check_len("invite.invite_id", &invite.invite_id, 0)?;
        if invite.guild_name.len() > GUILD_NAME_MAX {
            return Err(Error::invalid(
                "invite.guild_name",
                format!("must be at most {GUILD_NAME_MAX} bytes"),
            ));
        }
        let now = now_ms();
        freshness::check_delivered(
            invite.timestamp,
            now,
            self.skew_ms,
            MAX_INVITE_AGE_MS,
            "invites",
        )
        .map_err(|rule| Error::invalid("invite.timestamp", rule))?;
        let proof = self
            .check_signature(&invite, Some(self.own_key), now)
            .await?;
        let target = invite.target_user_id.clone();
        let (id, address, inviter) = (
            target.clone(),
            self.address.clone(),
            invite.inviter_pubkey.clone(),
        );
        let (ours, blocked) = self
            .guilds
            .store()
            .read(move |c| {
                let ours = accounts::load_user(c, &id)?.is_some_and(|u| u.homeserver == address);
                Ok((ours, crate::store::people::blocked(c, &id, &inviter)?))
            })
            .await?;
        if !ours {
            return Err(Error::NotFound(
                "invite.target_user_id: not a user of this server".into(),
            ));
        }
        // The homeserver holds the user's blocks, so this refuses the blocked user's invites from
        // every node. FAILED_PRECONDITION is final: the host's outbox gives the delivery up.
        if blocked {
            return Err(Error::FailedPrecondition(
                "invite.target_user_id: this user does not take DM invites from the inviter".into(),
            ));
        }
        let record = ReceivedInvite {
            invite_id: self.guilds.ids().next_string(),
            host_invite_id: invite.invite_id.clone(),
            token: invite.token.clone(),
            inviter_id: invite.inviter_pubkey.clone(),
            target_user_id: target.clone(),
            guild_id: invite.guild_id.clone(),
            guild_name: invite.guild_name.clone(),
            host_server_url: origin.to_owned(),
            timestamp: invite.timestamp,
            signature: proof.signature,
            cert: proof.cert,
            status: "pending".into(),
        };
        let outcome = self
            .guilds
            .events()
            .write(now, move |tx| {
                if rdb::received_pending_count(tx, &target)? >= MAX_PENDING_RECEIVED {
                    return Ok((Err(()), vec![]));
                }
                if !rdb::insert_received(tx, &record, now)? {
                    return Ok((Ok(()), vec![]));
                }
                let event = row(
                    vec![user_scope(&target)],
                    pb::stream_response::Event::DmInvite(received_to_pb(&record)),
                );
                Ok((Ok(()), vec![event]))
            })
            .await?;
        outcome.map_err(|()| {
            Error::Exhausted(format!(
                "invite.target_user_id: this user already holds {MAX_PENDING_RECEIVED} pending \
                 DM invites; retry after they answer some"
            ))
        })
    }

    /// `ListDMInvites`: the caller's pending invites, from this node's DMs and from other hosts.
    pub async fn list(&self, caller: &SessionInfo) -> Result<Vec<pb::DmInvite>> {
        let me = caller.user_id.clone();
        Ok(self
            .guilds
            .store()
            .read(move |c| {
                let mut out = Vec::new();
                for invite in db::pending_for(c, &me)? {
                    let name = gdb::guild(c, &invite.guild_id)?
                        .map(|g| g.name)
                        .unwrap_or_default();
                    let proof = rdb::proof(c, &invite.invite_id)?;
                    out.push(hosted_to_pb(&invite, &name, proof.as_ref()));
                }
                for invite in rdb::received_pending_for(c, &me)? {
                    out.push(received_to_pb(&invite));
                }
                Ok::<_, StorageError>(out)
            })
            .await?)
    }

    /// The caller's pending received invite `invite_id`, if it is one.
    async fn own_received(
        &self,
        caller: &SessionInfo,
        invite_id: &str,
    ) -> Result<Option<ReceivedInvite>> {
        if invite_id.is_empty() {
            return Err(Error::invalid("invite_id", "is required"));
        }
        let id = invite_id.to_owned();
        let found = self
            .guilds
            .store()
            .read(move |c| rdb::received(c, &id))
            .await?;
        match found {
            Some(i) if i.target_user_id == caller.user_id => {
                if i.status == "pending" {
                    Ok(Some(i))
                } else {
                    Err(Error::FailedPrecondition(format!(
                        "invite_id: this invite was already {}",
                        i.status
                    )))
                }
            }
            Some(_) => Err(Error::NotFound("invite_id: no such invite for you".into())),
            None => Ok(None),
        }
    }

    /// `AcceptDMInvite`: for an invite from another host, marks it accepted and says where to
    /// join; for one of this node's DMs, joins it here (see [`crate::dms::Dms::accept`]).
    pub async fn accept(&self, caller: &SessionInfo, invite_id: &str) -> Result<JoinTarget> {
        let Some(invite) = self.own_received(caller, invite_id).await? else {
            let local = crate::dms::Dms::new(self.guilds.clone(), self.address.clone())
                .accept(caller, invite_id)
                .await?;
            return Ok(JoinTarget {
                token: local.token,
                host_server_url: local.host_server_url,
                guild_id: local.guild_id,
            });
        };
        let (id, now) = (invite.invite_id.clone(), now_ms());
        let changed = self
            .guilds
            .store()
            .write(move |tx| rdb::resolve_received(tx, &id, "accepted", now))
            .await?;
        if !changed {
            return Err(Error::FailedPrecondition(
                "invite_id: this invite was already answered".into(),
            ));
        }
        Ok(JoinTarget {
            token: invite.token,
            host_server_url: invite.host_server_url,
            guild_id: invite.guild_id,
        })
    }

    /// `RejectDMInvite`: for an invite from another host, marks it rejected and, in the same
    /// transaction, queues the notice to the host in the outbox (a host that is down gets it when
    /// it is back); for one of this node's DMs, tells the inviter directly.
    pub async fn reject(&self, caller: &SessionInfo, invite_id: &str) -> Result<()> {
        let Some(invite) = self.own_received(caller, invite_id).await? else {
            return self.reject_hosted(caller, invite_id).await;
        };
        let notice = pb::ReceiveDmInviteRejectionRequest {
            token: invite.token.clone(),
            target_user_id: invite.target_user_id.clone(),
        }
        .encode_to_vec();
        let (id, host, now) = (invite.invite_id, invite.host_server_url, now_ms());
        let changed = self
            .guilds
            .store()
            .write(move |tx| {
                if !rdb::resolve_received(tx, &id, "rejected", now)? {
                    return Ok(false);
                }
                crate::store::outbox::enqueue(
                    tx,
                    &host,
                    RECEIVE_DM_INVITE_REJECTION,
                    &notice,
                    now,
                )?;
                Ok(true)
            })
            .await?;
        if !changed {
            return Err(Error::FailedPrecondition(
                "invite_id: this invite was already answered".into(),
            ));
        }
        self.outbox.wake();
        Ok(())
    }

    /// Rejects a pending invite to one of this node's DMs and tells the inviter.
    async fn reject_hosted(&self, caller: &SessionInfo, invite_id: &str) -> Result<()> {
        let id = invite_id.to_owned();
        let invite = self.guilds.store().read(move |c| db::get(c, &id)).await?;
        let invite = match invite {
            Some(i) if i.target_user_id == caller.user_id => i,
            _ => return Err(Error::NotFound("invite_id: no such invite for you".into())),
        };
        if invite.status != "pending" {
            return Err(Error::FailedPrecondition(format!(
                "invite_id: this invite was already {}",
                invite.status
            )));
        }
        self.resolve_hosted(invite).await
    }

    /// Marks a hosted invite rejected and sends the inviter a `dm_invite` event saying so.
    async fn resolve_hosted(&self, mut invite: DmInviteRecord) -> Result<()> {
        let now = now_ms();
        let changed = self
            .guilds
            .events()
            .write(now, move |tx| {
                if !db::resolve(tx, &invite.invite_id, "rejected", now)? {
                    return Ok((false, vec![]));
                }
                invite.status = "rejected".into();
                let name = gdb::guild(tx, &invite.guild_id)?
                    .map(|g| g.name)
                    .unwrap_or_default();
                let proof = rdb::proof(tx, &invite.invite_id)?;
                let event = row(
                    vec![user_scope(&invite.inviter_id)],
                    pb::stream_response::Event::DmInvite(hosted_to_pb(
                        &invite,
                        &name,
                        proof.as_ref(),
                    )),
                );
                Ok((true, vec![event]))
            })
            .await?;
        if changed {
            Ok(())
        } else {
            Err(Error::FailedPrecondition(
                "invite_id: this invite was already answered".into(),
            ))
        }
    }

    /// `ReceiveDMInviteRejection` (server call from the target's homeserver): the invite this node
    /// sent there was rejected. Only the server the invite was delivered to may say so; a repeated
    /// notice changes nothing.
    pub async fn receive_rejection(
        &self,
        origin: &str,
        token: &str,
        target_user_id: &str,
    ) -> Result<()> {
        check_len("token", token, 1)?;
        PublicKey::from_hex(target_user_id).map_err(|e| Error::invalid("target_user_id", e))?;
        let t = token.to_owned();
        let hosted = self
            .guilds
            .store()
            .read(move |c| rdb::hosted_by_token(c, &t))
            .await?
            .filter(|h| h.invite.target_user_id == target_user_id && h.target_server == origin)
            .ok_or_else(|| {
                Error::NotFound(
                    "token: no DM invite with this token was sent to your server for \
                     target_user_id"
                        .into(),
                )
            })?;
        match hosted.invite.status.as_str() {
            "rejected" => Ok(()),
            "pending" => self.resolve_hosted(hosted.invite).await,
            other => Err(Error::FailedPrecondition(format!(
                "token: this invite was already {other}"
            ))),
        }
    }
}

/// Checks the `dm-invite` signature of `invite` for `audience`.
fn verify_invite(
    invite: &pb::DmInvite,
    audience: PublicKey,
    inviter: PublicKey,
    target: PublicKey,
    cert: &DeviceCert,
    signature: &Signature,
) -> Result<()> {
    let payload = DmInvitePayload {
        audience,
        inviter_key: inviter,
        device_key: cert.device_key,
        target,
        token: invite.token.clone(),
        guild_id: invite.guild_id.clone(),
        host_server_url: invite.host_server_url.clone(),
        timestamp: invite.timestamp,
    };
    signing::verify(payload, &cert.device_key, signature).map_err(|_| {
        Error::unauthenticated(
            "invite.signature",
            "not a dm-invite signature by the inviter's certified device over this target, \
             token, guild, host and timestamp for the target's homeserver",
        )
    })?;
    Ok(())
}

/// A token or id from a request: `min` to [`ID_MAX`] bytes of visible ASCII.
fn check_len(field: &str, value: &str, min: usize) -> Result<()> {
    if value.len() < min || value.len() > ID_MAX {
        return Err(Error::invalid(
            field,
            format!("must be {min} to {ID_MAX} bytes"),
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(field, "must be visible ASCII"));
    }
    Ok(())
}

fn cert_to_pb(cert: &StoredCert) -> pb::DeviceCert {
    pb::DeviceCert {
        pubkey: cert.pubkey.clone(),
        device_id: cert.device_id.clone(),
        issued_at: cert.issued_at,
        expiry: cert.expiry,
        signature: cert.signature.clone(),
    }
}

/// An invite to one of this node's DMs, as clients see it (signed once `SendDMInvite` ran).
pub fn hosted_to_pb(
    i: &DmInviteRecord,
    guild_name: &str,
    proof: Option<&InviteProof>,
) -> pb::DmInvite {
    pb::DmInvite {
        token: i.token.clone(),
        invite_id: i.invite_id.clone(),
        inviter_id: i.inviter_id.clone(),
        guild_id: i.guild_id.clone(),
        guild_name: guild_name.to_owned(),
        host_server_url: i.host_server_url.clone(),
        timestamp: proof.map_or(i.created_at, |p| p.signed_at),
        signature: proof.map(|p| p.signature.clone()).unwrap_or_default(),
        status: i.status.clone(),
        inviter_pubkey: i.inviter_id.clone(),
        device_cert: proof.map(|p| cert_to_pb(&p.cert)),
        target_user_id: i.target_user_id.clone(),
    }
}

/// An invite received from another host, as its target sees it (with the inviter's proof).
pub fn received_to_pb(i: &ReceivedInvite) -> pb::DmInvite {
    pb::DmInvite {
        token: i.token.clone(),
        invite_id: i.invite_id.clone(),
        inviter_id: i.inviter_id.clone(),
        guild_id: i.guild_id.clone(),
        guild_name: i.guild_name.clone(),
        host_server_url: i.host_server_url.clone(),
        timestamp: i.timestamp,
        signature: i.signature.clone(),
        status: i.status.clone(),
        inviter_pubkey: i.inviter_id.clone(),
        device_cert: Some(cert_to_pb(&i.cert)),
        target_user_id: i.target_user_id.clone(),
    }
}
