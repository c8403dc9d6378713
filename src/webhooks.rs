//! Webhooks: a channel URL programs post messages to, with no user account.
//!
//! Managing webhooks needs `webhooks.manage`. The token is shown once, at creation, and stored
//! only as a hash; a program posts with `POST /webhooks/{id}/{token}` (see `api::http` and
//! `docs/WEBHOOKS.md`). A webhook's name, and the `username` a post shows instead, follow the
//! display-name rules with the webhook length ([`rules::webhook_name`]), and every message a
//! webhook posts is marked as the webhook's (`Message.webhook_id`), so it can't pass as a member.

use crate::accounts::{rules, tokens};
use crate::error::{Error, Result};
use crate::guilds::{Guilds, permissions};
use crate::identity::freshness::now_ms;
use crate::messages::Messages;
use crate::store::messages::MessageView;
use crate::store::webhooks::{self as db, WebhookRecord};
use crate::store::{SessionInfo, guilds as gdb};

/// Checks a webhook name (or a post's `username`) given in `field`; returns it normalised.
pub fn check_name(field: &str, raw: &str) -> Result<String> {
    rules::webhook_name(raw).map_err(|rule| Error::invalid(field, rule))
}

/// The webhook operations of one node.
#[derive(Debug, Clone)]
pub struct Webhooks {
    guilds: Guilds,
    messages: Messages,
}

impl Webhooks {
    /// Webhooks over the guild and message machinery.
    pub fn new(guilds: Guilds, messages: Messages) -> Self {
        Self { guilds, messages }
    }

    async fn load(&self, webhook_id: &str) -> Result<WebhookRecord> {
        if webhook_id.is_empty() {
            return Err(Error::invalid("webhook_id", "is required"));
        }
        let id = webhook_id.to_owned();
        self.guilds
            .store()
            .read(move |c| db::get(c, &id))
            .await?
            .ok_or_else(|| Error::NotFound("webhook_id: no such webhook".into()))
    }

    /// `CreateWebhook`: returns the webhook and its token (shown only now).
    pub async fn create(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        name: &str,
        avatar_url: Option<&str>,
    ) -> Result<(WebhookRecord, String)> {
        let name = check_name("name", name)?;
        let avatar_url = avatar_url
            .map(|u| rules::avatar_url(u).map_err(|rule| Error::invalid("avatar_url", rule)))
            .transpose()?
            .unwrap_or_default();
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::WEBHOOKS_MANAGE)?;
        let token = tokens::generate();
        let webhook = WebhookRecord {
            id: self.guilds.ids().next_string(),
            guild_id: channel.guild_id,
            channel_id: channel.id,
            name,
            avatar_url,
            creator_id: caller.user_id.clone(),
            created_at: now_ms(),
        };
        let (w, hash) = (webhook.clone(), tokens::hash(&token));
        self.guilds
            .store()
            .write(move |tx| db::insert(tx, &w, &hash))
            .await?;
        Ok((webhook, token))
    }

    /// `ListWebhooks`.
    pub async fn list(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        channel_id: Option<&str>,
    ) -> Result<Vec<WebhookRecord>> {
        let access = self.guilds.access(guild_id, &caller.user_id).await?;
        access.require(permissions::WEBHOOKS_MANAGE)?;
        let (g, ch) = (
            guild_id.to_owned(),
            channel_id.filter(|c| !c.is_empty()).map(str::to_owned),
        );
        Ok(self
            .guilds
            .store()
            .read(move |c| db::list(c, &g, ch.as_deref()))
            .await?)
    }

    /// `UpdateWebhook`.
    pub async fn update(
        &self,
        caller: &SessionInfo,
        webhook_id: &str,
        name: Option<&str>,
        avatar_url: Option<&str>,
        channel_id: Option<&str>,
    ) -> Result<WebhookRecord> {
        let name = name.map(|n| check_name("name", n)).transpose()?;
        let avatar_url = avatar_url
            .map(|u| rules::avatar_url(u).map_err(|rule| Error::invalid("avatar_url", rule)))
            .transpose()?;
        let mut webhook = self.load(webhook_id).await?;
        let access = self
            .guilds
            .access(&webhook.guild_id, &caller.user_id)
            .await?;
        access.require(permissions::WEBHOOKS_MANAGE)?;
        if let Some(channel_id) = channel_id {
            let id = channel_id.to_owned();
            let channel = self
                .guilds
                .store()
                .read(move |c| gdb::channel(c, &id))
                .await?;
            match channel {
                Some(ch) if ch.guild_id == webhook.guild_id => webhook.channel_id = ch.id,
                _ => {
                    return Err(Error::invalid(
                        "channel_id",
                        "is not a channel of the webhook's guild",
                    ));
                }
            }
        }
        if let Some(name) = name {
            webhook.name = name;
        }
        if let Some(avatar_url) = avatar_url {
            webhook.avatar_url = avatar_url;
        }
        let w = webhook.clone();
        self.guilds
            .store()
            .write(move |tx| db::update(tx, &w))
            .await?;
        Ok(webhook)
    }

    /// `DeleteWebhook`.
    pub async fn delete(&self, caller: &SessionInfo, webhook_id: &str) -> Result<()> {
        let webhook = self.load(webhook_id).await?;
        let access = self
            .guilds
            .access(&webhook.guild_id, &caller.user_id)
            .await?;
        access.require(permissions::WEBHOOKS_MANAGE)?;
        self.guilds
            .store()
            .write(move |tx| db::delete(tx, &webhook.id))
            .await?;
        Ok(())
    }

    /// Posts a message as the webhook whose id and token are given.
    pub async fn execute(
        &self,
        webhook_id: &str,
        token: &str,
        content: &str,
        username: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<MessageView> {
        let (id, hash) = (webhook_id.to_owned(), tokens::hash(token));
        let webhook = self
            .guilds
            .store()
            .read(move |c| db::authenticate(c, &id, &hash))
            .await?
            .ok_or_else(|| {
                Error::Unauthenticated("webhook: unknown webhook or wrong token".into())
            })?;
        let name = username
            .map(|n| check_name("username", n))
            .transpose()?
            .unwrap_or_else(|| webhook.name.clone());
        let avatar = avatar_url
            .map(|u| rules::avatar_url(u).map_err(|rule| Error::invalid("avatar_url", rule)))
            .transpose()?
            .unwrap_or_else(|| webhook.avatar_url.clone());
        self.messages
            .post_webhook(&webhook, content, name, avatar)
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::check_name("name", "Deploy bot").is_ok());
        assert!(super::check_name("name", "My CLYDE").is_err());
        assert!(super::check_name("name", &"w".repeat(81)).is_err());
        assert!(super::check_name("name", "").is_err());
        let reserved = super::check_name("username", "everyone").expect_err("reserved");
        assert!(reserved.to_string().starts_with("username: "), "{reserved}");
    }
}
