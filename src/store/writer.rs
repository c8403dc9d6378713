//! The write path: one thread owns the write connection and commits queued writes in groups.
//!
//! Every write is a job. The thread takes every job waiting in its queue (up to [`MAX_GROUP`]),
//! opens one `BEGIN IMMEDIATE` transaction, runs each job in a savepoint of its own (a job that
//! fails or panics rolls back only its savepoint), commits once, and only then answers each caller;
//! once every caller of the group is answered, it runs what the jobs left for after the answers
//! (publishing events, in commit order). An acknowledged write is a committed write; under load,
//! many writes share one commit, which is what keeps `synchronous=FULL` fast and saves a thread
//! hand-off per write.
//!
//! Answers go first because publishing an event wakes every subscriber that follows the live hub:
//! woken first, thousands of them would queue ahead of the callers on the runtime's workers, and a
//! sender would wait for the fan-out of its own message before hearing that it was stored.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StorageError;
use super::checkpointer::Trigger;
use crate::metrics::Metrics;

/// Most writes committed together.
pub const MAX_GROUP: usize = 256;

/// What runs after the group's commit, told whether the commit failed: it answers the caller, and
/// hands back what is left for after every caller of the group is answered.
type Completion = Box<dyn FnOnce(Option<&str>) -> Option<AfterAnswers> + Send>;

/// Work a write leaves for after every caller of its group has been answered (publishing its
/// events): callers, who wait, are woken before subscribers, who follow.
pub type AfterAnswers = Box<dyn FnOnce() + Send>;

/// A queued write.
trait Job: Send {
    /// Runs inside the group's transaction, in its own savepoint.
    fn run(self: Box<Self>, conn: &Connection) -> Completion;
    /// Answers the caller that the job could not run.
    fn fail(self: Box<Self>, reason: &str);
}

struct WriteJob<R, T, F, A> {
    f: F,
    after_commit: A,
    reply: oneshot::Sender<Result<T, StorageError>>,
    _result: std::marker::PhantomData<fn() -> R>,
}

fn noop() -> Completion {
    Box::new(|_| None)
}

/// Answers `reply` with `refusal` once the group's commit is over (whether or not it worked).
fn refuse_after_commit<T: Send + 'static>(
    reply: oneshot::Sender<Result<T, StorageError>>,
    refusal: StorageError,
) -> Completion {
    Box::new(move |_| {
        let _ = reply.send(Err(refusal));
        None
    })
}

fn rollback_savepoint(conn: &Connection) {
    if let Err(e) = conn.execute_batch("ROLLBACK TO write_job; RELEASE write_job") {
        tracing::error!(error = %e, "rolling back a failed write");
    }
}

impl<R, T, F, A> Job for WriteJob<R, T, F, A>
where
    R: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<R, StorageError> + Send + 'static,
    A: FnOnce(R) -> (T, Option<AfterAnswers>) + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Completion {
        let WriteJob {
            f,
            after_commit,
            reply,
            ..
        } = *self;
        if let Err(e) = conn.execute_batch("SAVEPOINT write_job") {
            let _ = reply.send(Err(e.into()));
            return noop();
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))) {
            Ok(Ok(value)) => {
                if let Err(e) = conn.execute_batch("RELEASE write_job") {
                    rollback_savepoint(conn);
                    let _ = reply.send(Err(e.into()));
                    return noop();
                }
                Box::new(move |commit_error| match commit_error {
                    None => {
                        let (answer, after_answers) = after_commit(value);
                        let _ = reply.send(Ok(answer));
                        after_answers
                    }
                    Some(reason) => {
                        let reason = format!("commit failed: {reason}");
                        let _ = reply.send(Err(StorageError::Task(reason)));
                        None
                    }
                })
            }
            // A refusal is answered after the group's commit too: it may be due to an earlier
            // write of the same group (a name just taken), and the caller's next read must see
            // that write, as it would have had the two been committed apart.
            Ok(Err(e)) => {
                rollback_savepoint(conn);
                refuse_after_commit(reply, e)
            }
            Err(_) => {
                rollback_savepoint(conn);
                refuse_after_commit(reply, StorageError::Task("a write panicked".into()))
            }
        }
    }

    fn fail(self: Box<Self>, reason: &str) {
        let _ = self.reply.send(Err(StorageError::Task(reason.to_owned())));
    }
}

enum Task {
    Write(Box<dyn Job>),
    Exclusive(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// The handle that queues writes; the thread stops when every handle is gone.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<Task>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Task(..)")
    }
}

impl Writer {
    /// Starts the writer thread over `conn`; it records each group commit in `metrics` and tells
    /// `checkpoints` (the checkpoint thread, when `conn` has automatic checkpoints off) after each.
    pub fn start(
        conn: Connection,
        metrics: Metrics,
        checkpoints: Option<Trigger>,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("guildhall-writer".into())
            .spawn(move || run(conn, &jobs, &metrics, checkpoints.as_ref()))?;
        Ok(Self { queue })
    }

    /// Runs `f` in the next group commit; after the commit, `after_commit` turns its result into
    /// the answer and what is left for after the group's answers. Returns only once the write is
    /// committed (or refused).
    pub async fn write<R, T, F, A>(&self, f: F, after_commit: A) -> Result<T, StorageError>
    where
        R: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StorageError> + Send + 'static,
        A: FnOnce(R) -> (T, Option<AfterAnswers>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = WriteJob {
            f,
            after_commit,
            reply,
            _result: std::marker::PhantomData,
        };
        self.queue
            .send(Task::Write(Box::new(job)))
            .map_err(|_| StorageError::Task("the storage writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Task("the storage writer has stopped".into()))?
    }

    /// Runs `f` alone with the connection, outside any transaction (checkpoints).
    pub async fn exclusive<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task = Task::Exclusive(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        }));
        self.queue
            .send(task)
            .map_err(|_| StorageError::Task("the storage writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Task("the storage writer has stopped".into()))?
    }
}

/// The writer thread: group, commit, answer; until every handle is dropped.
fn run(
    mut conn: Connection,
    jobs: &mpsc::Receiver<Task>,
    metrics: &Metrics,
    checkpoints: Option<&Trigger>,
) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        while let Some(task) = next.take() {
            match task {
                Task::Write(job) => group.push(job),
                Task::Exclusive(f) => {
                    commit_group(&conn, &mut group, metrics, checkpoints);
                    f(&mut conn);
                }
            }
            if group.len() < MAX_GROUP {
                next = jobs.try_recv().ok();
            }
        }
        commit_group(&conn, &mut group, metrics, checkpoints);
    }
}

/// Runs the queued jobs in one transaction and answers them after its commit.
fn commit_group(
    conn: &Connection,
    group: &mut Vec<Box<dyn Job>>,
    metrics: &Metrics,
    checkpoints: Option<&Trigger>,
) {
    if group.is_empty() {
        return;
    }
    let (started, writes) = (Instant::now(), group.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let reason = format!("could not begin a write: {e}");
        for job in group.drain(..) {
            job.fail(&reason);
        }
        return;
    }
    let completions: Vec<Completion> = group.drain(..).map(|job| job.run(conn)).collect();
    let commit = conn.execute_batch("COMMIT").err().map(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    });
    metrics.group_commit(writes, started.elapsed());
    match &commit {
        Some(reason) => tracing::error!(%reason, "group commit failed"),
        None => {
            if let Some(checkpoints) = checkpoints {
                checkpoints.committed();
            }
        }
    }
    let after_answers: Vec<AfterAnswers> = completions
        .into_iter()
        .filter_map(|done| done(commit.as_deref()))
        .collect();
    for after in after_answers {
        after();
    }
    if let Some(checkpoints) = checkpoints
        && checkpoints.restart_wanted()
    {
        super::checkpointer::restart(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("w.sqlite3")).expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER PRIMARY KEY);")
            .expect("schema");
        (
            Writer::start(conn, Metrics::new(), None).expect("start"),
            dir,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_is_answered_before_what_its_write_leaves_for_after() {
        let (w, _dir) = writer();
        let (answered, answer_seen) = mpsc::channel::<()>();
        let (ran, ran_after_answer) = oneshot::channel::<bool>();
        let value = w
            .write(
                |c| {
                    c.execute("INSERT INTO t (n) VALUES (1)", [])?;
                    Ok(1)
                },
                move |n| {
                    let after: AfterAnswers = Box::new(move || {
                        // On the writer thread: the caller must already hold its answer and say
                        // so; had this run first, the signal would never come.
                        let seen = answer_seen
                            .recv_timeout(std::time::Duration::from_secs(10))
                            .is_ok();
                        let _ = ran.send(seen);
                    });
                    (n, Some(after))
                },
            )
            .await
            .expect("write");
        assert_eq!(value, 1);
        answered
            .send(())
            .expect("the after-answers step is still waiting for the caller");
        assert!(
            ran_after_answer.await.expect("the after-answers step ran"),
            "the after-answers step ran before the caller was answered"
        );
    }

    /// A write refused because of an earlier write of its group (the same key) is answered
    /// only after that write is committed: a read right after the refusal sees it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusal_is_answered_after_the_commit_of_its_group() {
        let (w, dir) = writer();
        // Hold the writer so the next three writes queue up and form one group.
        let (release, held) = mpsc::channel::<()>();
        let hold = tokio::spawn({
            let w = w.clone();
            async move {
                w.exclusive(move |_| {
                    let _ = held.recv_timeout(std::time::Duration::from_secs(10));
                    Ok(())
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let insert =
            |n: i64| move |c: &Connection| Ok(c.execute("INSERT INTO t (n) VALUES (?1)", [n])?);
        let first = tokio::spawn({
            let w = w.clone();
            async move { w.write(insert(1), |_| ((), None)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let clash = tokio::spawn({
            let w = w.clone();
            async move { w.write(insert(1), |_| ((), None)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // The last of the group takes its time, so the commit comes well after the clash ran.
        let slow = tokio::spawn({
            let w = w.clone();
            async move {
                w.write(
                    |c| {
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        Ok(c.execute("INSERT INTO t (n) VALUES (2)", [])?)
                    },
                    |_| ((), None),
                )
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        release.send(()).expect("release the writer");
        assert!(clash.await.expect("task").is_err(), "the same key twice");
        let reader = Connection::open(dir.path().join("w.sqlite3")).expect("open");
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM t WHERE n = 1", [], |r| r.get(0))
            .expect("read");
        assert_eq!(
            seen, 1,
            "the write that took the key is committed when the refusal arrives"
        );
        first.await.expect("task").expect("first write");
        slow.await.expect("task").expect("slow write");
        hold.await.expect("task").expect("hold");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_together_and_fail_alone() {
        let (w, _dir) = writer();
        let mut tasks = Vec::new();
        for n in 0..200i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                w.write(
                    move |c| {
                        c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                        match n % 10 {
                            3 => Err(StorageError::Conflict("refused".into())),
                            7 => panic!("a job panicking must not take the writer down"),
                            _ => Ok(n),
                        }
                    },
                    |n| (n * 2, None),
                )
                .await
            }));
        }
        let mut ok = 0;
        for (n, task) in tasks.into_iter().enumerate() {
            match (n % 10, task.await.expect("task")) {
                (3 | 7, Err(_)) => {}
                (_, Ok(doubled)) => {
                    assert_eq!(doubled, 2 * n as i64, "each caller gets its own answer");
                    ok += 1;
                }
                (_, other) => panic!("job {n}: unexpected {other:?}"),
            }
        }
        let count: i64 = w
            .exclusive(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .expect("count");
        assert_eq!(
            (ok, count),
            (160, 160),
            "exactly the successful writes are stored"
        );
    }
}
