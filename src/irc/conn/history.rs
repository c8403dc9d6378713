//! `draft/chathistory`: a client asks for a channel's or a DM's history (to fill the gap after a
//! reconnect, or to scroll back), answered from the node's history in a `chathistory` batch.
//! References are `msgid=<the node's message id>` or `timestamp=<ISO 8601 UTC>`; a message id
//! is `(ms << 16) | sequence`, so a timestamp is an id bound.

use irc_proto::message::Tag;
use irc_proto::{Command, Message};

use super::Conn;
use crate::messages::HISTORY_PAGE_MAX;
use crate::proto::guildhall::v1 as pb;

/// Most messages one CHATHISTORY request returns (`ISUPPORT CHATHISTORY=`).
pub const CHATHISTORY_MAX: u32 = HISTORY_PAGE_MAX;
/// Bits of a message id below its milliseconds (`crate::ids`).
pub(super) const SEQUENCE_BITS: u32 = 16;

/// A parsed message reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    /// `*`: no bound.
    Open,
    /// A message id: bounds exclude it.
    Id(u64),
    /// A time (ms): bounds are the ids of that millisecond.
    Time(u64),
}

impl Ref {
    fn parse(text: &str) -> Option<Ref> {
        if text == "*" {
            return Some(Ref::Open);
        }
        if let Some(id) = text.strip_prefix("msgid=") {
            return id.parse().ok().map(Ref::Id);
        }
        text.strip_prefix("timestamp=")
            .and_then(parse_time)
            .map(Ref::Time)
    }

    /// The largest id strictly before this reference.
    fn below(self) -> u64 {
        match self {
            Ref::Open => u64::MAX,
            Ref::Id(id) => id,
            Ref::Time(ms) => ms << SEQUENCE_BITS,
        }
    }

    /// The smallest id strictly after this reference, minus one (history bounds are exclusive).
    fn above(self) -> u64 {
        match self {
            Ref::Open => 0,
            Ref::Id(id) => id,
            Ref::Time(ms) => (ms << SEQUENCE_BITS) | ((1 << SEQUENCE_BITS) - 1),
        }
    }
}

/// An RFC 3339 time (`YYYY-MM-DDThh:mm:ss(.sss)Z`) as ms since the epoch.
pub(super) fn parse_time(text: &str) -> Option<u64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Which way to read from a bound.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// Newest first, below the bound.
    Older,
    /// Oldest first, above the bound.
    Newer,
}

impl Conn {
    /// Sends a standard-replies `FAIL CHATHISTORY <code> …`.
    fn history_fail(&mut self, code: &str, context: Vec<String>, text: &str) {
        self.fail("CHATHISTORY", code, context, text);
    }

    /// `CHATHISTORY <subcommand> …`.
    pub(super) async fn chathistory(&mut self, args: Vec<String>) {
        let Some(sub) = args.first().map(|s| s.to_ascii_uppercase()) else {
            self.history_fail("NEED_MORE_PARAMS", vec![], "Missing subcommand");
            return;
        };
        if sub == "TARGETS" {
            self.history_targets(&args).await;
            return;
        }
        let arity = match sub.as_str() {
            "LATEST" | "BEFORE" | "AFTER" | "AROUND" => 4,
            "BETWEEN" => 5,
            _ => {
                self.history_fail("INVALID_PARAMS", vec![sub], "Unknown subcommand");
                return;
            }
        };
        if args.len() < arity {
            self.history_fail("NEED_MORE_PARAMS", vec![sub], "Missing parameters");
            return;
        }
        let target = args[1].clone();
        let limit = match args[arity - 1].parse::<u32>() {
            Ok(n) => n.clamp(1, CHATHISTORY_MAX),
            Err(_) => {
                self.history_fail("INVALID_PARAMS", vec![sub, target], "Invalid limit");
                return;
            }
        };
        let refs: Option<Vec<Ref>> = args[2..arity - 1].iter().map(|r| Ref::parse(r)).collect();
        let Some(refs) = refs else {
            self.history_fail(
                "INVALID_PARAMS",
                vec![sub, target],
                "Invalid message reference (msgid=… or timestamp=…)",
            );
            return;
        };
        if sub != "LATEST" && refs.contains(&Ref::Open) {
            self.history_fail("INVALID_PARAMS", vec![sub, target], "Only LATEST takes *");
            return;
        }
        let channel_id = if target.starts_with('#') {
            self.resolve(&target).await.map(|c| c.id)
        } else {
            self.dm_channel(&target, super::messages::DmStart::Never)
                .await
                .ok()
        };
        let Some(channel_id) = channel_id else {
            self.history_fail("INVALID_TARGET", vec![sub, target], "No such channel or DM");
            return;
        };
        let found = match sub.as_str() {
            "LATEST" => {
                let floor = refs[0].above();
                let mut newest = self.read(&channel_id, u64::MAX, Way::Older, limit).await;
                if refs[0] != Ref::Open {
                    newest.retain(|m| id_of(m) > floor);
                }
                newest
            }
            "BEFORE" => {
                self.read(&channel_id, refs[0].below(), Way::Older, limit)
                    .await
            }
            "AFTER" => {
                self.read(&channel_id, refs[0].above(), Way::Newer, limit)
                    .await
            }
            "AROUND" => {
                let before = self
                    .read(&channel_id, refs[0].below(), Way::Older, limit / 2)
                    .await;
                // From the reference on, itself included.
                let start = refs[0].below().saturating_sub(1);
                let rest = limit - u32::try_from(before.len()).unwrap_or(limit);
                let mut around = self.read(&channel_id, start, Way::Newer, rest).await;
                around.extend(before);
                around
            }
            _ => {
                // BETWEEN, in either order; bounds exclusive.
                let (a, b) = (refs[0], refs[1]);
                if a.above() <= b.below() {
                    let mut found = self.read(&channel_id, a.above(), Way::Newer, limit).await;
                    found.retain(|m| id_of(m) < b.below());
                    found
                } else {
                    let mut found = self.read(&channel_id, a.below(), Way::Older, limit).await;
                    found.retain(|m| id_of(m) > b.above());
                    found
                }
            }
        };
        self.send_history(&target, found).await;
    }

    /// Up to `limit` messages of `channel_id` beyond the exclusive bound `from`.
    async fn read(&self, channel_id: &str, from: u64, way: Way, limit: u32) -> Vec<pb::Message> {
        if limit == 0 {
            return Vec::new();
        }
        let cursor = match (way, from) {
            (Way::Older, u64::MAX) | (Way::Newer, 0) => String::new(),
            (_, id) => format!("c{id:x}"),
        };
        let session = self.session();
        let limit = i32::try_from(limit).unwrap_or(1);
        match self
            .gateway
            .messages
            .history(
                &session,
                channel_id,
                &cursor,
                limit,
                matches!(way, Way::Newer),
            )
            .await
        {
            Ok(page) => page.messages.iter().map(crate::convert::message).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "CHATHISTORY read refused");
                Vec::new()
            }
        }
    }

    /// Sends `messages` oldest first, in a `chathistory` batch when the client took `batch`.
    async fn send_history(&mut self, target: &str, mut messages: Vec<pb::Message>) {
        messages.sort_by_key(id_of);
        messages.dedup_by_key(|m| id_of(m));
        let batch = self.caps.contains("batch").then(|| self.next_batch());
        if let Some(reference) = &batch {
            let server = self.server();
            self.send(Message {
                tags: None,
                prefix: Some(server),
                command: Command::Raw(
                    "BATCH".into(),
                    vec![
                        format!("+{reference}"),
                        "chathistory".into(),
                        target.to_owned(),
                    ],
                ),
            });
        }
        for message in messages {
            // In a DM, the other member's messages are to the user; the user's to them.
            let to = if target.starts_with('#') || message.sender_id == self.me().id {
                target.to_owned()
            } else {
                self.nick.clone()
            };
            let extra = batch
                .as_ref()
                .map(|b| vec![Tag("batch".into(), Some(b.clone()))])
                .unwrap_or_default();
            self.send_message_lines(&message, &to, extra).await;
        }
        if let Some(reference) = batch {
            let server = self.server();
            self.send(Message {
                tags: None,
                prefix: Some(server),
                command: Command::Raw("BATCH".into(), vec![format!("-{reference}")]),
            });
        }
    }

    /// `CHATHISTORY TARGETS <timestamp> <timestamp> <limit>`: the joined channels and DMs with
    /// messages between the two times, each with its latest message's time.
    async fn history_targets(&mut self, args: &[String]) {
        if args.len() < 4 {
            self.history_fail(
                "NEED_MORE_PARAMS",
                vec!["TARGETS".into()],
                "Missing parameters",
            );
            return;
        }
        let (Some(a), Some(b)) = (Ref::parse(&args[1]), Ref::parse(&args[2])) else {
            self.history_fail(
                "INVALID_PARAMS",
                vec!["TARGETS".into()],
                "Invalid timestamps",
            );
            return;
        };
        let limit = args[3].parse::<usize>().unwrap_or(0).clamp(1, 100);
        let (low, high) = if a.above() <= b.below() {
            (a.above(), b.below())
        } else {
            (b.above(), a.below())
        };
        let mut targets: Vec<(String, String)> = self
            .joined
            .iter()
            .map(|(id, j)| (id.clone(), j.name.clone()))
            .collect();
        for (channel, peer) in self.dms.clone() {
            if let Some(peer) = peer {
                let nick = self.nick_of(&peer, "").await;
                targets.push((channel, nick));
            }
        }
        let mut found = Vec::new();
        for (channel, name) in targets {
            if let Some(latest) = self.read(&channel, high, Way::Older, 1).await.pop()
                && id_of(&latest) > low
            {
                found.push((id_of(&latest), name));
            }
        }
        found.sort_unstable();
        found.truncate(limit);
        let reference = self.next_batch();
        let server = self.server();
        let with_batch = self.caps.contains("batch");
        if with_batch {
            self.send(Message {
                tags: None,
                prefix: Some(server.clone()),
                command: Command::Raw(
                    "BATCH".into(),
                    vec![format!("+{reference}"), "draft/chathistory-targets".into()],
                ),
            });
        }
        for (id, name) in found {
            let time = super::ms_time(id >> SEQUENCE_BITS);
            self.send(Message {
                tags: with_batch.then(|| vec![Tag("batch".into(), Some(reference.clone()))]),
                prefix: Some(server.clone()),
                command: Command::Raw(
                    "CHATHISTORY".into(),
                    // A bare timestamp here (not `timestamp=`), as the specification's
                    // examples and other servers write it.
                    vec!["TARGETS".into(), name, time],
                ),
            });
        }
        if with_batch {
            self.send(Message {
                tags: None,
                prefix: Some(server),
                command: Command::Raw("BATCH".into(), vec![format!("-{reference}")]),
            });
        }
    }
}

/// A message's id as a number (0 for one that is not: never from the node).
fn id_of(message: &pb::Message) -> u64 {
    message.id.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_times() {
        assert_eq!(Ref::parse("*"), Some(Ref::Open));
        assert_eq!(Ref::parse("msgid=42"), Some(Ref::Id(42)));
        assert_eq!(
            Ref::parse("timestamp=2026-01-01T00:00:00.005Z"),
            Some(Ref::Time(1_767_225_600_005))
        );
        assert_eq!(
            Ref::parse("timestamp=2000-02-29T12:00:00Z"),
            Some(Ref::Time(951_825_600_000))
        );
        assert_eq!(Ref::parse("msgid=x"), None);
        assert_eq!(Ref::parse("timestamp=yesterday"), None);
        let t = Ref::Time(1);
        assert!(t.below() < t.above());
    }
}
