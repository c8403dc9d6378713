//! The tonic services: thin adapters that authenticate, convert, call the domain, and convert back.
//!
//! Methods not listed in the `impl` below are answered `UNIMPLEMENTED` by the generated default
//! stubs until the issue that brings them lands.

pub mod admin;
pub mod event_stream;
mod federated;
pub mod files;
mod guilds;
pub mod http;
mod irc_claim;
mod mailbox;
mod media;
mod messages;
mod moves;
pub mod observe;
pub mod ops;
mod people;
pub mod profile;
mod push;
pub mod remote;
mod server_events;
pub mod session;
mod social;
pub mod text;
pub mod web;
pub mod webhook_body;
mod webhooks;

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::accounts::{Accounts, LoginInput, RegisterInput, UpdateFields, UpdateUserInput};
use crate::convert;
use crate::dms::Dms;
use crate::events::Events;
use crate::guilds::Guilds;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::limits::{Limit, Limits};
use crate::messages::Messages;
use crate::presence::Presence;
use crate::proto::guildhall::v1 as pb;
use crate::proto::guildhall::v1::guild_hall_server::GuildHall;
use session::caller;

/// What `GetServerInfo` reports about the node itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's key (federation identity and libp2p identity).
    pub server_id: PublicKey,
    /// The libp2p peer id of the same key.
    pub peer_id: String,
    /// The address clients and servers use to reach the node.
    pub canonical_address: String,
    /// The libp2p listen addresses, updated as the swarm binds them.
    pub p2p_addrs: watch::Receiver<Vec<String>>,
    /// How many libp2p peers are connected.
    pub p2p_peers: watch::Receiver<usize>,
    /// Until when the node's key is valid (ms), published for peers that pin it.
    pub key_valid_until: u64,
    /// The statement that handed the node's identity to its current key, if it was rotated.
    pub key_rotation: Option<pb::ServerKeyRotation>,
    /// The IRC gateway's port and server name, when it runs.
    pub irc: Option<(u16, String)>,
}

/// Largest request message the gRPC services decode, bytes (tonic's default, named so it is
/// documented and can't change unnoticed with a tonic upgrade). Upload chunks
/// ([`crate::media::MAX_CHUNK`]) stay well under it; a larger message is refused with
/// `RESOURCE_EXHAUSTED` by the request layer ([`text`]) before it is read to the end.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The combined `guildhall.v1.GuildHall` service.
#[derive(Debug, Clone)]
pub struct GuildHallApi {
    accounts: Accounts,
    guilds: Guilds,
    messages: Messages,
    events: Events,
    presence: Presence,
    harmony: crate::harmony::Harmony,
    dms: Dms,
    webhooks: crate::webhooks::Webhooks,
    people: crate::people::People,
    limits: Arc<Limits>,
    calls: crate::calls::Calls,
    media: crate::media::Media,
    mailbox: crate::mailbox::Mailbox,
    push: crate::push::Push,
    remote: Option<remote::Remote>,
    info: Arc<NodeInfo>,
    bans: Option<crate::federation::bans::Bans>,
    outbox: Option<crate::federation::outbox::Outbox>,
    federated: Option<federated::Remote>,
    server_events: Option<crate::gossip::ServerEvents>,
    exports: crate::export::Exports,
}

impl GuildHallApi {
    /// The service over the node's domain handles.
    pub fn new(
        accounts: Accounts,
        guilds: Guilds,
        limits: Arc<Limits>,
        livekit: Option<crate::calls::LiveKit>,
        media: crate::media::Media,
        push: crate::push::Push,
        info: NodeInfo,
    ) -> Self {
        let messages = Messages::new(guilds.clone(), limits.clone());
        let presence = Presence::new(guilds.clone());
        let harmony =
            crate::harmony::Harmony::new(accounts.clone(), guilds.clone(), presence.clone());
        Self {
            accounts,
            messages: messages.clone(),
            events: guilds.events().clone(),
            presence,
            harmony,
            dms: Dms::new(guilds.clone(), info.canonical_address.clone()),
            webhooks: crate::webhooks::Webhooks::new(guilds.clone(), messages),
            people: crate::people::People::new(guilds.clone(), info.canonical_address.clone()),
            calls: crate::calls::Calls::new(livekit, guilds.clone()),
            media,
            mailbox: crate::mailbox::Mailbox::new(Default::default()),
            push,
            remote: None,
            guilds,
            limits,
            info: Arc::new(info),
            bans: None,
            outbox: None,
            federated: None,
            server_events: None,
            exports: crate::export::Exports::default(),
        }
    }

    /// The service with the federation outbox it wakes after queuing server calls (homeserver
    /// moves, device revocations). Without one, queued calls wait for a node that runs one.
    pub fn with_outbox(mut self, outbox: crate::federation::outbox::Outbox) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The service with the methods that reach other nodes (DM invites across nodes, the
    /// unread proxy): peers' keys from `federation`'s directory, DM invites and their rejections
    /// sent through `outbox`; without it they answer `UNIMPLEMENTED`.
    pub fn with_dm_federation(
        mut self,
        federation: &crate::federation::Federation,
        outbox: crate::federation::outbox::Outbox,
        clock_skew_ms: u64,
        unread_timeout: std::time::Duration,
    ) -> Self {
        let outbound = federation.directory().outbound().clone();
        let dm_invites = crate::dm_invites::DmInvites::new(
            self.guilds.clone(),
            federation.directory().clone(),
            outbox.clone(),
            self.info.server_id,
            self.info.canonical_address.clone(),
            clock_skew_ms,
        );
        self.people = self.people.with_link(crate::people::across::Link::new(
            self.guilds.store().clone(),
            federation.directory().clone(),
            outbox,
            self.info.server_id,
            clock_skew_ms,
        ));
        self.federated = Some(federated::Remote {
            dm_invites,
            unread: crate::unread::UnreadProxy::new(unread_timeout, outbound),
        });
        self
    }

    fn federated(&self) -> Result<&federated::Remote, Status> {
        self.federated
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this node was started without federation"))
    }

    /// The service answering `PullServerEvents` from `events`' log.
    pub fn with_server_events(mut self, events: crate::gossip::ServerEvents) -> Self {
        self.server_events = Some(events);
        self
    }

    /// The service with the mailbox bounded by `config` (the default bounds otherwise).
    pub fn with_mailbox(mut self, config: crate::mailbox::MailboxConfig) -> Self {
        self.mailbox = crate::mailbox::Mailbox::new(config);
        self
    }

    /// Federated bans: `BanUser` signs and sends a notice; `PropagateBan` accepts them. Without
    /// it (an API built outside a node), bans stay local and `PropagateBan` is unavailable.
    pub fn with_bans(mut self, bans: crate::federation::bans::Bans) -> Self {
        self.bans = Some(bans);
        self
    }

    /// The service with remote members and profile propagation over `federation` (without it,
    /// joins naming another homeserver are answered `UNIMPLEMENTED`).
    pub fn with_federation(
        mut self,
        federation: &crate::federation::Federation,
        outbox: crate::federation::outbox::Outbox,
    ) -> Self {
        self.remote = Some(remote::Remote::new(
            federation,
            outbox,
            self.info.server_id,
            self.info.canonical_address.clone(),
        ));
        self
    }

    /// The route serving `SubscribeEvents` with events encoded once for every stream; mount it
    /// beside the generated service ([`event_stream`]).
    pub fn event_stream_route(&self) -> event_stream::SubscribeRoute {
        event_stream::SubscribeRoute::new(self.events.clone(), MAX_REQUEST_BYTES)
    }

    /// The webhook operations (also served over HTTP by [`http::router`]).
    pub fn webhooks(&self) -> crate::webhooks::Webhooks {
        self.webhooks.clone()
    }

    /// The upload operations (files are served over HTTP by [`files::router`]).
    pub fn media(&self) -> crate::media::Media {
        self.media.clone()
    }

    /// The node's presence, which the IRC gateway's connections count in.
    pub fn presence(&self) -> Presence {
        self.presence.clone()
    }

    /// Harmony's profile service over the same users and presence (served beside this one).
    pub fn harmony(&self) -> crate::harmony::Harmony {
        self.harmony.clone()
    }

    /// The account-status operations over this node's guilds, gossiping deletions when the node
    /// takes part in gossip.
    fn account_statuses(&self) -> crate::account_status::AccountStatuses {
        crate::account_status::AccountStatuses::new(
            self.guilds.clone(),
            self.info.canonical_address.clone(),
            self.accounts.clock_skew_ms(),
            self.server_events.clone(),
        )
    }

    /// After an account statement committed: cached sessions of a disabled or deleted account
    /// end now, queued deliveries leave, and a deletion is gossiped.
    async fn account_status_applied(
        &self,
        statement: &crate::account_status::VerifiedStatus,
        event: Option<crate::gossip::ServerEvent>,
    ) {
        if statement.status() != crate::account_status::Status::Enabled {
            self.accounts.forget_user_sessions(statement.user_id());
        }
        if let Some(outbox) = &self.outbox {
            outbox.wake();
        }
        if let (Some(events), Some(event)) = (&self.server_events, event) {
            events.announce(&event).await;
        }
    }

    /// Counts a request against a limit keyed by the client's address.
    fn limit_by_address<T>(&self, limit: Limit, request: &Request<T>) -> Result<(), Status> {
        let address = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
        Ok(self.limits.check(limit, &address)?)
    }

    /// Counts a request against a limit keyed by the caller.
    fn limit_by_user<T>(&self, limit: Limit, request: &Request<T>) -> Result<(), Status> {
        let session = caller(request)?;
        Ok(self.limits.check(limit, &session.user_id)?)
    }

    fn bans(&self) -> Result<&crate::federation::bans::Bans, Status> {
        self.bans
            .as_ref()
            .ok_or_else(|| Status::unimplemented("bans across servers: federation is not running"))
    }

    /// `AddServerBan` (`banned`) and `RemoveServerBan`.
    async fn change_server_ban(
        &self,
        r: Request<pb::ServerBanRequest>,
        banned: bool,
    ) -> Reply<pb::ServerBanEntry> {
        let session = caller(&r)?;
        let r = r.into_inner();
        let entry = self
            .bans()?
            .change_server_ban(&session, &r.user_id, banned, &r.reason)
            .await?;
        Ok(Response::new(crate::federation::bans::entry_message(
            &entry,
        )))
    }

    fn user(&self, record: &crate::store::UserRecord) -> pb::User {
        convert::user(record, self.accounts.is_admin(&record.id))
    }

    /// The caller's own record, with `public_key` set to the device key of the session asking
    /// (the seed's legacy K_dev field: a user has several devices, so it is filled only in
    /// answers about oneself; `GetMyData.device_certificates` lists them all).
    fn own_user(&self, record: &crate::store::UserRecord, device_pubkey: String) -> pb::User {
        pb::User {
            public_key: device_pubkey,
            ..self.user(record)
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The protobuf form of an IRC token record (without the token).
fn irc_token(record: &crate::store::irc_tokens::IrcTokenRecord) -> pb::IrcToken {
    pb::IrcToken {
        id: record.id.clone(),
        label: record.label.clone(),
        created_at: record.created_at,
        last_used_at: record.last_used_at.unwrap_or(0),
        token: String::new(),
    }
}

/// `ExportMyData`'s answer: the archive's chunks as they are written.
type ExportStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::ExportChunk, Status>> + Send + 'static>,
>;

fn settings_proto(s: &crate::limits::Settings) -> pb::ServerSettings {
    pb::ServerSettings {
        max_upload_size: s.max_upload_size,
        message_rate_limit: s.message_rate_limit,
        max_message_length: s.max_message_length,
        register_rate_limit: s.register_rate_limit,
        login_rate_limit: s.login_rate_limit,
        invite_rate_limit: s.invite_rate_limit,
        discovery_rate_limit: s.discovery_rate_limit,
        sync_mailbox_rate_limit: s.sync_mailbox_rate_limit,
        ping_rate_limit: s.ping_rate_limit,
    }
}

#[tonic::async_trait]
impl GuildHall for GuildHallApi {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Reply<pb::RegisterResponse> {
        self.limit_by_address(Limit::Register, &request)?;
        let r = request.into_inner();
        let input = RegisterInput {
            display_name: r.display_name,
            id_key: convert::public_key("public_key", &r.public_key)?,
            cert: convert::device_cert(r.device_cert)?,
            id_proof: convert::signature_hex("id_proof", &r.id_proof)?,
            device_name: r.device_name,
            signature: convert::signature_bytes("signature", &r.signature)?,
            timestamp: r.timestamp,
            registration_token: r.registration_token,
        };
        let device = input.cert.device_key.to_hex();
        let (user, session) = self.accounts.register(input).await?;
        tracing::info!(user = %user.id, name = %user.display_name, "user registered");
        Ok(Response::new(pb::RegisterResponse {
            token: session.access_token,
            user: Some(self.own_user(&user, device)),
            refresh_token: session.refresh_token,
        }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        self.limit_by_address(Limit::Login, &request)?;
        let r = request.into_inner();
        let input = LoginInput {
            cert: convert::device_cert(r.device_cert)?,
            signature: convert::signature_bytes("signature", &r.signature)?,
            timestamp: r.timestamp,
            device_name: r.device_name,
            new_homeserver: r.new_homeserver,
            migration_timestamp: r.migration_timestamp,
            migration_signature: r.migration_signature,
            migration_sequence: r.migration_sequence,
            migration_prev: r.migration_prev,
            migration_targets: r.migration_targets,
            user_id: r
                .user_id
                .as_deref()
                .map(|id| convert::public_key("user_id", id))
                .transpose()?,
        };
        let device = input.cert.device_key.to_hex();
        let (user, session) = moves::login(self, input).await?;
        Ok(Response::new(pb::LoginResponse {
            token: session.access_token,
            user: Some(self.own_user(&user, device)),
            refresh_token: session.refresh_token,
        }))
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Reply<pb::RefreshResponse> {
        let r = request.into_inner();
        let (user, session) = self.accounts.refresh(&r.refresh_token).await?;
        Ok(Response::new(pb::RefreshResponse {
            token: session.access_token,
            refresh_token: session.refresh_token,
            user: Some(self.user(&user)),
        }))
    }

    async fn update_user(&self, request: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        let session = caller(&request)?;
        let r = request.into_inner();
        let original = r.clone();
        let input = UpdateUserInput {
            fields: UpdateFields::from_request(&r),
            cert: convert::device_cert(r.device_cert)?,
            timestamp: r.timestamp,
            signature: convert::signature_bytes("signature", &r.signature)?,
        };
        let (name, avatar) = (
            input.fields.name.is_some(),
            input.fields.avatar_url.is_some(),
        );
        let forward =
            remote::forward_profile_in(self.remote.as_ref(), self.server_events.as_ref(), original);
        let (user, forwarding) = self.accounts.update_user(&session, input, forward).await?;
        self.harmony
            .announce_signed_update(&user, name, avatar)
            .await;
        remote::profile_forwarded(
            self.remote.as_ref(),
            self.server_events.as_ref(),
            forwarding,
        )
        .await;
        Ok(Response::new(self.user(&user)))
    }

    async fn verify_user(
        &self,
        request: Request<pb::VerifyUserRequest>,
    ) -> Reply<pb::VerifyUserResponse> {
        // A server call: the verifier proved which server asks (docs/PROTOCOL.md §8).
        let origin = crate::federation::verify::verified_origin(&request)?;
        tracing::debug!(origin = %origin.address(), "VerifyUser from a peer server");
        let r = request.into_inner();
        let (user, token) = self
            .accounts
            .verify_user(origin.address(), &r.user_id, &r.challenge)
            .await?;
        Ok(Response::new(pb::VerifyUserResponse {
            user: Some(self.user(&user)),
            push_delegation_token: token,
        }))
    }

    async fn update_home_server(
        &self,
        request: Request<pb::UpdateHomeServerRequest>,
    ) -> Reply<pb::Empty> {
        moves::update_home_server(self, request).await
    }

    async fn revoke_device(&self, request: Request<pb::DeviceRevocation>) -> Reply<pb::Empty> {
        moves::revoke_device(self, request).await
    }

    async fn receive_device_revocation(
        &self,
        request: Request<pb::DeviceRevocation>,
    ) -> Reply<pb::Empty> {
        moves::receive_device_revocation(self, request).await
    }

    async fn federate(&self, r: Request<pb::FederationRequest>) -> Reply<pb::FederationResponse> {
        remote::federate(&self.accounts, r).await
    }

    async fn update_federated_profile(
        &self,
        r: Request<pb::UpdateFederatedProfileRequest>,
    ) -> Reply<pb::Empty> {
        remote::update_federated_profile(&self.accounts, &self.harmony, r).await
    }

    async fn get_users(
        &self,
        request: Request<pb::GetUsersRequest>,
    ) -> Reply<pb::GetUsersResponse> {
        let session = caller(&request)?;
        let r = request.into_inner();
        let mut users = self.accounts.get_users(&r.user_ids).await?;
        if !r.guild_id.is_empty() {
            let ids = users.iter().map(|u| u.id.clone()).collect();
            let members = self
                .guilds
                .members_among(&session, &r.guild_id, ids)
                .await?;
            users.retain(|u| members.contains(&u.id));
        }
        // `status`: the presence word of those whose presence the caller may see (as GetPresence).
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let seen: std::collections::HashMap<String, i32> = self
            .presence
            .get(&session, &ids)
            .await?
            .into_iter()
            .map(|p| (p.user_id, p.status))
            .collect();
        Ok(Response::new(pb::GetUsersResponse {
            users: users
                .iter()
                .map(|u| pb::User {
                    status: seen
                        .get(&u.id)
                        .map(|s| crate::presence::status_word(*s).to_owned())
                        .unwrap_or_default(),
                    ..self.user(u)
                })
                .collect(),
        }))
    }

    async fn get_my_data(&self, request: Request<pb::Empty>) -> Reply<pb::GetMyDataResponse> {
        let session = caller(&request)?;
        let data = self.accounts.my_data(&session).await?;
        Ok(Response::new(pb::GetMyDataResponse {
            user: Some(self.own_user(&data.user, session.device_pubkey.clone())),
            servers: data
                .servers
                .into_iter()
                .map(|s| pb::UserServer {
                    server_url: s.url,
                    created_at: s.created_at,
                    guild_ids: s.guild_ids,
                })
                .collect(),
            device_certificates: data
                .devices
                .into_iter()
                .map(|d| pb::DeviceInfo {
                    id: d.pubkey,
                    name: if d.name.is_empty() {
                        d.device_id
                    } else {
                        d.name
                    },
                    last_seen_at: d.last_seen_at,
                })
                .collect(),
            push_distributors: data.push_distributors,
        }))
    }

    async fn add_server(&self, request: Request<pb::AddServerRequest>) -> Reply<pb::Empty> {
        let session = caller(&request)?;
        self.accounts
            .add_server(&session, &request.get_ref().server_url)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn remove_server(&self, request: Request<pb::RemoveServerRequest>) -> Reply<pb::Empty> {
        let session = caller(&request)?;
        self.accounts
            .remove_server(&session, &request.get_ref().server_url)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn create_guild(
        &self,
        r: Request<pb::CreateGuildRequest>,
    ) -> Reply<pb::CreateGuildResponse> {
        guilds::create_guild(&self.guilds, r).await
    }
    async fn update_guild(&self, r: Request<pb::UpdateGuildRequest>) -> Reply<pb::Guild> {
        guilds::update_guild(&self.guilds, r).await
    }
    async fn list_guilds(
        &self,
        r: Request<pb::ListGuildsRequest>,
    ) -> Reply<pb::ListGuildsResponse> {
        guilds::list_guilds(&self.guilds, r).await
    }
    async fn list_server_guilds(
        &self,
        r: Request<pb::ListServerGuildsRequest>,
    ) -> Reply<pb::ListServerGuildsResponse> {
        guilds::list_server_guilds(&self.guilds, r).await
    }
    async fn create_folder(&self, r: Request<pb::CreateFolderRequest>) -> Reply<pb::Folder> {
        guilds::create_folder(&self.guilds, r).await
    }

    async fn update_folder(&self, r: Request<pb::UpdateFolderRequest>) -> Reply<pb::Folder> {
        guilds::update_folder(&self.guilds, r).await
    }

    async fn delete_folder(&self, r: Request<pb::DeleteFolderRequest>) -> Reply<pb::Empty> {
        guilds::delete_folder(&self.guilds, r).await
    }
    async fn list_folders(
        &self,
        r: Request<pb::ListFoldersRequest>,
    ) -> Reply<pb::ListFoldersResponse> {
        guilds::list_folders(&self.guilds, r).await
    }
    async fn create_channel(&self, r: Request<pb::CreateChannelRequest>) -> Reply<pb::Channel> {
        guilds::create_channel(&self.guilds, r).await
    }
    async fn update_channel(&self, r: Request<pb::UpdateChannelRequest>) -> Reply<pb::Channel> {
        guilds::update_channel(&self.guilds, r).await
    }
    async fn list_channels(
        &self,
        r: Request<pb::ListChannelsRequest>,
    ) -> Reply<pb::ListChannelsResponse> {
        guilds::list_channels(&self.guilds, r).await
    }
    async fn create_role(&self, r: Request<pb::CreateRoleRequest>) -> Reply<pb::Role> {
        guilds::create_role(&self.guilds, r).await
    }
    async fn update_role(&self, r: Request<pb::UpdateRoleRequest>) -> Reply<pb::Role> {
        guilds::update_role(&self.guilds, r).await
    }
    async fn batch_update_roles(
        &self,
        r: Request<pb::BatchUpdateRolesRequest>,
    ) -> Reply<pb::Empty> {
        guilds::batch_update_roles(&self.guilds, r).await
    }
    async fn delete_role(&self, r: Request<pb::DeleteRoleRequest>) -> Reply<pb::Empty> {
        guilds::delete_role(&self.guilds, r).await
    }
    async fn list_roles(&self, r: Request<pb::ListRolesRequest>) -> Reply<pb::ListRolesResponse> {
        guilds::list_roles(&self.guilds, r).await
    }
    async fn assign_role(&self, r: Request<pb::AssignRoleRequest>) -> Reply<pb::Empty> {
        guilds::assign_role(&self.guilds, r, true).await
    }
    async fn unassign_role(&self, r: Request<pb::UnassignRoleRequest>) -> Reply<pb::Empty> {
        let (meta, ext, m) = r.into_parts();
        let r = Request::from_parts(
            meta,
            ext,
            pb::AssignRoleRequest {
                guild_id: m.guild_id,
                user_id: m.user_id,
                role_id: m.role_id,
            },
        );
        guilds::assign_role(&self.guilds, r, false).await
    }
    async fn get_my_permissions(
        &self,
        r: Request<pb::GetMyPermissionsRequest>,
    ) -> Reply<pb::GetMyPermissionsResponse> {
        guilds::my_permissions(&self.guilds, r).await
    }
    async fn kick_user(&self, r: Request<pb::KickUserRequest>) -> Reply<pb::Empty> {
        guilds::kick(&self.guilds, r).await
    }
    async fn ban_user(&self, r: Request<pb::BanUserRequest>) -> Reply<pb::Empty> {
        let session = caller(&r)?;
        let r = r.into_inner();
        match &self.bans {
            Some(bans) => {
                bans.ban(&session, &r.guild_id, &r.user_id, &r.reason)
                    .await?
            }
            None => {
                self.guilds
                    .ban(&session, &r.guild_id, &r.user_id, &r.reason, |_, _| Ok(()))
                    .await?;
            }
        }
        Ok(Response::new(pb::Empty {}))
    }

    async fn add_server_ban(&self, r: Request<pb::ServerBanRequest>) -> Reply<pb::ServerBanEntry> {
        self.change_server_ban(r, true).await
    }

    async fn remove_server_ban(
        &self,
        r: Request<pb::ServerBanRequest>,
    ) -> Reply<pb::ServerBanEntry> {
        self.change_server_ban(r, false).await
    }

    async fn list_ban_notices(
        &self,
        r: Request<pb::ListBanNoticesRequest>,
    ) -> Reply<pb::ListBanNoticesResponse> {
        let session = caller(&r)?;
        let r = r.into_inner();
        let (bans, total) = self
            .bans()?
            .held(&session, r.advisories_only, r.limit, r.offset)
            .await?;
        Ok(Response::new(pb::ListBanNoticesResponse {
            bans: bans.iter().map(convert::held_ban).collect(),
            total: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn propagate_ban(&self, r: Request<pb::BanNotification>) -> Reply<pb::Empty> {
        // A server call; the notice is self-certifying, so any verified server may relay it.
        crate::federation::verify::verified_origin(&r)?;
        self.bans()?.receive(r.into_inner()).await?;
        Ok(Response::new(pb::Empty {}))
    }
    async fn list_guild_members(
        &self,
        r: Request<pb::ListGuildMembersRequest>,
    ) -> Reply<pb::ListGuildMembersResponse> {
        guilds::list_members(&self.guilds, r).await
    }
    async fn generate_invite(
        &self,
        r: Request<pb::GenerateInviteRequest>,
    ) -> Reply<pb::GenerateInviteResponse> {
        self.limit_by_user(Limit::Invite, &r)?;
        guilds::generate_invite(&self.guilds, r).await
    }
    async fn preview_invite(
        &self,
        r: Request<pb::PreviewInviteRequest>,
    ) -> Reply<pb::PreviewInviteResponse> {
        self.limit_by_address(Limit::Discovery, &r)?;
        guilds::preview_invite(&self.guilds, r).await
    }
    async fn list_invites(
        &self,
        r: Request<pb::ListInvitesRequest>,
    ) -> Reply<pb::ListInvitesResponse> {
        guilds::list_invites(&self.guilds, r).await
    }
    async fn deactivate_invite(&self, r: Request<pb::DeactivateInviteRequest>) -> Reply<pb::Empty> {
        guilds::deactivate_invite(&self.guilds, r).await
    }
    async fn join_invite(
        &self,
        r: Request<pb::JoinInviteRequest>,
    ) -> Reply<pb::JoinInviteResponse> {
        self.limit_by_address(Limit::Invite, &r)?;
        remote::join_invite(&self.accounts, &self.guilds, self.remote.as_ref(), r).await
    }

    async fn send_message(
        &self,
        r: Request<pb::SendMessageRequest>,
    ) -> Reply<pb::SendMessageResponse> {
        messages::send(&self.messages, r).await
    }
    async fn get_history(
        &self,
        r: Request<pb::GetHistoryRequest>,
    ) -> Reply<pb::GetHistoryResponse> {
        messages::history(&self.messages, r).await
    }
    async fn delete_message(&self, r: Request<pb::DeleteMessageRequest>) -> Reply<pb::Empty> {
        messages::delete(&self.messages, r).await
    }
    async fn pin_message(&self, r: Request<pb::PinMessageRequest>) -> Reply<pb::Empty> {
        let s = caller(&r)?;
        let r = r.into_inner();
        messages::pin(&self.messages, s, &r.channel_id, &r.message_id, true).await
    }
    async fn unpin_message(&self, r: Request<pb::UnpinMessageRequest>) -> Reply<pb::Empty> {
        let s = caller(&r)?;
        let r = r.into_inner();
        messages::pin(&self.messages, s, &r.channel_id, &r.message_id, false).await
    }
    async fn get_pinned_messages(
        &self,
        r: Request<pb::GetPinnedMessagesRequest>,
    ) -> Reply<pb::GetPinnedMessagesResponse> {
        messages::pinned(&self.messages, r).await
    }
    async fn create_thread(&self, r: Request<pb::CreateThreadRequest>) -> Reply<pb::Channel> {
        messages::create_thread(&self.messages, r).await
    }
    async fn ack_message(&self, r: Request<pb::AcknowledgeRequest>) -> Reply<pb::Empty> {
        messages::ack(&self.messages, r).await
    }
    async fn search_messages(
        &self,
        r: Request<pb::SearchMessagesRequest>,
    ) -> Reply<pb::SearchMessagesResponse> {
        messages::search(&self.messages, r).await
    }
    async fn get_search_status(&self, r: Request<pb::Empty>) -> Reply<pb::SearchStatusResponse> {
        messages::search_status(&self.messages, r).await
    }
    async fn get_guild_member_profile(
        &self,
        r: Request<pb::GetGuildMemberProfileRequest>,
    ) -> Reply<pb::GuildMemberProfile> {
        messages::member_profile(&self.messages, &self.guilds, r).await
    }

    async fn subscribe_events(
        &self,
        r: Request<pb::SubscribeRequest>,
    ) -> Reply<
        std::pin::Pin<
            Box<dyn futures::Stream<Item = Result<pb::StreamResponse, Status>> + Send + 'static>,
        >,
    > {
        // The node serves this method on its own route (`event_stream`), which sends the encoded
        // events as they are; this path, for a server built from the generated service alone,
        // decodes them again.
        let stream = event_stream::open(&self.events, &r).await?;
        let decoded = futures::StreamExt::map(stream, |item| {
            item.and_then(|bytes| {
                <pb::StreamResponse as prost::Message>::decode(bytes)
                    .map_err(|_| Status::internal("event log unavailable"))
            })
        });
        Ok(Response::new(Box::pin(decoded)))
    }

    async fn update_presence(&self, r: Request<pb::UpdatePresenceRequest>) -> Reply<pb::Empty> {
        social::update_presence(&self.presence, r).await
    }
    async fn signal_online(&self, r: Request<pb::Empty>) -> Reply<pb::Empty> {
        social::signal(&self.presence, r, true).await
    }
    async fn signal_offline(&self, r: Request<pb::Empty>) -> Reply<pb::Empty> {
        social::signal(&self.presence, r, false).await
    }
    async fn get_presence(
        &self,
        r: Request<pb::GetPresenceRequest>,
    ) -> Reply<pb::GetPresenceResponse> {
        social::get_presence(&self.presence, r).await
    }
    async fn create_dm(&self, r: Request<pb::CreateDmRequest>) -> Reply<pb::CreateDmResponse> {
        social::create_dm(&self.dms, r).await
    }
    async fn list_dm_invites(
        &self,
        r: Request<pb::ListDmInvitesRequest>,
    ) -> Reply<pb::ListDmInvitesResponse> {
        federated::list_dm_invites(self.federated()?, r).await
    }
    async fn accept_dm_invite(
        &self,
        r: Request<pb::AcceptDmInviteRequest>,
    ) -> Reply<pb::AcceptDmInviteResponse> {
        federated::accept_dm_invite(self.federated()?, r).await
    }
    async fn reject_dm_invite(&self, r: Request<pb::RejectDmInviteRequest>) -> Reply<pb::Empty> {
        federated::reject_dm_invite(self.federated()?, r).await
    }
    async fn send_dm_invite(&self, r: Request<pb::SendDmInviteRequest>) -> Reply<pb::Empty> {
        federated::send_dm_invite(self.federated()?, r).await
    }
    async fn receive_dm_invite(&self, r: Request<pb::ReceiveDmInviteRequest>) -> Reply<pb::Empty> {
        federated::receive_dm_invite(self.federated()?, r).await
    }
    async fn receive_dm_invite_rejection(
        &self,
        r: Request<pb::ReceiveDmInviteRejectionRequest>,
    ) -> Reply<pb::Empty> {
        federated::receive_dm_invite_rejection(self.federated()?, r).await
    }
    async fn push_notification(&self, r: Request<pb::PushNotificationRequest>) -> Reply<pb::Empty> {
        federated::push_notification(&self.push, r).await
    }
    async fn proxied_unread(
        &self,
        r: Request<pb::ProxiedUnreadRequest>,
    ) -> Reply<federated::UnreadStream> {
        federated::proxied_unread(self.federated()?, r).await
    }

    async fn proxied_recent_mentions(
        &self,
        r: Request<pb::ProxiedRecentMentionsRequest>,
    ) -> Reply<federated::MentionsStream> {
        federated::proxied_recent_mentions(self.federated()?, r).await
    }

    async fn initiate_avatar_upload(
        &self,
        r: Request<pb::InitiateAvatarUploadRequest>,
    ) -> Reply<pb::InitiateUploadResponse> {
        media::initiate(&self.media, r, crate::store::media::UploadKind::Avatar).await
    }

    async fn initiate_media_upload(
        &self,
        r: Request<pb::InitiateMediaUploadRequest>,
    ) -> Reply<pb::InitiateUploadResponse> {
        media::initiate(&self.media, r, crate::store::media::UploadKind::Media).await
    }

    async fn upload_begin(&self, r: Request<pb::UploadBeginRequest>) -> Reply<pb::Empty> {
        media::begin(&self.media, r).await
    }

    async fn upload_chunk(&self, r: Request<pb::UploadChunkRequest>) -> Reply<pb::Empty> {
        media::chunk(&self.media, r).await
    }

    async fn upload_finish(
        &self,
        r: Request<pb::UploadFinishRequest>,
    ) -> Reply<pb::UploadMediaResponse> {
        media::finish(&self.media, &self.guilds, r).await
    }

    async fn upload_abort(&self, r: Request<pb::UploadAbortRequest>) -> Reply<pb::Empty> {
        media::abort(&self.media, r).await
    }

    async fn create_webhook(&self, r: Request<pb::CreateWebhookRequest>) -> Reply<pb::Webhook> {
        webhooks::create(&self.webhooks, r).await
    }
    async fn list_webhooks(
        &self,
        r: Request<pb::ListWebhooksRequest>,
    ) -> Reply<pb::ListWebhooksResponse> {
        webhooks::list(&self.webhooks, r).await
    }
    async fn update_webhook(&self, r: Request<pb::UpdateWebhookRequest>) -> Reply<pb::Webhook> {
        webhooks::update(&self.webhooks, r).await
    }
    async fn delete_webhook(&self, r: Request<pb::DeleteWebhookRequest>) -> Reply<pb::Empty> {
        webhooks::delete(&self.webhooks, r).await
    }

    async fn edit_message(&self, r: Request<pb::EditMessageRequest>) -> Reply<pb::Message> {
        messages::edit(&self.messages, r).await
    }
    async fn leave_guild(&self, r: Request<pb::LeaveGuildRequest>) -> Reply<pb::Empty> {
        guilds::leave(&self.guilds, r).await
    }
    async fn transfer_guild_ownership(
        &self,
        r: Request<pb::TransferGuildOwnershipRequest>,
    ) -> Reply<pb::Guild> {
        guilds::transfer_ownership(&self.guilds, r).await
    }
    async fn delete_channel(&self, r: Request<pb::DeleteChannelRequest>) -> Reply<pb::Empty> {
        guilds::delete_channel(&self.guilds, r).await
    }
    async fn delete_guild(&self, r: Request<pb::DeleteGuildRequest>) -> Reply<pb::Empty> {
        guilds::delete_guild(&self.guilds, r).await
    }
    async fn set_account_status(
        &self,
        request: Request<pb::AccountStatusStatement>,
    ) -> Reply<pb::Empty> {
        // No session: the statement is signed by the user's identity key, and a disabled
        // account has no session left to send it with.
        self.limit_by_address(Limit::Login, &request)?;
        let verified = crate::account_status::verify(request.get_ref())?;
        let event = self
            .account_statuses()
            .apply(&verified, crate::account_status::Arrival::FirstHand)
            .await?;
        self.account_status_applied(&verified, event).await;
        tracing::info!(user = %&verified.user_id()[..8], status = verified.status().as_str(), "account status set");
        Ok(Response::new(pb::Empty {}))
    }

    async fn receive_account_status(
        &self,
        request: Request<pb::AccountStatusStatement>,
    ) -> Reply<pb::Empty> {
        let origin = crate::federation::verify::verified_origin(&request)?;
        let verified = crate::account_status::verify(request.get_ref())?;
        tracing::debug!(origin = %origin.address(), status = verified.status().as_str(), "ReceiveAccountStatus");
        let event = self
            .account_statuses()
            .apply(&verified, crate::account_status::Arrival::Relayed)
            .await?;
        self.account_status_applied(&verified, event).await;
        Ok(Response::new(pb::Empty {}))
    }

    async fn create_irc_token(
        &self,
        request: Request<pb::CreateIrcTokenRequest>,
    ) -> Reply<pb::IrcToken> {
        let session = caller(&request)?;
        let (record, token) = self
            .accounts
            .create_irc_token(&session, &request.get_ref().label)
            .await?;
        Ok(Response::new(pb::IrcToken {
            token,
            ..irc_token(&record)
        }))
    }

    async fn list_irc_tokens(
        &self,
        request: Request<pb::Empty>,
    ) -> Reply<pb::ListIrcTokensResponse> {
        let session = caller(&request)?;
        let tokens = self.accounts.irc_tokens(&session).await?;
        Ok(Response::new(pb::ListIrcTokensResponse {
            tokens: tokens.iter().map(irc_token).collect(),
        }))
    }

    async fn revoke_irc_token(
        &self,
        request: Request<pb::RevokeIrcTokenRequest>,
    ) -> Reply<pb::Empty> {
        let session = caller(&request)?;
        self.accounts
            .revoke_irc_token(&session, &request.get_ref().id)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn claim_irc_account(
        &self,
        request: Request<pb::ClaimIrcAccountRequest>,
    ) -> Reply<pb::ClaimIrcAccountResponse> {
        irc_claim::claim_irc_account(self, request).await
    }

    async fn export_my_data(&self, request: Request<pb::Empty>) -> Reply<ExportStream> {
        let session = caller(&request)?;
        let chunks =
            self.exports
                .start(self.events.store().clone(), self.media.clone(), &session)?;
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(chunks),
            |chunk| {
                chunk
                    .map(|data| pb::ExportChunk { data })
                    .map_err(Status::from)
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_user_profile(
        &self,
        r: Request<pb::GetUserProfileRequest>,
    ) -> Reply<pb::UserProfile> {
        let admins = |id: &str| self.accounts.is_admin(id);
        people::profile(&self.people, &admins, r).await
    }

    async fn get_user_by_username(
        &self,
        request: Request<pb::GetUserByUsernameRequest>,
    ) -> Reply<pb::User> {
        caller(&request)?;
        let user = self
            .accounts
            .user_by_username(&request.get_ref().username)
            .await?;
        Ok(Response::new(self.user(&user)))
    }

    async fn set_member_nickname(
        &self,
        request: Request<pb::SetMemberNicknameRequest>,
    ) -> Reply<pb::GuildMemberSummary> {
        let session = caller(&request)?;
        let r = request.into_inner();
        let view = self
            .guilds
            .set_nickname(&session, &r.guild_id, &r.user_id, &r.nick)
            .await?;
        let admins = |id: &str| self.accounts.is_admin(id);
        Ok(Response::new(convert::member(&view, &admins)))
    }

    async fn set_user_note(&self, r: Request<pb::SetUserNoteRequest>) -> Reply<pb::UserNote> {
        people::set_note(&self.people, r).await
    }
    async fn get_user_note(&self, r: Request<pb::GetUserNoteRequest>) -> Reply<pb::UserNote> {
        people::note(&self.people, r).await
    }
    async fn list_user_notes(&self, r: Request<pb::Empty>) -> Reply<pb::ListUserNotesResponse> {
        people::notes(&self.people, r).await
    }
    async fn send_friend_request(
        &self,
        r: Request<pb::RelationshipRequest>,
    ) -> Reply<pb::Relationship> {
        people::request_friend(&self.people, r).await
    }
    async fn accept_friend_request(
        &self,
        r: Request<pb::RelationshipRequest>,
    ) -> Reply<pb::Relationship> {
        people::accept_friend(&self.people, r).await
    }
    async fn decline_friend_request(
        &self,
        r: Request<pb::RelationshipRequest>,
    ) -> Reply<pb::Empty> {
        people::decline_friend(&self.people, r).await
    }
    async fn cancel_friend_request(&self, r: Request<pb::RelationshipRequest>) -> Reply<pb::Empty> {
        people::cancel_friend(&self.people, r).await
    }
    async fn remove_friend(&self, r: Request<pb::RelationshipRequest>) -> Reply<pb::Empty> {
        people::remove_friend(&self.people, r).await
    }
    async fn block_user(&self, r: Request<pb::RelationshipRequest>) -> Reply<pb::Relationship> {
        people::block(&self.people, r).await
    }
    async fn unblock_user(&self, r: Request<pb::RelationshipRequest>) -> Reply<pb::Empty> {
        people::unblock(&self.people, r).await
    }
    async fn list_relationships(
        &self,
        r: Request<pb::Empty>,
    ) -> Reply<pb::ListRelationshipsResponse> {
        people::relationships(&self.people, r).await
    }
    async fn receive_relationship(
        &self,
        r: Request<pb::RelationshipStatement>,
    ) -> Reply<pb::Empty> {
        people::receive_relationship(&self.people, r).await
    }
    async fn receive_presence(&self, r: Request<pb::PresenceBatch>) -> Reply<pb::Empty> {
        social::receive_presence(&self.presence, r).await
    }
    async fn list_recent_mentions(
        &self,
        r: Request<pb::ListRecentMentionsRequest>,
    ) -> Reply<pb::ListRecentMentionsResponse> {
        messages::recent_mentions(&self.messages, r).await
    }
    async fn remove_recent_mention(
        &self,
        r: Request<pb::RemoveRecentMentionRequest>,
    ) -> Reply<pb::Empty> {
        messages::remove_mention(&self.messages, r).await
    }
    async fn ack_recent_mentions(
        &self,
        r: Request<pb::AckRecentMentionsRequest>,
    ) -> Reply<pb::Empty> {
        messages::ack_mentions(&self.messages, r).await
    }

    async fn get_server_settings(&self, _r: Request<pb::Empty>) -> Reply<pb::ServerSettings> {
        Ok(Response::new(settings_proto(&self.limits.settings())))
    }

    async fn update_server_settings(
        &self,
        r: Request<pb::UpdateServerSettingsRequest>,
    ) -> Reply<pb::ServerSettings> {
        let session = caller(&r)?;
        if !self.accounts.is_admin(&session.user_id) {
            return Err(Status::permission_denied(
                "only server admins may change server settings",
            ));
        }
        let r = r.into_inner();
        let change: crate::limits::SettingsChange = [
            ("max_upload_size", r.max_upload_size),
            ("message_rate_limit", r.message_rate_limit),
            ("max_message_length", r.max_message_length),
            ("register_rate_limit", r.register_rate_limit),
            ("login_rate_limit", r.login_rate_limit),
            ("invite_rate_limit", r.invite_rate_limit),
            ("discovery_rate_limit", r.discovery_rate_limit),
            ("sync_mailbox_rate_limit", r.sync_mailbox_rate_limit),
            ("ping_rate_limit", r.ping_rate_limit),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
        let settings = self.limits.update(change).await?;
        Ok(Response::new(settings_proto(&settings)))
    }

    async fn get_call_token(
        &self,
        r: Request<pb::GetCallTokenRequest>,
    ) -> Reply<pb::GetCallTokenResponse> {
        let session = caller(&r)?;
        let channel_id = r.into_inner().channel_id;
        let (url, token) = self.calls.token(&session, &channel_id).await?;
        self.presence
            .join_call(&session.user_id, &channel_id)
            .await?;
        Ok(Response::new(pb::GetCallTokenResponse { url, token }))
    }

    async fn sync_mailbox(
        &self,
        r: Request<pb::SyncMailboxRequest>,
    ) -> Reply<pb::SyncMailboxResponse> {
        mailbox::sync(&self.mailbox, &self.limits, r).await
    }

    async fn register_push_distributor(
        &self,
        r: Request<pb::RegisterPushDistributorRequest>,
    ) -> Reply<pb::Empty> {
        push::register_distributor(&self.push, r).await
    }
    async fn list_push_distributors(
        &self,
        r: Request<pb::Empty>,
    ) -> Reply<pb::ListPushDistributorsResponse> {
        push::list_distributors(&self.push, r).await
    }
    async fn register_fcm_token(
        &self,
        r: Request<pb::RegisterFcmTokenRequest>,
    ) -> Reply<pb::Empty> {
        push::register_fcm_token(&self.push, r).await
    }
    async fn unregister_fcm_token(
        &self,
        r: Request<pb::UnregisterFcmTokenRequest>,
    ) -> Reply<pb::Empty> {
        push::unregister_fcm_token(&self.push, r).await
    }

    async fn pull_server_events(
        &self,
        r: Request<pb::PullServerEventsRequest>,
    ) -> Reply<pb::PullServerEventsResponse> {
        server_events::pull(self.server_events.as_ref(), r).await
    }

    async fn receive_server_event(&self, r: Request<pb::ServerEvent>) -> Reply<pb::Empty> {
        server_events::receive(self.server_events.as_ref(), r).await
    }

    async fn hello_grpc(&self, _request: Request<pb::Empty>) -> Reply<pb::HelloResponse> {
        Ok(Response::new(pb::HelloResponse {
            message: format!("Hello from guildhall {}", env!("CARGO_PKG_VERSION")),
        }))
    }

    async fn ping(&self, request: Request<pb::PingRequest>) -> Reply<pb::PongResponse> {
        self.limit_by_address(Limit::Ping, &request)?;
        Ok(Response::new(pb::PongResponse {
            timestamp: now_ms(),
        }))
    }

    async fn get_server_info(&self, _request: Request<pb::Empty>) -> Reply<pb::ServerInfoResponse> {
        let info = &self.info;
        Ok(Response::new(pb::ServerInfoResponse {
            canonical_address: info.canonical_address.clone(),
            livekit_configured: self.calls.configured(),
            irc_enabled: info.irc.is_some(),
            irc_port: info.irc.as_ref().map_or(0, |(port, _)| i32::from(*port)),
            irc_server: info
                .irc
                .as_ref()
                .map(|(_, name)| name.clone())
                .unwrap_or_default(),
            server_pubkey: info.server_id.to_hex(),
            peer_id: info.peer_id.clone(),
            p2p_listen_addrs: info.p2p_addrs.borrow().clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            key_valid_until: info.key_valid_until,
            key_rotation: info.key_rotation.clone(),
        }))
    }
}
