//! Guilds and channels by name: a person remembers "Engines" and "#general", not
//! `1147639712000000`. An argument written as an id (decimal digits) is used as it is; anything
//! else is looked up among the guilds the user is a member of, and must name exactly one: an
//! ambiguous name is refused with the candidates and their ids, so the person can pick.
//!
//! Channels are written `name`, `#name`, or `Guild#name` to look only in one guild.

use anyhow::{Result, bail};
use guildhall::proto::guildhall::v1 as pb;

use super::Session;

/// Whether `arg` is written as an id, which needs no lookup.
fn is_id(arg: &str) -> bool {
    !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit())
}

/// The entries whose name is `name`: exact matches if any, else matches ignoring case.
fn named<'a, T>(items: &'a [T], name: &str, name_of: impl Fn(&T) -> &str) -> Vec<&'a T> {
    let exact: Vec<&T> = items.iter().filter(|i| name_of(i) == name).collect();
    if !exact.is_empty() {
        return exact;
    }
    items
        .iter()
        .filter(|i| name_of(i).to_lowercase() == name.to_lowercase())
        .collect()
}

/// The one id among `found` (each an id and how to show it), or an error for a person: nothing
/// matched, or several did (listed, so they can pick an id).
fn pick(kind: &str, asked: &str, found: Vec<(String, String)>) -> Result<String> {
    match found.len() {
        0 => bail!(
            "you are in no {kind} named {asked:?} (see `guildhall guild list` and `guildhall channel list`)"
        ),
        1 => Ok(found
            .into_iter()
            .map(|(id, _)| id)
            .next()
            .unwrap_or_default()),
        n => {
            let list: Vec<String> = found
                .iter()
                .map(|(id, shown)| format!("  {id}  {shown}"))
                .collect();
            bail!(
                "{asked:?} names {n} {kind}s; give one of these ids instead:\n{}",
                list.join("\n")
            )
        }
    }
}

/// The user's guilds.
async fn guilds(s: &mut Session) -> Result<Vec<pb::Guild>> {
    Ok(rpc!(s, list_guilds, pb::ListGuildsRequest {})?
        .into_inner()
        .guilds)
}

/// The id of the guild `arg` names (an id, or the name of one of the user's guilds).
pub(crate) async fn guild(s: &mut Session, arg: &str) -> Result<String> {
    if is_id(arg) {
        return Ok(arg.to_owned());
    }
    let all = guilds(s).await?;
    let found = named(&all, arg, |g| &g.name)
        .into_iter()
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect();
    pick("guild", arg, found)
}

/// The id of the channel `arg` names: an id, `name` or `#name` in any of the user's guilds, or
/// `Guild#name` in that guild only.
pub(crate) async fn channel(s: &mut Session, arg: &str) -> Result<String> {
    if is_id(arg) {
        return Ok(arg.to_owned());
    }
    let (in_guild, name) = match arg.split_once('#') {
        Some((guild, name)) if !guild.is_empty() => (Some(guild), name),
        _ => (None, arg.trim_start_matches('#')),
    };
    if name.is_empty() {
        bail!("{arg:?} names no channel: write `general`, `#general` or `Guild#general`");
    }
    let all = guilds(s).await?;
    let scope: Vec<pb::Guild> = match in_guild {
        Some(g) => {
            let id = guild(s, g).await?;
            all.into_iter().filter(|x| x.id == id).collect()
        }
        None => all,
    };
    let mut candidates = Vec::new();
    for g in scope {
        for c in s.channels(g.id.clone()).await? {
            candidates.push((g.name.clone(), c));
        }
    }
    let found = named(&candidates, name, |(_, c)| &c.name)
        .into_iter()
        .map(|(guild, c)| (c.id.clone(), format!("{guild}#{}", c.name)))
        .collect();
    pick("channel", arg, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_ids_and_names_match_exactly_first() {
        assert!(is_id("1147639712000000"));
        assert!(!is_id("general") && !is_id("") && !is_id("#1"));
        let names = ["General", "general", "Random"];
        assert_eq!(named(&names, "general", |n| n), vec![&"general"]);
        assert_eq!(named(&names, "RANDOM", |n| n), vec![&"Random"]);
        assert_eq!(named(&names, "GENERAL", |n| n).len(), 2);
    }

    #[test]
    fn an_ambiguous_name_lists_the_candidates() {
        let err = pick(
            "channel",
            "general",
            vec![
                ("1".into(), "Engines#general".into()),
                ("2".into(), "Looms#general".into()),
            ],
        )
        .expect_err("ambiguous");
        let text = err.to_string();
        assert!(text.contains("names 2 channels"), "{text}");
        assert!(text.contains("  1  Engines#general"), "{text}");
        assert!(text.contains("  2  Looms#general"), "{text}");
        assert_eq!(
            pick("guild", "x", vec![("7".into(), "x".into())]).ok(),
            Some("7".into())
        );
    }
}
