//! guildhall: a federated, peer-to-peer chat homeserver.
//!
//! Users own their identity as ed25519 keys: an identity key K_id certifies per-device keys K_dev,
//! every request that proves who someone is is signed by a device key, and the exact signed bytes
//! are defined in `docs/PROTOCOL.md`. A node keeps its state in SQLite, serves one gRPC service
//! (`guildhall.v1.GuildHall`, plus Harmony's `protocol.profile.v1` and the admins' own
//! `guildhall.admin.v1.Admin`), and meets other nodes over
//! libp2p with the same key it signs federation requests with.
//!
//! # Layout
//!
//! - [`config`]: the one serde `Config`, with embedded defaults.
//! - [`node`]: starts a node from a `Config`: storage, keys, swarm, gRPC server.
//! - [`identity`]: keys, device certificates, the clock window, and [`identity::signing`], the
//!   only module that builds bytes to be signed.
//! - [`store`]: SQLite behind a typed, cheap-`Clone` handle; migrations; one module per table group.
//! - [`accounts`]: registration, login, sessions, identity proofs, profile changes, and the user
//!   field rules of the Users resource.
//! - [`admin`]: server administration for the configured admins (registration tokens, the
//!   audit log), served as `guildhall.admin.v1.Admin` by [`api::admin`].
//! - [`guilds`]: guilds, folders, channels, roles and the permission catalogue, members,
//!   moderation and invites.
//! - [`messages`]: sending (text, replies, mentions, components, typing, reactions), history,
//!   pins, threads, receipts and full-text search.
//! - [`people`]: what users keep about each other (notes, relationships, blocks, across nodes
//!   as signed statements) and profile views with what two users share.
//! - [`account_status`]: a user's K_id-signed statements about their own account (disable,
//!   enable, delete), applied here and told to their other servers.
//! - [`export`]: a user's data export, a tar archive streamed as it is written.
//! - [`dms`]: direct messages (DM guilds and DM invites) between users of this node.
//! - [`dm_invites`]: signed DM invites across nodes (send, receive, list, accept, reject).
//! - [`unread`]: `ProxiedUnread` and `ProxiedRecentMentions`, the homeserver's concurrent fan-out
//!   to a user's other servers.
//! - [`irc`]: the IRC gateway, a second adapter over the same domain (docs/IRC.md).
//! - [`harmony`]: Harmony's `protocol.profile.v1` over the same users: numeric ids, profiles,
//!   status as presence, app data (docs/HARMONY.md).
//! - [`presence`]: who is online, busy or offline, seen only by co-members.
//! - [`webhooks`]: channel URLs that programs post messages to.
//! - [`limits`]: server settings and the rate limits they set.
//! - [`calls`]: LiveKit access tokens for channel calls.
//! - [`mailbox`]: the in-memory, bounded `SyncMailbox` drop box, and the device-linking
//!   handshake that runs over it.
//! - [`push`]: push distributors and FCM tokens; queued, retried pushes for offline users.
//! - [`events`]: the persistent event log and live fan-out behind `SubscribeEvents`.
//! - [`ids`]: time-ordered ids.
//! - [`metrics`]: the node's Prometheus metrics, named in one place, recorded by the parts below
//!   the API through the store's handle and served at `/metrics`.
//! - [`api`]: the tonic services (thin adapters), the session layer that authenticates every
//!   non-public method, the text layer that checks every string field of every request for
//!   control characters, and `SubscribeEvents` served with each event encoded once.
//! - [`federation`]: signed server-to-server calls (the signing client, the verifying layer), the
//!   directory of peers' pinned keys, homeservers vouching for remote members, and forwarding
//!   users' signed profile changes to their other servers.
//! - [`gossip`]: the libp2p swarm task; the only module that touches `libp2p::Swarm`.
//! - [`outbound`]: every connection the node opens to an address a request named: one address
//!   policy (WHATWG URL parsing, a deny table of non-public blocks, checked at connect time) and
//!   verified TLS for `https://`.
//! - [`listener`]: the accept loop under the server: TLS when configured, connections per address
//!   capped, the real client address behind a trusted reverse proxy.
//! - [`logging`]: the command's log output (stderr, text or JSON) and its one-line error report.
//! - [`tls`]: rustls configs: the roots outgoing connections trust, the served certificate and its
//!   reload.
//! - [`client`]: client-side identities and signed request builders (CLI, tests, benchmarks).
//! - [`error`]: the crate error and its single mapping to gRPC status.
//! - [`proto`]: code generated from `proto/`.
//! - [`convert`]: proto ↔ domain conversion, below the domain and the adapters that both use it.

pub mod account_status;
pub mod accounts;
pub mod admin;
pub mod api;
pub mod backup;
pub mod calls;
pub mod client;
pub mod config;
pub mod convert;
pub mod dm_invites;
pub mod dms;
pub mod error;
pub mod events;
pub mod export;
pub mod federation;
pub mod gossip;
pub mod guilds;
pub mod harmony;
pub mod identity;
pub mod ids;
pub mod irc;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod mailbox;
pub mod media;
pub mod messages;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod people;
pub mod presence;
pub mod proto;
pub mod push;
pub mod store;
pub mod tls;
pub mod unread;
pub mod webhooks;
