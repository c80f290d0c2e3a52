//! The store's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything a store operation can fail with.
///
/// No variant ever carries a stored secret hash or the password of a database URL: driver errors are
/// reduced to the driver's primary message and code (see [`DbError`]), which never contain bound values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL was not understood; the message does not repeat the URL because it may hold a password.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The SQLite file or its parent directory could not be created or inspected.
    #[error("cannot prepare the SQLite database at {}: {error}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system reported.
        error: std::io::Error,
    },
    /// The database could not be opened or reached when the store was created.
    #[error("cannot connect to the database: {0}")]
    Connect(DbError),
    /// Applying the embedded schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(DbError),
    /// A record with the same key already exists.
    #[error("{entity} `{key}` already exists")]
    AlreadyExists {
        /// What kind of record, e.g. `"app"`.
        entity: &'static str,
        /// Its key, e.g. the client id (never secret material).
        key: String,
    },
    /// A value cannot be stored as given (for example text containing a NUL character, which PostgreSQL rejects).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field, e.g. `"client_id"`.
        field: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The database is unreachable, overloaded or busy right now; the same call may succeed later.
    #[error("database temporarily unavailable: {0}")]
    Unavailable(DbError),
    /// Any other database failure, including stored data that could not be decoded.
    #[error("database error: {0}")]
    Database(DbError),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed (maps naturally to HTTP 503 / gRPC UNAVAILABLE).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A database driver failure reduced to text that is safe to log.
///
/// Only the driver's primary message and its error code are kept. PostgreSQL's DETAIL field (which can quote
/// a whole row, secret hash included) and bound parameter values are never retained.
#[derive(Clone, PartialEq, Eq)]
pub struct DbError {
    code: Option<String>,
    message: String,
}

impl DbError {
    /// The SQLSTATE (PostgreSQL) or extended result code (SQLite), when the database itself reported the error.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The human-readable description.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn new(message: impl Into<String>) -> Self {
        DbError {
            code: None,
            message: message.into(),
        }
    }

    fn from_sqlx(err: &sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => DbError {
                code: db.code().map(|c| c.into_owned()),
                message: db.message().to_owned(),
            },
            other => DbError::new(chain_text(other)),
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} (code {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbError")
            .field("code", &self.code)
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for DbError {}

/// Display text of an error followed by its sources, so nothing is lost when the chain is flattened into a string.
fn chain_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        // Several sqlx variants already embed their source's text; don't say it twice.
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Classifies a driver error raised while serving a request.
pub(crate) fn db(err: sqlx::Error) -> StoreError {
    let transient = is_transient(&err);
    let detail = DbError::from_sqlx(&err);
    if transient {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Database(detail)
    }
}

/// Like [`db`], but a unique-key violation becomes [`StoreError::AlreadyExists`] for the given record.
pub(crate) fn db_unique(err: sqlx::Error, entity: &'static str, key: &str) -> StoreError {
    if let sqlx::Error::Database(e) = &err
        && e.is_unique_violation()
    {
        return StoreError::AlreadyExists {
            entity,
            key: key.to_owned(),
        };
    }
    db(err)
}

/// Like [`db_unique`] for a record with two unique keys. The second key's violation is recognized by `marker`
/// appearing in the constraint name (PostgreSQL) or the message (SQLite names the column); anything else is
/// reported as the first.
pub(crate) fn db_unique_either(
    err: sqlx::Error,
    first: (&'static str, &str),
    second: (&'static str, &str),
    marker: &str,
) -> StoreError {
    if let sqlx::Error::Database(e) = &err
        && e.is_unique_violation()
    {
        let is_second =
            e.constraint().is_some_and(|c| c.contains(marker)) || e.message().contains(marker);
        let (entity, key) = if is_second { second } else { first };
        return StoreError::AlreadyExists {
            entity,
            key: key.to_owned(),
        };
    }
    db(err)
}

pub(crate) fn connect(err: sqlx::Error) -> StoreError {
    StoreError::Connect(DbError::from_sqlx(&err))
}

pub(crate) fn migrate(err: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Migrate(DbError::new(chain_text(&err)))
}

pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.into(),
        error,
    }
}

/// Stored data that cannot be decoded (e.g. a list column that is not a JSON array of strings).
pub(crate) fn corrupt(table: &str, column: &str, err: impl fmt::Display) -> StoreError {
    StoreError::Database(DbError::new(format!(
        "column {table}.{column} holds undecodable data: {err}"
    )))
}

fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            // SQLite reports numeric (extended) result codes; PostgreSQL reports five-character SQLSTATEs.
            if let Ok(n) = code.parse::<i64>() {
                // SQLITE_BUSY and SQLITE_LOCKED, with any extended bits.
                matches!(n & 0xff, 5 | 6)
            } else {
                // connection exceptions, insufficient resources, operator intervention (shutdown, cannot connect
                // now), serialization failure and deadlock: all worth retrying.
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(&*code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_text_does_not_repeat_embedded_sources() {
        let io = std::io::Error::other("boom");
        let text = chain_text(&sqlx::Error::Io(io));
        assert_eq!(text.matches("boom").count(), 1, "{text}");
    }

    #[test]
    fn pool_timeout_is_transient() {
        assert!(db(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!db(sqlx::Error::RowNotFound).is_transient());
    }
}
