//! The user-field rules of the Users-resource seed, as pure functions.
//!
//! Each returns the normalised value or the rule it broke, phrased to follow the field name in an
//! error message (`display_name: must be 1-32 characters after trimming`). Lengths count Unicode
//! scalar values.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest display name.
pub const DISPLAY_NAME_MAX: usize = 32;
/// Longest webhook name (the seed's webhook rule).
pub const WEBHOOK_NAME_MAX: usize = 80;
/// Shortest and longest IRC-style unique name.
pub const IRC_NAME_LEN: (usize, usize) = (2, 32);
/// Longest bio.
pub const BIO_MAX: usize = 190;
/// Longest pronouns (the Users-resource seed's limit).
pub const PRONOUNS_MAX: usize = 40;
/// Longest device name.
pub const DEVICE_NAME_MAX: usize = 64;
/// Longest URL we store.
pub const URL_MAX: usize = 2048;
/// Most guilds in `guild_order`.
pub const GUILD_ORDER_MAX: usize = 500;
/// Longest guild id in `guild_order`, bytes (ids of other servers' guilds are opaque strings).
pub const GUILD_ORDER_ID_MAX: usize = 128;
/// Shortest and longest channel IRC name (the IRC gateway's channel names).
pub const CHANNEL_IRC_NAME_LEN: (usize, usize) = (2, 32);

/// Names no user may take, compared case-insensitively.
const RESERVED_NAMES: [&str; 3] = ["everyone", "here", "system message"];

/// Characters that render as nothing although their category looks harmless (Hangul fillers,
/// braille blank, combining grapheme joiner, Khmer inherent vowels).
const INVISIBLE: [char; 8] = [
    '\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}', '\u{034F}', '\u{17B4}', '\u{17B5}',
];

/// Which control characters a text field may hold. Every string a client or server sends is
/// checked against one of these (`crate::api::text` for gRPC, the webhook body in
/// `crate::webhooks`), so no field stores or acts on a NUL or an escape sequence, and a search
/// query can't reach the full-text engine with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Single-line fields (names, ids, tokens, URLs, queries, reasons): no control character.
    Single,
    /// Multi-line text (message text, bios, message metadata values): tab, line feed and carriage
    /// return are allowed, other control characters are not.
    Multi,
}

/// Refuses control characters (Unicode category Cc: U+0000-U+001F and U+007F-U+009F) that `lines`
/// does not allow. Field rules may be stricter (names refuse every non-rendering character, bios
/// keep only line feeds).
pub fn no_controls(text: &str, lines: Lines) -> Result<(), String> {
    let allowed = |c: char| lines == Lines::Multi && matches!(c, '\t' | '\n' | '\r');
    match text.chars().find(|&c| c.is_control() && !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "must not contain control characters{} (found U+{:04X})",
            if lines == Lines::Multi {
                " other than tab, line feed and carriage return"
            } else {
                ""
            },
            u32::from(c)
        )),
    }
}

/// Whether `c` is a zero-width, non-rendering or control character. The zero-width joiner is
/// judged by [`check_visible`], which allows it only inside emoji sequences.
fn is_non_rendering(c: char) -> bool {
    if INVISIBLE.contains(&c) {
        return true;
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Unassigned
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Refuses non-rendering characters. A zero-width joiner is allowed only between two visible
/// characters, which is where emoji sequences (👩‍💻) use it; `allow_newlines` lets bios keep
/// line breaks.
fn check_visible(text: &str, allow_newlines: bool) -> Result<(), String> {
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if allow_newlines && c == '\n' {
            continue;
        }
        if c == '\u{200D}' {
            let before = i.checked_sub(1).and_then(|j| chars.get(j));
            let after = chars.get(i + 1);
            let joins = |o: Option<&char>| {
                o.is_some_and(|&x| !x.is_whitespace() && x != '\u{200D}' && !is_non_rendering(x))
            };
            if joins(before) && joins(after) {
                continue;
            }
        }
        if is_non_rendering(c) {
            return Err(format!(
                "must not contain zero-width or non-rendering characters (found U+{:04X})",
                u32::from(c)
            ));
        }
    }
    Ok(())
}

/// Display names: no control characters (not even line breaks), trimmed, inner whitespace runs
/// collapsed to one space, 1-32 characters, no non-rendering characters, and not `everyone`,
/// `here` or `system message`.
pub fn display_name(raw: &str) -> Result<String, String> {
    shown_name(raw, DISPLAY_NAME_MAX)
}

/// Webhook names, and the `username` a webhook post shows: the display-name rules (a webhook is
/// shown beside members, so it may not take a name members can't) with the seed's webhook length,
/// 1-80 characters, and never containing `clyde` in any case.
pub fn webhook_name(raw: &str) -> Result<String, String> {
    let name = shown_name(raw, WEBHOOK_NAME_MAX)?;
    if name.to_lowercase().contains("clyde") {
        return Err("must not contain \"clyde\"".into());
    }
    Ok(name)
}

/// A name shown as a message's sender: trimmed, inner whitespace runs collapsed to one space,
/// 1-`max` characters, no non-rendering characters, and none of the reserved names.
fn shown_name(raw: &str, max: usize) -> Result<String, String> {
    no_controls(raw, Lines::Single)?;
    let normalised = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let len = normalised.chars().count();
    if len == 0 || len > max {
        return Err(format!(
            "must be 1-{max} characters after trimming and collapsing whitespace (got {len})"
        ));
    }
    check_visible(&normalised, false)?;
    let lower = normalised.to_lowercase();
    if RESERVED_NAMES.contains(&lower.as_str()) {
        return Err(format!("{normalised:?} is reserved"));
    }
    Ok(normalised)
}

/// Usernames no one may take: the mention keywords, and names that would pass for the server
/// itself (the seed's "contains discord", for this product).
const RESERVED_USERNAMES: [&str; 2] = ["everyone", "here"];

/// Usernames (`irc_name`, the user's unique name on their homeserver and their IRC nick): the
/// seed's rules for unique usernames, 2-32 characters of lowercase letters, digits, `_` and `.`,
/// no `..`, not `everyone` or `here`, never containing `guildhall`. Uniqueness is checked by the
/// store.
pub fn irc_name(raw: &str) -> Result<String, String> {
    if RESERVED_USERNAMES.contains(&raw) {
        return Err(format!("{raw:?} is reserved"));
    }
    if raw.contains("guildhall") {
        return Err("must not contain \"guildhall\"".into());
    }
    let len = raw.chars().count();
    let (min, max) = IRC_NAME_LEN;
    if len < min || len > max {
        return Err(format!("must be {min}-{max} characters (got {len})"));
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        return Err("may contain only lowercase letters a-z, digits, '_' and '.'".into());
    }
    if raw.contains("..") {
        return Err("must not contain two consecutive periods".into());
    }
    Ok(raw.to_owned())
}

/// Names of guilds, channels, folders and roles: trimmed, whitespace collapsed, 1-`max`
/// characters, no non-rendering characters.
pub fn name(raw: &str, max: usize) -> Result<String, String> {
    no_controls(raw, Lines::Single)?;
    let normalised = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let len = normalised.chars().count();
    if len == 0 || len > max {
        return Err(format!(
            "must be 1-{max} characters after trimming (got {len})"
        ));
    }
    check_visible(&normalised, false)?;
    Ok(normalised)
}

/// Channel IRC names: 2-32 characters of lowercase letters, digits, `_`, `-` and `.`, no `..`.
pub fn channel_irc_name(raw: &str) -> Result<String, String> {
    let len = raw.chars().count();
    let (min, max) = CHANNEL_IRC_NAME_LEN;
    if !(min..=max).contains(&len) {
        return Err(format!("must be {min}-{max} characters (got {len})"));
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
    {
        return Err("may contain only lowercase letters a-z, digits, '_', '-' and '.'".into());
    }
    if raw.contains("..") {
        return Err("must not contain two consecutive periods".into());
    }
    Ok(raw.to_owned())
}

/// Role colours: empty, or `#` and six hex digits.
pub fn color(raw: &str) -> Result<String, String> {
    let ok = raw.is_empty()
        || (raw.len() == 7
            && raw.starts_with('#')
            && raw[1..].chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err("must be empty or \"#rrggbb\"".into())
    }
}

/// Pronouns: one line of at most [`PRONOUNS_MAX`] characters, trimmed, no non-rendering
/// characters; empty clears them.
pub fn pronouns(raw: &str) -> Result<String, String> {
    no_controls(raw, Lines::Single)?;
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len > PRONOUNS_MAX {
        return Err(format!(
            "must be at most {PRONOUNS_MAX} characters (got {len})"
        ));
    }
    check_visible(trimmed, false)?;
    Ok(trimmed.to_owned())
}

/// Accent colours: `#` and six hex digits, as the colour's number `0xRRGGBB`; empty clears it
/// (`None`).
pub fn accent_color(raw: &str) -> Result<Option<u32>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let hex = raw
        .strip_prefix('#')
        .filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or("must be empty or \"#rrggbb\"")?;
    u32::from_str_radix(hex, 16)
        .map(Some)
        .map_err(|_| "must be empty or \"#rrggbb\"".into())
}

/// Bios: at most [`BIO_MAX`] characters; line breaks allowed, other non-rendering characters not.
pub fn bio(raw: &str) -> Result<String, String> {
    let len = raw.chars().count();
    if len > BIO_MAX {
        return Err(format!("must be at most {BIO_MAX} characters (got {len})"));
    }
    check_visible(raw, true)?;
    Ok(raw.to_owned())
}

/// Device names: 1-64 characters, trimmed, no non-rendering characters.
pub fn device_name(raw: &str) -> Result<String, String> {
    no_controls(raw, Lines::Single)?;
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > DEVICE_NAME_MAX {
        return Err(format!(
            "must be 1-{DEVICE_NAME_MAX} characters (got {len})"
        ));
    }
    check_visible(trimmed, false)?;
    Ok(trimmed.to_owned())
}

/// An `http` or `https` URL with a host, at most 2048 bytes: server addresses, avatar URLs.
pub fn http_url(raw: &str) -> Result<String, String> {
    no_controls(raw, Lines::Single)?;
    if raw.len() > URL_MAX {
        return Err(format!("must be at most {URL_MAX} bytes"));
    }
    let uri: http::Uri = raw
        .parse()
        .map_err(|_| "must be an absolute http:// or https:// URL".to_string())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err("must be an absolute http:// or https:// URL".into());
    }
    Ok(raw.to_owned())
}

/// An avatar URL: empty (no avatar) or an http(s) URL.
pub fn avatar_url(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        Ok(String::new())
    } else {
        http_url(raw)
    }
}

/// `guild_order`: empty, or a JSON array of at most 500 guild id strings.
pub fn guild_order(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let ids: Vec<String> = serde_json::from_str(raw)
        .map_err(|_| "must be a JSON array of guild id strings".to_string())?;
    if ids.len() > GUILD_ORDER_MAX {
        return Err(format!("must list at most {GUILD_ORDER_MAX} guilds"));
    }
    if ids
        .iter()
        .any(|id| id.is_empty() || id.len() > GUILD_ORDER_ID_MAX)
    {
        return Err(format!("guild ids must be 1-{GUILD_ORDER_ID_MAX} bytes"));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(
            display_name("  Ada   Lovelace ").as_deref(),
            Ok("Ada Lovelace")
        );
        assert_eq!(
            display_name("👩\u{200D}💻 dev").as_deref(),
            Ok("👩\u{200D}💻 dev")
        );
        assert!(display_name("   ").is_err());
        assert!(display_name(&"x".repeat(33)).is_err());
        assert!(display_name(&"é".repeat(32)).is_ok());
        assert!(display_name("a\u{200B}b").is_err());
        assert!(display_name("\u{200D}ab").is_err());
        assert!(display_name("a\u{3164}").is_err());
        assert!(display_name("Everyone").is_err());
        assert!(display_name("system  message").is_err());
        assert!(display_name("here!").is_ok());
    }

    #[test]
    fn webhook_names_follow_the_display_name_rules() {
        assert_eq!(webhook_name("  Deploy   bot ").as_deref(), Ok("Deploy bot"));
        assert!(webhook_name(&"w".repeat(80)).is_ok());
        assert!(webhook_name(&"w".repeat(81)).is_err());
        assert!(webhook_name("").is_err());
        for reserved in ["everyone", "HERE", "System  Message"] {
            assert!(webhook_name(reserved).is_err(), "{reserved}");
        }
        assert!(webhook_name("My CLYDE").is_err());
        assert!(webhook_name("a\u{200B}b").is_err());
        assert!(
            webhook_name("a\nb").is_err(),
            "a line break is a control character"
        );
        assert!(webhook_name("a\u{0}b").is_err());
    }

    #[test]
    fn control_characters() {
        assert!(no_controls("plain text, ünïcode 👩\u{200D}💻", Lines::Single).is_ok());
        assert!(no_controls("line\r\nnext\tcell", Lines::Multi).is_ok());
        for bad in [
            "a\nb",
            "\t",
            "nul\u{0}",
            "esc\u{1b}[2J",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let rule = no_controls(bad, Lines::Single).expect_err(bad);
            assert!(
                rule.starts_with("must not contain control characters"),
                "{rule}"
            );
        }
        for bad in ["nul\u{0}", "bell\u{7}", "del\u{7f}", "c1\u{9b}"] {
            assert!(no_controls(bad, Lines::Multi).is_err(), "{bad:?}");
        }
        assert!(display_name("Ada\tLovelace").is_err());
        assert!(name("general\u{0}", 100).is_err());
        assert!(device_name("phone\n").is_err());
    }

    #[test]
    fn irc_names() {
        assert!(irc_name("ada.l_2").is_ok());
        assert!(irc_name("a").is_err());
        assert!(irc_name(&"a".repeat(33)).is_err());
        assert!(irc_name("Ada").is_err());
        assert!(irc_name("a..b").is_err());
        assert!(irc_name("a-b").is_err());
    }

    #[test]
    fn entity_names_colors_and_channel_irc_names() {
        assert_eq!(name("  General  chat ", 100).as_deref(), Ok("General chat"));
        assert!(name("", 100).is_err());
        assert!(name(&"n".repeat(101), 100).is_err());
        assert!(color("#FF8800").is_ok() && color("").is_ok());
        assert!(color("red").is_err() && color("#ff880").is_err());
        assert!(channel_irc_name("dev-chat").is_ok());
        assert!(channel_irc_name("Dev").is_err());
    }

    #[test]
    fn bios_urls_and_guild_order() {
        assert!(bio("line one\nline two").is_ok());
        assert!(bio(&"b".repeat(190)).is_ok());
        assert!(bio(&"b".repeat(191)).is_err());
        assert!(bio("x\u{202E}y").is_err());
        assert!(http_url("https://chat.example.org").is_ok());
        assert!(http_url("ftp://chat.example.org").is_err());
        assert!(http_url("chat.example.org").is_err());
        assert!(avatar_url("").is_ok());
        assert!(guild_order("[\"g1\",\"g2\"]").is_ok());
        assert!(guild_order("{}").is_err());
    }
}
