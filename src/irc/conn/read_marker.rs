//! `draft/read-marker`: how far the user has read each channel, kept by the node (the same read
//! state `AckMessage` moves), so every client of theirs, IRC or not, agrees. A marker is a
//! timestamp on IRC; the node keeps the newest message read, whose time the timestamp is.

use super::history::{SEQUENCE_BITS, parse_time};
use super::messages::DmStart;
use super::*;

impl Conn {
    /// `MARKREAD <target> [timestamp=…]`: asks for the marker, or moves it forward.
    pub(super) async fn markread(&mut self, args: Vec<String>) {
        let Some(target) = args.first().cloned() else {
            self.fail("MARKREAD", "NEED_MORE_PARAMS", vec![], "Missing target");
            return;
        };
        let Some(channel_id) = self.marker_channel(&target).await else {
            if args.len() == 1 {
                // Asked about a target with no marker (no such channel, no DM yet): none.
                self.send_marker(&target, 0);
            } else {
                self.fail("MARKREAD", "INVALID_PARAMS", vec![target], "No such target");
            }
            return;
        };
        let session = self.session();
        let marker = match args.get(1) {
            None => {
                self.gateway
                    .messages
                    .read_through(&session, &channel_id)
                    .await
            }
            Some(stamp) => {
                let Some(ms) = stamp.strip_prefix("timestamp=").and_then(parse_time) else {
                    self.fail(
                        "MARKREAD",
                        "INVALID_PARAMS",
                        vec![target, stamp.clone()],
                        "Expected timestamp=YYYY-MM-DDThh:mm:ss.sssZ",
                    );
                    return;
                };
                // Every message of that millisecond and before.
                let bound = (ms << SEQUENCE_BITS) | ((1 << SEQUENCE_BITS) - 1);
                self.gateway
                    .messages
                    .mark_read(&session, &channel_id, bound)
                    .await
            }
        };
        match marker {
            Ok(through) => self.send_marker(&target, through),
            Err(e) => self.fail("MARKREAD", "INTERNAL_ERROR", vec![target], &e.to_string()),
        }
    }

    /// The channel of a marker target: a channel the user can see (joined or not), or a DM.
    async fn marker_channel(&mut self, target: &str) -> Option<String> {
        if target.starts_with('#') {
            self.resolve(target).await.map(|c| c.id)
        } else {
            self.dm_channel(target, DmStart::Never).await.ok()
        }
    }

    /// `MARKREAD <target> timestamp=…` (or `*` when nothing was read).
    pub(super) fn send_marker(&mut self, target: &str, through: u64) {
        let stamp = if through == 0 {
            "*".to_owned()
        } else {
            format!("timestamp={}", ms_time(through >> SEQUENCE_BITS))
        };
        self.markers.insert(target.to_ascii_lowercase(), through);
        let server = self.server();
        self.send(Message {
            tags: None,
            prefix: Some(server),
            command: Command::Raw("MARKREAD".into(), vec![target.to_owned(), stamp]),
        });
    }

    /// The marker of a channel just joined, for clients with `draft/read-marker`.
    pub(super) async fn join_marker(&mut self, channel_id: &str, name: &str) {
        if !self.caps.contains("draft/read-marker") {
            return;
        }
        let session = self.session();
        if let Ok(through) = self
            .gateway
            .messages
            .read_through(&session, channel_id)
            .await
        {
            self.send_marker(name, through);
        }
    }

    /// A read receipt: the user's own (from any client) moves their marker on this client.
    pub(super) async fn on_receipt(&mut self, receipt: pb::DeliveryReceipt) {
        if !self.caps.contains("draft/read-marker")
            || receipt.user_id != self.me().id
            || receipt.status != pb::ReceiptType::Read as i32
        {
            return;
        }
        let Ok(through) = receipt.message_id.parse::<u64>() else {
            return;
        };
        if let Some(target) = self.event_target(&receipt.channel_id, true).await {
            // This client's own MARKREAD was answered already.
            if self.markers.get(&target.to_ascii_lowercase()) != Some(&through) {
                self.send_marker(&target, through);
            }
        }
    }
}
