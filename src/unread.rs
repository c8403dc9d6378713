//! `ProxiedUnread` and `ProxiedRecentMentions`: a user's homeserver asks the user's other servers
//! for their unread state or their recent mentions, all at once, and streams each server's answer
//! as it comes.
//!
//! Each `ServerQuery` names a server and the user's session token **on that server** (the token
//! `JoinInvite` or `Login` gave them there). The homeserver calls that server's own client API
//! with it (`ListGuilds`, then `ListChannels` per guild), so the queried server authorises the
//! request exactly as if the user's client had asked, and the homeserver needs no trust of its
//! own there. A guild's and a channel's `latest_message_id` are what a client compares with what
//! it last read. Every server has its own time limit; a server that fails or does not answer in
//! time gets an entry with `error` set, and never holds up the others.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::outbound::Outbound;
use crate::proto::guildhall::v1 as pb;
use crate::proto::guildhall::v1::guild_hall_client::GuildHallClient;

/// Most servers one request may query.
pub const MAX_QUERIES: usize = 32;
/// Longest session token accepted in a query, in bytes.
pub const TOKEN_MAX: usize = 512;
/// Most guilds read from one server (their channels are read too).
pub const MAX_GUILDS: usize = 200;
/// Largest `limit` of `ProxiedRecentMentions` (the queried servers' page maximum).
pub const MENTIONS_LIMIT_MAX: i32 = 100;
/// How long connecting to one queried server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `ListChannels` calls in flight to one server at a time.
const CHANNEL_CONCURRENCY: usize = 8;

/// Fans `ProxiedUnread` out to the queried servers; cheap to clone.
#[derive(Debug, Clone)]
pub struct UnreadProxy {
    per_server: Duration,
    outbound: Outbound,
}

/// One checked query.
struct Query {
    url: String,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl UnreadProxy {
    /// A proxy giving each server `per_server` to answer completely, reaching them through
    /// `outbound` (the queried URLs are the caller's: they pass the node's address policy).
    pub fn new(per_server: Duration, outbound: Outbound) -> Self {
        Self {
            per_server,
            outbound,
        }
    }

    /// Checks the queries, starts one task per server and returns the stream of their answers,
    /// in the order they arrive. The stream ends when every server answered or timed out.
    pub fn start(
        &self,
        queries: Vec<pb::ServerQuery>,
    ) -> Result<ReceiverStream<pb::ProxiedUnreadResponse>> {
        self.fan_out(
            queries,
            |outbound, query| async move { fetch(&outbound, &query).await },
            |server, answer| match answer {
                Ok((guilds, channels)) => pb::ProxiedUnreadResponse {
                    server,
                    guilds,
                    channels,
                    error: None,
                },
                Err(error) => pb::ProxiedUnreadResponse {
                    server,
                    guilds: Vec::new(),
                    channels: Vec::new(),
                    error: Some(error),
                },
            },
        )
    }

    /// `ProxiedRecentMentions`: the newest `limit` recent mentions (0: the queried server's
    /// default page) the user has on each queried server, streamed as each server answers.
    pub fn mentions(
        &self,
        queries: Vec<pb::ServerQuery>,
        limit: i32,
    ) -> Result<ReceiverStream<pb::ProxiedRecentMentionsResponse>> {
        if !(0..=MENTIONS_LIMIT_MAX).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be 0 to {MENTIONS_LIMIT_MAX}"),
            ));
        }
        self.fan_out(
            queries,
            move |outbound, query| async move { fetch_mentions(&outbound, &query, limit).await },
            |server, answer| match answer {
                Ok(messages) => pb::ProxiedRecentMentionsResponse {
                    server,
                    messages,
                    error: None,
                },
                Err(error) => pb::ProxiedRecentMentionsResponse {
                    server,
                    messages: Vec::new(),
                    error: Some(error),
                },
            },
        )
    }

    /// Checks `queries`, runs `fetch` for each server in its own task under the per-server time
    /// limit, and streams `answer(server, outcome)` for each as it arrives.
    fn fan_out<T, R, F, Fut>(
        &self,
        queries: Vec<pb::ServerQuery>,
        fetch: F,
        answer: fn(String, std::result::Result<T, String>) -> R,
    ) -> Result<ReceiverStream<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(Outbound, Query) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, String>> + Send + 'static,
    {
        if queries.len() > MAX_QUERIES {
            return Err(Error::invalid(
                "queries",
                format!("at most {MAX_QUERIES} servers per request"),
            ));
        }
        let checked = queries
            .into_iter()
            .enumerate()
            .map(|(i, q)| check(i, q))
            .collect::<Result<Vec<_>>>()?;
        // Room for every answer: a task never waits on a slow reader.
        let (tx, rx) = mpsc::channel(checked.len().max(1));
        for query in checked {
            let (tx, per_server) = (tx.clone(), self.per_server);
            let server = query.url.clone();
            let work = fetch(self.outbound.clone(), query);
            tokio::spawn(async move {
                let outcome = match tokio::time::timeout(per_server, work).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!(
                        "no complete answer within {} ms",
                        per_server.as_millis()
                    )),
                };
                // The client may have gone away; nothing to do then.
                let _ = tx.send(answer(server, outcome)).await;
            });
        }
        Ok(ReceiverStream::new(rx))
    }
}

fn check(i: usize, q: pb::ServerQuery) -> Result<Query> {
    let url = rules::http_url(&q.url)
        .map_err(|rule| Error::invalid(format!("queries[{i}].url"), rule))?;
    let field = format!("queries[{i}].token");
    if q.token.is_empty() || q.token.len() > TOKEN_MAX {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {TOKEN_MAX} bytes (your session token on that server)"),
        ));
    }
    if !q.token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(field, "must be visible ASCII"));
    }
    let authorization = format!("Bearer {}", q.token)
        .parse()
        .map_err(|_| Error::invalid(field, "must be visible ASCII"))?;
    Ok(Query { url, authorization })
}

/// `message` with the user's session on the queried server.
fn authed<T>(query: &Query, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", query.authorization.clone());
    request
}

/// Reads one server's guilds and their channels with the user's session there.
async fn fetch(
    outbound: &Outbound,
    query: &Query,
) -> std::result::Result<(Vec<pb::Guild>, Vec<pb::Channel>), String> {
    let channel = outbound
        .channel(&query.url, CONNECT_TIMEOUT)
        .await
        .map_err(|e| {
            // The same words whatever the cause, so the proxy can't map a network.
            tracing::info!(server = %query.url, error = %e, "ProxiedUnread: unreachable");
            crate::outbound::UNREACHABLE.to_owned()
        })?;
    let client = GuildHallClient::new(channel);
    let mut guilds = client
        .clone()
        .list_guilds(authed(query, pb::ListGuildsRequest {}))
        .await
        .map_err(|s| format!("ListGuilds: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .guilds;
    guilds.truncate(MAX_GUILDS);
    let calls: Vec<_> = guilds
        .iter()
        .map(|g| {
            let request = pb::ListChannelsRequest {
                guild_id: g.id.clone(),
            };
            (client.clone(), authed(query, request))
        })
        .collect();
    let lists: Vec<Vec<pb::Channel>> = futures::stream::iter(calls)
        .map(|(mut client, request)| async move {
            client
                .list_channels(request)
                .await
                .map(|r| r.into_inner().channels)
                .map_err(|s| format!("ListChannels: {:?}: {}", s.code(), s.message()))
        })
        .buffer_unordered(CHANNEL_CONCURRENCY)
        .try_collect()
        .await?;
    Ok((guilds, lists.into_iter().flatten().collect()))
}

/// Reads one server's recent mentions of the user with their session there.
async fn fetch_mentions(
    outbound: &Outbound,
    query: &Query,
    limit: i32,
) -> std::result::Result<Vec<pb::Message>, String> {
    let channel = outbound
        .channel(&query.url, CONNECT_TIMEOUT)
        .await
        .map_err(|e| {
            tracing::info!(server = %query.url, error = %e, "ProxiedRecentMentions: unreachable");
            crate::outbound::UNREACHABLE.to_owned()
        })?;
    let request = pb::ListRecentMentionsRequest {
        limit,
        ..Default::default()
    };
    Ok(GuildHallClient::new(channel)
        .list_recent_mentions(authed(query, request))
        .await
        .map_err(|s| format!("ListRecentMentions: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .messages)
}
