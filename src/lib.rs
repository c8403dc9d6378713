//! guildhall: a federated, peer-to-peer chat homeserver.
pub mod accounts;
pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod gossip;
pub mod identity;
pub mod node;
pub mod proto;
pub mod store;
