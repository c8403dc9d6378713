//! What programs post to a webhook, in the shapes they already speak, so an integration written for
//! Discord or Slack posts here without change (`docs/WEBHOOKS.md`).
//!
//! Three shapes are one JSON object: guildhall's own and Discord's execute-webhook body
//! (`content`, `username`, `avatar_url`, `embeds`, …) and Slack's incoming-webhook body (`text`,
//! `blocks`, `attachments`, `icon_url`, …). Each becomes one [`Post`]: the message text, and the
//! name and avatar it shows. Rich parts a chat message here can't hold (Discord embeds, Slack
//! blocks and attachments) are rendered into the text; what the node can't honour (text to speech,
//! mention filters, components, threads, emoji icons, channel overrides) is accepted and ignored.
//! A member no shape knows is refused by name, so a typo doesn't vanish silently.
//!
//! Slack's form encoding (`payload=<the JSON>` as `application/x-www-form-urlencoded`) is read too.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

/// A refusal of a body: the field and the rule, as every refusal of the node names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// Where it went wrong: `body`, `content`, …
    pub field: &'static str,
    /// What the body must be.
    pub rule: String,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// How the body was sent, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json` (or a `+json` type).
    Json,
    /// `application/x-www-form-urlencoded` with a `payload` field holding the JSON (Slack).
    Form,
}

impl Encoding {
    /// The encoding a `Content-Type` names; `None` for one the endpoint does not read (415).
    pub fn of(content_type: &str) -> Option<Self> {
        let mime: mime::Mime = content_type.parse().ok()?;
        match (mime.type_(), mime.subtype(), mime.suffix()) {
            (mime::APPLICATION, mime::JSON, _) | (mime::APPLICATION, _, Some(mime::JSON)) => {
                Some(Self::Json)
            }
            (mime::APPLICATION, mime::WWW_FORM_URLENCODED, _) => Some(Self::Form),
            _ => None,
        }
    }
}

/// One webhook post, ready for [`crate::webhooks::Webhooks::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// The message text, rich parts rendered in. May be empty: the length rules are the
    /// message's own, checked where messages are made.
    pub content: String,
    /// The name shown instead of the webhook's, if given.
    pub username: Option<String>,
    /// The avatar shown instead of the webhook's, if given.
    pub avatar_url: Option<String>,
}

/// Every member of the three shapes. The `_` ones are accepted and dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    // guildhall and Discord.
    content: Option<String>,
    username: Option<String>,
    avatar_url: Option<String>,
    embeds: Option<Vec<Value>>,
    #[serde(rename = "tts")]
    _tts: Option<IgnoredAny>,
    #[serde(rename = "allowed_mentions")]
    _allowed_mentions: Option<IgnoredAny>,
    #[serde(rename = "components")]
    _components: Option<IgnoredAny>,
    #[serde(rename = "flags")]
    _flags: Option<IgnoredAny>,
    #[serde(rename = "thread_name")]
    _thread_name: Option<IgnoredAny>,
    #[serde(rename = "applied_tags")]
    _applied_tags: Option<IgnoredAny>,
    #[serde(rename = "poll")]
    _poll: Option<IgnoredAny>,
    // Slack (whose `attachments` share Discord's name: Discord's, file references, have no text).
    text: Option<String>,
    blocks: Option<Vec<Value>>,
    attachments: Option<Vec<Value>>,
    icon_url: Option<String>,
    #[serde(rename = "icon_emoji")]
    _icon_emoji: Option<IgnoredAny>,
    #[serde(rename = "channel")]
    _channel: Option<IgnoredAny>,
    #[serde(rename = "thread_ts")]
    _thread_ts: Option<IgnoredAny>,
    #[serde(rename = "mrkdwn")]
    _mrkdwn: Option<IgnoredAny>,
    #[serde(rename = "unfurl_links")]
    _unfurl_links: Option<IgnoredAny>,
    #[serde(rename = "unfurl_media")]
    _unfurl_media: Option<IgnoredAny>,
    #[serde(rename = "link_names")]
    _link_names: Option<IgnoredAny>,
    #[serde(rename = "parse")]
    _parse: Option<IgnoredAny>,
    #[serde(rename = "response_type")]
    _response_type: Option<IgnoredAny>,
    #[serde(rename = "replace_original")]
    _replace_original: Option<IgnoredAny>,
    #[serde(rename = "delete_original")]
    _delete_original: Option<IgnoredAny>,
}

/// Reads a body sent as `encoding`.
pub fn parse(encoding: Encoding, bytes: &[u8]) -> Result<Post, BodyError> {
    let body: Body = match encoding {
        Encoding::Json => serde_json::from_slice(bytes).map_err(malformed)?,
        Encoding::Form => {
            let payload = url::form_urlencoded::parse(bytes)
                .find(|(name, _)| name == "payload")
                .ok_or_else(|| BodyError {
                    field: "payload",
                    rule: "a form-encoded body must have a `payload` field holding the JSON".into(),
                })?;
            serde_json::from_str(&payload.1).map_err(malformed)?
        }
    };
    body.into_post()
}

fn malformed(e: serde_json::Error) -> BodyError {
    BodyError {
        field: "body",
        rule: format!("must be a JSON object of the members in docs/WEBHOOKS.md: {e}"),
    }
}

impl Body {
    fn into_post(self) -> Result<Post, BodyError> {
        if self.content.is_some() && self.text.is_some() {
            return Err(BodyError {
                field: "text",
                rule: "give `content` or Slack's `text`, not both".into(),
            });
        }
        let mut parts: Vec<String> = self
            .content
            .or(self.text)
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect();
        parts.extend(self.embeds.iter().flatten().filter_map(embed));
        parts.extend(
            self.attachments
                .iter()
                .flatten()
                .filter_map(slack_attachment),
        );
        let blocks: Vec<String> = self.blocks.iter().flatten().filter_map(block).collect();
        if !blocks.is_empty() {
            parts.push(blocks.join("\n"));
        }
        Ok(Post {
            content: parts.join("\n\n"),
            username: self.username,
            avatar_url: self.avatar_url.or(self.icon_url),
        })
    }
}

/// The string at `key` of an object, if it is a non-empty string.
fn text_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key)?.as_str().filter(|s| !s.trim().is_empty())
}

/// Lines of `name: value` pairs under `list_key`, each pair's keys given.
fn pairs(value: &Value, list_key: &str, name_key: &str, value_key: &str) -> Vec<String> {
    let Some(list) = value.get(list_key).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(
            |pair| match (text_at(pair, name_key), text_at(pair, value_key)) {
                (Some(name), Some(value)) => Some(format!("**{name}**: {value}")),
                (Some(only), None) | (None, Some(only)) => Some(only.to_owned()),
                (None, None) => None,
            },
        )
        .collect()
}

/// A Discord embed as text: author, title (and its link), description, fields, footer.
fn embed(e: &Value) -> Option<String> {
    let mut lines = Vec::new();
    if let Some(author) = e.get("author").and_then(|a| text_at(a, "name")) {
        lines.push(author.to_owned());
    }
    match (text_at(e, "title"), text_at(e, "url")) {
        (Some(title), Some(url)) => lines.push(format!("**{title}** <{url}>")),
        (Some(title), None) => lines.push(format!("**{title}**")),
        (None, Some(url)) => lines.push(format!("<{url}>")),
        (None, None) => {}
    }
    lines.extend(text_at(e, "description").map(str::to_owned));
    lines.extend(pairs(e, "fields", "name", "value"));
    if let Some(footer) = e.get("footer").and_then(|f| text_at(f, "text")) {
        lines.push(format!("_{footer}_"));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// A Slack (legacy) attachment as text: pretext, title (and its link), text, fields, footer; its
/// `fallback` only when it has none of those.
fn slack_attachment(a: &Value) -> Option<String> {
    let mut lines = Vec::new();
    lines.extend(text_at(a, "pretext").map(str::to_owned));
    match (text_at(a, "title"), text_at(a, "title_link")) {
        (Some(title), Some(link)) => lines.push(format!("**{title}** <{link}>")),
        (Some(title), None) => lines.push(format!("**{title}**")),
        _ => {}
    }
    lines.extend(text_at(a, "text").map(str::to_owned));
    lines.extend(pairs(a, "fields", "title", "value"));
    lines.extend(text_at(a, "footer").map(|f| format!("_{f}_")));
    if lines.is_empty() {
        lines.extend(text_at(a, "fallback").map(str::to_owned));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// A Slack Block Kit block as text: a header or section's text and fields, a context's texts.
/// Other blocks (images, actions, dividers, rich text) carry nothing a text message shows.
fn block(b: &Value) -> Option<String> {
    let text_of = |object: &Value| text_at(object, "text").map(str::to_owned);
    let mut lines = Vec::new();
    match text_at(b, "type")? {
        "header" => lines.extend(b.get("text").and_then(text_of).map(|t| format!("**{t}**"))),
        "section" => {
            lines.extend(b.get("text").and_then(text_of));
            if let Some(fields) = b.get("fields").and_then(Value::as_array) {
                lines.extend(fields.iter().filter_map(text_of));
            }
        }
        "context" => {
            if let Some(elements) = b.get("elements").and_then(Value::as_array) {
                lines.extend(elements.iter().filter_map(text_of));
            }
        }
        _ => {}
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Result<Post, BodyError> {
        parse(Encoding::Json, body.as_bytes())
    }

    #[test]
    fn the_three_shapes_become_one_post() {
        let own = json(r#"{"content": "hi", "username": "CI", "avatar_url": "https://a/b.png"}"#)
            .expect("own");
        assert_eq!(
            own,
            Post {
                content: "hi".into(),
                username: Some("CI".into()),
                avatar_url: Some("https://a/b.png".into())
            }
        );
        let discord = json(
            r#"{"content": "deploy", "tts": false, "allowed_mentions": {"parse": []},
                "embeds": [{"title": "v1.2", "url": "https://x/r", "description": "ok",
                            "color": 5814783, "fields": [{"name": "env", "value": "prod",
                            "inline": true}], "footer": {"text": "bot"}}]}"#,
        )
        .expect("discord");
        assert_eq!(
            discord.content,
            "deploy\n\n**v1.2** <https://x/r>\nok\n**env**: prod\n_bot_"
        );
        let slack = json(
            r#"{"text": "alert", "icon_url": "https://i/x.png", "icon_emoji": ":fire:",
                "mrkdwn": true, "attachments": [{"fallback": "fb", "color": "danger",
                "title": "disk", "text": "92%"}], "blocks": [{"type": "header", "text":
                {"type": "plain_text", "text": "Disk"}}, {"type": "divider"}, {"type":
                "section", "text": {"type": "mrkdwn", "text": "*db1* is full"}}]}"#,
        )
        .expect("slack");
        assert_eq!(
            slack.content,
            "alert\n\n**disk**\n92%\n\n**Disk**\n*db1* is full"
        );
        assert_eq!(slack.avatar_url.as_deref(), Some("https://i/x.png"));
    }

    #[test]
    fn slack_form_payloads_are_read() {
        let post = parse(
            Encoding::Form,
            b"payload=%7B%22text%22%3A%20%22hello%20there%22%7D",
        )
        .expect("form");
        assert_eq!(post.content, "hello there");
        assert_eq!(
            parse(Encoding::Form, b"text=hi")
                .expect_err("no payload")
                .field,
            "payload"
        );
    }

    #[test]
    fn unknown_members_and_doubled_text_are_refused_by_name() {
        let unknown = json(r#"{"content": "x", "extra": 1}"#).expect_err("unknown");
        assert_eq!(unknown.field, "body");
        assert!(unknown.rule.contains("extra"), "{unknown}");
        assert_eq!(
            json(r#"{"content": "x", "text": "y"}"#)
                .expect_err("both")
                .field,
            "text"
        );
        assert_eq!(json("not json").expect_err("json").field, "body");
    }

    #[test]
    fn content_types() {
        assert_eq!(Encoding::of("application/json"), Some(Encoding::Json));
        assert_eq!(
            Encoding::of("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::of("application/x-www-form-urlencoded"),
            Some(Encoding::Form)
        );
        assert_eq!(Encoding::of("text/plain"), None);
        assert_eq!(Encoding::of("multipart/form-data; boundary=x"), None);
    }
}
