//! The `guildhall.admin.v1.Admin` service: a thin adapter over [`crate::admin`].
//!
//! The admin check is made once for the whole service, by [`AdminGate`] in front of it: the
//! session layer has already resolved the caller's token, and the gate lets through only users in
//! the `admins` setting; anyone else gets `PERMISSION_DENIED` before the request is decoded, so
//! nothing a non-admin sends can change anything. Each handler then runs its action and records
//! it ([`AdminApi::audited`]): an INFO line and an audit row with the actor, the action, the
//! target and the result, refusals included.

use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::accounts::Accounts;
use crate::admin::Admin;
use crate::api::session::caller;
use crate::convert::timestamp;
use crate::error::Error;
use crate::proto::guildhall::admin::v1 as pb;
use crate::proto::guildhall::admin::v1::admin_server::{self, AdminServer};
use crate::store::admin::RegistrationTokenRecord;

pub use crate::api::session::ADMIN_PREFIX;

/// Lets through only sessions of the node's configured admins.
#[derive(Debug, Clone)]
pub struct AdminGate {
    accounts: Accounts,
}

impl tonic::service::Interceptor for AdminGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let session = caller(&request)?;
        if self.accounts.is_admin(&session.user_id) {
            return Ok(request);
        }
        tracing::warn!(user = %session.user_id, "admin call refused: not a server admin");
        Err(Error::PermissionDenied(
            "authorization: only this server's admins (the `admins` setting) may call \
             guildhall.admin.v1"
                .into(),
        )
        .into())
    }
}

/// The admin service.
#[derive(Debug, Clone)]
pub struct AdminApi {
    admin: Admin,
    accounts: Accounts,
}

/// The admin service behind its gate, ready to add to the node's routes.
pub fn service(
    admin: Admin,
    accounts: Accounts,
) -> InterceptedService<AdminServer<AdminApi>, AdminGate> {
    AdminServer::with_interceptor(
        AdminApi {
            admin,
            accounts: accounts.clone(),
        },
        AdminGate { accounts },
    )
}

type Reply<T> = Result<Response<T>, Status>;

/// How a result reads in the audit log: `ok`, or the status code and message.
fn outcome<T>(result: &Result<T, Status>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

impl AdminApi {
    /// Records `action` on `target` by the caller of `request` with its result, and returns it.
    async fn audited<R, T>(
        &self,
        request: &Request<R>,
        action: &str,
        target: &str,
        result: Result<T, Error>,
    ) -> Reply<T> {
        let actor = caller(request)?.user_id;
        let result = result.map_err(Status::from);
        self.admin
            .record(&actor, action, target, &outcome(&result))
            .await;
        result.map(Response::new)
    }
}

fn user_summary(s: &crate::store::admin::UserSummary, is_admin: bool) -> pb::UserSummary {
    let u = &s.user;
    pb::UserSummary {
        id: u.id.clone(),
        name: u.display_name.clone(),
        irc_name: u.irc_name.clone().unwrap_or_default(),
        homeserver: u.homeserver.clone(),
        created_at: timestamp(u.created_at),
        last_seen_at: (s.last_seen_at != 0)
            .then(|| timestamp(s.last_seen_at))
            .flatten(),
        deactivated_at: u.deactivated_at.and_then(timestamp),
        device_count: s.devices,
        guild_count: s.guilds,
        is_server_admin: is_admin,
    }
}

impl AdminApi {
    fn user_details(&self, d: &crate::admin::users::UserDetails) -> pb::UserDetails {
        pb::UserDetails {
            user: Some(user_summary(
                &d.summary,
                self.accounts.is_admin(&d.summary.user.id),
            )),
            devices: d
                .devices
                .iter()
                .map(|dev| pb::UserDevice {
                    pubkey: dev.pubkey.clone(),
                    device_id: dev.device_id.clone(),
                    name: dev.name.clone(),
                    last_seen_at: timestamp(dev.last_seen_at),
                })
                .collect(),
            servers: d
                .servers
                .iter()
                .map(|(url, added)| pb::UserServerEntry {
                    url: url.clone(),
                    added_at: timestamp(*added),
                })
                .collect(),
            guilds: d
                .guilds
                .iter()
                .map(|(id, name, is_owner, is_dm)| pb::UserGuild {
                    guild_id: id.clone(),
                    name: name.clone(),
                    is_owner: *is_owner,
                    is_dm: *is_dm,
                })
                .collect(),
            open_sessions: d.open_sessions,
        }
    }

    /// `DeactivateUser` and `ReactivateUser`.
    async fn set_user_active(
        &self,
        request: Request<pb::UserRequest>,
        active: bool,
    ) -> Reply<pb::UserDetails> {
        let id = request.get_ref().user_id.clone();
        let result = self
            .admin
            .set_user_active(&id, active)
            .await
            .map(|d| self.user_details(&d));
        let action = if active {
            "ReactivateUser"
        } else {
            "DeactivateUser"
        };
        self.audited(&request, action, &id, result).await
    }
}

fn outbox_message(q: &crate::store::outbox::DestinationQueue) -> pb::OutboxDestination {
    pb::OutboxDestination {
        destination: q.destination.clone(),
        depth: q.depth,
        oldest_created_at: timestamp(q.oldest_created_at),
        head_method: q.head_method.clone(),
        head_attempts: q.head_attempts,
        next_attempt_at: timestamp(q.next_attempt_at),
        last_error: q.last_error.clone().unwrap_or_default(),
    }
}

fn status_message(s: &crate::admin::node::NodeStatus) -> pb::NodeStatus {
    pb::NodeStatus {
        version: s.version.to_owned(),
        started_at: timestamp(s.started_at),
        uptime_secs: s.now.saturating_sub(s.started_at) / 1000,
        server_id: s.server_id.to_hex(),
        canonical_address: s.canonical_address.clone(),
        peer_id: s.peer_id.clone(),
        database_bytes: s.database_bytes,
        media_bytes: s.media_bytes,
        users: s.counts.users,
        deactivated_users: s.counts.deactivated_users,
        guilds: s.counts.guilds,
        dms: s.counts.dms,
        channels: s.counts.channels,
        messages: s.counts.messages,
        files: s.counts.files,
        event_streams: s.event_streams,
        p2p_peers: s.p2p_peers,
        federation_peers: s.counts.peers,
        outbox_pending: s.outbox.pending,
        outbox_destinations: s.outbox.destinations,
        outbox_failed: s.outbox.failed,
    }
}

fn token_message(t: &RegistrationTokenRecord) -> pb::RegistrationToken {
    pb::RegistrationToken {
        id: t.id.clone(),
        max_uses: t.max_uses,
        uses: t.uses,
        created_at: timestamp(t.created_at),
        expires_at: (t.expires_at != 0)
            .then(|| timestamp(t.expires_at))
            .flatten(),
        created_by: t.created_by.clone(),
        revoked_at: t.revoked_at.and_then(timestamp),
        note: t.note.clone(),
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminApi {
    async fn create_registration_token(
        &self,
        request: Request<pb::CreateRegistrationTokenRequest>,
    ) -> Reply<pb::CreateRegistrationTokenResponse> {
        let actor = caller(&request)?.user_id;
        let r = request.get_ref();
        let result = self
            .admin
            .create_token(&actor, r.max_uses, r.max_age_secs, &r.note)
            .await
            .map(|(token, record)| pb::CreateRegistrationTokenResponse {
                token,
                info: Some(token_message(&record)),
            });
        let target = result
            .as_ref()
            .ok()
            .and_then(|r| r.info.as_ref())
            .map(|i| i.id.clone())
            .unwrap_or_default();
        self.audited(&request, "CreateRegistrationToken", &target, result)
            .await
    }

    async fn list_registration_tokens(
        &self,
        request: Request<pb::ListRegistrationTokensRequest>,
    ) -> Reply<pb::ListRegistrationTokensResponse> {
        let result = self
            .admin
            .list_tokens(request.get_ref().include_inactive)
            .await
            .map(|tokens| pb::ListRegistrationTokensResponse {
                tokens: tokens.iter().map(token_message).collect(),
            });
        self.audited(&request, "ListRegistrationTokens", "", result)
            .await
    }

    async fn revoke_registration_token(
        &self,
        request: Request<pb::RevokeRegistrationTokenRequest>,
    ) -> Reply<pb::RegistrationToken> {
        let id = request.get_ref().id.clone();
        let result = self
            .admin
            .revoke_token(&id)
            .await
            .map(|t| token_message(&t));
        self.audited(&request, "RevokeRegistrationToken", &id, result)
            .await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        let r = request.get_ref();
        let result = self
            .admin
            .list_users(&r.query, &r.page_token, r.limit)
            .await
            .map(|page| pb::ListUsersResponse {
                users: page
                    .users
                    .iter()
                    .map(|u| user_summary(u, self.accounts.is_admin(&u.user.id)))
                    .collect(),
                next_page_token: page.next_page_token,
            });
        let target = r.query.clone();
        self.audited(&request, "ListUsers", &target, result).await
    }

    async fn get_user(&self, request: Request<pb::UserRequest>) -> Reply<pb::UserDetails> {
        let id = request.get_ref().user_id.clone();
        let result = self.admin.user(&id).await.map(|d| self.user_details(&d));
        self.audited(&request, "GetUser", &id, result).await
    }

    async fn deactivate_user(&self, request: Request<pb::UserRequest>) -> Reply<pb::UserDetails> {
        self.set_user_active(request, false).await
    }

    async fn reactivate_user(&self, request: Request<pb::UserRequest>) -> Reply<pb::UserDetails> {
        self.set_user_active(request, true).await
    }

    async fn delete_guild(
        &self,
        request: Request<pb::DeleteGuildRequest>,
    ) -> Reply<pb::DeleteGuildResponse> {
        let id = request.get_ref().guild_id.clone();
        let result = self
            .admin
            .delete_guild(&id)
            .await
            .map(|n| pb::DeleteGuildResponse {
                members_removed: u32::try_from(n).unwrap_or(u32::MAX),
            });
        self.audited(&request, "DeleteGuild", &id, result).await
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> Reply<pb::DeleteChannelResponse> {
        let id = request.get_ref().channel_id.clone();
        let result = self
            .admin
            .delete_channel(&id)
            .await
            .map(|deleted_channel_ids| pb::DeleteChannelResponse {
                deleted_channel_ids,
            });
        self.audited(&request, "DeleteChannel", &id, result).await
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Reply<pb::DeleteMessageResponse> {
        let r = request.get_ref();
        let target = format!("{}/{}", r.channel_id, r.message_id);
        let result = self
            .admin
            .delete_message(&r.channel_id, &r.message_id)
            .await
            .map(|()| pb::DeleteMessageResponse {});
        self.audited(&request, "DeleteMessage", &target, result)
            .await
    }

    async fn quarantine_file(
        &self,
        request: Request<pb::QuarantineFileRequest>,
    ) -> Reply<pb::QuarantineFileResponse> {
        let actor = caller(&request)?.user_id;
        let id = request.get_ref().file_id.clone();
        let result =
            self.admin
                .quarantine_file(&actor, &id)
                .await
                .map(|n| pb::QuarantineFileResponse {
                    blobs_quarantined: u32::try_from(n).unwrap_or(u32::MAX),
                });
        self.audited(&request, "QuarantineFile", &id, result).await
    }

    async fn get_node_status(
        &self,
        request: Request<pb::GetNodeStatusRequest>,
    ) -> Reply<pb::NodeStatus> {
        let result = self.admin.status().await.map(|s| status_message(&s));
        self.audited(&request, "GetNodeStatus", "", result).await
    }

    async fn list_peers(
        &self,
        request: Request<pb::ListPeersRequest>,
    ) -> Reply<pb::ListPeersResponse> {
        let result = self.admin.peers().await.map(|peers| pb::ListPeersResponse {
            peers: peers
                .iter()
                .map(|(p, queue)| pb::Peer {
                    address: p.address.clone(),
                    server_key: hex::encode(p.server_key),
                    key_valid_until: timestamp(p.key_valid_until),
                    peer_id: p.peer_id.clone(),
                    pinned_at: timestamp(p.pinned_at),
                    key_changed_at: timestamp(p.key_changed_at),
                    last_seen_at: (p.last_seen_at != 0)
                        .then(|| timestamp(p.last_seen_at))
                        .flatten(),
                    outbox: queue.as_ref().map(outbox_message),
                })
                .collect(),
        });
        self.audited(&request, "ListPeers", "", result).await
    }

    async fn list_outbox(
        &self,
        request: Request<pb::ListOutboxRequest>,
    ) -> Reply<pb::ListOutboxResponse> {
        let result = self
            .admin
            .outbox()
            .await
            .map(|(queues, stats)| pb::ListOutboxResponse {
                destinations: queues.iter().map(outbox_message).collect(),
                failed: stats.failed,
            });
        self.audited(&request, "ListOutbox", "", result).await
    }

    async fn retry_outbox(
        &self,
        request: Request<pb::OutboxDestinationRequest>,
    ) -> Reply<pb::OutboxDestination> {
        let destination = request.get_ref().destination.clone();
        let result = self
            .admin
            .retry_outbox(&destination)
            .await
            .map(|q| outbox_message(&q));
        self.audited(&request, "RetryOutbox", &destination, result)
            .await
    }

    async fn drop_outbox(
        &self,
        request: Request<pb::OutboxDestinationRequest>,
    ) -> Reply<pb::DropOutboxResponse> {
        let actor = caller(&request)?.user_id;
        let destination = request.get_ref().destination.clone();
        let result = self
            .admin
            .drop_outbox(&actor, &destination)
            .await
            .map(|dropped| pb::DropOutboxResponse { dropped });
        self.audited(&request, "DropOutbox", &destination, result)
            .await
    }

    async fn list_gossip_mesh(
        &self,
        request: Request<pb::ListGossipMeshRequest>,
    ) -> Reply<pb::ListGossipMeshResponse> {
        let result = self
            .admin
            .gossip_mesh()
            .await
            .map(|(meshes, connected_peers)| pb::ListGossipMeshResponse {
                topics: meshes
                    .into_iter()
                    .map(|m| pb::GossipTopic {
                        kind: m.kind,
                        peer_ids: m.peers,
                    })
                    .collect(),
                connected_peers,
            });
        self.audited(&request, "ListGossipMesh", "", result).await
    }

    async fn list_ban_lists(
        &self,
        request: Request<pb::ListBanListsRequest>,
    ) -> Reply<pb::ListBanListsResponse> {
        let r = request.get_ref();
        let result = self
            .admin
            .ban_lists(r.advisories_only, r.limit, r.offset)
            .await
            .map(|(lists, held, total)| pb::ListBanListsResponse {
                trusted: lists
                    .iter()
                    .enumerate()
                    .map(|(i, l)| pb::TrustedBanList {
                        server: l.server.to_hex(),
                        guild: l.guild.clone().unwrap_or_default(),
                        own: i == 0,
                    })
                    .collect(),
                held: held.iter().map(crate::convert::held_ban).collect(),
                total,
            });
        self.audited(&request, "ListBanLists", "", result).await
    }

    /// Not itself recorded: reading the log would otherwise add to it with every page.
    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> Reply<pb::ListAuditLogResponse> {
        let r = request.into_inner();
        let page = self
            .admin
            .audit_log(r.before_id, r.limit, &r.actor, &r.action)
            .await?;
        Ok(Response::new(pb::ListAuditLogResponse {
            entries: page
                .entries
                .into_iter()
                .map(|e| pb::AuditEntry {
                    id: e.id,
                    at: timestamp(e.at),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    result: e.result,
                })
                .collect(),
            next_before_id: page.next_before_id,
        }))
    }
}
