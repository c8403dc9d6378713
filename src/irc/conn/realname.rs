//! `setname`: a real name on IRC is the user's display name on the node. It is part of the
//! user's profile, which their identity key signs (`UpdateUser`), so IRC can't change it;
//! others' changes reach clients with `setname` as `SETNAME`.

use super::*;

impl Conn {
    /// `SETNAME :<realname>`: refused, saying where the name is changed.
    pub(super) fn setname(&mut self, args: Vec<String>) {
        if args.is_empty() {
            self.fail("SETNAME", "INVALID_REALNAME", vec![], "Missing real name");
            return;
        }
        self.fail(
            "SETNAME",
            "CANNOT_CHANGE_REALNAME",
            vec![],
            "Your real name is your display name, signed by your key: change it from a client \
             (UpdateUser)",
        );
    }

    /// A user's profile changed: their new display name, as `SETNAME` from them.
    pub(super) async fn on_user_updated(&mut self, user: pb::User) {
        if !self.caps.contains("setname") || user.name.is_empty() {
            return;
        }
        let nick = self.nick_of(&user.id, "").await;
        let from = self.user_prefix(&nick);
        self.send(Message {
            tags: None,
            prefix: Some(from),
            command: Command::Raw("SETNAME".into(), vec![user.name]),
        });
    }
}
