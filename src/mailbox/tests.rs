//! Unit tests of the mailbox rules on a paused clock (expiry, sweep, caps, waits).

use std::time::Duration;

use super::*;

const ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn id(n: usize) -> String {
    format!("{n:0>32}")
}

fn small() -> MailboxConfig {
    MailboxConfig {
        max_payload_bytes: 16,
        max_wait_ms: 1000,
        ttl_secs: 60,
        max_payloads_per_session: 2,
        max_sessions: 3,
        max_queued_bytes: 40,
    }
}

fn exhausted(result: Result<()>) -> String {
    match result {
        Err(Error::Exhausted(m)) => m,
        other => panic!("expected Exhausted, got {other:?}"),
    }
}

#[test]
fn session_ids_follow_the_rule() {
    assert!(check_session_id(ID).is_ok());
    assert!(check_session_id(&"a".repeat(128)).is_ok());
    assert!(check_session_id("A-z_09").is_err());
    assert!(check_session_id(&"a".repeat(129)).is_err());
    assert!(check_session_id(&format!("{}é", "a".repeat(31))).is_err());
    assert!(check_session_id(&format!("{} ", "a".repeat(32))).is_err());
    MailboxConfig::default().validate().expect("defaults valid");
    assert!(
        MailboxConfig {
            ttl_secs: 1,
            max_wait_ms: 1000,
            ..MailboxConfig::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn put_take_is_fifo_and_reads_remove() {
    let m = Mailbox::new(small());
    m.put(ID, b"one".to_vec()).expect("put");
    m.put(ID, b"two".to_vec()).expect("put");
    assert_eq!(m.take(ID).expect("take"), Some(b"one".to_vec()));
    assert_eq!(m.take(ID).expect("take"), Some(b"two".to_vec()));
    assert_eq!(m.take(ID).expect("take"), None);
    assert_eq!(m.session_count(), 0, "an emptied session is gone");
}

#[test]
fn refusals_change_nothing() {
    let m = Mailbox::new(small());
    assert!(matches!(
        m.put(ID, vec![0; 17]),
        Err(Error::InvalidArgument { field, .. }) if field == "payload"
    ));
    assert!(matches!(
        m.put(ID, Vec::new()),
        Err(Error::InvalidArgument { field, .. }) if field == "payload"
    ));
    assert!(matches!(
        m.put("short", b"x".to_vec()),
        Err(Error::InvalidArgument { field, .. }) if field == "session_id"
    ));
    assert_eq!(m.session_count(), 0);

    // Per-session cap.
    m.put(ID, b"1".to_vec()).expect("put");
    m.put(ID, b"2".to_vec()).expect("put");
    assert!(exhausted(m.put(ID, b"3".to_vec())).contains("2 unread payloads"));
    // Session cap.
    m.put(&id(1), b"x".to_vec()).expect("put");
    m.put(&id(2), b"x".to_vec()).expect("put");
    assert!(exhausted(m.put(&id(3), b"x".to_vec())).starts_with("session_id"));
    // Byte cap: 2 + 1 + 1 bytes held, 40 allowed.
    m.put(&id(1), vec![0; 16]).expect("put");
    m.put(&id(2), vec![0; 16]).expect("put");
    assert!(exhausted(m.put(&id(2), vec![0; 16])).starts_with("payload"));
    // Taking makes room again.
    assert!(m.take(&id(2)).expect("take").is_some());
    m.put(&id(2), vec![0; 4]).expect("room again");
}

#[test]
fn unread_payloads_expire_and_the_sweep_reclaims_them() {
    let m = Mailbox::new(small());
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    m.put_at(ID, b"old".to_vec(), t0).expect("put");
    m.put_at(&id(1), b"old".to_vec(), t0).expect("put");
    m.put_at(&id(2), b"old".to_vec(), t0).expect("put");
    m.put_at(&id(2), b"new".to_vec(), at(59))
        .expect("a write renews the session");
    assert_eq!(m.take_checked(ID, at(61)), None, "expired: never served");
    // Full of sessions, but expired ones make room on demand.
    m.put_at(&id(3), b"x".to_vec(), at(61))
        .expect("expired sessions are reclaimed");
    assert_eq!(m.take_checked(&id(2), at(61)), Some(b"old".to_vec()));
    // The periodic sweep.
    assert_eq!(m.session_count(), 2);
    assert!(!m.sweep_if_due_at(at(62)), "not due yet");
    let later = at(61) + SWEEP_EVERY + Duration::from_secs(60);
    assert!(m.sweep_if_due_at(later));
    assert_eq!(m.session_count(), 0);
    assert!(!m.sweep_if_due_at(later), "not due again yet");
    assert_eq!(lock(&m.state).queued_bytes, 0);
}

#[tokio::test]
async fn waits_end_with_a_put_or_empty_at_the_bound() {
    // Long enough that only a put (or an abort) ends these waits.
    let m = Mailbox::new(MailboxConfig {
        max_wait_ms: 60_000,
        ..small()
    });
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { m.take_or_wait(ID).await }
    });
    // Put once the waiter has registered (bounded poll; the put would be found either way).
    for _ in 0..1000 {
        if m.session_count() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    m.put(ID, b"hi".to_vec()).expect("put");
    let got = waiter.await.expect("task").expect("take");
    assert_eq!(got, Some(b"hi".to_vec()));
    assert_eq!(m.session_count(), 0);

    // Nothing arrives: empty at the bound.
    let short = Mailbox::new(MailboxConfig {
        max_wait_ms: 20,
        ..small()
    });
    assert_eq!(short.take_or_wait(ID).await.expect("wait"), None);
    assert_eq!(
        short.session_count(),
        0,
        "the waiter's session went with it"
    );

    // A waiter that goes away (the client hung up) leaves nothing behind.
    let abandoned = tokio::spawn({
        let m = m.clone();
        async move { m.take_or_wait(&id(9)).await }
    });
    for _ in 0..1000 {
        if m.session_count() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(m.session_count(), 1);
    abandoned.abort();
    let _ = abandoned.await;
    assert_eq!(m.session_count(), 0);
}
