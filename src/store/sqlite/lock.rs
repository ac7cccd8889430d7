//! One process per SQLite file, and one store per file within it.
//!
//! The store's guarantees (one writer, so no `SQLITE_BUSY` and no lost claim) hold only
//! while a single process uses the file. A second process is refused with an exclusive
//! advisory lock on `<file>.lock`, held for as long as the store is open; a second open
//! in this process is handed the store already open, so it shares its one writer.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Weak};

use anyhow::Context as _;

use super::{Shared, SqliteStore};

/// Stores open in this process, by absolute database path. Weak: dropping the last
/// handle closes the store and frees its lock file for another process.
static OPEN: LazyLock<tokio::sync::Mutex<HashMap<PathBuf, Weak<Shared>>>> =
    LazyLock::new(Default::default);

/// An exclusive advisory lock on a database's lock file, released when dropped (the
/// operating system also releases it when the process dies, however it dies).
#[derive(Debug)]
pub(super) struct LockFile {
    _file: File,
}

/// The lock file of a database: next to it, named after it.
pub(super) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Returns the store open on `path` in this process, or takes the file's lock and
/// opens it with `connect`. Creates the file's directory when missing.
pub(super) async fn open_shared<F, Fut>(path: &Path, connect: F) -> anyhow::Result<SqliteStore>
where
    F: FnOnce(PathBuf, LockFile) -> Fut,
    Fut: Future<Output = anyhow::Result<SqliteStore>>,
{
    let path = absolute(path)?;
    // Held across the open so two tasks opening the same file cannot both take the
    // lock (the second would be refused as if it were another process).
    let mut open = OPEN.lock().await;
    open.retain(|_, store| store.strong_count() > 0);
    if let Some(shared) = open.get(&path).and_then(Weak::upgrade) {
        if shared.writer.is_closed() {
            anyhow::bail!(
                "SQLite file {} was closed in this process while a handle on it is still held; drop every handle before opening it again",
                path.display()
            );
        }
        return Ok(SqliteStore { shared });
    }
    let lock = LockFile::acquire(&path)?;
    let store = connect(path.clone(), lock).await?;
    open.insert(path, std::sync::Arc::downgrade(&store.shared));
    Ok(store)
}

impl LockFile {
    fn acquire(database: &Path) -> anyhow::Result<Self> {
        let path = lock_path(database);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "SQLite file {} is in use by another bindery process (it holds {}); a SQLite store serves one process only: stop the other process, or use PostgreSQL to run more than one replica",
                database.display(),
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// The absolute path of a database file whose directory exists (it is created when
/// missing): the same file reached by two spellings is one store.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve the directory {}", dir.display()))?;
    Ok(dir.join(name))
}
