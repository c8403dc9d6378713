//! What a line from a client must be before it is handled: UTF-8 (the gateway says `UTF8ONLY`),
//! at most 510 bytes after its tags (modern IRC: 512 with the CRLF), and at most 4094 bytes of
//! tag data (IRCv3 `message-tags`). A line that is not is refused on its own, with the reply the
//! specifications name, and the connection goes on.

use super::*;

/// Most bytes of a client line after its tags, without the CRLF (modern IRC's 512 with it).
pub(super) const MAX_BODY: usize = 510;
/// Most bytes of a client's tags with the leading `@` and the space after them (`message-tags`:
/// 4094 bytes of tag data).
pub(super) const MAX_CLIENT_TAGS: usize = 4096;

/// Why a line is refused unhandled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not UTF-8: `FAIL <command> INVALID_UTF8` (IRCv3 `UTF8ONLY`).
    NotUtf8,
    /// Over a length limit: `417 ERR_INPUTTOOLONG`.
    TooLong,
}

/// The line as text if it may be handled.
pub(super) fn check(bytes: &[u8]) -> Result<&str, Refusal> {
    let line = std::str::from_utf8(bytes).map_err(|_| Refusal::NotUtf8)?;
    let (tags, body) = match line.strip_prefix('@') {
        Some(rest) => match rest.split_once(' ') {
            Some((tags, body)) => (tags.len() + 2, body.trim_start_matches(' ')),
            None => (line.len(), ""),
        },
        None => (0, line),
    };
    if tags > MAX_CLIENT_TAGS || body.len() > MAX_BODY {
        return Err(Refusal::TooLong);
    }
    Ok(line)
}

impl Conn {
    /// Answers a line refused by [`check`], labeled if it carried a label.
    pub(super) fn refuse_line(&mut self, bytes: &[u8], refusal: Refusal) {
        let lossy = String::from_utf8_lossy(bytes);
        let parsed = lossy.parse::<Message>().ok();
        let label = self.begin_label(parsed.as_ref().and_then(|m| m.tags.as_ref()));
        match refusal {
            Refusal::NotUtf8 => {
                let verb = parsed.map_or_else(|| "*".to_owned(), |m| verb_of(&m.command));
                self.fail(
                    &verb,
                    "INVALID_UTF8",
                    Vec::new(),
                    "Message rejected: it is not valid UTF-8",
                );
            }
            Refusal::TooLong => {
                self.numeric_raw("417", vec!["Input line was too long".into()]);
            }
        }
        if let Some(label) = label {
            self.end_label(label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_utf8_and_within_the_limits() {
        assert_eq!(check(b"PRIVMSG #a :hi"), Ok("PRIVMSG #a :hi"));
        assert_eq!(check(b"PRIVMSG #a :hi\xaa"), Err(Refusal::NotUtf8));
        let at_limit = format!("PING {}", "x".repeat(MAX_BODY - 5));
        assert_eq!(check(at_limit.as_bytes()), Ok(at_limit.as_str()));
        let over = format!("PING {}", "x".repeat(MAX_BODY - 4));
        assert_eq!(check(over.as_bytes()), Err(Refusal::TooLong));
        // Tags count apart from the rest: a full body behind tags is fine, big tags are not.
        let tagged = format!("@label=a {at_limit}");
        assert_eq!(check(tagged.as_bytes()), Ok(tagged.as_str()));
        let big_tags = format!("@+x={} PRIVMSG #a :hi", "a".repeat(4096));
        assert_eq!(check(big_tags.as_bytes()), Err(Refusal::TooLong));
    }
}
