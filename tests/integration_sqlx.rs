//! `sqlx::Error` against a real, in-process `SQLite` database (bundled, no server): the error
//! kinds `SQLite` can produce, classified and retried by reflexio.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, Classify, ErrorClass};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::Mutex;

const BOUND: Duration = Duration::from_secs(20);

/// A database file of its own for one test, removed (with its journal) when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        TempDb(
            std::env::temp_dir().join(format!("reflexio-{name}-{}-{nanos}.db", std::process::id())),
        )
    }

    /// Options that never wait for a lock: a locked database fails at once with `SQLITE_BUSY`.
    fn options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(&self.0)
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn memory() -> SqliteConnection {
    let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
    sqlx::query("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (id, email) VALUES (1, 'ada@example.com')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn constraint_and_syntax_errors_are_permanent() {
    let mut conn = memory().await;

    let unique = sqlx::query("INSERT INTO users (id, email) VALUES (2, 'ada@example.com')")
        .execute(&mut conn)
        .await
        .unwrap_err();
    let db = unique.as_database_error().expect("a database error");
    assert_eq!(
        db.code().as_deref(),
        Some("2067"),
        "SQLITE_CONSTRAINT_UNIQUE"
    );
    assert_eq!(unique.classification().class, ErrorClass::Permanent);

    let not_null = sqlx::query("INSERT INTO users (id, email) VALUES (3, NULL)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(not_null.classification().class, ErrorClass::Permanent);

    let syntax = sqlx::query("SELEC * FROM users")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        syntax.as_database_error().unwrap().code().as_deref(),
        Some("1")
    );
    assert_eq!(syntax.classification().class, ErrorClass::Permanent);

    let Err(missing) = sqlx::query("SELECT email FROM users WHERE id = 99")
        .fetch_one(&mut conn)
        .await
    else {
        panic!("no row has id 99");
    };
    assert!(matches!(missing, sqlx::Error::RowNotFound));
    assert_eq!(missing.classification().class, ErrorClass::Permanent);
}

#[tokio::test]
async fn a_permanent_error_is_not_retried() {
    let conn = Arc::new(Mutex::new(memory().await));
    let clock = VirtualClock::new();
    let policy = AsyncRetryPolicy::<sqlx::Error>::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let out = policy
        .call(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            let conn = conn.clone();
            async move {
                sqlx::query("INSERT INTO users (id, email) VALUES (1, 'again@example.com')")
                    .execute(&mut *conn.lock().await)
                    .await
            }
        })
        .await;
    assert!(out.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(clock.sleeps().is_empty());
}

/// Two connections to one database file: the first holds the write lock, so the second's write
/// fails with `SQLITE_BUSY`, which is `Concurrency`; once the lock is released the retry succeeds.
#[tokio::test]
async fn a_locked_database_is_concurrency_and_the_retry_succeeds() {
    tokio::time::timeout(BOUND, async {
        let db = TempDb::new("busy");
        let mut setup = SqliteConnection::connect_with(&db.options()).await.unwrap();
        sqlx::query("CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            .execute(&mut setup)
            .await
            .unwrap();
        sqlx::query("INSERT INTO counters VALUES (1, 0)")
            .execute(&mut setup)
            .await
            .unwrap();
        setup.close().await.unwrap();

        let holder = Arc::new(Mutex::new(
            SqliteConnection::connect_with(&db.options()).await.unwrap(),
        ));
        let writer = Arc::new(Mutex::new(
            SqliteConnection::connect_with(&db.options()).await.unwrap(),
        ));
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *holder.lock().await)
            .await
            .unwrap();

        let clock = VirtualClock::new();
        let classes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = classes.clone();
        let policy = AsyncRetryPolicy::<sqlx::Error>::builder()
            .strategy(constant(Duration::from_millis(20)))
            .max_retries_for(ErrorClass::Concurrency, 3)
            .clock(clock.clone())
            .on_event(move |e| sink.lock().unwrap().push(e.class))
            .build()
            .unwrap();
        let calls = AtomicU32::new(0);
        let out = policy
            .call(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let (holder, writer) = (holder.clone(), writer.clone());
                async move {
                    if n == 2 {
                        // The other transaction commits while we back off.
                        sqlx::query("COMMIT")
                            .execute(&mut *holder.lock().await)
                            .await
                            .unwrap();
                    }
                    sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 1")
                        .execute(&mut *writer.lock().await)
                        .await
                        .map(|done| done.rows_affected())
                }
            })
            .await;

        assert_eq!(out.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            *classes.lock().unwrap(),
            [Some(ErrorClass::Concurrency), None]
        );
        assert_eq!(clock.sleeps(), [Duration::from_millis(20)]);
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn the_busy_error_itself_has_sqlite_code_5() {
    tokio::time::timeout(BOUND, async {
        let db = TempDb::new("busy-code");
        let mut a = SqliteConnection::connect_with(&db.options()).await.unwrap();
        let mut b = SqliteConnection::connect_with(&db.options()).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut a)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut a)
            .await
            .unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut b)
            .await
            .unwrap_err();
        let code = busy.as_database_error().unwrap().code().unwrap();
        assert_eq!(
            code.parse::<i32>().unwrap() & 0xff,
            5,
            "SQLITE_BUSY: {code}"
        );
        assert_eq!(busy.classification().class, ErrorClass::Concurrency);
        sqlx::query("COMMIT").execute(&mut a).await.unwrap();
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn an_exhausted_pool_times_out_and_is_transient() {
    tokio::time::timeout(BOUND, async {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(20))
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let held = pool.acquire().await.unwrap();
        let err = pool.acquire().await.unwrap_err();
        assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
        assert_eq!(err.classification().class, ErrorClass::Transient);
        drop(held);

        pool.close().await;
        let err = pool.acquire().await.unwrap_err();
        assert!(matches!(err, sqlx::Error::PoolClosed), "{err:?}");
        assert_eq!(err.classification().class, ErrorClass::Permanent);
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn a_missing_database_file_is_unknown_so_retried_at_most_twice() {
    let dir = TempDb::new("missing-dir");
    let options = SqliteConnectOptions::new()
        .filename(dir.0.join("no/such/dir/db.sqlite"))
        .create_if_missing(false);
    let err = SqliteConnection::connect_with(&options).await.unwrap_err();
    // SQLITE_CANTOPEN (14): retrying will not create the directory.
    let code = err
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned);
    assert_eq!(code.as_deref(), Some("14"), "{err:?}");
    assert_eq!(err.classification().class, ErrorClass::Unknown);
}
