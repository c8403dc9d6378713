//! Mentions in message text: `<@USER_ID>` for users (hex K_id) and `<@&ROLE_ID>` for roles.

/// Most mentions of each kind kept per message.
pub const MAX_MENTIONS: usize = 100;

/// The user ids and role ids mentioned in `text`, each once, in order of first appearance.
pub fn parse(text: &str) -> (Vec<String>, Vec<String>) {
    let mut users = Vec::new();
    let mut roles = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('>') else { break };
        let inner = &rest[..end];
        if let Some(role) = inner.strip_prefix('&') {
            if !role.is_empty()
                && role.bytes().all(|b| b.is_ascii_digit())
                && !roles.iter().any(|r| r == role)
                && roles.len() < MAX_MENTIONS
            {
                roles.push(role.to_owned());
            }
        } else if inner.len() == 64
            && inner
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && !users.iter().any(|u| u == inner)
            && users.len() < MAX_MENTIONS
        {
            users.push(inner.to_owned());
        }
        rest = &rest[end..];
    }
    (users, roles)
}

/// Keeps the role mentions that notify: roles of the guild, and its default role (`@everyone`,
/// whose id is the guild's) only from a sender holding `messages.mention_everyone`.
pub fn keep_mentionable(roles: &mut Vec<String>, access: &crate::guilds::Access) {
    let everyone_allowed = access
        .standing
        .has(crate::guilds::permissions::MESSAGES_MENTION_EVERYONE);
    roles.retain(|r| {
        access.roles.iter().any(|role| role.id == *r) && (*r != access.guild.id || everyone_allowed)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_roles() {
        let user = "ab".repeat(32);
        let text = format!("hi <@{user}> and <@&123> <@&123> <@{user}> <@nope> <@&x1> <@");
        let (users, roles) = parse(&text);
        assert_eq!(users, [user]);
        assert_eq!(roles, ["123"]);
        assert_eq!(parse("no mentions"), (vec![], vec![]));
    }
}
