//! flyteauth persistence: traits for each kind of record, implemented for SQLite (the embedded default) and
//! PostgreSQL (for several replicas).
//!
//! [`connect`] picks the backend from the URL scheme, applies the embedded migrations and returns a shared
//! [`Store`]. The store has no clock: every timestamp is unix seconds supplied by the caller.
//!
//! Each kind of record has its own trait ([`AppStore`], [`RevocationStore`], [`AuditStore`], [`UserStore`],
//! [`CodeStore`], [`RefreshStore`], [`SessionStore`], [`DeviceStore`]) and its own migration per backend;
//! [`Store`] bundles them. Later record kinds are added the same way: a new trait module, a new migration file per
//! backend, and one more supertrait on [`Store`]. Anything that must be atomic (consuming a single-use code,
//! rotating a refresh token, polling a device code) is one trait method that each backend implements
//! atomically; transactions are never exposed.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

mod apps;
mod audit;
mod codes;
mod devices;
mod error;
mod postgres;
mod refresh;
mod revocations;
mod sessions;
mod sqlite;
mod text;
mod users;

#[cfg(test)]
mod tests;

pub use apps::{AppFilter, AppRecord, AppStore, AppUpdate, NewApp};
pub use audit::{AuditEvent, AuditFilter, AuditStore};
pub use codes::{CodeRecord, CodeStore, NewCode};
pub use devices::{
    DeviceApproval, DeviceCodeRecord, DevicePoll, DeviceStatus, DeviceStore, NewDeviceCode,
    SLOW_DOWN_STEP_SECS,
};
pub use error::{DbError, StoreError};
pub use refresh::{NewRefreshToken, RefreshStore, RefreshTokenRecord, Rotation};
pub use revocations::{Revocation, RevocationKind, RevocationStore};
pub use sessions::{NewSession, SessionRecord, SessionStore};
pub use users::{FederatedUser, LoginThrottle, NewUser, UserOrigin, UserRecord, UserStore};

/// Every persistence capability of flyteauth, behind one object shared by the whole server.
#[async_trait]
pub trait Store:
    AppStore
    + RevocationStore
    + AuditStore
    + UserStore
    + CodeStore
    + RefreshStore
    + SessionStore
    + DeviceStore
    + Send
    + Sync
    + fmt::Debug
{
    /// Checks that the database answers (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Which database this store talks to.
    fn backend(&self) -> Backend;
}

/// The database behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite, a single file (or memory); one server process.
    Sqlite,
    /// PostgreSQL; any number of replicas.
    Postgres,
}

impl Backend {
    /// Lower-case name, e.g. for logs and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Opens the database named by `url` and brings its schema up to date.
///
/// * `sqlite://<path>?mode=rwc`, `sqlite:<path>`: a file. A missing file is created with mode 0600 before anything
///   is written, in a parent directory created with mode 0700 if it is missing; this happens for any mode but
///   `mode=ro` (so `mode=rw` behaves like `rwc`). Existing files and directories keep their permissions (a
///   warning is logged if the file is accessible to others). WAL journal, foreign keys on, 5 s busy timeout.
/// * `sqlite::memory:`: a private in-memory database that lives as long as the returned store.
/// * `postgres://…` or `postgresql://…`: a connection pool (at most 10 connections, 5 s acquire timeout)
///   reporting `application_name=flyteauth` unless the URL sets one.
///
/// Migrations are embedded in the binary and applied before this returns; on PostgreSQL concurrent replicas
/// serialize on an advisory lock while migrating.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match scheme(url)?.as_str() {
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::connect(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PostgresStore::connect(url).await?)),
        other => Err(StoreError::InvalidUrl(format!(
            "unsupported scheme `{other}` (expected sqlite: or postgres:)"
        ))),
    }
}

/// The URL scheme, lower-cased, only if it looks like one (so no part of a mistyped URL carrying credentials is
/// ever echoed back).
fn scheme(url: &str) -> Result<String, StoreError> {
    let missing =
        || StoreError::InvalidUrl("expected a URL starting with sqlite: or postgres://".into());
    let (scheme, _) = url.split_once(':').ok_or_else(missing)?;
    let well_formed = !scheme.is_empty()
        && scheme.len() <= 32
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !well_formed {
        return Err(missing());
    }
    Ok(scheme.to_ascii_lowercase())
}
