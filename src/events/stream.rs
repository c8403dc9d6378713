//! Filled in with `SubscribeEvents`.
