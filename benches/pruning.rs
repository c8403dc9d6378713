//! Disk used by the server-event log after 100,000 remote joins and leaves (issue 11), with
//! pruning off and on. One origin announces `membership` events about 1,000 users in 5 guilds
//! (5,000 subjects), each user joining and leaving at random; with pruning on, the log is pruned
//! every 10,000 events as the node's pruner would (retention 0: everything superseded goes).
//! The events are real: signed `MembershipChange` payloads stored through the log's own functions
//! into a database migrated by `Store::open`.
//!
//! Run: `cargo bench --bench pruning`. Prints one JSON object.

use std::path::Path;

use guildhall::gossip::ServerEvent;
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::store::server_events::{self as log, Outcome, Subject};
use guildhall::store::{Store, Synchronous};
use prost::Message;
use serde_json::json;

const EVENTS: u64 = 100_000;
const USERS: usize = 1_000;
const GUILDS: usize = 5;
const PRUNE_EVERY: u64 = 10_000;
const KIND: &str = "membership";

/// A small deterministic generator, so both runs see the same joins and leaves.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn run(dir: &Path, pruned: bool) -> serde_json::Value {
    let path = dir.join("guildhall.sqlite3");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = runtime
        .block_on(Store::open(&path, Synchronous::Normal))
        .expect("open: migrates");
    drop(store);
    drop(runtime);
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    let key = SecretKey::generate();
    let origin = *key.public().as_bytes();
    let users: Vec<String> = (0..USERS)
        .map(|_| SecretKey::generate().public().to_hex())
        .collect();
    let mut joined = vec![false; USERS * GUILDS];
    let mut rng = Lcg(7);
    let now = now_ms();
    let mut removed = 0usize;
    let mut seq = 0u64;
    while seq < EVENTS {
        let tx = conn.transaction().expect("tx");
        for _ in 0..1_000 {
            seq += 1;
            let at = usize::try_from(rng.next()).expect("fits") % (USERS * GUILDS);
            joined[at] = !joined[at];
            let (guild, user) = (format!("{}", 1_000_000 + at % GUILDS), &users[at / GUILDS]);
            let change = pb::MembershipChange {
                guild_id: guild.clone(),
                user_id: user.clone(),
                homeserver: "https://home.example.org".into(),
                joined: joined[at],
            };
            let event = ServerEvent::sign(&key, KIND, seq, now, change.encode_to_vec());
            let subject = Subject {
                key: format!("{guild}\n{user}").into_bytes(),
                fields: 1,
            };
            log::insert(&tx, &event.to_row(), &subject, Outcome::Accepted, now).expect("insert");
        }
        if pruned && seq.is_multiple_of(PRUNE_EVERY) {
            loop {
                let n = log::prune(&tx, &origin, KIND, now + 1, 10_000).expect("prune");
                removed += n;
                if n < 10_000 {
                    break;
                }
            }
        }
        tx.commit().expect("commit");
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    let pragma = |name: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .expect("pragma")
    };
    let (pages, free, page_size) = (
        pragma("page_count"),
        pragma("freelist_count"),
        pragma("page_size"),
    );
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM server_events", [], |r| r.get(0))
        .expect("count");
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    json!({
        "pruning": pruned,
        "events_announced": EVENTS,
        "subjects": USERS * GUILDS,
        "rows_kept": rows,
        "rows_pruned": removed,
        "database_file_bytes": file,
        "bytes_in_use": (pages - free) * page_size,
        "free_pages_bytes": free * page_size,
    })
}

fn main() {
    let mut runs = Vec::new();
    for pruned in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        runs.push(run(dir.path(), pruned));
    }
    println!(
        "{}",
        json!({ "server_event_log_after_100k_joins_and_leaves": runs })
    );
}
