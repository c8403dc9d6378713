//! Handlers for webhook management.

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::proto::guildhall::v1 as pb;
use crate::store::webhooks::WebhookRecord;
use crate::webhooks::Webhooks;

type Reply<T> = Result<Response<T>, Status>;

fn webhook(w: &WebhookRecord, token: String) -> pb::Webhook {
    pb::Webhook {
        id: w.id.clone(),
        channel_id: w.channel_id.clone(),
        guild_id: w.guild_id.clone(),
        name: w.name.clone(),
        avatar_url: (!w.avatar_url.is_empty()).then(|| w.avatar_url.clone()),
        token,
        creator_id: w.creator_id.clone(),
    }
}

pub async fn create(w: &Webhooks, r: Request<pb::CreateWebhookRequest>) -> Reply<pb::Webhook> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let (hook, token) = w
        .create(&s, &r.channel_id, &r.name, r.avatar_url.as_deref())
        .await?;
    Ok(Response::new(webhook(&hook, token)))
}

pub async fn list(
    w: &Webhooks,
    r: Request<pb::ListWebhooksRequest>,
) -> Reply<pb::ListWebhooksResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let hooks = w.list(&s, &r.guild_id, r.channel_id.as_deref()).await?;
    // Tokens are shown only at creation; the node keeps only their hashes.
    Ok(Response::new(pb::ListWebhooksResponse {
        webhooks: hooks.iter().map(|h| webhook(h, String::new())).collect(),
    }))
}

pub async fn update(w: &Webhooks, r: Request<pb::UpdateWebhookRequest>) -> Reply<pb::Webhook> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let hook = w
        .update(
            &s,
            &r.webhook_id,
            r.name.as_deref(),
            r.avatar_url.as_deref(),
            r.channel_id.as_deref(),
        )
        .await?;
    Ok(Response::new(webhook(&hook, String::new())))
}

pub async fn delete(w: &Webhooks, r: Request<pb::DeleteWebhookRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    w.delete(&s, &r.get_ref().webhook_id).await?;
    Ok(Response::new(pb::Empty {}))
}
