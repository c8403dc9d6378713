//! Who is reachable live: users with at least one `SubscribeEvents` stream open on this node.
//!
//! This is the push rule for "online": a user with an open event stream sees new messages as they
//! happen, so a push would only duplicate them; a user without one gets pushes. Presence status
//! (`SignalOnline`, `UpdatePresence`) is what the user *tells* others, and a client that crashed
//! never says `SignalOffline`, so it is not used here. The count is per user, across devices: one
//! open stream on any device means no pushes to any of the user's distributors. The streams are
//! counted where they are opened ([`OpenStreams`], which also bounds them per user); this reads
//! those counts.

use crate::events::stream::OpenStreams;

/// Whether users have a live stream open, read from the event streams' own counts.
#[derive(Debug, Clone)]
pub struct OnlineUsers {
    streams: OpenStreams,
}

impl OnlineUsers {
    /// Online means a stream counted in `streams`.
    pub fn new(streams: OpenStreams) -> Self {
        Self { streams }
    }

    /// Whether `user_id` has a live stream open now.
    pub fn is_online(&self, user_id: &str) -> bool {
        self.streams.count(user_id) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_while_a_stream_is_open() {
        let streams = OpenStreams::new(4);
        let online = OnlineUsers::new(streams.clone());
        assert!(!online.is_online("a"));
        let first = streams.open("a").expect("slot");
        let second = streams.open("a").expect("slot");
        assert!(online.is_online("a"));
        assert!(!online.is_online("b"));
        drop(first);
        assert!(online.is_online("a"), "one stream is still open");
        drop(second);
        assert!(!online.is_online("a"));
    }
}
