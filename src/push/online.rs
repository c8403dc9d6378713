//! Who is reachable live: users with at least one `SubscribeEvents` stream open on this node.
//!
//! This is the push rule for "online": a user with an open event stream sees new messages as they
//! happen, so a push would only duplicate them; a user without one gets pushes. Presence status
//! (`SignalOnline`, `UpdatePresence`) is what the user *tells* others, and a client that crashed
//! never says `SignalOffline`, so it is not used here. The count is per user, across devices: one
//! open stream on any device means no pushes to any of the user's distributors.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;

/// Open live streams per user.
#[derive(Debug, Clone, Default)]
pub struct OnlineUsers {
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl OnlineUsers {
    /// Whether `user_id` has a live stream open now.
    pub fn is_online(&self, user_id: &str) -> bool {
        self.lock().get(user_id).is_some_and(|n| *n > 0)
    }

    /// Counts `stream` as one of `user_id`'s live streams until it is dropped (the client went
    /// away, or the node stops).
    pub fn track<S>(&self, user_id: &str, stream: S) -> Tracked<S> {
        *self.lock().entry(user_id.to_owned()).or_default() += 1;
        Tracked {
            stream,
            _guard: Guard {
                users: self.clone(),
                user_id: user_id.to_owned(),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Guard {
    users: OnlineUsers,
    user_id: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut map = self.users.lock();
        if let Some(n) = map.get_mut(&self.user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.user_id);
            }
        }
    }
}

/// A stream counted in [`OnlineUsers`] for as long as it lives.
pub struct Tracked<S> {
    stream: S,
    _guard: Guard,
}

impl<S: Stream + Unpin> Stream for Tracked<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.stream).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_streams_until_dropped() {
        let online = OnlineUsers::default();
        assert!(!online.is_online("a"));
        let first = online.track("a", futures::stream::empty::<()>());
        let second = online.track("a", futures::stream::empty::<()>());
        assert!(online.is_online("a"));
        assert!(!online.is_online("b"));
        drop(first);
        assert!(online.is_online("a"), "one stream is still open");
        drop(second);
        assert!(!online.is_online("a"));
    }
}
