//! IRCv3 `draft/multiline`: a message of several lines travels as one batch, so a paste or a
//! message with line breaks stays one message both ways (no paste links, no flood of separate
//! messages). Lines of a batch join with a line break, or with nothing when a line carries
//! `draft/multiline-concat` (a long line cut to fit IRC's line length).

use super::messages::DmStart;
use super::*;

/// Most bytes of text one multiline batch may carry (`draft/multiline=max-bytes=`); the node's
/// own message length limit (`max_message_length`, characters) still applies.
pub const MULTILINE_MAX_BYTES: usize = 4096;
/// Most lines one multiline batch may carry (`draft/multiline=…,max-lines=`).
pub const MULTILINE_MAX_LINES: usize = 100;

/// A multiline batch the client is sending.
pub(super) struct Incoming {
    reference: String,
    target: String,
    /// The message replied to (`+draft/reply` on the batch's start).
    reply_to: String,
    text: String,
    lines: usize,
    /// The label of the batch's start, answered when the batch ends.
    pub(super) label: Option<String>,
}

/// The `CAP LS 302` value of `draft/multiline`.
pub(super) fn cap_value() -> String {
    format!("draft/multiline=max-bytes={MULTILINE_MAX_BYTES},max-lines={MULTILINE_MAX_LINES}")
}

impl Conn {
    /// `BATCH +ref draft/multiline <target>` opens a batch; `BATCH -ref` sends it.
    pub(super) async fn batch_command(
        &mut self,
        reference: &str,
        kind: Option<irc_proto::command::BatchSubCommand>,
        params: Vec<String>,
        tags: &[Tag],
    ) {
        if let Some(reference) = reference.strip_prefix('+') {
            let is_multiline = kind
                .as_ref()
                .is_some_and(|k| k.to_str().eq_ignore_ascii_case("draft/multiline"));
            if !is_multiline || !self.caps.contains("draft/multiline") {
                self.fail(
                    "BATCH",
                    "INVALID_BATCH",
                    vec![],
                    "Only draft/multiline batches are accepted",
                );
                return;
            }
            let Some(target) = params.first().filter(|t| !t.is_empty()) else {
                self.fail(
                    "BATCH",
                    "MULTILINE_INVALID_TARGET",
                    vec![],
                    "A multiline batch needs a target",
                );
                return;
            };
            if self.multiline.is_some() {
                self.multiline = None;
                self.fail(
                    "BATCH",
                    "MULTILINE_INVALID",
                    vec![],
                    "A multiline batch is already open",
                );
                return;
            }
            self.multiline = Some(Incoming {
                reference: reference.to_owned(),
                target: target.clone(),
                reply_to: tag_value(tags, "+draft/reply").unwrap_or_default(),
                text: String::new(),
                lines: 0,
                label: None,
            });
        } else if let Some(reference) = reference.strip_prefix('-') {
            let open = self.multiline.take_if(|open| open.reference == reference);
            let Some(batch) = open else {
                self.fail("BATCH", "INVALID_BATCH", vec![], "No such batch is open");
                return;
            };
            if batch.lines == 0 {
                self.fail(
                    "BATCH",
                    "MULTILINE_INVALID",
                    vec![],
                    "The batch has no lines",
                );
                return;
            }
            let Some(channel_id) = self.target_channel(&batch.target, DmStart::Ask).await else {
                return;
            };
            let input = SendInput {
                channel_id,
                text: batch.text,
                reply_to: batch.reply_to,
                ..SendInput::default()
            };
            let labeled = batch.label.filter(|_| self.gathered.is_none());
            if labeled.is_some() {
                self.gathered = Some(Vec::new());
            }
            self.send_input(&batch.target, input).await;
            if let Some(label) = labeled {
                self.end_label(label);
            }
        } else {
            self.fail(
                "BATCH",
                "INVALID_BATCH",
                vec![],
                "A batch reference starts with + or -",
            );
        }
    }

    /// Gathers a `PRIVMSG`/`NOTICE` of the open multiline batch; `true` if the line was one
    /// (or belonged to a batch that is not open, and is dropped; or to another batch than the
    /// open one, which ends it with `MULTILINE_INVALID`).
    pub(super) fn multiline_line(&mut self, message: &Message) -> bool {
        let tags = message.tags.as_deref().unwrap_or_default();
        let Some(reference) = tag_value(tags, "batch") else {
            return false;
        };
        let text = match &message.command {
            Command::PRIVMSG(_, text) | Command::NOTICE(_, text) => text,
            _ => return false,
        };
        let Some(open) = self.multiline.as_mut() else {
            // A line of a batch refused earlier: dropped with it.
            return true;
        };
        if open.reference != reference {
            self.multiline = None;
            self.fail(
                "BATCH",
                "MULTILINE_INVALID",
                vec![],
                "A line of another batch inside a multiline batch",
            );
            return true;
        }
        let concat = tags
            .iter()
            .any(|Tag(key, _)| key == "draft/multiline-concat");
        if concat && text.is_empty() {
            // The specification: a blank line can't continue another.
            self.multiline = None;
            self.fail(
                "BATCH",
                "MULTILINE_INVALID",
                vec![],
                "draft/multiline-concat on a blank line",
            );
            return true;
        }
        if open.lines > 0 && !concat {
            open.text.push('\n');
        }
        open.text.push_str(text);
        open.lines += 1;
        let (bytes, lines) = (open.text.len(), open.lines);
        if bytes > MULTILINE_MAX_BYTES {
            self.multiline = None;
            self.fail(
                "BATCH",
                "MULTILINE_MAX_BYTES",
                vec![MULTILINE_MAX_BYTES.to_string()],
                "Multiline batch too long",
            );
        } else if lines > MULTILINE_MAX_LINES {
            self.multiline = None;
            self.fail(
                "BATCH",
                "MULTILINE_MAX_LINES",
                vec![MULTILINE_MAX_LINES.to_string()],
                "Too many lines in the multiline batch",
            );
        }
        true
    }

    /// A message of several lines to a client with `draft/multiline`: one batch whose start
    /// carries the message's `tags` (msgid, time, account, reply).
    pub(super) fn send_multiline(&mut self, nick: &str, target: &str, tags: Vec<Tag>, text: &str) {
        let reference = self.next_batch();
        let from = self.user_prefix(nick);
        self.send(Message {
            tags: (!tags.is_empty()).then_some(tags),
            prefix: Some(from),
            command: Command::Raw(
                "BATCH".into(),
                vec![
                    format!("+{reference}"),
                    "draft/multiline".into(),
                    target.to_owned(),
                ],
            ),
        });
        for (piece, continues) in names::text_pieces(text) {
            let mut line_tags = vec![Tag("batch".into(), Some(reference.clone()))];
            if continues {
                line_tags.push(Tag("draft/multiline-concat".into(), None));
            }
            let from = self.user_prefix(nick);
            self.send(Message {
                tags: Some(line_tags),
                prefix: Some(from),
                command: Command::PRIVMSG(target.to_owned(), piece),
            });
        }
        let server = self.server();
        self.send(Message {
            tags: None,
            prefix: Some(server),
            command: Command::Raw("BATCH".into(), vec![format!("-{reference}")]),
        });
    }
}
