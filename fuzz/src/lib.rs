//! The fuzz target bodies, shared with `tests/fuzz.rs` (which includes `targets.rs` by path).
pub mod targets;
