//! What only the SQLite store has: its URLs, one process per file (a lock file), one
//! store per file within a process, its busy errors, and `bindery migrate-store` run
//! as a process on a file.

use std::process::{Command, Output};

use bindery::store::{InstanceState, Store, StoreOptions, is_unavailable};
use sqlx::Connection as _;

use crate::copy::populate;
use crate::support::*;

fn bindery(args: &[&str], database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bindery"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .args(args)
        .output()
        .unwrap()
}

fn file_of(url: &str) -> String {
    url.strip_prefix("sqlite://").unwrap().to_owned()
}

#[tokio::test]
async fn a_second_process_is_refused_while_the_store_is_open() {
    let (url, _place) = Place::fresh(Kind::Sqlite);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    ready(&store, "i-1").await;

    let output = bindery(&["migrate"], &url);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another bindery process"),
        "{stderr}"
    );
    assert!(stderr.contains(&file_of(&url)), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    // Refused before touching the file: the store here is intact and still works.
    assert_eq!(
        store.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Ready
    );

    // Once every handle is gone, the lock is free.
    store.close().await;
    drop(store);
    let output = bindery(&["migrate"], &url);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    assert_eq!(
        store.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Ready,
        "the state survived the reopen"
    );
}

#[tokio::test]
async fn a_second_open_in_this_process_shares_the_store() {
    let (url, _place) = Place::fresh(Kind::Sqlite);
    let file = file_of(&url);
    let first = Store::open(&url, &StoreOptions::default()).await.unwrap();
    first.migrate().await.unwrap();
    // Another spelling of the same file, opened concurrently with a third.
    let dir = std::path::Path::new(&file).parent().unwrap();
    let other_spelling = format!("sqlite:{}/./state.db", dir.display());
    let options = StoreOptions::default();
    let (second, third) = tokio::join!(
        Store::open(&other_spelling, &options),
        Store::open(&url, &options),
    );
    let (second, third) = (second.unwrap(), third.unwrap());
    assert_eq!(second.describe(), format!("SQLite file {file}"));
    assert_eq!(first.describe(), second.describe());

    ready(&first, "i-1").await;
    assert_eq!(
        second.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Ready
    );
    // Writes through every handle at once: one writer, no busy error.
    let (a, b) = tokio::join!(provisioning(&second, "i-2"), provisioning(&third, "i-3"));
    assert_ne!(a, b);
    assert_eq!(first.count_rows().await.unwrap().instances, 3);

    // Still one process's file: another process is refused.
    let output = bindery(&["migrate"], &url);
    assert!(!output.status.success());
    drop((first, second, third));
    let output = bindery(&["migrate"], &url);
    assert!(
        output.status.success(),
        "dropping every handle frees the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn sqlite_urls_name_a_file_and_other_schemes_are_refused() {
    let (url, _place) = Place::fresh(Kind::Sqlite);
    let file = file_of(&url);
    // sqlite:PATH and sqlite://PATH name the same file; the directory is created.
    let store = Store::open(&format!("sqlite:{file}"), &StoreOptions::default())
        .await
        .unwrap();
    assert!(std::path::Path::new(&file).is_file());
    assert!(std::path::Path::new(&format!("{file}.lock")).is_file());
    assert_eq!(store.describe(), format!("SQLite file {file}"));
    store.migrate().await.unwrap();
    assert!(store.is_ready().await);

    for (bad, expected) in [
        (
            "mysql://root:hunter2@db/bindery",
            "scheme `mysql` is not supported",
        ),
        ("hunter2", "has no scheme"),
        (
            "sqlite::memory:",
            "in-memory SQLite databases are not supported",
        ),
        ("sqlite://", "needs a file path"),
        ("sqlite://data.db?mode=rwc", "takes no query parameters"),
    ] {
        let error = Store::open(bad, &StoreOptions::default())
            .await
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(expected), "{bad}: {message}");
        assert!(!message.contains("hunter2"), "{bad}: {message}");
    }
}

#[tokio::test]
async fn busy_and_locked_sqlite_errors_mean_unavailable_and_others_do_not() {
    let (url, _place) = Place::fresh(Kind::Sqlite);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    // Outside the store (as another program would): one connection holds the write
    // lock, a second one that will not wait is refused with SQLITE_BUSY.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file_of(&url))
        .busy_timeout(std::time::Duration::ZERO);
    let mut holder = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("begin immediate")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut other = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let busy = sqlx::query("begin immediate")
        .execute(&mut other)
        .await
        .unwrap_err();
    assert!(is_unavailable(&busy), "{busy:?}");
    sqlx::query("rollback").execute(&mut holder).await.unwrap();

    // A constraint error is the query's fault, not the database's absence.
    let duplicate = sqlx::query(
        "insert into audit_event (audit_event_id, occurred_at, action, instance_id, status, api_version) values (1, 0, 'x', 'i', 200, '2.13')",
    );
    duplicate.execute(&mut holder).await.unwrap();
    let error = sqlx::query("insert into audit_event (audit_event_id, occurred_at, action, instance_id, status, api_version) values (1, 0, 'x', 'i', 200, '2.13')")
        .execute(&mut holder)
        .await
        .unwrap_err();
    assert!(!is_unavailable(&error), "{error:?}");

    // And a PostgreSQL error is read as one.
    let pg = TestStore::new(Kind::Postgres).await;
    let mut connection = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let error = sqlx::query("select 1/0")
        .execute(&mut connection)
        .await
        .unwrap_err();
    assert!(!is_unavailable(&error), "{error:?}");
    let error = sqlx::query("select pg_terminate_backend(pg_backend_pid())")
        .execute(&mut connection)
        .await
        .unwrap_err();
    assert!(is_unavailable(&error), "{error:?}");
}

#[tokio::test]
async fn migrate_store_command_copies_a_sqlite_file_into_postgres() {
    let (from, _source_place) = Place::fresh(Kind::Sqlite);
    let (to, _target_place) = Place::fresh(Kind::Postgres);
    let before = {
        let store = Store::open(&from, &StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        populate(&store).await;
        let before = everything(&store).await;
        store.close().await;
        before
    };

    let output = bindery(
        &["migrate-store", "--from", &from, "--to", &to],
        "unused://",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("copied from SQLite file {}", file_of(&from))),
        "{stdout}"
    );
    assert!(stdout.contains("to PostgreSQL"), "{stdout}");
    let operations = before.operations.len();
    for line in [
        "instances:    5".to_owned(),
        "bindings:     6".to_owned(),
        format!("operations:   {operations}"),
        "audit events: 5".to_owned(),
    ] {
        assert!(stdout.contains(&line), "missing {line} in {stdout}");
    }

    let target = Store::open(&to, &StoreOptions::default()).await.unwrap();
    assert_eq!(everything(&target).await, before);
    target.close().await;

    // A second run finds the target full and changes nothing.
    let output = bindery(
        &["migrate-store", "--from", &from, "--to", &to],
        "unused://",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("already holds state"), "{stderr}");
    let target = Store::open(&to, &StoreOptions::default()).await.unwrap();
    assert_eq!(everything(&target).await, before);
}
