//! Content, as server admins remove it: a guild, a channel or a message (through the same domain
//! paths, and so with the same events, as members' own removals), and uploaded files put in
//! quarantine.

use super::Admin;
use crate::error::{Error, Result};

/// What the content operations need besides the guilds: messages and uploads.
#[derive(Debug, Clone)]
pub struct ContentView {
    /// Messages (deleting one logs `message_deleted`).
    pub messages: crate::messages::Messages,
    /// Uploads (quarantine).
    pub media: crate::media::Media,
}

impl Admin {
    /// The admin operations with the content handles.
    pub fn with_content(mut self, content: ContentView) -> Self {
        self.content = Some(content);
        self
    }

    fn content(&self) -> Result<&ContentView> {
        self.content
            .as_ref()
            .ok_or_else(|| Error::Unimplemented("content: this service runs outside a node".into()))
    }

    /// `DeleteGuild`: members are removed (each gets `member_removed`), then the guild with
    /// everything in it. Answers how many members were removed.
    pub async fn delete_guild(&self, guild_id: &str) -> Result<usize> {
        self.guilds.remove_guild(guild_id).await
    }

    /// `DeleteChannel`: the channel and its threads (`channel_deleted` for each). Answers the ids.
    pub async fn delete_channel(&self, channel_id: &str) -> Result<Vec<String>> {
        self.guilds.remove_channel(channel_id).await
    }

    /// `DeleteMessage`: as `DeleteMessage` with `messages.manage` would (`message_deleted`).
    pub async fn delete_message(&self, channel_id: &str, message_id: &str) -> Result<()> {
        self.content()?
            .messages
            .remove_as_admin(channel_id, message_id)
            .await
    }

    /// `QuarantineFile`: the file's bytes (and its thumbnail's) are no longer served.
    pub async fn quarantine_file(&self, actor: &str, file_id: &str) -> Result<usize> {
        self.content()?.media.quarantine(file_id, actor).await
    }
}
