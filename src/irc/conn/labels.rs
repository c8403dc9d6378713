//! IRCv3 `labeled-response`: what a labeled command made the gateway send goes back tied to its
//! label: nothing as an `ACK`, one line with the `label` tag, more inside a `labeled-response`
//! batch. While a labeled command is handled, [`Conn::send`] gathers lines instead of queueing
//! them; events wait (one connection handles one thing at a time), so nothing else is mixed in.

use super::*;

/// Longest label accepted, in bytes (the specification's limit).
pub const LABEL_MAX: usize = 64;

impl Conn {
    /// Starts gathering the answer to a command labeled `label`, if the client asked for labels.
    pub(super) fn begin_label(&mut self, tags: Option<&Vec<Tag>>) -> Option<String> {
        if !self.caps.contains("labeled-response") {
            return None;
        }
        let label = tags?
            .iter()
            .find(|Tag(key, _)| key == "label")
            .and_then(|Tag(_, value)| value.clone())
            .filter(|v| !v.is_empty() && v.len() <= LABEL_MAX)?;
        self.gathered = Some(Vec::new());
        Some(label)
    }

    /// Sends what was gathered for `label`.
    pub(super) fn end_label(&mut self, label: String) {
        let lines = self.gathered.take().unwrap_or_default();
        let tag = Tag("label".into(), Some(label));
        match lines.len() {
            0 => {
                let ack = Message {
                    tags: Some(vec![tag]),
                    prefix: Some(self.server()),
                    command: Command::Raw("ACK".into(), Vec::new()),
                };
                self.send(ack);
            }
            1 => {
                let mut only = lines.into_iter().next().expect("one line");
                only.tags.get_or_insert_with(Vec::new).push(tag);
                self.send(only);
            }
            _ => {
                let reference = self.next_batch();
                self.send(Message {
                    tags: Some(vec![tag]),
                    prefix: Some(self.server()),
                    command: Command::BATCH(
                        format!("+{reference}"),
                        Some(irc_proto::command::BatchSubCommand::CUSTOM(
                            "labeled-response".into(),
                        )),
                        None,
                    ),
                });
                for mut line in lines {
                    // Lines of an inner batch stay in it; the inner batch's own start and end
                    // lines are in this one.
                    let tags = line.tags.get_or_insert_with(Vec::new);
                    if !tags.iter().any(|Tag(key, _)| key == "batch") {
                        tags.push(Tag("batch".into(), Some(reference.clone())));
                    }
                    self.send(line);
                }
                self.send(Message {
                    tags: None,
                    prefix: Some(self.server()),
                    command: Command::BATCH(format!("-{reference}"), None, None),
                });
            }
        }
    }
}
