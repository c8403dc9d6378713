//! `docs/LIMITS.md` against the code, so the page can't drift from what the node enforces.
//!
//! 1. Every row names a constant or setting; [`expected`] maps each to its value in the code and
//!    its status code, and the two lists must be the same (a row for every entry, an entry for
//!    every row). Values are compared number by number.
//! 2. Every `const` under `src/` whose name has a `MAX` or `MIN` part must have a row, or be on
//!    [`INTERNAL`] with the reason no request can reach it; every `ServerSettings` and `[mailbox]`
//!    setting must have a row.
//! 3. A live node gets a request over the limit for most rows, and the status code and message
//!    must match the row (`…` in the row stands for any text).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::protocol::profile::v1 as hp;
use prost::Message as _;

/// One row of the document.
#[derive(Debug, Clone)]
struct Row {
    /// The constant (`module::NAME`) or setting (`settings.name`) the row is about.
    id: String,
    /// Every number of the value cell outside parentheses, `KiB`/`MiB` applied.
    values: Vec<u64>,
    /// The status code (`INVALID_ARGUMENT`, `HTTP 400`), or `None` where nothing is refused.
    code: Option<String>,
    /// The message pattern, `…` standing for any text.
    message: Option<String>,
    /// The line in the document, for failure messages.
    line: usize,
}

/// Splits a table row into its cells at the `|` that are not escaped.
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in line.trim().trim_start_matches('|').chars() {
        match c {
            '|' if !escaped => out.push(std::mem::take(&mut cell).trim().to_owned()),
            '\\' => {
                escaped = true;
                continue;
            }
            _ => {
                if escaped {
                    cell.push('\\');
                }
                cell.push(c);
            }
        }
        escaped = false;
    }
    out
}

/// The `code spans` of a cell, in order.
fn spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.replace("\\|", "|"))
        .collect()
}

/// The numbers of a value cell outside parentheses; `KiB` and `MiB` after a number multiply it.
fn numbers(cell: &str) -> Vec<u64> {
    let mut depth = 0usize;
    let mut plain = String::new();
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let chars: Vec<char> = plain.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            let mut n: u64 = digits.parse().expect("a number that fits u64");
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            if rest.starts_with("KiB") {
                n *= 1024;
            } else if rest.starts_with("MiB") {
                n *= 1024 * 1024;
            }
            out.push(n);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads the tables of docs/LIMITS.md.
fn document() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/LIMITS.md");
    let text = std::fs::read_to_string(&path).expect("docs/LIMITS.md");
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !line.starts_with("| `") {
            continue;
        }
        let c = cells(line);
        assert_eq!(c.len(), 5, "docs/LIMITS.md:{}: a row has 5 cells", i + 1);
        let id = spans(&c[0])
            .into_iter()
            .next()
            .expect("the limit in `code`");
        let refusal = c[3].trim();
        let refusal_spans = spans(refusal);
        let (code, message) = if refusal.starts_with('`') {
            (
                refusal_spans.first().cloned(),
                refusal_spans.get(1).cloned(),
            )
        } else if let Some(rest) = refusal.strip_prefix("HTTP") {
            (
                spans(rest).first().map(|s| format!("HTTP {s}")),
                spans(rest).get(1).cloned(),
            )
        } else {
            (None, None)
        };
        rows.push(Row {
            id,
            values: numbers(&c[2]),
            code,
            message,
            line: i + 1,
        });
    }
    rows
}

/// Whether `actual` fits `pattern`, where `…` stands for any text.
fn fits(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part) && rest.len() >= part.len();
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

/// Status codes as the document spells them.
const INVALID: Option<&str> = Some("INVALID_ARGUMENT");
const PRECONDITION: Option<&str> = Some("FAILED_PRECONDITION");
const EXHAUSTED: Option<&str> = Some("RESOURCE_EXHAUSTED");
const UNAUTHENTICATED: Option<&str> = Some("UNAUTHENTICATED");
const UNAVAILABLE: Option<&str> = Some("UNAVAILABLE");
const SILENT: Option<&str> = None;

/// Every documented limit: its value in the code (numbers in the document's order and unit) and
/// the status code a request over it gets.
fn expected() -> Vec<(&'static str, Vec<u64>, Option<&'static str>)> {
    use guildhall::{
        accounts, admin, api, dm_invites, dms, federation, gossip, guilds, harmony, mailbox, media,
        messages, people, presence, push, unread,
    };
    let s = guildhall::limits::Settings::default();
    let c = guildhall::config::Config::default();
    let (m, p) = (c.mailbox, &c.push);
    let n = |v: usize| v as u64;
    let secs = |d: std::time::Duration| d.as_secs();
    let rate = |v: u32| (vec![u64::from(v)], EXHAUSTED);
    let mut rows = vec![
        ("settings.message_rate_limit", rate(s.message_rate_limit)),
        ("settings.register_rate_limit", rate(s.register_rate_limit)),
        ("settings.login_rate_limit", rate(s.login_rate_limit)),
        ("settings.invite_rate_limit", rate(s.invite_rate_limit)),
        (
            "settings.discovery_rate_limit",
            rate(s.discovery_rate_limit),
        ),
        (
            "settings.sync_mailbox_rate_limit",
            rate(s.sync_mailbox_rate_limit),
        ),
        ("settings.ping_rate_limit", rate(s.ping_rate_limit)),
        (
            "config.rate_limit_window_secs",
            (vec![c.rate_limit_window_secs], SILENT),
        ),
        (
            "api::MAX_REQUEST_BYTES",
            (vec![n(api::MAX_REQUEST_BYTES)], EXHAUSTED),
        ),
        (
            "api::text::MAX_DEPTH",
            (vec![u64::from(api::text::MAX_DEPTH)], INVALID),
        ),
        (
            "config.clock_skew_ms",
            (vec![c.clock_skew_ms], UNAUTHENTICATED),
        ),
        (
            "config.access_token_ttl_secs",
            (vec![c.access_token_ttl_secs], UNAUTHENTICATED),
        ),
        (
            "config.refresh_token_ttl_secs",
            (vec![c.refresh_token_ttl_secs], UNAUTHENTICATED),
        ),
        (
            "config.max_connections_per_address",
            (vec![n(c.max_connections_per_address)], SILENT),
        ),
        (
            "config.tls.handshake_timeout_ms",
            (vec![c.tls.handshake_timeout_ms], SILENT),
        ),
        (
            "accounts::rules::DISPLAY_NAME_MAX",
            (vec![n(accounts::rules::DISPLAY_NAME_MAX)], INVALID),
        ),
        (
            "accounts::rules::IRC_NAME_LEN",
            (
                vec![
                    n(accounts::rules::IRC_NAME_LEN.0),
                    n(accounts::rules::IRC_NAME_LEN.1),
                ],
                INVALID,
            ),
        ),
        (
            "accounts::rules::BIO_MAX",
            (vec![n(accounts::rules::BIO_MAX)], INVALID),
        ),
        (
            "accounts::rules::PRONOUNS_MAX",
            (vec![n(accounts::rules::PRONOUNS_MAX)], INVALID),
        ),
        (
            "people::profiles::MUTUAL_FRIENDS_SHOWN_MAX",
            (
                vec![n(guildhall::people::profiles::MUTUAL_FRIENDS_SHOWN_MAX)],
                SILENT,
            ),
        ),
        (
            "accounts::rules::DEVICE_NAME_MAX",
            (vec![n(accounts::rules::DEVICE_NAME_MAX)], INVALID),
        ),
        (
            "accounts::rules::URL_MAX",
            (vec![n(accounts::rules::URL_MAX)], INVALID),
        ),
        (
            "accounts::rules::GUILD_ORDER_MAX",
            (vec![n(accounts::rules::GUILD_ORDER_MAX)], INVALID),
        ),
        (
            "accounts::rules::GUILD_ORDER_ID_MAX",
            (vec![n(accounts::rules::GUILD_ORDER_ID_MAX)], INVALID),
        ),
        (
            "identity::cert::MAX_DEVICE_ID_LEN",
            (
                vec![n(guildhall::identity::cert::MAX_DEVICE_ID_LEN)],
                INVALID,
            ),
        ),
        (
            "accounts::GET_USERS_MAX",
            (vec![n(accounts::GET_USERS_MAX)], INVALID),
        ),
        (
            "presence::GET_PRESENCE_MAX",
            (vec![n(presence::GET_PRESENCE_MAX)], INVALID),
        ),
        (
            "federation::moves::MAX_TARGETS",
            (vec![n(federation::moves::MAX_TARGETS)], INVALID),
        ),
        ("guilds::NAME_MAX", (vec![n(guilds::NAME_MAX)], INVALID)),
        (
            "people::notes::NOTE_MAX",
            (vec![n(people::notes::NOTE_MAX)], INVALID),
        ),
        (
            "people::notes::MAX_NOTES",
            (vec![people::notes::MAX_NOTES], PRECONDITION),
        ),
        (
            "people::views::MAX_RELATIONSHIPS",
            (vec![people::views::MAX_RELATIONSHIPS], PRECONDITION),
        ),
        (
            "accounts::rules::CHANNEL_IRC_NAME_LEN",
            (
                vec![
                    n(accounts::rules::CHANNEL_IRC_NAME_LEN.0),
                    n(accounts::rules::CHANNEL_IRC_NAME_LEN.1),
                ],
                INVALID,
            ),
        ),
        (
            "guilds::permissions::MAX_ROLE_LIST",
            (vec![n(guilds::permissions::MAX_ROLE_LIST)], INVALID),
        ),
        (
            "guilds::roles::MAX_ROLES_PER_BATCH",
            (vec![n(guilds::roles::MAX_ROLES_PER_BATCH)], INVALID),
        ),
        (
            "guilds::members::REASON_MAX",
            (vec![n(guilds::members::REASON_MAX)], INVALID),
        ),
        (
            "guilds::LIST_PAGE_MAX",
            (
                vec![
                    u64::from(guilds::LIST_PAGE_MAX),
                    u64::from(guilds::LIST_PAGE_DEFAULT),
                ],
                INVALID,
            ),
        ),
        (
            "guilds::members::MAX_INVITE_AGE_SECS",
            (vec![guilds::members::MAX_INVITE_AGE_SECS], INVALID),
        ),
        (
            "admin::MAX_TOKEN_USES",
            (vec![admin::MAX_TOKEN_USES.into()], INVALID),
        ),
        (
            "admin::MAX_TOKEN_AGE_SECS",
            (vec![admin::MAX_TOKEN_AGE_SECS], INVALID),
        ),
        ("admin::NOTE_MAX", (vec![n(admin::NOTE_MAX)], INVALID)),
        (
            "admin::TOKENS_LIST_MAX",
            (vec![n(admin::TOKENS_LIST_MAX)], SILENT),
        ),
        (
            "admin::users::USERS_PAGE_MAX",
            (
                vec![
                    u64::from(admin::users::USERS_PAGE_MAX),
                    u64::from(admin::users::USERS_PAGE_DEFAULT),
                ],
                INVALID,
            ),
        ),
        (
            "admin::users::QUERY_MAX",
            (vec![n(admin::users::QUERY_MAX)], INVALID),
        ),
        (
            "admin::node::DESTINATION_MAX",
            (vec![n(admin::node::DESTINATION_MAX)], INVALID),
        ),
        (
            "admin::AUDIT_PAGE_MAX",
            (
                vec![
                    u64::from(admin::AUDIT_PAGE_MAX),
                    u64::from(admin::AUDIT_PAGE_DEFAULT),
                ],
                INVALID,
            ),
        ),
        (
            "guilds::members::MAX_INVITE_USES",
            (
                vec![guilds::members::MAX_INVITE_USES.unsigned_abs().into()],
                INVALID,
            ),
        ),
        (
            "dms::DM_INVITE_TTL_MS",
            (vec![dms::DM_INVITE_TTL_MS], PRECONDITION),
        ),
        (
            "settings.max_message_length",
            (vec![u64::from(s.max_message_length)], INVALID),
        ),
        (
            "messages::MAX_IDEMPOTENCY_KEY",
            (vec![n(messages::MAX_IDEMPOTENCY_KEY)], INVALID),
        ),
        (
            "messages::METADATA_MAX_ENTRIES",
            (vec![n(messages::METADATA_MAX_ENTRIES)], INVALID),
        ),
        (
            "messages::METADATA_KEY_MAX",
            (vec![n(messages::METADATA_KEY_MAX)], INVALID),
        ),
        (
            "messages::METADATA_VALUE_MAX",
            (vec![n(messages::METADATA_VALUE_MAX)], INVALID),
        ),
        (
            "messages::MAX_EMOJI",
            (vec![n(messages::MAX_EMOJI)], INVALID),
        ),
        (
            "messages::MAX_REACTION_KINDS",
            (
                vec![messages::MAX_REACTION_KINDS.unsigned_abs()],
                PRECONDITION,
            ),
        ),
        (
            "messages::mentions::MAX_MENTIONS",
            (vec![n(messages::mentions::MAX_MENTIONS)], SILENT),
        ),
        (
            "messages::HISTORY_PAGE_MAX",
            (
                vec![
                    u64::from(messages::HISTORY_PAGE_MAX),
                    u64::from(messages::HISTORY_PAGE_DEFAULT),
                ],
                INVALID,
            ),
        ),
        (
            "messages::inbox::MENTIONS_PAGE_MAX",
            (
                vec![
                    u64::from(messages::inbox::MENTIONS_PAGE_MAX),
                    u64::from(messages::inbox::MENTIONS_PAGE_DEFAULT),
                ],
                INVALID,
            ),
        ),
        (
            "messages::SEARCH_MAX_WORDS",
            (vec![n(messages::SEARCH_MAX_WORDS)], INVALID),
        ),
        (
            "messages::SEARCH_QUERY_MAX",
            (vec![n(messages::SEARCH_QUERY_MAX)], INVALID),
        ),
        (
            "messages::SEARCH_PAGE_MAX",
            (
                vec![
                    u64::from(messages::SEARCH_PAGE_MAX),
                    u64::from(messages::SEARCH_PAGE_DEFAULT),
                ],
                INVALID,
            ),
        ),
        (
            "messages::SEARCH_MAX_OFFSET",
            (vec![u64::from(messages::SEARCH_MAX_OFFSET)], INVALID),
        ),
        (
            "messages::components::MAX_ROWS",
            (vec![n(messages::components::MAX_ROWS)], INVALID),
        ),
        (
            "messages::components::MAX_PER_ROW",
            (vec![n(messages::components::MAX_PER_ROW)], INVALID),
        ),
        (
            "messages::components::MAX_OPTIONS",
            (vec![n(messages::components::MAX_OPTIONS)], INVALID),
        ),
        (
            "messages::components::BUTTON_LABEL_MAX",
            (vec![n(messages::components::BUTTON_LABEL_MAX)], INVALID),
        ),
        (
            "messages::components::CUSTOM_ID_MAX",
            (vec![n(messages::components::CUSTOM_ID_MAX)], INVALID),
        ),
        (
            "messages::components::PLACEHOLDER_MAX",
            (vec![n(messages::components::PLACEHOLDER_MAX)], INVALID),
        ),
        (
            "messages::components::OPTION_TEXT_MAX",
            (vec![n(messages::components::OPTION_TEXT_MAX)], INVALID),
        ),
        (
            "accounts::rules::WEBHOOK_NAME_MAX",
            (vec![n(accounts::rules::WEBHOOK_NAME_MAX)], INVALID),
        ),
        (
            "api::http::WEBHOOK_BODY_MAX",
            (vec![n(api::http::WEBHOOK_BODY_MAX)], Some("HTTP 413")),
        ),
        (
            "settings.max_upload_size",
            (vec![u64::from(s.max_upload_size)], INVALID),
        ),
        ("media::MIN_CHUNK", (vec![media::MIN_CHUNK], INVALID)),
        ("media::MAX_CHUNK", (vec![media::MAX_CHUNK], INVALID)),
        (
            "media::MAX_OPEN_UPLOADS",
            (vec![u64::from(media::MAX_OPEN_UPLOADS)], PRECONDITION),
        ),
        (
            "media::MAX_FILENAME",
            (vec![n(media::MAX_FILENAME)], INVALID),
        ),
        (
            "media::MIME_PART_MAX",
            (vec![n(media::MIME_PART_MAX)], INVALID),
        ),
        (
            "media::probe::MAX_SIDE",
            (vec![u64::from(media::probe::MAX_SIDE)], INVALID),
        ),
        (
            "media::probe::MAX_DECODE_BYTES",
            (vec![media::probe::MAX_DECODE_BYTES], INVALID),
        ),
        (
            "config.upload_expiry_secs",
            (vec![c.upload_expiry_secs], Some("NOT_FOUND")),
        ),
        (
            "harmony::app_data::APP_ID_MAX",
            (vec![n(harmony::app_data::APP_ID_MAX)], INVALID),
        ),
        (
            "harmony::app_data::APP_DATA_MAX",
            (vec![n(harmony::app_data::APP_DATA_MAX)], INVALID),
        ),
        (
            "harmony::app_data::APPS_PER_USER_MAX",
            (vec![n(harmony::app_data::APPS_PER_USER_MAX)], PRECONDITION),
        ),
        (
            "harmony::app_data::OVERRIDES_MAX",
            (vec![n(harmony::app_data::OVERRIDES_MAX)], INVALID),
        ),
        (
            "harmony::app_data::TAGS_MAX",
            (vec![n(harmony::app_data::TAGS_MAX)], INVALID),
        ),
        (
            "harmony::app_data::TAG_PART_MAX",
            (vec![n(harmony::app_data::TAG_PART_MAX)], INVALID),
        ),
        (
            "harmony::app_data::REASON_MAX",
            (vec![n(harmony::app_data::REASON_MAX)], INVALID),
        ),
        (
            "push.max_distributors_per_user",
            (vec![n(p.max_distributors_per_user)], PRECONDITION),
        ),
        (
            "push.max_fcm_tokens_per_user",
            (vec![n(p.max_fcm_tokens_per_user)], PRECONDITION),
        ),
        (
            "push::FCM_TOKEN_MAX",
            (vec![n(push::FCM_TOKEN_MAX)], INVALID),
        ),
        (
            "mailbox::MIN_SESSION_ID_LEN",
            (vec![n(mailbox::MIN_SESSION_ID_LEN)], INVALID),
        ),
        (
            "mailbox::MAX_SESSION_ID_LEN",
            (vec![n(mailbox::MAX_SESSION_ID_LEN)], INVALID),
        ),
        (
            "mailbox.max_payload_bytes",
            (vec![n(m.max_payload_bytes)], INVALID),
        ),
        ("mailbox.max_wait_ms", (vec![m.max_wait_ms], SILENT)),
        ("mailbox.ttl_secs", (vec![m.ttl_secs], SILENT)),
        (
            "mailbox.max_payloads_per_session",
            (vec![n(m.max_payloads_per_session)], EXHAUSTED),
        ),
        ("mailbox.max_sessions", (vec![n(m.max_sessions)], EXHAUSTED)),
        (
            "mailbox.max_queued_bytes",
            (vec![n(m.max_queued_bytes)], EXHAUSTED),
        ),
        (
            "config.max_event_streams_per_user",
            (vec![n(c.max_event_streams_per_user)], EXHAUSTED),
        ),
        (
            "config.event_retention_secs",
            (vec![c.event_retention_secs], Some("OUT_OF_RANGE")),
        ),
        (
            "config.server_event_retention_secs",
            (vec![c.server_event_retention_secs], SILENT),
        ),
        (
            "unread::MAX_QUERIES",
            (vec![n(unread::MAX_QUERIES)], INVALID),
        ),
        ("unread::TOKEN_MAX", (vec![n(unread::TOKEN_MAX)], INVALID)),
        ("unread::MAX_GUILDS", (vec![n(unread::MAX_GUILDS)], SILENT)),
        (
            "unread::MENTIONS_LIMIT_MAX",
            (vec![unread::MENTIONS_LIMIT_MAX as u64], INVALID),
        ),
        (
            "config.unread_proxy_timeout_ms",
            (vec![c.unread_proxy_timeout_ms], SILENT),
        ),
        (
            "federation::vouch::VOUCH_TIMEOUT",
            (vec![secs(federation::vouch::VOUCH_TIMEOUT)], UNAVAILABLE),
        ),
        (
            "federation::wire::MAX_BODY_BYTES",
            (vec![n(federation::wire::MAX_BODY_BYTES)], EXHAUSTED),
        ),
        (
            "federation::wire::MAX_ADDRESS_BYTES",
            (
                vec![n(federation::wire::MAX_ADDRESS_BYTES)],
                UNAUTHENTICATED,
            ),
        ),
        (
            "federation::peers::DISCOVERY_PER_MINUTE",
            (
                vec![u64::from(federation::peers::DISCOVERY_PER_MINUTE)],
                EXHAUSTED,
            ),
        ),
        (
            "federation::peers::DISCOVERY_PER_ADDRESS_PER_MINUTE",
            (
                vec![u64::from(
                    federation::peers::DISCOVERY_PER_ADDRESS_PER_MINUTE,
                )],
                EXHAUSTED,
            ),
        ),
        (
            "federation::peers::DISCOVERY_CONCURRENCY",
            (vec![n(federation::peers::DISCOVERY_CONCURRENCY)], EXHAUSTED),
        ),
        (
            "federation::bans::GUILD_ID_MAX",
            (vec![n(federation::bans::GUILD_ID_MAX)], INVALID),
        ),
        (
            "federation::membership::GUILD_ID_MAX",
            (vec![n(federation::membership::GUILD_ID_MAX)], PRECONDITION),
        ),
        (
            "gossip::event::MAX_KIND_BYTES",
            (vec![n(gossip::event::MAX_KIND_BYTES)], INVALID),
        ),
        (
            "gossip::event::MAX_PAYLOAD_BYTES",
            (vec![n(gossip::event::MAX_PAYLOAD_BYTES)], INVALID),
        ),
        (
            "gossip::pull::MAX_KINDS",
            (vec![n(gossip::pull::MAX_KINDS)], INVALID),
        ),
        (
            "gossip::pull::MAX_EVENTS",
            (vec![n(gossip::pull::MAX_EVENTS)], SILENT),
        ),
        (
            "gossip::pull::MAX_HEADS",
            (vec![n(gossip::pull::MAX_HEADS)], SILENT),
        ),
        ("dm_invites::ID_MAX", (vec![n(dm_invites::ID_MAX)], INVALID)),
        (
            "dm_invites::GUILD_NAME_MAX",
            (vec![n(dm_invites::GUILD_NAME_MAX)], INVALID),
        ),
        (
            "dm_invites::MAX_INVITE_AGE_MS",
            (vec![dm_invites::MAX_INVITE_AGE_MS], INVALID),
        ),
        (
            "accounts::irc::MAX_IRC_TOKENS",
            (vec![guildhall::accounts::irc::MAX_IRC_TOKENS], PRECONDITION),
        ),
        (
            "accounts::irc::IRC_TOKEN_LABEL_MAX",
            (
                vec![n(guildhall::accounts::irc::IRC_TOKEN_LABEL_MAX)],
                INVALID,
            ),
        ),
        (
            "accounts::irc_accounts::IRC_PASSWORD_MIN",
            (
                vec![n(guildhall::accounts::irc_accounts::IRC_PASSWORD_MIN)],
                SILENT,
            ),
        ),
        (
            "accounts::irc_accounts::IRC_PASSWORD_MAX",
            (
                vec![n(guildhall::accounts::irc_accounts::IRC_PASSWORD_MAX)],
                SILENT,
            ),
        ),
        ("irc::MAX_LINE", (vec![n(guildhall::irc::MAX_LINE)], SILENT)),
        (
            "irc::SENDQ_LINES",
            (vec![n(guildhall::irc::SENDQ_LINES)], SILENT),
        ),
        (
            "irc::MAX_CONNECTIONS",
            (vec![n(guildhall::irc::MAX_CONNECTIONS)], SILENT),
        ),
        ("irc::conn::SASL_MAX", (vec![1024], SILENT)),
        ("irc::conn::NAMES_MAX", (vec![1000], SILENT)),
        ("irc::conn::history::CHATHISTORY_MAX", (vec![100], SILENT)),
        ("irc::conn::moderation::BAN_LIST_MAX", (vec![100], SILENT)),
        ("irc::conn::monitor::MONITOR_MAX", (vec![100], SILENT)),
        (
            "irc::conn::multiline::MULTILINE_MAX_BYTES",
            (vec![4096], SILENT),
        ),
        (
            "irc::conn::multiline::MULTILINE_MAX_LINES",
            (vec![100], SILENT),
        ),
        ("irc::conn::labels::LABEL_MAX", (vec![64], SILENT)),
        (
            "people::across::MAX_STATEMENT_AGE_MS",
            (vec![people::across::MAX_STATEMENT_AGE_MS], INVALID),
        ),
        (
            "presence::across::MAX_PRESENCE_ENTRIES",
            (
                vec![n(guildhall::presence::across::MAX_PRESENCE_ENTRIES)],
                INVALID,
            ),
        ),
        (
            "presence::across::MAX_PRESENCE_AUDIENCE",
            (
                vec![n(guildhall::presence::across::MAX_PRESENCE_AUDIENCE)],
                INVALID,
            ),
        ),
        (
            "presence::across::MAX_PRESENCE_VALID_MS",
            (
                vec![guildhall::presence::across::MAX_PRESENCE_VALID_MS],
                INVALID,
            ),
        ),
        (
            "dm_invites::MAX_PENDING_RECEIVED",
            (vec![dm_invites::MAX_PENDING_RECEIVED], EXHAUSTED),
        ),
        (
            "push::delegated::PAYLOAD_MAX",
            (vec![n(push::delegated::PAYLOAD_MAX)], INVALID),
        ),
        (
            "push::delegated::ID_MAX",
            (vec![n(push::delegated::ID_MAX)], INVALID),
        ),
        (
            "push::delegated::DELEGATION_TOKEN_MAX",
            (vec![n(push::delegated::DELEGATION_TOKEN_MAX)], INVALID),
        ),
    ];
    rows.sort_by_key(|(id, _)| *id);
    rows.into_iter()
        .map(|(id, (values, code))| (id, values, code))
        .collect()
}

/// Constants with a `MAX` or `MIN` part that bound the node's own work, not what a request may
/// carry: no request is refused or clipped by them, so they have no row.
const INTERNAL: &[(&str, &str)] = &[
    (
        "cli::TAIL_BACKOFF_MIN",
        "the CLI's own wait before `tail` reconnects (doubling from it); the server refuses nothing",
    ),
    (
        "cli::TAIL_BACKOFF_MAX",
        "the CLI's longest wait between `tail` reconnections; the server refuses nothing",
    ),
    (
        "presence::across::PENDING_MAX",
        "presence changes waiting to be sent to peers; past it a change is dropped and the next refresh sends the state, nothing is refused",
    ),
    (
        "irc::conn::messages::ECHOED_MAX",
        "ids of messages an IRC client saw echoed at sending, kept until their event; past it the set starts over, nothing is refused",
    ),
    (
        "export::CHUNKS_QUEUED_MAX",
        "export chunks waiting for a slow client; the export waits for the client, nothing is refused",
    ),
    (
        "config::TRUSTED_GUILD_MAX",
        "a guild id in the operator's trusted_ban_lists, checked at start (no request reaches it)",
    ),
    (
        "messages::inbox::CANDIDATES_MAX",
        "index rows one ListRecentMentions page reads at most; the page ends early with next_before_message_id",
    ),
    (
        "accounts::SESSION_CACHE_MAX",
        "sessions cached in memory; a miss reads the database",
    ),
    (
        "push::client::ANSWER_BODY_MAX",
        "bytes of a distributor's, FCM's or Google OAuth's answer the node reads; the rest is ignored",
    ),
    (
        "push::fanout::DM_MEMO_MAX",
        "DM membership remembered by the push fan-out; a miss reads the database",
    ),
    (
        "store::writer::MAX_GROUP",
        "writes committed together in one transaction",
    ),
    (
        "federation::peers::NEW_PEERS_MAX",
        "first pins queued for the catch-up task; more wait for its next round",
    ),
    (
        "gossip::behaviour::MAX_TRANSMIT_BYTES",
        "the gossipsub frame, above gossip::event::MAX_PAYLOAD_BYTES so every valid event fits",
    ),
    (
        "gossip::catchup::MAX_PAGES",
        "pages this node pulls from a peer per round",
    ),
    (
        "gossip::server_events::MAX_PRUNE_BATCHES",
        "pruning transactions per (origin, kind) per pass; what is left waits for the next pass",
    ),
    (
        "gossip::catchup::MAX_HEADS",
        "heads this node reads from a peer's answer",
    ),
];

#[test]
fn every_row_matches_its_constant_and_every_limit_has_a_row() {
    let rows = document();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for row in &rows {
        if !seen.insert(row.id.clone()) {
            problems.push(format!("line {}: `{}` has two rows", row.line, row.id));
        }
    }
    let expected = expected();
    let documented: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, values, code) in &expected {
        let Some(row) = documented.get(id) else {
            problems.push(format!("`{id}` has no row in docs/LIMITS.md"));
            continue;
        };
        if row.values != *values {
            problems.push(format!(
                "line {}: `{id}`: the value cell says {:?}, the code {values:?}",
                row.line, row.values
            ));
        }
        if row.code.as_deref() != *code {
            problems.push(format!(
                "line {}: `{id}`: the status is {:?} in the document, {code:?} here",
                row.line, row.code
            ));
        }
        if row.code.is_some() && row.message.is_none() {
            problems.push(format!("line {}: `{id}`: no message pattern", row.line));
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|(id, ..)| *id).collect();
    for row in &rows {
        if !known.contains(row.id.as_str()) {
            problems.push(format!(
                "line {}: `{}` is not in this test's table (tests/limits_doc.rs, expected())",
                row.line, row.id
            ));
        }
    }

    // Every setting that is a limit has a row.
    let settings = serde_json::to_value(guildhall::limits::Settings::default()).expect("json");
    let mailbox = serde_json::to_value(guildhall::mailbox::MailboxConfig::default()).expect("json");
    for (prefix, table) in [("settings", settings), ("mailbox", mailbox)] {
        for key in table.as_object().expect("a struct").keys() {
            let id = format!("{prefix}.{key}");
            if !documented.contains_key(id.as_str()) {
                problems.push(format!("setting `{id}` has no row in docs/LIMITS.md"));
            }
        }
    }

    // Every limit-like constant in src/ has a row or is internal.
    let internal: BTreeMap<&str, &str> = INTERNAL.iter().copied().collect();
    let mut found = BTreeSet::new();
    scan(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut found,
    );
    for id in &found {
        if !documented.contains_key(id.as_str()) && !internal.contains_key(id.as_str()) {
            problems.push(format!(
                "`{id}` looks like a limit but has no row in docs/LIMITS.md (if no request can \
                 reach it, add it to INTERNAL in tests/limits_doc.rs with the reason)"
            ));
        }
    }
    for id in internal.keys() {
        if !found.contains(*id) {
            problems.push(format!(
                "INTERNAL lists `{id}`, which is not in src/ any more"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/LIMITS.md and the code disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// Collects `module::NAME` of every `const` with a `MAX` or `MIN` part under `dir`, outside
/// `#[cfg(test)]` code (everything after the first `#[cfg(test)]` of a file is skipped).
fn scan(dir: &Path, module: &str, found: &mut BTreeSet<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name");
        let join = |m: &str, n: &str| {
            if m.is_empty() {
                n.to_owned()
            } else {
                format!("{m}::{n}")
            }
        };
        if path.is_dir() {
            scan(&path, &join(module, name), found);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let this = match name {
            "mod" | "lib" | "main" => module.to_owned(),
            _ => join(module, name),
        };
        let text = std::fs::read_to_string(&path).expect("read source");
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            let rest = line
                .strip_prefix("pub const ")
                .or_else(|| line.strip_prefix("pub(crate) const "))
                .or_else(|| line.strip_prefix("const "));
            let Some(rest) = rest else { continue };
            let Some((ident, _)) = rest.split_once(':') else {
                continue;
            };
            if ident.split('_').any(|part| part == "MAX" || part == "MIN") {
                found.insert(join(&this, ident.trim()));
            }
        }
    }
}

/// Checks refusals from a live node against the rows they belong to.
struct Refusals {
    rows: BTreeMap<String, Row>,
    problems: Vec<String>,
    checked: BTreeSet<String>,
}

impl Refusals {
    fn new() -> Self {
        Self {
            rows: document().into_iter().map(|r| (r.id.clone(), r)).collect(),
            problems: Vec::new(),
            checked: BTreeSet::new(),
        }
    }

    /// `id`'s row must give `result`'s code and a pattern its message fits.
    fn check<T: std::fmt::Debug>(&mut self, id: &str, result: Result<T, tonic::Status>) {
        let row = self.rows.get(id).unwrap_or_else(|| panic!("no row `{id}`"));
        let (want_code, pattern) = (row.code.clone(), row.message.clone().unwrap_or_default());
        self.checked.insert(id.to_owned());
        match result {
            Ok(v) => self.problems.push(format!(
                "`{id}`: the request over the limit succeeded: {v:?}"
            )),
            Err(status) => self.compare(
                id,
                &grpc_code(status.code()),
                status.message(),
                want_code,
                &pattern,
            ),
        }
    }

    fn compare(
        &mut self,
        id: &str,
        code: &str,
        message: &str,
        want: Option<String>,
        pattern: &str,
    ) {
        if want.as_deref() != Some(code) || !fits(pattern, message) {
            self.problems.push(format!(
                "`{id}` (docs/LIMITS.md:{}):\n      documented {want:?} `{pattern}`\n      got        {code} `{message}`",
                self.rows[id].line
            ));
        }
    }

    fn finish(self) {
        assert!(
            self.problems.is_empty(),
            "refusals differ from docs/LIMITS.md:\n  {}",
            self.problems.join("\n  ")
        );
        let unchecked: Vec<&str> = self
            .rows
            .keys()
            .filter(|id| !self.checked.contains(*id))
            .map(String::as_str)
            .collect();
        eprintln!(
            "{} of {} rows checked against a live node; not reached here (time, size or \
             silent): {}",
            self.checked.len(),
            self.rows.len(),
            unchecked.join(", ")
        );
    }
}

/// A gRPC code as the document spells it.
fn grpc_code(code: tonic::Code) -> String {
    let name = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn text(channel: &str, text: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        channel_id: channel.into(),
        text: text.into(),
        ..Default::default()
    }
}

fn button(label: &str, custom_id: &str) -> pb::Component {
    pb::Component {
        r#type: pb::ComponentType::Button as i32,
        style: 1,
        label: label.into(),
        custom_id: custom_id.into(),
        ..Default::default()
    }
}

fn row_of(children: Vec<pb::Component>) -> pb::Component {
    pb::Component {
        r#type: pb::ComponentType::ActionRow as i32,
        components: children,
        ..Default::default()
    }
}

fn select(options: usize, option_label: &str, placeholder: &str) -> pb::Component {
    pb::Component {
        r#type: pb::ComponentType::StringSelect as i32,
        custom_id: "pick".into(),
        placeholder: placeholder.into(),
        min_values: 1,
        max_values: 1,
        options: (0..options)
            .map(|i| pb::SelectOption {
                label: if i == 0 {
                    option_label.into()
                } else {
                    format!("o{i}")
                },
                value: format!("v{i}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn with_components(channel: &str, components: Vec<pb::Component>) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        channel_id: channel.into(),
        text: "pick one".into(),
        components,
        ..Default::default()
    }
}

#[tokio::test]
async fn refusals_over_each_limit_are_as_documented() {
    let node = TestNode::spawn().await;
    let mut r = Refusals::new();
    let mut c = node.client().await;
    let ada = register(&node, "Ada").await;
    let t = ada.token.clone();
    let room = create_room(&node, &ada, "Limits").await;
    let x = |n: usize| "x".repeat(n);

    // Identity and profiles.
    let fresh = new_identity("phone");
    r.check(
        "accounts::rules::DISPLAY_NAME_MAX",
        c.register(fresh.register_request(&node.audience(), &x(33), None, now_ms()))
            .await,
    );
    r.check(
        "accounts::rules::DEVICE_NAME_MAX",
        c.register(fresh.register_request(&node.audience(), "Bo", Some(&x(65)), now_ms()))
            .await,
    );
    let long_device = new_identity(&x(65));
    r.check(
        "identity::cert::MAX_DEVICE_ID_LEN",
        c.register(long_device.register_request(&node.audience(), "Bo", None, now_ms()))
            .await,
    );
    r.check(
        "config.clock_skew_ms",
        c.register(fresh.register_request(&node.audience(), "Bo", None, now_ms() - 400_000))
            .await,
    );
    let update = |edit: &dyn Fn(&mut pb::UpdateUserRequest)| {
        let mut request = pb::UpdateUserRequest {
            timestamp: now_ms(),
            ..Default::default()
        };
        edit(&mut request);
        ada.identity.sign_update(&mut request);
        authed(&t, request)
    };
    r.check(
        "accounts::rules::IRC_NAME_LEN",
        c.update_user(update(&|u| u.irc_name = Some(x(33)))).await,
    );
    r.check(
        "accounts::rules::BIO_MAX",
        c.update_user(update(&|u| u.bio = Some(x(191)))).await,
    );
    r.check(
        "accounts::rules::PRONOUNS_MAX",
        c.update_user(update(&|u| u.pronouns = Some(x(41)))).await,
    );
    r.check(
        "accounts::rules::URL_MAX",
        c.update_user(update(&|u| {
            u.avatar_url = Some(format!("https://e.org/{}", x(2048)));
        }))
        .await,
    );
    r.check(
        "accounts::rules::GUILD_ORDER_MAX",
        c.update_user(update(&|u| {
            let ids: Vec<String> = (0..501).map(|i| i.to_string()).collect();
            u.guild_order = Some(serde_json::to_string(&ids).expect("json"));
        }))
        .await,
    );
    r.check(
        "accounts::rules::GUILD_ORDER_ID_MAX",
        c.update_user(update(&|u| {
            u.guild_order = Some(serde_json::to_string(&[x(129)]).expect("json"));
        }))
        .await,
    );
    let ids: Vec<String> = (0..101).map(|_| ada.user.id.clone()).collect();
    r.check(
        "accounts::GET_USERS_MAX",
        c.get_users(authed(
            &t,
            pb::GetUsersRequest {
                user_ids: ids.clone(),
                guild_id: String::new(),
            },
        ))
        .await,
    );
    let room_member = register(&node, "Bob").await;
    r.check(
        "people::notes::NOTE_MAX",
        c.set_user_note(authed(
            &t,
            pb::SetUserNoteRequest {
                user_id: room_member.user.id.clone(),
                note: x(257),
            },
        ))
        .await,
    );
    r.check(
        "presence::GET_PRESENCE_MAX",
        c.get_presence(authed(&t, pb::GetPresenceRequest { user_ids: ids }))
            .await,
    );
    let statement = ada
        .identity
        .homeserver_move(&node.address(), now_ms(), 1, Vec::new());
    let mut login = ada.identity.login_request(&node.audience(), now_ms());
    statement.apply_to_login(&mut login);
    login.migration_targets = (0..65).map(|i| format!("https://s{i}.example")).collect();
    ada.identity.sign_login(&node.audience(), &mut login);
    r.check("federation::moves::MAX_TARGETS", c.login(login).await);
    r.check(
        "api::MAX_REQUEST_BYTES",
        c.send_message(authed(&t, text(&room.channel, &x(4 * 1024 * 1024 + 1))))
            .await,
    );

    // Guilds, channels, roles, invites.
    r.check(
        "guilds::NAME_MAX",
        c.create_guild(authed(
            &t,
            pb::CreateGuildRequest {
                name: x(101),
                avatar_url: None,
            },
        ))
        .await,
    );
    r.check(
        "accounts::rules::CHANNEL_IRC_NAME_LEN",
        c.update_channel(authed(
            &t,
            pb::UpdateChannelRequest {
                channel_id: room.channel.clone(),
                irc_name: Some("a".into()),
                ..Default::default()
            },
        ))
        .await,
    );
    r.check(
        "guilds::permissions::MAX_ROLE_LIST",
        c.create_role(authed(
            &t,
            pb::CreateRoleRequest {
                guild_id: room.guild.clone(),
                name: "many".into(),
                color: String::new(),
                position: 1,
                permissions: vec!["messages.read".into(); 65],
                parent_role_ids: vec![],
            },
        ))
        .await,
    );
    r.check(
        "guilds::roles::MAX_ROLES_PER_BATCH",
        c.batch_update_roles(authed(
            &t,
            pb::BatchUpdateRolesRequest {
                guild_id: room.guild.clone(),
                roles: vec![pb::Role::default(); 257],
            },
        ))
        .await,
    );
    r.check(
        "guilds::members::REASON_MAX",
        c.kick_user(authed(
            &t,
            pb::KickUserRequest {
                guild_id: room.guild.clone(),
                user_id: ada.user.id.clone(),
                reason: x(513),
            },
        ))
        .await,
    );
    r.check(
        "guilds::LIST_PAGE_MAX",
        c.list_guild_members(authed(
            &t,
            pb::ListGuildMembersRequest {
                guild_id: room.guild.clone(),
                limit: 1001,
                offset: 0,
            },
        ))
        .await,
    );
    let invite = |max_age_secs: Option<u64>, max_uses: Option<i32>| {
        authed(
            &t,
            pb::GenerateInviteRequest {
                channel_id: room.channel.clone(),
                max_age_secs,
                max_uses,
                allow_registration: false,
            },
        )
    };
    r.check(
        "guilds::members::MAX_INVITE_AGE_SECS",
        c.generate_invite(invite(Some(365 * 24 * 3600 + 1), None))
            .await,
    );
    r.check(
        "guilds::members::MAX_INVITE_USES",
        c.generate_invite(invite(None, Some(1_000_001))).await,
    );

    // Messages.
    r.check(
        "settings.max_message_length",
        c.send_message(authed(&t, text(&room.channel, &x(4001))))
            .await,
    );
    let mut keyed = text(&room.channel, "hi");
    keyed.idempotency_key = x(129);
    r.check(
        "messages::MAX_IDEMPOTENCY_KEY",
        c.send_message(authed(&t, keyed)).await,
    );
    let with_metadata = |entries: Vec<(String, String)>| {
        let mut m = text(&room.channel, "hi");
        m.metadata = entries.into_iter().collect();
        authed(&t, m)
    };
    r.check(
        "messages::METADATA_MAX_ENTRIES",
        c.send_message(with_metadata(
            (0..33).map(|i| (format!("k{i}"), "v".into())).collect(),
        ))
        .await,
    );
    r.check(
        "messages::METADATA_KEY_MAX",
        c.send_message(with_metadata(vec![(x(65), "v".into())]))
            .await,
    );
    r.check(
        "messages::METADATA_VALUE_MAX",
        c.send_message(with_metadata(vec![("k".into(), x(1025))]))
            .await,
    );
    let target = send_text(&node, &t, &room.channel, "react to me").await;
    let react = |emoji: String| {
        authed(
            &t,
            pb::SendMessageRequest {
                channel_id: room.channel.clone(),
                reaction: Some(pb::ReactionContent {
                    message_id: target.id.clone(),
                    emoji,
                    r#type: 0,
                }),
                ..Default::default()
            },
        )
    };
    r.check("messages::MAX_EMOJI", c.send_message(react(x(65))).await);
    for i in 0..50 {
        c.send_message(react(format!("e{i}")))
            .await
            .expect("a reaction under the limit");
    }
    r.check(
        "messages::MAX_REACTION_KINDS",
        c.send_message(react("e50".into())).await,
    );
    r.check(
        "messages::HISTORY_PAGE_MAX",
        c.get_history(authed(
            &t,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                cursor: String::new(),
                limit: 101,
                reverse: false,
            },
        ))
        .await,
    );
    r.check(
        "messages::inbox::MENTIONS_PAGE_MAX",
        c.list_recent_mentions(authed(
            &t,
            pb::ListRecentMentionsRequest {
                limit: 101,
                ..Default::default()
            },
        ))
        .await,
    );
    let search = |query: String, limit: u32, offset: u32| {
        authed(
            &t,
            pb::SearchMessagesRequest {
                channel_id: room.channel.clone(),
                query,
                limit,
                offset,
            },
        )
    };
    r.check(
        "messages::SEARCH_MAX_WORDS",
        c.search_messages(search(vec!["w"; 17].join(" "), 0, 0))
            .await,
    );
    r.check(
        "messages::SEARCH_QUERY_MAX",
        c.search_messages(search(x(257), 0, 0)).await,
    );
    r.check(
        "messages::SEARCH_PAGE_MAX",
        c.search_messages(search("w".into(), 101, 0)).await,
    );
    r.check(
        "messages::SEARCH_MAX_OFFSET",
        c.search_messages(search("w".into(), 0, 10_001)).await,
    );
    let send = |components| authed(&t, with_components(&room.channel, components));
    r.check(
        "messages::components::MAX_ROWS",
        c.send_message(send(
            (0..6).map(|_| row_of(vec![button("Go", "go")])).collect(),
        ))
        .await,
    );
    r.check(
        "messages::components::MAX_PER_ROW",
        c.send_message(send(vec![row_of(
            (0..6).map(|i| button("Go", &format!("go{i}"))).collect(),
        )]))
        .await,
    );
    r.check(
        "messages::components::MAX_OPTIONS",
        c.send_message(send(vec![row_of(vec![select(26, "o", "")])]))
            .await,
    );
    r.check(
        "messages::components::BUTTON_LABEL_MAX",
        c.send_message(send(vec![row_of(vec![button(&x(81), "go")])]))
            .await,
    );
    r.check(
        "messages::components::CUSTOM_ID_MAX",
        c.send_message(send(vec![row_of(vec![button("Go", &x(101))])]))
            .await,
    );
    r.check(
        "messages::components::PLACEHOLDER_MAX",
        c.send_message(send(vec![row_of(vec![select(2, "o", &x(151))])]))
            .await,
    );
    r.check(
        "messages::components::OPTION_TEXT_MAX",
        c.send_message(send(vec![row_of(vec![select(2, &x(101), "")])]))
            .await,
    );
    r.check(
        "accounts::rules::WEBHOOK_NAME_MAX",
        c.create_webhook(authed(
            &t,
            pb::CreateWebhookRequest {
                channel_id: room.channel.clone(),
                name: x(81),
                avatar_url: None,
            },
        ))
        .await,
    );
    let (code, message) = post_oversized_webhook(&node).await;
    let row = r.rows["api::http::WEBHOOK_BODY_MAX"].clone();
    r.checked.insert(row.id.clone());
    r.compare(
        &row.id,
        &code,
        &message,
        row.code.clone(),
        row.message.as_deref().unwrap_or_default(),
    );

    // Files.
    let initiate = || authed(&t, pb::InitiateMediaUploadRequest {});
    let upload = c
        .initiate_media_upload(initiate())
        .await
        .expect("initiate")
        .into_inner()
        .upload_token;
    let begin = |filename: &str, mime: &str, total: u64, chunk: u32| {
        authed(
            &t,
            pb::UploadBeginRequest {
                upload_token: upload.clone(),
                filename: filename.into(),
                mime_type: mime.into(),
                total_size: total,
                chunk_size: chunk,
            },
        )
    };
    r.check(
        "settings.max_upload_size",
        c.upload_begin(begin("f.bin", "text/plain", 25 * 1024 * 1024 + 1, 4096))
            .await,
    );
    r.check(
        "media::MIN_CHUNK",
        c.upload_begin(begin("f.bin", "text/plain", 5000, 1023))
            .await,
    );
    r.check(
        "media::MAX_CHUNK",
        c.upload_begin(begin("f.bin", "text/plain", 5000, 2 * 1024 * 1024 + 1))
            .await,
    );
    r.check(
        "media::MAX_FILENAME",
        c.upload_begin(begin(&x(256), "text/plain", 5000, 4096))
            .await,
    );
    r.check(
        "media::MIME_PART_MAX",
        c.upload_begin(begin("f.bin", &format!("{}/plain", x(64)), 5000, 4096))
            .await,
    );
    for _ in 1..8 {
        c.initiate_media_upload(initiate()).await.expect("initiate");
    }
    r.check(
        "media::MAX_OPEN_UPLOADS",
        c.initiate_media_upload(initiate()).await,
    );

    // Harmony app data.
    let mut profiles = hp::profile_service_client::ProfileServiceClient::connect(format!(
        "http://{}",
        node.node().grpc_addr
    ))
    .await
    .expect("connect");
    let set = |app_id: &str, app_data: Vec<u8>| {
        authed(
            &t,
            hp::SetAppDataRequest {
                app_id: app_id.into(),
                app_data,
            },
        )
    };
    let overrides =
        |o: Vec<hp::ProfileOverride>| hp::AppDataOverrides { overrides: o }.encode_to_vec();
    let tagged = |tags: Vec<hp::OverrideTag>| hp::ProfileOverride {
        tags,
        ..Default::default()
    };
    let tag = |before: &str| hp::OverrideTag {
        before: before.into(),
        after: String::new(),
    };
    r.check(
        "harmony::app_data::APP_ID_MAX",
        profiles.set_app_data(set(&x(129), vec![1])).await,
    );
    r.check(
        "harmony::app_data::APP_DATA_MAX",
        profiles
            .set_app_data(set("com.example", vec![1; 64 * 1024 + 1]))
            .await,
    );
    r.check(
        "harmony::app_data::OVERRIDES_MAX",
        profiles
            .set_app_data(set(
                "h.overrides",
                overrides((0..65).map(|_| tagged(vec![tag("a")])).collect()),
            ))
            .await,
    );
    r.check(
        "harmony::app_data::TAGS_MAX",
        profiles
            .set_app_data(set(
                "h.overrides",
                overrides(vec![tagged((0..17).map(|_| tag("a")).collect())]),
            ))
            .await,
    );
    r.check(
        "harmony::app_data::TAG_PART_MAX",
        profiles
            .set_app_data(set(
                "h.overrides",
                overrides(vec![tagged(vec![tag(&x(33))])]),
            ))
            .await,
    );
    r.check(
        "harmony::app_data::REASON_MAX",
        profiles
            .set_app_data(set(
                "h.overrides",
                overrides(vec![hp::ProfileOverride {
                    tags: vec![tag("a")],
                    reason: Some(hp::profile_override::Reason::UserDefined(x(129))),
                    ..Default::default()
                }]),
            ))
            .await,
    );
    for i in 0..64 {
        profiles
            .set_app_data(set(&format!("app.{i}"), vec![1]))
            .await
            .expect("app data under the limit");
    }
    r.check(
        "harmony::app_data::APPS_PER_USER_MAX",
        profiles.set_app_data(set("app.64", vec![1])).await,
    );

    // Push.
    for i in 0..16 {
        c.register_push_distributor(authed(
            &t,
            pb::RegisterPushDistributorRequest {
                distributor_url: format!("https://push.example/{i}"),
            },
        ))
        .await
        .expect("a distributor under the limit");
        c.register_fcm_token(authed(
            &t,
            pb::RegisterFcmTokenRequest {
                token: format!("token{i}"),
            },
        ))
        .await
        .expect("a token under the limit");
    }
    r.check(
        "push.max_distributors_per_user",
        c.register_push_distributor(authed(
            &t,
            pb::RegisterPushDistributorRequest {
                distributor_url: "https://push.example/16".into(),
            },
        ))
        .await,
    );
    r.check(
        "push.max_fcm_tokens_per_user",
        c.register_fcm_token(authed(
            &t,
            pb::RegisterFcmTokenRequest {
                token: "token16".into(),
            },
        ))
        .await,
    );
    r.check(
        "push::FCM_TOKEN_MAX",
        c.register_fcm_token(authed(&t, pb::RegisterFcmTokenRequest { token: x(4097) }))
            .await,
    );

    // Mailbox.
    let put = |session_id: String, payload: Vec<u8>| pb::SyncMailboxRequest {
        session_id,
        payload: Some(payload),
        wait_for_data: false,
    };
    r.check(
        "mailbox::MIN_SESSION_ID_LEN",
        c.sync_mailbox(put(x(31), vec![1])).await,
    );
    r.check(
        "mailbox::MAX_SESSION_ID_LEN",
        c.sync_mailbox(put(x(129), vec![1])).await,
    );
    r.check(
        "mailbox.max_payload_bytes",
        c.sync_mailbox(put(x(32), vec![1; 64 * 1024 + 1])).await,
    );
    for _ in 0..8 {
        c.sync_mailbox(put(x(40), vec![1]))
            .await
            .expect("a payload under the limit");
    }
    r.check(
        "mailbox.max_payloads_per_session",
        c.sync_mailbox(put(x(40), vec![1])).await,
    );

    // Unread proxy.
    let query = |url: &str, token: String| pb::ServerQuery {
        url: url.into(),
        token,
    };
    r.check(
        "unread::MAX_QUERIES",
        c.proxied_unread(authed(
            &t,
            pb::ProxiedUnreadRequest {
                queries: (0..33)
                    .map(|_| query("https://a.example", "t".into()))
                    .collect(),
            },
        ))
        .await,
    );
    r.check(
        "unread::TOKEN_MAX",
        c.proxied_unread(authed(
            &t,
            pb::ProxiedUnreadRequest {
                queries: vec![query("https://a.example", x(513))],
            },
        ))
        .await,
    );
    r.check(
        "unread::MENTIONS_LIMIT_MAX",
        c.proxied_recent_mentions(authed(
            &t,
            pb::ProxiedRecentMentionsRequest {
                queries: vec![query("https://a.example", "t".into())],
                limit: 101,
            },
        ))
        .await,
    );

    server_call_refusals(&node, &mut r).await;
    rate_limit_refusals(&mut r).await;
    mailbox_bound_refusals(&mut r).await;
    r.finish();
}

/// Every rate limit at 1 per window: the second call of each kind is refused.
async fn rate_limit_refusals(r: &mut Refusals) {
    let node = TestNode::spawn_with(|c| {
        c.settings = guildhall::limits::Settings {
            message_rate_limit: 1,
            register_rate_limit: 1,
            login_rate_limit: 1,
            invite_rate_limit: 1,
            discovery_rate_limit: 1,
            sync_mailbox_rate_limit: 1,
            ping_rate_limit: 1,
            ..guildhall::limits::Settings::default()
        };
    })
    .await;
    let mut c = node.client().await;
    let ada = register(&node, "Ada").await;
    let again = new_identity("phone");
    r.check(
        "settings.register_rate_limit",
        c.register(again.register_request(&node.audience(), "Bo", None, now_ms()))
            .await,
    );
    let _ = c
        .login(ada.identity.login_request(&node.audience(), now_ms()))
        .await;
    r.check(
        "settings.login_rate_limit",
        c.login(ada.identity.login_request(&node.audience(), now_ms() + 1))
            .await,
    );
    let _ = c.ping(pb::PingRequest::default()).await;
    r.check(
        "settings.ping_rate_limit",
        c.ping(pb::PingRequest::default()).await,
    );
    let preview = || pb::PreviewInviteRequest {
        token: "nosuchinvite".into(),
    };
    let _ = c.preview_invite(preview()).await;
    r.check(
        "settings.discovery_rate_limit",
        c.preview_invite(preview()).await,
    );
    let room = create_room(&node, &ada, "Limited").await;
    let invite = || {
        authed(
            &ada.token,
            pb::GenerateInviteRequest {
                channel_id: room.channel.clone(),
                max_age_secs: None,
                max_uses: None,
                allow_registration: false,
            },
        )
    };
    let _ = c.generate_invite(invite()).await;
    r.check(
        "settings.invite_rate_limit",
        c.generate_invite(invite()).await,
    );
    let _ = c
        .send_message(authed(&ada.token, text(&room.channel, "one")))
        .await;
    r.check(
        "settings.message_rate_limit",
        c.send_message(authed(&ada.token, text(&room.channel, "two")))
            .await,
    );
    let take = || pb::SyncMailboxRequest {
        session_id: "s".repeat(32),
        payload: None,
        wait_for_data: false,
    };
    let _ = c.sync_mailbox(take()).await;
    r.check(
        "settings.sync_mailbox_rate_limit",
        c.sync_mailbox(take()).await,
    );
}

/// The node-wide mailbox bounds, made small (their messages carry no number).
async fn mailbox_bound_refusals(r: &mut Refusals) {
    let node = TestNode::spawn_with(|c| {
        c.mailbox.max_sessions = 1;
        c.mailbox.max_queued_bytes = c.mailbox.max_payload_bytes;
    })
    .await;
    let mut c = node.client().await;
    let put = |session: &str, len: usize| pb::SyncMailboxRequest {
        session_id: session.repeat(32),
        payload: Some(vec![1; len]),
        wait_for_data: false,
    };
    c.sync_mailbox(put("a", 1)).await.expect("the one session");
    r.check("mailbox.max_sessions", c.sync_mailbox(put("b", 1)).await);
    let max = node.config.mailbox.max_payload_bytes;
    r.check(
        "mailbox.max_queued_bytes",
        c.sync_mailbox(put("a", max)).await,
    );
}

/// Limits other servers meet: calls signed by a second node.
async fn server_call_refusals(node: &TestNode, r: &mut Refusals) {
    let peer = TestNode::spawn().await;
    let mut s = peer.federation_client(node).await;
    let x = |n: usize| "x".repeat(n);
    let key = peer.audience().to_hex();
    r.check(
        "gossip::pull::MAX_KINDS",
        s.pull_server_events(pb::PullServerEventsRequest {
            kinds: vec!["ban".into(); 65],
            ..Default::default()
        })
        .await,
    );
    r.check(
        "gossip::event::MAX_KIND_BYTES",
        s.pull_server_events(pb::PullServerEventsRequest {
            origin: key.clone(),
            kind: x(65),
            ..Default::default()
        })
        .await,
    );
    r.check(
        "gossip::event::MAX_PAYLOAD_BYTES",
        s.receive_server_event(pb::ServerEvent {
            origin: key.clone(),
            kind: "membership".into(),
            sequence: 1,
            timestamp: now_ms(),
            payload: vec![0; 64 * 1024 + 1],
            signature: vec![0; 64],
        })
        .await,
    );
    let change = pb::MembershipChange {
        guild_id: x(129),
        user_id: key.clone(),
        homeserver: node.address(),
        joined: true,
    };
    let event = guildhall::gossip::event::ServerEvent::sign(
        &peer.server_key(),
        "membership",
        1,
        now_ms(),
        change.encode_to_vec(),
    );
    r.check(
        "federation::membership::GUILD_ID_MAX",
        s.receive_server_event(event.to_proto()).await,
    );
    r.check(
        "federation::bans::GUILD_ID_MAX",
        s.propagate_ban(pb::BanNotification {
            origin_server_id: key.clone(),
            banned_user_pubkey: key.clone(),
            guild_id: x(65),
            reason: String::new(),
            evidence_hash: String::new(),
            timestamp: now_ms(),
            signature: vec![0; 64],
        })
        .await,
    );
    let invite = |edit: &dyn Fn(&mut pb::DmInvite)| {
        let mut invite = pb::DmInvite {
            token: "t".into(),
            guild_id: "1".into(),
            host_server_url: peer.address(),
            timestamp: now_ms(),
            ..Default::default()
        };
        edit(&mut invite);
        pb::ReceiveDmInviteRequest {
            invite: Some(invite),
        }
    };
    r.check(
        "dm_invites::ID_MAX",
        s.receive_dm_invite(invite(&|i| i.token = x(129))).await,
    );
    r.check(
        "dm_invites::GUILD_NAME_MAX",
        s.receive_dm_invite(invite(&|i| i.guild_name = x(401)))
            .await,
    );
    r.check(
        "dm_invites::MAX_INVITE_AGE_MS",
        s.receive_dm_invite(invite(&|i| i.timestamp = now_ms() - 8 * 24 * 3600 * 1000))
            .await,
    );
    r.check(
        "people::across::MAX_STATEMENT_AGE_MS",
        s.receive_relationship(pb::RelationshipStatement {
            user_id: key.clone(),
            other_user_id: key.clone(),
            action: "request".into(),
            homeserver_url: peer.address(),
            timestamp: now_ms() - 8 * 24 * 3600 * 1000,
            ..Default::default()
        })
        .await,
    );
    let notice = |guild_id: &str| {
        format!(
            r#"{{"type":"dm","guild_id":"{guild_id}","channel_id":"1","message_id":"1","sender_id":"1"}}"#
        )
    };
    let push = |token: String, payload: String| pb::PushNotificationRequest {
        target_user_id: key.clone(),
        push_delegation_token: token,
        payload,
    };
    r.check(
        "push::delegated::PAYLOAD_MAX",
        s.push_notification(push("t".into(), x(2049))).await,
    );
    r.check(
        "push::delegated::ID_MAX",
        s.push_notification(push("t".into(), notice(&x(129)))).await,
    );
    r.check(
        "push::delegated::DELEGATION_TOKEN_MAX",
        s.push_notification(push(x(257), notice("1"))).await,
    );
}

/// Posts a body one byte over the webhook limit; returns ("HTTP <status>", the error message).
async fn post_oversized_webhook(node: &TestNode) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let len = guildhall::api::http::WEBHOOK_BODY_MAX + 1;
    let mut stream = tokio::net::TcpStream::connect(node.node().grpc_addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /webhooks/1/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    // The node may answer and close before the whole body is sent; that is the point.
    let _ = stream.write_all(&vec![b' '; len]).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .unwrap_or("no answer")
        .to_owned();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(body.trim())
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    (format!("HTTP {status}"), message)
}
