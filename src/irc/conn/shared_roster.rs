//! One roster read per role change for all connections. A `role_updated` event reaches every
//! IRC connection that was shown the guild, and each works out every member's prefixes again:
//! read alone, 1,000 connections in a 1,000-member guild would read 1,000 member lists for one
//! change. The gateway keeps the last read per guild, tagged with the event it was read for,
//! and a connection handling that event (or an earlier one) takes it instead of reading.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::*;
use roster::Listed;

/// Most guilds whose last roster is kept.
const GUILDS_KEPT: usize = 64;

/// A roster read once, for whoever asks first.
type Shared = Arc<OnceCell<Arc<Vec<Listed>>>>;

/// The last roster read per guild for a role change, with the event id it was read for.
#[derive(Debug, Default)]
pub(in crate::irc) struct SharedRosters {
    by_guild: Mutex<HashMap<String, (u64, Shared)>>,
}

impl SharedRosters {
    /// The roster of `guild` for event `event_id`: one read after that event serves every
    /// connection handling it or an earlier one (a read after an event shows it and all before).
    fn cell(&self, guild: &str, event_id: u64) -> Shared {
        let mut map = self.by_guild.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((read_for, cell)) = map.get(guild)
            && *read_for >= event_id
        {
            return cell.clone();
        }
        if map.len() >= GUILDS_KEPT && !map.contains_key(guild) {
            let oldest = map
                .iter()
                .min_by_key(|(_, (read_for, _))| *read_for)
                .map(|(g, _)| g.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        let cell = Shared::default();
        map.insert(guild.to_owned(), (event_id, cell.clone()));
        cell
    }
}

impl Conn {
    /// The guild's members and prefixes as of event `event_id`, read once for all connections.
    pub(super) async fn roster_after(&self, guild_id: &str, event_id: u64) -> Arc<Vec<Listed>> {
        let cell = self.gateway.rosters.cell(guild_id, event_id);
        cell.get_or_init(|| async { Arc::new(self.roster(guild_id).await) })
            .await
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_serves_its_event_and_earlier_ones_not_later_ones() {
        let rosters = SharedRosters::default();
        let first = rosters.cell("g", 10);
        assert!(Arc::ptr_eq(&first, &rosters.cell("g", 10)));
        assert!(
            Arc::ptr_eq(&first, &rosters.cell("g", 7)),
            "an earlier event"
        );
        let later = rosters.cell("g", 11);
        assert!(!Arc::ptr_eq(&first, &later), "a later event reads again");
        assert!(!Arc::ptr_eq(&later, &rosters.cell("h", 11)), "per guild");
    }

    #[test]
    fn only_so_many_guilds_are_kept() {
        let rosters = SharedRosters::default();
        for i in 0..(GUILDS_KEPT as u64 + 10) {
            rosters.cell(&format!("g{i}"), i);
        }
        let map = rosters.by_guild.lock().expect("lock");
        assert_eq!(map.len(), GUILDS_KEPT);
        assert!(!map.contains_key("g0"), "the oldest read went first");
    }
}
