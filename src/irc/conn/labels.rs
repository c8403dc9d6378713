//! IRCv3 `labeled-response`: what a labeled command made the gateway send goes back tied to its
//! label: nothing as an `ACK`, one line or one batch with the `label` tag on it (a batch on its
//! start), more inside a `labeled-response` batch. While a labeled command is handled, [`Conn::send`] gathers lines instead of queueing
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
            _ if is_one_batch(&lines) => {
                // One batch of its own kind (a multiline echo, a history batch): its start
                // carries the label, as a single line would.
                let mut lines = lines.into_iter();
                if let Some(mut start) = lines.next() {
                    start.tags.get_or_insert_with(Vec::new).push(tag);
                    self.send(start);
                }
                for line in lines {
                    self.send(line);
                }
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

/// Whether `lines` are one whole batch: its start, lines inside it (or in batches inside it),
/// its end.
fn is_one_batch(lines: &[Message]) -> bool {
    let reference = |line: &Message, sign: char| match &line.command {
        Command::BATCH(r, ..) => r.strip_prefix(sign).map(str::to_owned),
        Command::Raw(verb, args) if verb == "BATCH" => args
            .first()
            .and_then(|r| r.strip_prefix(sign))
            .map(str::to_owned),
        _ => None,
    };
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return false;
    };
    let (Some(opened), Some(closed)) = (reference(first, '+'), reference(last, '-')) else {
        return false;
    };
    if opened != closed || lines.len() < 2 {
        return false;
    }
    // Every line between is in this batch or in one opened inside it.
    let mut inside = HashSet::from([opened]);
    lines[1..lines.len() - 1].iter().all(|line| {
        let in_batch = line
            .tags
            .as_deref()
            .and_then(|tags| tag_value(tags, "batch"))
            .is_some_and(|b| inside.contains(&b));
        if in_batch && let Some(nested) = reference(line, '+') {
            inside.insert(nested);
        }
        in_batch
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Message {
        text.parse().expect("a test line")
    }

    #[test]
    fn one_batch_is_told_apart_from_several_lines() {
        let batch = [
            line("BATCH +b1 draft/multiline #a"),
            line("@batch=b1 PRIVMSG #a :one"),
            line("@batch=b1 PRIVMSG #a :two"),
            line("BATCH -b1"),
        ];
        assert!(is_one_batch(&batch));
        let nested = [
            line("BATCH +b1 chathistory #a"),
            line("@batch=b1 BATCH +b2 draft/multiline #a"),
            line("@batch=b2 PRIVMSG #a :one"),
            line("@batch=b1 BATCH -b2"),
            line("BATCH -b1"),
        ];
        assert!(is_one_batch(&nested));
        let outside = [
            line("BATCH +b1 draft/multiline #a"),
            line("PRIVMSG #a :stray"),
            line("BATCH -b1"),
        ];
        assert!(!is_one_batch(&outside));
        let two = [
            line("BATCH +b1 x"),
            line("BATCH -b1"),
            line("BATCH +b2 x"),
            line("BATCH -b2"),
        ];
        assert!(!is_one_batch(&two));
        assert!(!is_one_batch(&[
            line("PRIVMSG #a :x"),
            line("PRIVMSG #a :y")
        ]));
    }
}
