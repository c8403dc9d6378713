//! How the node's guilds, channels and users are named on IRC (`docs/IRC.md`).
//!
//! A channel with an `irc_name` appears as `#<guild id>/<irc_name>`: channel irc_names are unique
//! per guild only (every guild has a `#general`), and guild names are not unique, so the guild's id
//! namespaces them. The operator's default guild (`irc_default_guild`) drops the prefix: its
//! channels are plain `#<irc_name>`. Nicks are users' usernames (`irc_name`), unique on the node;
//! a user without one (a member from another node that has none) shows as `u` and the first 8 hex
//! digits of their id. The casemapping is `ascii`.

/// Longest channel name the gateway makes: `#`, a guild id, `/`, an irc_name.
pub const CHANNEL_LEN: usize = 64;
/// Longest nick: a username is at most 32 characters.
pub const NICK_LEN: usize = 32;
/// Longest text of one outgoing PRIVMSG line, in bytes: the 512-byte line minus room for the
/// longest source, command and target the gateway writes.
pub const TEXT_CHUNK: usize = 400;

/// A channel's IRC name.
pub fn channel_name(default_guild: Option<&str>, guild_id: &str, irc_name: &str) -> String {
    if default_guild == Some(guild_id) {
        format!("#{irc_name}")
    } else {
        format!("#{guild_id}/{irc_name}")
    }
}

/// What an IRC channel name points at: `(guild id or None for the default guild, irc_name)`,
/// lowercased (the ascii casemapping); `None` for a name the gateway never makes.
pub fn parse_channel(name: &str) -> Option<(Option<String>, String)> {
    let rest = name.strip_prefix('#')?.to_ascii_lowercase();
    if rest.is_empty() || name.len() > CHANNEL_LEN {
        return None;
    }
    match rest.split_once('/') {
        Some((guild, channel))
            if !guild.is_empty()
                && guild.bytes().all(|b| b.is_ascii_digit())
                && !channel.is_empty() =>
        {
            Some((Some(guild.to_owned()), channel.to_owned()))
        }
        Some(_) => None,
        None => Some((None, rest)),
    }
}

/// A user's nick: their username, or `u` and the start of their id.
pub fn nick(user_id: &str, irc_name: Option<&str>) -> String {
    match irc_name {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!("u{}", user_id.get(..8).unwrap_or(user_id)),
    }
}

/// The IRC lines of a message's text: one per line of the text, each cut into pieces of at most
/// [`TEXT_CHUNK`] bytes on a space where there is one, never inside a UTF-8 character; empty
/// lines are kept as a single space so a blank line stays visible.
pub fn text_lines(text: &str) -> Vec<String> {
    text_pieces(text)
        .into_iter()
        .map(|(piece, _)| piece)
        .collect()
}

/// [`text_lines`], each piece saying whether it continues the previous one (a line cut in
/// pieces: `draft/multiline-concat`) rather than starting a new line of the text.
pub fn text_pieces(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r').replace(['\r', '\0'], "");
        if line.is_empty() {
            out.push((" ".to_owned(), false));
            continue;
        }
        let mut rest = line.as_str();
        let mut continues = false;
        while rest.len() > TEXT_CHUNK {
            let mut cut = TEXT_CHUNK;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            // Prefer the last space in the piece, unless that leaves it short.
            if let Some(space) = rest[..cut].rfind(' ')
                && space > TEXT_CHUNK / 2
            {
                cut = space + 1;
            }
            out.push((rest[..cut].to_owned(), continues));
            continues = true;
            rest = &rest[cut..];
        }
        out.push((rest.to_owned(), continues));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        assert_eq!(channel_name(Some("7"), "7", "general"), "#general");
        assert_eq!(channel_name(Some("7"), "8", "general"), "#8/general");
        assert_eq!(
            parse_channel("#8/General"),
            Some((Some("8".into()), "general".into()))
        );
        assert_eq!(parse_channel("#general"), Some((None, "general".into())));
        assert_eq!(parse_channel("#x/general"), None);
        assert_eq!(parse_channel("general"), None);
        assert_eq!(parse_channel("#"), None);
    }

    #[test]
    fn long_text_splits_on_spaces_and_characters() {
        let word = "é".repeat(150); // 300 bytes
        let text = format!("{word} {word}\nsecond\n\nfourth");
        let lines = text_lines(&text);
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], format!("{word} "));
        assert_eq!(lines[1], word);
        assert_eq!(&lines[2..], ["second", " ", "fourth"]);
        let solid = "あ".repeat(500); // 1500 bytes, no spaces
        let pieces = text_lines(&solid);
        assert!(pieces.iter().all(|p| p.len() <= TEXT_CHUNK));
        assert_eq!(pieces.concat(), solid);
    }

    #[test]
    fn nicks() {
        assert_eq!(nick(&"ab".repeat(32), Some("ada")), "ada");
        assert_eq!(nick(&"ab".repeat(32), None), "uabababab");
    }
}
