//! The rules of Harmony app data: app ids, the size cap, and the `h.overrides` key, whose bytes
//! must be an `AppDataOverrides` message within bounds.

use prost::Message as _;

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::proto::protocol::profile::v1::{AppDataOverrides, profile_override};

/// Longest app id, in bytes.
pub const APP_ID_MAX: usize = 128;
/// Most bytes of data one app may keep per user.
pub const APP_DATA_MAX: usize = 64 * 1024;
/// Most apps one user may keep data for (so a user's total stays bounded).
pub const APPS_PER_USER_MAX: usize = 64;
/// The app id whose data is a Harmony `AppDataOverrides` message.
pub const OVERRIDES_APP_ID: &str = "h.overrides";
/// Most overrides in `h.overrides`.
pub const OVERRIDES_MAX: usize = 64;
/// Most tags per override.
pub const TAGS_MAX: usize = 16;
/// Longest tag `before` / `after`, in characters.
pub const TAG_PART_MAX: usize = 32;
/// Longest custom override reason, in characters.
pub const REASON_MAX: usize = 128;

/// App ids: 1-128 bytes of printable ASCII with no spaces (`h.overrides`, `com.example.app`).
pub fn check_app_id(app_id: &str) -> Result<()> {
    if app_id.is_empty() || app_id.len() > APP_ID_MAX {
        return Err(Error::invalid(
            "app_id",
            format!("must be 1-{APP_ID_MAX} bytes (got {})", app_id.len()),
        ));
    }
    if !app_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "app_id",
            "must be printable ASCII with no spaces (like \"h.overrides\" or \"com.example.app\")",
        ));
    }
    Ok(())
}

/// Checks data to store for `app_id`: the size cap, and for `h.overrides` the message rules.
pub fn check_app_data(app_id: &str, data: &[u8]) -> Result<()> {
    if data.len() > APP_DATA_MAX {
        return Err(Error::invalid(
            "app_data",
            format!(
                "must be at most {APP_DATA_MAX} bytes (got {}); empty clears it",
                data.len()
            ),
        ));
    }
    if app_id == OVERRIDES_APP_ID && !data.is_empty() {
        check_overrides(data)?;
    }
    Ok(())
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// `h.overrides` data: a decodable `AppDataOverrides` with bounded counts and sizes, usernames
/// under the display-name rules and avatars under the avatar rules.
fn check_overrides(data: &[u8]) -> Result<()> {
    let message = AppDataOverrides::decode(data).map_err(|e| {
        Error::invalid(
            "app_data",
            format!("for app_id \"h.overrides\" must be a protocol.profile.v1.AppDataOverrides message ({e})"),
        )
    })?;
    if message.overrides.len() > OVERRIDES_MAX {
        return Err(Error::invalid(
            "app_data.overrides",
            format!("at most {OVERRIDES_MAX} overrides"),
        ));
    }
    for (i, o) in message.overrides.iter().enumerate() {
        let at = format!("app_data.overrides[{i}]");
        if let Some(name) = &o.username {
            rules::display_name(name)
                .map_err(|rule| Error::invalid(format!("{at}.username"), rule))?;
        }
        if let Some(avatar) = &o.avatar {
            rules::avatar_url(avatar)
                .map_err(|rule| Error::invalid(format!("{at}.avatar"), rule))?;
        }
        if o.tags.len() > TAGS_MAX {
            return Err(Error::invalid(
                format!("{at}.tags"),
                format!("at most {TAGS_MAX} tags"),
            ));
        }
        for (j, tag) in o.tags.iter().enumerate() {
            if chars(&tag.before) > TAG_PART_MAX || chars(&tag.after) > TAG_PART_MAX {
                return Err(Error::invalid(
                    format!("{at}.tags[{j}]"),
                    format!("before and after must be at most {TAG_PART_MAX} characters each"),
                ));
            }
            if tag.before.is_empty() && tag.after.is_empty() {
                return Err(Error::invalid(
                    format!("{at}.tags[{j}]"),
                    "needs a non-empty before or after",
                ));
            }
        }
        if let Some(profile_override::Reason::UserDefined(reason)) = &o.reason
            && chars(reason) > REASON_MAX
        {
            return Err(Error::invalid(
                format!("{at}.user_defined"),
                format!("must be at most {REASON_MAX} characters"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::protocol::profile::v1::{OverrideTag, ProfileOverride};

    fn overrides(o: ProfileOverride) -> Vec<u8> {
        AppDataOverrides { overrides: vec![o] }.encode_to_vec()
    }

    #[test]
    fn app_ids() {
        assert!(check_app_id("h.overrides").is_ok());
        assert!(check_app_id(&"a".repeat(APP_ID_MAX)).is_ok());
        for bad in ["", "has space", "tab\t", "é", &"a".repeat(APP_ID_MAX + 1)] {
            let err = check_app_id(bad).expect_err(bad);
            assert!(err.to_string().starts_with("app_id: "), "{err}");
        }
    }

    #[test]
    fn overrides_rules() {
        let good = ProfileOverride {
            username: Some("Sam".into()),
            avatar: Some("https://example.com/sam.png".into()),
            tags: vec![OverrideTag {
                before: "s:".into(),
                after: String::new(),
            }],
            reason: Some(profile_override::Reason::UserDefined("alter".into())),
        };
        assert!(check_app_data(OVERRIDES_APP_ID, &overrides(good.clone())).is_ok());
        // Other apps may store anything.
        assert!(check_app_data("x", &[0xff, 0xff, 0xff]).is_ok());
        let cases = [
            (
                ProfileOverride {
                    username: Some("everyone".into()),
                    ..good.clone()
                },
                "app_data.overrides[0].username",
            ),
            (
                ProfileOverride {
                    avatar: Some("ftp://x".into()),
                    ..good.clone()
                },
                "app_data.overrides[0].avatar",
            ),
            (
                ProfileOverride {
                    tags: vec![OverrideTag::default()],
                    ..good.clone()
                },
                "app_data.overrides[0].tags[0]",
            ),
            (
                ProfileOverride {
                    reason: Some(profile_override::Reason::UserDefined("r".repeat(129))),
                    ..good.clone()
                },
                "app_data.overrides[0].user_defined",
            ),
        ];
        for (o, field) in cases {
            let err = check_app_data(OVERRIDES_APP_ID, &overrides(o)).expect_err(field);
            assert!(err.to_string().starts_with(field), "{err}");
        }
        let err = check_app_data(OVERRIDES_APP_ID, &[0xff, 0xff, 0xff]).expect_err("garbage");
        assert!(err.to_string().starts_with("app_data: "), "{err}");
        let big = vec![1u8; APP_DATA_MAX + 1];
        assert!(check_app_data("x", &big).is_err());
    }
}
