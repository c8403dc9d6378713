//! `draft/account-registration`: someone with only an IRC client makes an account of this node
//! with `REGISTER <account> <email or *> <password>` before connecting (the node holds its keys,
//! `crate::accounts::irc_accounts`), under the node's registration policy and its per-address
//! registration limit. The new account is logged in on the spot, and joins the default guild.

use super::*;

/// The `CAP LS 302` value of `draft/account-registration`: registering happens before
/// connecting (every connection here is logged in), and the account name need not be the nick.
pub(super) const CAP_VALUE: &str = "draft/account-registration=before-connect,custom-account-name";

impl Conn {
    /// Counts one attempt of `limit` against the client's address; the refusal's words if over.
    pub(super) fn limit(&self, limit: crate::limits::Limit) -> Result<(), String> {
        match &self.gateway.limits {
            Some(limits) => limits
                .check(limit, &self.peer.to_string())
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// `REGISTER <account> <email | *> <password>`.
    pub(super) async fn register_account(&mut self, args: Vec<String>) {
        let [account, _email, password, ..] = args.as_slice() else {
            self.fail(
                "REGISTER",
                "NEED_MORE_PARAMS",
                vec![],
                "REGISTER <account> * <password>",
            );
            return;
        };
        let account = if account == "*" {
            self.nick.clone()
        } else {
            account.clone()
        };
        if self.registered || self.account.is_some() {
            self.fail(
                "REGISTER",
                "ALREADY_AUTHENTICATED",
                vec![account],
                "You are already logged in",
            );
            return;
        }
        if account == "*" {
            self.fail(
                "REGISTER",
                "NEED_NICK",
                vec!["*".into()],
                "Send NICK first, or name the account",
            );
            return;
        }
        if let Err(why) = self.limit(crate::limits::Limit::Register) {
            self.fail("REGISTER", "TEMPORARILY_UNAVAILABLE", vec![account], &why);
            return;
        }
        let made = self
            .gateway
            .accounts
            .register_irc_account(&account, password)
            .await;
        let user = match made {
            Ok(user) => user,
            Err(e) => {
                self.fail("REGISTER", e.code(), vec![account], &e.to_string());
                return;
            }
        };
        let name = user.irc_name.clone().unwrap_or_default();
        if let Some(guild) = self.gateway.default_guild.clone()
            && let Err(e) = self.gateway.guilds.admit(&guild, &user.id).await
        {
            tracing::warn!(error = %e, user = %user.id, "IRC: new account not admitted to the default guild");
        }
        self.send(Message {
            tags: None,
            prefix: Some(self.server()),
            command: Command::Raw(
                "REGISTER".into(),
                vec!["SUCCESS".into(), name.clone(), "Account created".into()],
            ),
        });
        let mask = format!("{}!{}@{}", self.nick, self.nick, self.gateway.server_name);
        self.reply(
            Response::RPL_LOGGEDIN,
            vec![
                mask,
                name.clone(),
                format!("You are now logged in as {name}"),
            ],
        );
        self.account = Some(user);
    }
}
