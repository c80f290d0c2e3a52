//! SQLite backend: one file (or memory), one server process.
//!
//! Every write is a single autocommit statement. That keeps SQLite's busy handler in charge of contention; an
//! explicit read-then-write transaction could instead fail immediately with SQLITE_BUSY under WAL.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::error::{self, DbError, db, db_unique};
use crate::text;
use crate::{
    AppRecord, AppStore, AppUpdate, AuditEvent, AuditStore, Backend, NewApp, Revocation,
    RevocationStore, Store, StoreError,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite has a single writer; more connections only help concurrent reads.
const MAX_CONNECTIONS: u32 = 4;

macro_rules! app_columns {
    () => {
        "client_id, client_name, organization, secret_hash, grant_types, scopes, audience, \
         redirect_uris, created_by, created_at, updated_at"
    };
}

/// A [`Store`] on SQLite.
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    /// The file path, or `:memory:`; for `Debug` and logs.
    location: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database named by a `sqlite:` URL and applies the migrations.
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, memory, read_only) = understand_url(url);
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;

        let (options, pool_options, location) = if memory {
            // An in-memory database exists only while a connection to it is open, and connections sharing one
            // through the shared cache lock whole tables without honouring busy_timeout: so exactly one
            // connection, kept forever.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(ACQUIRE_TIMEOUT);
            (options, pool, ":memory:".to_owned())
        } else {
            let path = options.get_filename().to_path_buf();
            if !read_only {
                prepare_file(&path).await?;
            }
            let options = options
                .create_if_missing(!read_only)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable across application crashes in WAL mode; only an OS crash may lose the last
                // transactions, which is acceptable for an embedded single-node deployment.
                .synchronous(SqliteSynchronous::Normal);
            let pool = SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT);
            (options, pool, path.display().to_string())
        };
        let options = options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);

        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(error::connect)?;
        MIGRATOR.run(&pool).await.map_err(error::migrate)?;
        tracing::debug!(location = %location, "sqlite store ready");
        Ok(SqliteStore { pool, location })
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Normalizes the scheme to the lower-case `sqlite:` sqlx expects, and tells whether the URL asks for an
/// in-memory or a read-only database, reading it the way sqlx does (`:memory:` or `mode=…`, the last one wins).
fn understand_url(url: &str) -> (String, bool, bool) {
    let rest = url.split_once(':').map_or(url, |(_, rest)| rest);
    let path_and_params = rest.strip_prefix("//").unwrap_or(rest);
    let (database, params) = path_and_params
        .split_once('?')
        .unwrap_or((path_and_params, ""));
    let mode = params
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == "mode")
        .map(|(_, value)| value)
        .next_back();
    (
        format!("sqlite:{rest}"),
        database == ":memory:" || mode == Some("memory"),
        mode == Some("ro"),
    )
}

/// Creates the parent directory (0700) and an empty database file (0600) so that no byte of the database is
/// ever written to a file other users could read.
async fn prepare_file(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let exists = tokio::fs::try_exists(parent)
            .await
            .map_err(|e| error::io(parent, e))?;
        if !exists {
            let mut builder = tokio::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            builder.mode(0o700);
            builder
                .create(parent)
                .await
                .map_err(|e| error::io(parent, e))?;
        }
    }

    let mut open = tokio::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    open.mode(0o600);
    match open.open(path).await {
        Ok(file) => {
            // The umask can only remove bits from 0600, but an exotic one could remove ours too: be explicit.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .await
                    .map_err(|e| error::io(path, e))?;
            }
            #[cfg(not(unix))]
            drop(file);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_exposed(path).await;
            Ok(())
        }
        Err(e) => Err(error::io(path, e)),
    }
}

/// An existing file keeps the permissions its owner chose, but readable-by-others deserves a warning: it holds
/// secret hashes.
async fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = tokio::fs::metadata(path).await {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:04o}"),
                    "SQLite database is accessible to other users; consider chmod 600"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn encode_list(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list)
        .map_err(|e| StoreError::Database(DbError::new(format!("encoding a list: {e}"))))
}

fn decode_list(row: &SqliteRow, column: &str) -> Result<Vec<String>, StoreError> {
    let raw: String = row.try_get(column).map_err(db)?;
    serde_json::from_str(&raw).map_err(|e| error::corrupt("apps", column, e))
}

fn app_from_row(row: &SqliteRow) -> Result<AppRecord, StoreError> {
    Ok(AppRecord {
        client_id: row.try_get("client_id").map_err(db)?,
        client_name: row.try_get("client_name").map_err(db)?,
        organization: row.try_get("organization").map_err(db)?,
        secret_hash: row.try_get("secret_hash").map_err(db)?,
        grant_types: decode_list(row, "grant_types")?,
        scopes: decode_list(row, "scopes")?,
        audience: decode_list(row, "audience")?,
        redirect_uris: decode_list(row, "redirect_uris")?,
        created_by: row.try_get("created_by").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

fn revocation_from_row(row: &SqliteRow) -> Result<Revocation, StoreError> {
    Ok(Revocation {
        token_id: row.try_get("token_id").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        reason: row.try_get("reason").map_err(db)?,
        revoked_at: row.try_get("revoked_at").map_err(db)?,
    })
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_app(&self, app: &NewApp) -> Result<AppRecord, StoreError> {
        app.validate()?;
        sqlx::query(concat!(
            "INSERT INTO apps (",
            app_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"
        ))
        .bind(&app.client_id)
        .bind(&app.client_name)
        .bind(&app.organization)
        .bind(&app.secret_hash)
        .bind(encode_list(&app.grant_types)?)
        .bind(encode_list(&app.scopes)?)
        .bind(encode_list(&app.audience)?)
        .bind(encode_list(&app.redirect_uris)?)
        .bind(&app.created_by)
        .bind(app.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| db_unique(e, "app", &app.client_id))?;
        Ok(app.to_record())
    }

    async fn get_app(&self, client_id: &str) -> Result<Option<AppRecord>, StoreError> {
        if !text::storable_key(client_id) {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE client_id = ?1"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(app_from_row).transpose()
    }

    async fn list_apps(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AppRecord>, StoreError> {
        // Two statements rather than `?1 IS NULL OR client_id > ?1`, so each is a plain range scan of the key.
        let query = match after {
            Some(after) => sqlx::query(concat!(
                "SELECT ",
                app_columns!(),
                " FROM apps WHERE client_id > ?1 ORDER BY client_id LIMIT ?2"
            ))
            .bind(text::cursor(after))
            .bind(i64::from(limit)),
            None => sqlx::query(concat!(
                "SELECT ",
                app_columns!(),
                " FROM apps ORDER BY client_id LIMIT ?1"
            ))
            .bind(i64::from(limit)),
        };
        let rows = query.fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(app_from_row).collect()
    }

    async fn update_app(
        &self,
        client_id: &str,
        update: &AppUpdate,
    ) -> Result<Option<AppRecord>, StoreError> {
        update.validate()?;
        if !text::storable_key(client_id) {
            return Ok(None);
        }
        let list = |v: &Option<Vec<String>>| v.as_deref().map(encode_list).transpose();
        let row = sqlx::query(concat!(
            "UPDATE apps SET ",
            "client_name = COALESCE(?2, client_name), ",
            "secret_hash = COALESCE(?3, secret_hash), ",
            "grant_types = COALESCE(?4, grant_types), ",
            "scopes = COALESCE(?5, scopes), ",
            "audience = COALESCE(?6, audience), ",
            "redirect_uris = COALESCE(?7, redirect_uris), ",
            "updated_at = ?8 ",
            "WHERE client_id = ?1 RETURNING ",
            app_columns!()
        ))
        .bind(client_id)
        .bind(update.client_name.as_deref())
        .bind(update.secret_hash.as_deref())
        .bind(list(&update.grant_types)?)
        .bind(list(&update.scopes)?)
        .bind(list(&update.audience)?)
        .bind(list(&update.redirect_uris)?)
        .bind(update.updated_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(app_from_row).transpose()
    }

    async fn delete_app(&self, client_id: &str) -> Result<bool, StoreError> {
        if !text::storable_key(client_id) {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM apps WHERE client_id = ?1")
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn revoke(&self, r: &Revocation) -> Result<(), StoreError> {
        r.validate()?;
        // SQLite has one writer at a time, so AUTOINCREMENT values commit in increasing order by construction.
        sqlx::query(
            "INSERT INTO revocations (token_id, expires_at, reason, revoked_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(&r.token_id)
        .bind(r.expires_at)
        .bind(&r.reason)
        .bind(r.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn active_revocations(&self, now: i64) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_id, expires_at, reason, revoked_at FROM revocations \
             WHERE expires_at >= ?1 ORDER BY seq",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn revocations_since(&self, seq: i64) -> Result<Vec<(i64, Revocation)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, token_id, expires_at, reason, revoked_at FROM revocations \
             WHERE seq > ?1 ORDER BY seq",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq").map_err(db)?, revocation_from_row(row)?)))
            .collect()
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at < ?1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let detail = serde_json::to_string(&*text::scrub_json(&e.detail))
            .map_err(|err| StoreError::Database(DbError::new(format!("encoding detail: {err}"))))?;
        sqlx::query(
            "INSERT INTO audit_events (at, kind, client_id, subject, outcome, remote_addr, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(e.at)
        .bind(&*text::scrub(&e.kind))
        .bind(&*text::scrub(&e.client_id))
        .bind(&*text::scrub(&e.subject))
        .bind(&*text::scrub(&e.outcome))
        .bind(&*text::scrub(&e.remote_addr))
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn recent(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, client_id, subject, outcome, remote_addr, detail FROM audit_events \
             ORDER BY at DESC, id DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail").map_err(db)?;
                Ok(AuditEvent {
                    at: row.try_get("at").map_err(db)?,
                    kind: row.try_get("kind").map_err(db)?,
                    client_id: row.try_get("client_id").map_err(db)?,
                    subject: row.try_get("subject").map_err(db)?,
                    outcome: row.try_get("outcome").map_err(db)?,
                    remote_addr: row.try_get("remote_addr").map_err(db)?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|err| error::corrupt("audit_events", "detail", err))?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn revocation() -> Revocation {
        Revocation {
            token_id: "jti".into(),
            expires_at: 10,
            reason: "test".into(),
            revoked_at: 1,
        }
    }

    #[tokio::test]
    async fn creates_a_private_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("flyteauth.db");
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        store.revoke(&revocation()).await.unwrap();

        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a").join("b")), 0o700);
        assert_eq!(mode(&path), 0o600);
        // SQLite gives the WAL and shared-memory files the database file's permissions.
        let wal = path.with_file_name("flyteauth.db-wal");
        assert!(wal.exists(), "WAL journal expected");
        assert_eq!(mode(&wal), 0o600);
        let shm = path.with_file_name("flyteauth.db-shm");
        assert_eq!(mode(&shm), 0o600);
    }

    #[tokio::test]
    async fn leaves_existing_directory_and_file_permissions_alone() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("shared");
        std::fs::create_dir(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = parent.join("flyteauth.db");
        std::fs::File::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

        SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        assert_eq!(mode(&parent), 0o755);
        assert_eq!(mode(&path), 0o640);
    }

    #[tokio::test]
    async fn wal_foreign_keys_and_busy_timeout_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("f.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let pool = store.pool();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(busy, 5000);
    }

    #[tokio::test]
    async fn read_only_does_not_create_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.db");
        let err = SqliteStore::connect(&format!("sqlite://{}?mode=ro", path.display()))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Connect(_)), "{err:?}");
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn memory_databases_work_and_are_private() {
        let one = crate::connect("sqlite::memory:").await.unwrap();
        let two = crate::connect("sqlite::memory:").await.unwrap();
        one.revoke(&revocation()).await.unwrap();
        assert_eq!(one.revocations_since(0).await.unwrap().len(), 1);
        assert!(two.revocations_since(0).await.unwrap().is_empty());
        assert_eq!(one.backend(), Backend::Sqlite);
    }

    #[test]
    fn understands_urls_like_sqlx() {
        assert_eq!(
            understand_url("sqlite::memory:"),
            ("sqlite::memory:".into(), true, false)
        );
        assert_eq!(
            understand_url("SQLite://?mode=memory"),
            ("sqlite://?mode=memory".into(), true, false)
        );
        assert_eq!(
            understand_url("sqlite:///var/a.db?mode=ro"),
            ("sqlite:///var/a.db?mode=ro".into(), false, true)
        );
        assert_eq!(
            understand_url("sqlite://a:b/c.db?mode=rwc"),
            ("sqlite://a:b/c.db?mode=rwc".into(), false, false)
        );
        assert_eq!(
            understand_url("sqlite:rel.db"),
            ("sqlite:rel.db".into(), false, false)
        );
    }

    #[tokio::test]
    async fn memory_url_variants() {
        for url in [
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "SQLITE::memory:",
        ] {
            let store = crate::connect(url).await.unwrap();
            store.ping().await.unwrap();
        }
    }

    #[tokio::test]
    async fn parent_that_is_a_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let url = format!("sqlite://{}?mode=rwc", blocker.join("db.sqlite").display());
        let err = SqliteStore::connect(&url).await.unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    }
}
