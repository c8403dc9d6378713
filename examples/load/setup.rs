//! Setting a load run up through the node's public API: connections, fresh users registered with
//! the request builders of `guildhall::client`, a guild they all join by its invite, and the
//! subscribers' event streams. Refusals become errors that name the call and, where the node's
//! default configuration is the cause, what to change.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::{StreamExt, TryStreamExt};
use guildhall::client::ClientIdentity;
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::outbound::Outbound;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use tonic::codec::Streaming;
use tonic::transport::Channel;

/// Registrations, joins and subscriptions in flight during setup: enough to keep the node busy,
/// few enough not to time out behind each other.
const SETUP_IN_FLIGHT: usize = 32;
/// How long connecting to the node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The gRPC path of `SubscribeEvents`, for the slim decoder below.
const SUBSCRIBE_PATH: &str = "/guildhall.v1.GuildHall/SubscribeEvents";

/// A registered user and their session.
pub struct User {
    /// Their keys, which sign the join.
    pub identity: ClientIdentity,
    /// Their session, for every authenticated call.
    pub token: String,
}

/// The event-stream message, decoded only as far as this program looks: the text of a created
/// message. Fields it leaves out are skipped undecoded, so the subscribers (thousands of them,
/// on the same machine as the node) spend as little CPU as they can. Tags are those of
/// `StreamResponse.message_created`, `MessageEvent.message` and `Message.text` in
/// `proto/guildhall/v1/guildhall.proto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SlimEvent {
    /// `StreamResponse.message_created`.
    #[prost(message, optional, tag = "3")]
    pub message_created: Option<SlimMessageEvent>,
}

/// `MessageEvent`, its message only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SlimMessageEvent {
    /// `MessageEvent.message`.
    #[prost(message, optional, tag = "1")]
    pub message: Option<SlimMessage>,
}

/// `Message`, its text only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SlimMessage {
    /// `Message.text`.
    #[prost(string, tag = "7")]
    pub text: String,
}

/// `message` with the session's bearer token, as every authenticated call needs.
pub fn authed<T>(token: &str, message: T) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .context("the node's session token is not a valid header value")?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Explains a refusal that the node's default configuration gives a load run.
fn hint(status: &tonic::Status) -> &'static str {
    match status.code() {
        tonic::Code::ResourceExhausted => {
            " (a rate limit: start the node with every limit off, see docs/BENCHMARKS.md)"
        }
        tonic::Code::PermissionDenied if status.message().starts_with("registration") => {
            " (start the node with registration = \"open\", see docs/BENCHMARKS.md)"
        }
        _ => "",
    }
}

/// An error naming the refused call, the status, and a hint when the node's configuration is why.
pub fn refused(what: &str, status: tonic::Status) -> anyhow::Error {
    anyhow!(
        "{what}: {:?}: {}{}",
        status.code(),
        status.message(),
        hint(&status)
    )
}

/// A new HTTP/2 connection to the node (TLS for `https://`).
pub async fn connect(outbound: &Outbound, addr: &str) -> Result<Channel> {
    outbound
        .channel(addr, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("connect to {addr}"))
}

/// Registers `n` fresh identities, a few at a time; answers them with their sessions.
pub async fn register_users(
    channel: &Channel,
    audience: PublicKey,
    n: usize,
    registration_token: &str,
) -> Result<Vec<User>> {
    futures::stream::iter(0..n)
        .map(|_| {
            let mut client = GuildHallClient::new(channel.clone());
            async move {
                let identity = ClientIdentity::generate("load", now_ms().saturating_sub(1000));
                let mut request = identity.register_request(&audience, "Load User", None, now_ms());
                request.registration_token = registration_token.to_owned();
                let reply = client
                    .register(request)
                    .await
                    .map_err(|s| refused("Register", s))?
                    .into_inner();
                Ok(User {
                    identity,
                    token: reply.token,
                })
            }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .try_collect()
        .await
}

/// Makes the guild; returns its first channel and the invite that came with it.
pub async fn create_room(channel: &Channel, owner: &User) -> Result<(String, String)> {
    let mut client = GuildHallClient::new(channel.clone());
    let request = pb::CreateGuildRequest {
        name: "Load".into(),
        avatar_url: None,
    };
    let reply = client
        .create_guild(authed(&owner.token, request)?)
        .await
        .map_err(|s| refused("CreateGuild", s))?
        .into_inner();
    let guild_id = reply.guild.context("CreateGuild answered no guild")?.id;
    let channels = client
        .list_channels(authed(&owner.token, pb::ListChannelsRequest { guild_id })?)
        .await
        .map_err(|s| refused("ListChannels", s))?
        .into_inner()
        .channels;
    let first = channels.first().context("the new guild has no channel")?;
    Ok((first.id.clone(), reply.token))
}

/// Joins every user to the guild with its invite, a few at a time.
pub async fn join_all(
    channel: &Channel,
    audience: PublicKey,
    invite: &str,
    users: &[User],
    registration_token: &str,
) -> Result<()> {
    futures::stream::iter(users)
        .map(|user| {
            let mut client = GuildHallClient::new(channel.clone());
            let mut request =
                user.identity
                    .join_invite_request(&audience, invite, "Load User", now_ms());
            request.registration_token = registration_token.to_owned();
            async move {
                client
                    .join_invite(request)
                    .await
                    .map_err(|s| refused("JoinInvite", s))
            }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Opens one event stream per user, round robin over `pool`. Each stream is live when this
/// returns: the node subscribes the stream before it answers.
pub async fn subscribe_all(pool: &[Channel], users: &[User]) -> Result<Vec<Streaming<SlimEvent>>> {
    futures::stream::iter(users.iter().enumerate())
        .map(|(i, user)| subscribe(pool[i % pool.len()].clone(), &user.token))
        .buffered(SETUP_IN_FLIGHT)
        .try_collect()
        .await
}

/// Opens one event stream with the slim decoder (see [`SlimEvent`]).
async fn subscribe(channel: Channel, token: &str) -> Result<Streaming<SlimEvent>> {
    let request = authed(
        token,
        pb::SubscribeRequest {
            resume_from_event_id: String::new(),
        },
    )?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| anyhow!("SubscribeEvents: connection not ready: {e}"))?;
    let codec = tonic_prost::ProstCodec::<pb::SubscribeRequest, SlimEvent>::default();
    let path = http::uri::PathAndQuery::from_static(SUBSCRIBE_PATH);
    Ok(grpc
        .server_streaming(request, path, codec)
        .await
        .map_err(|s| refused("SubscribeEvents", s))?
        .into_inner())
}
