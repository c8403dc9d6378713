//! Harmony's `UserStatus` ↔ guildhall's `PresenceStatus`.
//!
//! guildhall knows online, busy and offline; Harmony adds idle, mobile and streaming. Each Harmony
//! status maps to the guildhall status a guildhall client should show, and presence keeps the
//! Harmony number as a detail, so Harmony clients read back exactly what was set until the user's
//! status changes through another path. See docs/HARMONY.md.

use crate::proto::guildhall::v1::PresenceStatus;
use crate::proto::protocol::profile::v1::UserStatus;

/// The guildhall status for a Harmony status: offline → offline, do-not-disturb → busy, and
/// online, idle, mobile and streaming → online (the user is connected and reachable).
pub fn to_presence(status: UserStatus) -> PresenceStatus {
    match status {
        UserStatus::OfflineUnspecified => PresenceStatus::Offline,
        UserStatus::DoNotDisturb => PresenceStatus::Busy,
        UserStatus::Online | UserStatus::Idle | UserStatus::Mobile | UserStatus::Streaming => {
            PresenceStatus::Online
        }
    }
}

/// The Harmony status to report: the detail presence kept if it still agrees with the guildhall
/// status, otherwise the plain mapping (busy → do-not-disturb, online → online, else offline).
pub fn from_presence(status: i32, detail: Option<i32>) -> UserStatus {
    let plain = match PresenceStatus::try_from(status) {
        Ok(PresenceStatus::Online) => UserStatus::Online,
        Ok(PresenceStatus::Busy) => UserStatus::DoNotDisturb,
        _ => UserStatus::OfflineUnspecified,
    };
    detail
        .and_then(|d| UserStatus::try_from(d).ok())
        .filter(|d| to_presence(*d) as i32 == status)
        .unwrap_or(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_presence_with_its_detail() {
        for n in 0..=5 {
            let status = UserStatus::try_from(n).expect("seed value");
            let presence = to_presence(status) as i32;
            assert_eq!(from_presence(presence, Some(n)), status);
        }
    }

    #[test]
    fn a_stale_detail_is_ignored() {
        // Set to idle through Harmony, then busy through guildhall.
        let idle = UserStatus::Idle as i32;
        assert_eq!(
            from_presence(PresenceStatus::Busy as i32, Some(idle)),
            UserStatus::DoNotDisturb
        );
        assert_eq!(
            from_presence(PresenceStatus::Unspecified as i32, None),
            UserStatus::OfflineUnspecified
        );
    }
}
