//! What people keep about each other, beside the guilds they share: private notes and
//! relationships (friends, friend requests, blocks). Guildhall additions to the API; `docs/PEOPLE.md` has the rules.

pub mod across;
pub mod notes;
pub mod profiles;
pub mod relationships;
pub mod views;

use crate::guilds::Guilds;

/// The people operations of one node.
#[derive(Debug, Clone)]
pub struct People {
    guilds: Guilds,
    /// This node's canonical address: relationships are kept for users whose homeserver it is.
    address: String,
    /// Federation, for relationships with users of other nodes; `None` on a node without it.
    link: Option<across::Link>,
}

impl People {
    /// People over the guilds' store and event log, on the node at `address`.
    pub fn new(guilds: Guilds, address: String) -> Self {
        Self {
            guilds,
            address,
            link: None,
        }
    }

    /// The operations with relationships across nodes carried over `link`.
    pub fn with_link(mut self, link: across::Link) -> Self {
        self.link = Some(link);
        self
    }
}
