//! Guilds and channels by name: a person remembers "Engines" and "#general", not
//! `1147639712000000`. An argument written as an id (decimal digits) is used as it is; anything
//! else is looked up among the guilds the user is a member of, and must name exactly one: an
//! ambiguous name is refused with the candidates and their ids, so the person can pick.
//!
//! Channels are written `name`, `#name`, or `Guild#name` to look only in one guild.
//!
//! Without `--server`, a name is looked up on every server the identity file holds a session
//! for (the homeserver first), so a user of one node talks in a guild hosted on another by its
//! name alone; the command then acts on the server where the name was found.

use anyhow::{Result, bail};
use guildhall::proto::guildhall::v1 as pb;

use super::store::CliFile;
use super::{Session, Target};

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

/// The guilds `arg` names on this session's server, each as its id and how to show it.
async fn guild_candidates(s: &mut Session, arg: &str) -> Result<Vec<(String, String)>> {
    let all = guilds(s).await?;
    Ok(named(&all, arg, |g| &g.name)
        .into_iter()
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect())
}

/// The id of the guild `arg` names (an id, or the name of one of the user's guilds).
pub(crate) async fn guild(s: &mut Session, arg: &str) -> Result<String> {
    if is_id(arg) {
        return Ok(arg.to_owned());
    }
    let found = guild_candidates(s, arg).await?;
    pick("guild", arg, found)
}

/// The channels `arg` names on this session's server (`name`, `#name` or `Guild#name`), each as
/// its id and how to show it.
async fn channel_candidates(s: &mut Session, arg: &str) -> Result<Vec<(String, String)>> {
    let (in_guild, name) = match arg.split_once('#') {
        Some((guild, name)) if !guild.is_empty() => (Some(guild), name),
        _ => (None, arg.trim_start_matches('#')),
    };
    if name.is_empty() {
        bail!("{arg:?} names no channel: write `general`, `#general` or `Guild#general`");
    }
    let all = guilds(s).await?;
    let scope: Vec<pb::Guild> = match in_guild {
        Some(g) if is_id(g) => all.into_iter().filter(|x| x.id == g).collect(),
        Some(g) => named(&all, g, |x| &x.name).into_iter().cloned().collect(),
        None => all,
    };
    let mut candidates = Vec::new();
    for g in scope {
        for c in s.channels(g.id.clone()).await? {
            candidates.push((g.name.clone(), c));
        }
    }
    Ok(named(&candidates, name, |(_, c)| &c.name)
        .into_iter()
        .map(|(guild, c)| (c.id.clone(), format!("{guild}#{}", c.name)))
        .collect())
}

/// The id of the channel `arg` names: an id, `name` or `#name` in any of the user's guilds, or
/// `Guild#name` in that guild only.
pub(crate) async fn channel(s: &mut Session, arg: &str) -> Result<String> {
    if is_id(arg) {
        return Ok(arg.to_owned());
    }
    let found = channel_candidates(s, arg).await?;
    pick("channel", arg, found)
}

/// What is being looked up.
#[derive(Clone, Copy)]
enum Kind {
    Guild,
    Channel,
}

/// A session on the server where `arg` names one guild, and that guild's id.
pub(crate) async fn open_guild(target: &Target, arg: &str) -> Result<(Session, String)> {
    open_where(target, arg, Kind::Guild).await
}

/// A session on the server where `arg` names one channel, and that channel's id.
pub(crate) async fn open_channel(target: &Target, arg: &str) -> Result<(Session, String)> {
    open_where(target, arg, Kind::Channel).await
}

/// Opens the session `target` names and resolves `arg` there; without `--server`, and for a
/// name rather than an id, looks on every saved session's server instead and opens the one where
/// it names exactly one thing.
async fn open_where(target: &Target, arg: &str, kind: Kind) -> Result<(Session, String)> {
    let resolve = |mut s: Session| async move {
        let id = match kind {
            Kind::Guild => guild(&mut s, arg).await?,
            Kind::Channel => channel(&mut s, arg).await?,
        };
        Ok::<_, anyhow::Error>((s, id))
    };
    let servers = match &target.server {
        Some(_) => Vec::new(),
        None if is_id(arg) => Vec::new(),
        None => {
            let file = CliFile::load(&target.id.identity)?;
            let mut servers: Vec<String> = file.sessions.iter().map(|s| s.server.clone()).collect();
            // The homeserver first: its answers come first in a list of candidates.
            servers.sort_by_key(|s| !file.is_home(s));
            servers
        }
    };
    if servers.len() < 2 {
        return resolve(Session::open(target).await?).await;
    }
    let (word, plural) = match kind {
        Kind::Guild => ("guild", "guilds"),
        Kind::Channel => ("channel", "channels"),
    };
    // (the server's target, the id, how to show it)
    let mut found: Vec<(Target, String, String)> = Vec::new();
    let mut unreachable = Vec::new();
    for server in servers {
        let on = Target {
            server: Some(server.clone()),
            ..target.clone()
        };
        let looked = async {
            let mut s = Session::open(&on).await?;
            match kind {
                Kind::Guild => guild_candidates(&mut s, arg).await,
                Kind::Channel => channel_candidates(&mut s, arg).await,
            }
        };
        match looked.await {
            Ok(candidates) => found.extend(
                candidates
                    .into_iter()
                    .map(|(id, shown)| (on.clone(), id, shown)),
            ),
            Err(err) => unreachable.push(format!("{server} ({err:#})")),
        }
    }
    match found.len() {
        1 => {
            let (on, id, _) = found.remove(0);
            Ok((Session::open(&on).await?, id))
        }
        0 if !unreachable.is_empty() => bail!(
            "you are in no {word} named {arg:?} on the servers that answered; could not look on {}",
            unreachable.join(", ")
        ),
        0 => bail!(
            "you are in no {word} named {arg:?} on any of your servers (see `guildhall guild list --server …`)"
        ),
        n => {
            let list: Vec<String> = found
                .iter()
                .map(|(on, id, shown)| format!("  {id}  {shown}  on {}", on.server()))
                .collect();
            bail!(
                "{arg:?} names {n} {plural}; give one of these ids instead, with --server:\n{}",
                list.join("\n")
            )
        }
    }
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
