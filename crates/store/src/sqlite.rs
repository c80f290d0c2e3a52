//! SQLite backend: one file (or memory), one server process.
//!
//! Writes go through one connection of their own and reads through a small pool beside it. SQLite admits one
//! writer at a time: with writers spread over several connections, the one that loses the lock sleeps in the
//! busy handler (1, 2, 5, 10 … ms) while the winner's commit takes microseconds, so under load requests queued
//! behind sleeping connections. On one connection they queue on its lock instead and are served in order, and
//! under WAL the readers never wait for the writer. The write connection is held directly rather than as a pool
//! of one: a pool pings the connection's thread when a connection comes back, one more round trip per write.
//!
//! Most writes are a single autocommit statement. The few operations that need several statements (rotating a
//! refresh token, creating or polling a device code) run in a `BEGIN IMMEDIATE` transaction, which takes the
//! write lock before reading and so waits in SQLite's busy handler like a single statement does; a deferred
//! read-then-write transaction could instead fail immediately with SQLITE_BUSY under WAL.
//!
//! Checkpoints (copying the WAL back into the database file, with two `fsync`s) run on a connection of their
//! own, woken every [`WRITES_PER_CHECKPOINT`] writes, not inside a commit: SQLite's automatic checkpoint runs on
//! the committing connection, and every request queued on the writer waited for its `fsync`s. The checkpointer
//! first copies without stopping anyone, then, holding the writer's lock, copies the few frames written
//! meanwhile, so that the next write can start the WAL over. The writer keeps an automatic checkpoint at
//! [`WRITER_AUTOCHECKPOINT_PAGES`] in case the checkpointer falls behind.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{Mutex, MutexGuard, Notify, oneshot};

use crate::audit::{ROWS_PER_INSERT, StoredEvent, insert_events};
use crate::devices::{PollStep, decision_fields, decode_status, poll_step};
use crate::error::{self, DbError, db, db_unique, db_unique_either};
use crate::refresh::{Decision, REDACTED_KEY, check_owner, decide};
use crate::revocations::decode_kind;
use crate::text;
use crate::users::{decode_failed_logins, decode_groups, decode_origin, encode_groups, lock_end};
use crate::{
    AppFilter, AppRecord, AppStore, AppUpdate, AuditEvent, AuditFilter, AuditStore, Backend,
    CodeRecord, CodeStore, DeviceApproval, DeviceCodeRecord, DevicePoll, DeviceStatus, DeviceStore,
    FederatedUser, LoginThrottle, NewApp, NewCode, NewDeviceCode, NewRefreshToken, NewSession,
    NewUser, RefreshStore, RefreshTokenRecord, Revocation, RevocationStore, Rotation,
    SessionRecord, SessionStore, Store, StoreError, UserRecord, UserStore,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections for reads; writes have one connection of their own (see the module documentation).
const READ_CONNECTIONS: u32 = 4;
/// Writes between two wake-ups of the checkpointer: about the 1,000 pages of SQLite's default automatic
/// checkpoint at the three to five pages a write changes.
const WRITES_PER_CHECKPOINT: u32 = 256;
/// WAL size (pages) at which the writer checkpoints by itself: four times SQLite's default, reached only when
/// the checkpointer cannot keep up or is gone.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 4000;

macro_rules! app_columns {
    () => {
        "client_id, client_name, organization, secret_hash, grant_types, scopes, audience, \
         redirect_uris, created_by, created_at, updated_at"
    };
}

macro_rules! user_columns {
    () => {
        "username, subject, email, display_name, password_hash, is_admin, disabled, failed_logins, \
         locked_until, created_at, updated_at, last_login_at, origin, groups"
    };
}

macro_rules! code_columns {
    () => {
        "code_hash, client_id, redirect_uri, code_challenge, scopes, audience, subject, username, \
         family_id, nonce, auth_time, created_at, expires_at, redeemed_at"
    };
}

/// A refresh token joined with its family (`t` and `f`).
macro_rules! refresh_columns {
    () => {
        "t.token_hash, t.family_id, f.client_id, f.subject, f.username, t.scopes, t.audience, \
         t.auth_time, t.issued_at, t.expires_at, t.used_at, f.revoked_at AS family_revoked_at"
    };
}

macro_rules! session_columns {
    () => {
        "session_hash, username, subject, auth_time, created_at, expires_at, last_seen_at, \
         idp_id_token"
    };
}

macro_rules! device_columns {
    () => {
        "device_code_hash, user_code, client_id, scopes, audience, interval_secs, created_at, \
         expires_at, status, last_polled_at, subject, username, family_id, auth_time, decided_at"
    };
}

/// Takes the write lock up front (see the module documentation).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A [`Store`] on SQLite.
pub(crate) struct SqliteStore {
    /// The one connection every write goes through, taken by one operation at a time.
    writer: Arc<Mutex<SqliteConnection>>,
    /// Wakes the checkpointer of a file database; `None` in memory and read-only.
    checkpoints: Option<CheckpointTrigger>,
    /// Connections for reads; `None` for an in-memory database, which reads through the writer.
    reader: Option<SqlitePool>,
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

        let options = options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        // The writer is opened first and runs the migrations, so that readers only ever see the migrated schema.
        if memory {
            // An in-memory database exists only while a connection to it is open, and connections sharing one
            // through the shared cache lock whole tables without honouring busy_timeout: so exactly one
            // connection, kept forever, for reads and writes alike.
            let mut writer = options.connect().await.map_err(error::connect)?;
            MIGRATOR
                .run_direct(&mut writer)
                .await
                .map_err(error::migrate)?;
            tracing::debug!(location = ":memory:", "sqlite store ready");
            return Ok(SqliteStore {
                writer: Arc::new(Mutex::new(writer)),
                checkpoints: None,
                reader: None,
                location: ":memory:".to_owned(),
            });
        }
        let path = options.get_filename().to_path_buf();
        if !read_only {
            prepare_file(&path).await?;
        }
        let options = options
            .create_if_missing(!read_only)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only an OS crash may lose the last
            // transactions, which is acceptable for an embedded single-node deployment.
            .synchronous(SqliteSynchronous::Normal)
            .pragma(
                "wal_autocheckpoint",
                WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            );
        let mut writer = options.connect().await.map_err(error::connect)?;
        MIGRATOR
            .run_direct(&mut writer)
            .await
            .map_err(error::migrate)?;
        // The pool does not ping a connection before handing it out: the database lives in this process, so a
        // connection cannot have gone away, and the ping would be one more round trip to its thread per read.
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(error::connect)?;
        let writer = Arc::new(Mutex::new(writer));
        let checkpoints = if read_only {
            None
        } else {
            let connection = options.connect().await.map_err(error::connect)?;
            Some(CheckpointTrigger::start(connection, Arc::clone(&writer)))
        };
        let location = path.display().to_string();
        tracing::debug!(location = %location, "sqlite store ready");
        Ok(SqliteStore {
            writer,
            checkpoints,
            reader: Some(reader),
            location,
        })
    }

    /// The write connection, waiting at most [`ACQUIRE_TIMEOUT`] for the operation ahead to finish.
    async fn write(&self) -> Result<MutexGuard<'_, SqliteConnection>, StoreError> {
        let writer = tokio::time::timeout(ACQUIRE_TIMEOUT, self.writer.lock())
            .await
            .map_err(|_| db(sqlx::Error::PoolTimedOut))?;
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.count_write();
        }
        Ok(writer)
    }

    /// A connection to read through: one of the read pool, or the writer for an in-memory database.
    ///
    /// No caller holds the writer while it reads through this, which would wait forever on an in-memory database.
    async fn read(&self) -> Result<Reading<'_>, StoreError> {
        match &self.reader {
            Some(pool) => pool.acquire().await.map(Reading::Pooled).map_err(db),
            None => self.write().await.map(Reading::Writer),
        }
    }

    /// The write connection, for tests that inspect or tamper with rows directly.
    #[cfg(test)]
    pub(crate) async fn writer(&self) -> MutexGuard<'_, SqliteConnection> {
        self.writer.lock().await
    }
}

/// The store's handle on its checkpointer: counts writes and wakes it; dropping it stops the checkpointer.
struct CheckpointTrigger {
    writes: AtomicU32,
    wake: Arc<Notify>,
    _stop: oneshot::Sender<()>,
}

impl CheckpointTrigger {
    /// Starts the checkpointer on `connection`, a connection of its own to the database `writer` writes.
    fn start(connection: SqliteConnection, writer: Arc<Mutex<SqliteConnection>>) -> Self {
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(run_checkpoints(
            connection,
            writer,
            Arc::clone(&wake),
            stopped,
        ));
        Self {
            writes: AtomicU32::new(0),
            wake,
            _stop: stop,
        }
    }

    /// Counts a write; every [`WRITES_PER_CHECKPOINT`]th wakes the checkpointer (wake-ups while it is busy
    /// coalesce into one).
    fn count_write(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) + 1 >= WRITES_PER_CHECKPOINT {
            self.writes.store(0, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }
}

/// The checkpointer: on each wake-up, a PASSIVE checkpoint while writes go on (the copying and the `fsync`s),
/// then another with the writer's lock held, which copies only what was written meanwhile and leaves the WAL
/// fully copied, so the next write starts it over instead of growing it. Stops when the store is dropped, and
/// lets go of the writer then.
async fn run_checkpoints(
    mut connection: SqliteConnection,
    writer: Arc<Mutex<SqliteConnection>>,
    wake: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = wake.notified() => {}
        }
        if checkpoint(&mut connection).await {
            let _paused = writer.lock().await;
            checkpoint(&mut connection).await;
        }
    }
    if let Err(e) = connection.close().await {
        tracing::debug!(error = %e, "closing the sqlite checkpoint connection");
    }
}

/// One PASSIVE checkpoint: copies what no reader still needs, never waits for a lock. A failure is logged and
/// left to the writer's automatic checkpoint; returns whether it succeeded.
async fn checkpoint(connection: &mut SqliteConnection) -> bool {
    match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(connection)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "sqlite checkpoint failed; the writer's automatic checkpoint remains");
            false
        }
    }
}

/// A connection taken for a read, given back when dropped.
enum Reading<'a> {
    /// From the read pool.
    Pooled(PoolConnection<Sqlite>),
    /// The writer of an in-memory database.
    Writer(MutexGuard<'a, SqliteConnection>),
}

impl Deref for Reading<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            Reading::Pooled(conn) => conn,
            Reading::Writer(conn) => conn,
        }
    }
}

impl DerefMut for Reading<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Reading::Pooled(conn) => conn,
            Reading::Writer(conn) => conn,
        }
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

fn decode_list(row: &SqliteRow, table: &str, column: &str) -> Result<Vec<String>, StoreError> {
    let raw: String = row.try_get(column).map_err(db)?;
    serde_json::from_str(&raw).map_err(|e| error::corrupt(table, column, e))
}

fn app_from_row(row: &SqliteRow) -> Result<AppRecord, StoreError> {
    Ok(AppRecord {
        client_id: row.try_get("client_id").map_err(db)?,
        client_name: row.try_get("client_name").map_err(db)?,
        organization: row.try_get("organization").map_err(db)?,
        secret_hash: row.try_get("secret_hash").map_err(db)?,
        grant_types: decode_list(row, "apps", "grant_types")?,
        scopes: decode_list(row, "apps", "scopes")?,
        audience: decode_list(row, "apps", "audience")?,
        redirect_uris: decode_list(row, "apps", "redirect_uris")?,
        created_by: row.try_get("created_by").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

fn revocation_from_row(row: &SqliteRow) -> Result<Revocation, StoreError> {
    let kind: String = row.try_get("kind").map_err(db)?;
    Ok(Revocation {
        kind: decode_kind(&kind)?,
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
        .execute(&mut *self.write().await?)
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
        .fetch_optional(&mut *self.read().await?)
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
        let rows = query
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db)?;
        rows.iter().map(app_from_row).collect()
    }

    async fn list_apps_by(
        &self,
        filter: &AppFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AppRecord>, StoreError> {
        if filter.matches_nothing() {
            return Ok(Vec::new());
        }
        // Built per call: each combination of filters is its own statement (and prepared once), so every one is
        // a range scan of an index: (created_by, client_id), (organization, client_id) or the primary key.
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE 1 = 1"
        ));
        if let Some(owner) = &filter.created_by {
            query.push(" AND created_by = ").push_bind(owner.as_str());
        }
        if let Some(organization) = &filter.organization {
            query
                .push(" AND organization = ")
                .push_bind(organization.as_str());
        }
        if let Some(after) = after {
            query
                .push(" AND client_id > ")
                .push_bind(text::cursor(after));
        }
        query
            .push(" ORDER BY client_id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query
            .build()
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db)?;
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
        .fetch_optional(&mut *self.write().await?)
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
            .execute(&mut *self.write().await?)
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
        // Revoking the same thing again with a later cut-off or expiry (an app deleted, re-created and deleted
        // again) keeps one row with the later values and gives it a new sequence number, above every number
        // handed out so far (sqlite_sequence remembers purged rows too), so replicas polling for new rows see it.
        sqlx::query(
            "INSERT INTO revocations (kind, token_id, expires_at, reason, revoked_at) \
             VALUES (?5, ?1, ?2, ?3, ?4) ON CONFLICT (kind, token_id) DO UPDATE SET \
               seq = max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'revocations'), 0), \
                         (SELECT max(seq) FROM revocations)) + 1, \
               revoked_at = max(revoked_at, excluded.revoked_at), \
               expires_at = max(expires_at, excluded.expires_at), \
               reason = excluded.reason \
             WHERE excluded.revoked_at > revocations.revoked_at OR excluded.expires_at > revocations.expires_at",
        )
        .bind(&r.token_id)
        .bind(r.expires_at)
        .bind(&r.reason)
        .bind(r.revoked_at)
        .bind(r.kind.as_str())
        .execute(&mut *self.write().await?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn active_revocations(&self, now: i64) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, token_id, expires_at, reason, revoked_at FROM revocations \
             WHERE expires_at >= ?1 ORDER BY seq",
        )
        .bind(now)
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db)?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn revocations_since(&self, seq: i64) -> Result<Vec<(i64, Revocation)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, token_id, expires_at, reason, revoked_at FROM revocations \
             WHERE seq > ?1 ORDER BY seq",
        )
        .bind(seq)
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq").map_err(db)?, revocation_from_row(row)?)))
            .collect()
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at < ?1")
            .bind(now)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record(&self, e: &AuditEvent) -> Result<(), StoreError> {
        // A batch of one is one autocommit INSERT.
        self.record_batch(std::slice::from_ref(e)).await
    }

    async fn record_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = events
            .iter()
            .map(StoredEvent::of)
            .collect::<Result<Vec<_>, _>>()?;
        if rows.len() <= ROWS_PER_INSERT {
            // One statement is a transaction of its own: the same atomic commit, without BEGIN and COMMIT each
            // making a round trip to the connection's thread (most batches under load are this size).
            insert_events::<Sqlite>(&rows, "")
                .build()
                .execute(&mut *self.write().await?)
                .await
                .map_err(db)?;
            return Ok(());
        }
        let mut writer = self.write().await?;
        let mut tx = writer.begin_with(BEGIN_WRITE).await.map_err(db)?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            insert_events::<Sqlite>(chunk, "")
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn recent(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        self.list_audit(&AuditFilter::default(), limit).await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT at, kind, client_id, subject, outcome, remote_addr, detail \
             FROM audit_events WHERE 1 = 1",
        );
        if let Some(kind) = &filter.kind {
            query
                .push(" AND kind = ")
                .push_bind(text::scrub(kind).into_owned());
        }
        if let Some(since) = filter.since {
            query.push(" AND at >= ").push_bind(since);
        }
        query
            .push(" ORDER BY at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query
            .build()
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn prune_audit(&self, before: i64, batch: u32) -> Result<u64, StoreError> {
        if batch == 0 {
            return Ok(0);
        }
        // Oldest first through the (at, id) index; SQLite has no DELETE … LIMIT by default, hence the subquery.
        let done = sqlx::query(
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE at < ?1 ORDER BY at, id LIMIT ?2)",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&mut *self.write().await?)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
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
}

fn user_from_row(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        username: row.try_get("username").map_err(db)?,
        subject: row.try_get("subject").map_err(db)?,
        email: row.try_get("email").map_err(db)?,
        display_name: row.try_get("display_name").map_err(db)?,
        password_hash: row.try_get("password_hash").map_err(db)?,
        is_admin: row.try_get("is_admin").map_err(db)?,
        disabled: row.try_get("disabled").map_err(db)?,
        failed_logins: decode_failed_logins(row.try_get("failed_logins").map_err(db)?)?,
        locked_until: row.try_get("locked_until").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
        last_login_at: row.try_get("last_login_at").map_err(db)?,
        origin: decode_origin(&row.try_get::<String, _>("origin").map_err(db)?)?,
        groups: decode_groups(&row.try_get::<String, _>("groups").map_err(db)?)?,
    })
}

fn code_from_row(row: &SqliteRow) -> Result<CodeRecord, StoreError> {
    Ok(CodeRecord {
        code_hash: row.try_get("code_hash").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        redirect_uri: row.try_get("redirect_uri").map_err(db)?,
        code_challenge: row.try_get("code_challenge").map_err(db)?,
        scopes: decode_list(row, "authorization_codes", "scopes")?,
        audience: decode_list(row, "authorization_codes", "audience")?,
        subject: row.try_get("subject").map_err(db)?,
        username: row.try_get("username").map_err(db)?,
        family_id: row.try_get("family_id").map_err(db)?,
        nonce: row.try_get("nonce").map_err(db)?,
        auth_time: row.try_get("auth_time").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        redeemed_at: row.try_get("redeemed_at").map_err(db)?,
    })
}

fn refresh_from_row(row: &SqliteRow) -> Result<RefreshTokenRecord, StoreError> {
    Ok(RefreshTokenRecord {
        token_hash: row.try_get("token_hash").map_err(db)?,
        family_id: row.try_get("family_id").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        subject: row.try_get("subject").map_err(db)?,
        username: row.try_get("username").map_err(db)?,
        scopes: decode_list(row, "refresh_tokens", "scopes")?,
        audience: decode_list(row, "refresh_tokens", "audience")?,
        auth_time: row.try_get("auth_time").map_err(db)?,
        issued_at: row.try_get("issued_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        used_at: row.try_get("used_at").map_err(db)?,
        family_revoked_at: row.try_get("family_revoked_at").map_err(db)?,
    })
}

fn session_from_row(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        session_hash: row.try_get("session_hash").map_err(db)?,
        username: row.try_get("username").map_err(db)?,
        subject: row.try_get("subject").map_err(db)?,
        auth_time: row.try_get("auth_time").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        last_seen_at: row.try_get("last_seen_at").map_err(db)?,
        idp_id_token: row.try_get("idp_id_token").map_err(db)?,
    })
}

/// Stores a refresh token whose family is known to exist.
async fn insert_refresh_token(
    conn: &mut sqlx::SqliteConnection,
    token: &NewRefreshToken,
    family_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens \
         (token_hash, family_id, scopes, audience, auth_time, issued_at, expires_at, used_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
    )
    .bind(&token.token_hash)
    .bind(family_id)
    .bind(encode_list(&token.scopes)?)
    .bind(encode_list(&token.audience)?)
    .bind(token.auth_time)
    .bind(token.issued_at)
    .bind(token.expires_at)
    .execute(conn)
    .await
    .map_err(|e| db_unique(e, "refresh token", REDACTED_KEY))?;
    Ok(())
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        user.validate()?;
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, 0, ?7, ?7, NULL, 'local', '[]')"
        ))
        .bind(&user.username)
        .bind(&user.subject)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.created_at)
        .execute(&mut *self.write().await?)
        .await
        .map_err(|e| {
            db_unique_either(
                e,
                ("user", &user.username),
                ("user subject", &user.subject),
                "subject",
            )
        })?;
        Ok(user.to_record())
    }

    async fn upsert_federated_user(&self, user: &FederatedUser) -> Result<UserRecord, StoreError> {
        user.validate()?;
        // One statement, and SQLite has a single writer. SQLite checks the upsert target (username) before the
        // other unique keys, so a returning user's own subject is not reported as taken; a subject held by
        // another user name still is. The WHERE turns a clash with a local account or another subject into no row.
        let row = sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, '', 0, 0, 0, 0, ?6, ?6, ?6, 'oidc', ?5) \
             ON CONFLICT (username) DO UPDATE SET email = excluded.email, \
             display_name = excluded.display_name, groups = excluded.groups, \
             updated_at = excluded.updated_at, last_login_at = excluded.last_login_at \
             WHERE users.origin = 'oidc' AND users.subject = excluded.subject \
             RETURNING ",
            user_columns!()
        ))
        .bind(&user.username)
        .bind(&user.subject)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(encode_groups(&user.groups)?)
        .bind(user.now)
        .fetch_optional(&mut *self.write().await?)
        .await
        .map_err(|e| {
            db_unique_either(
                e,
                ("user", &user.username),
                ("user subject", &user.subject),
                "subject",
            )
        })?;
        match row {
            Some(row) => user_from_row(&row),
            None => Err(StoreError::AlreadyExists {
                entity: "user",
                key: user.username.clone(),
            }),
        }
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        if !text::storable_key(username) {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = ?1"
        ))
        .bind(username)
        .fetch_optional(&mut *self.read().await?)
        .await
        .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn get_user_by_subject(&self, subject: &str) -> Result<Option<UserRecord>, StoreError> {
        if !text::storable_key(subject) {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE subject = ?1"
        ))
        .bind(subject)
        .fetch_optional(&mut *self.read().await?)
        .await
        .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let query = match after {
            Some(after) => sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE username > ?1 ORDER BY username LIMIT ?2"
            ))
            .bind(text::cursor(after))
            .bind(i64::from(limit)),
            None => sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users ORDER BY username LIMIT ?1"
            ))
            .bind(i64::from(limit)),
        };
        let rows = query
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *self.read().await?)
            .await
            .map_err(db)?;
        u64::try_from(n).map_err(|e| error::corrupt("users", "count", e))
    }

    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        text::check("password_hash", password_hash)?;
        if !text::storable_key(username) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?2, failed_logins = 0, locked_until = 0, \
             updated_at = ?3 WHERE username = ?1",
        )
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *self.write().await?)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        if !text::storable_key(username) {
            return Ok(false);
        }
        let done =
            sqlx::query("UPDATE users SET disabled = ?2, updated_at = ?3 WHERE username = ?1")
                .bind(username)
                .bind(disabled)
                .bind(now)
                .execute(&mut *self.write().await?)
                .await
                .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_login_failure(
        &self,
        username: &str,
        now: i64,
        max_failures: u32,
        lock_for_secs: i64,
    ) -> Result<Option<LoginThrottle>, StoreError> {
        if !text::storable_key(username) {
            return Ok(None);
        }
        // One statement: the right-hand sides all see the row as it was, and SQLite has a single writer.
        let row = sqlx::query(
            "UPDATE users SET \
             failed_logins = CASE WHEN failed_logins + 1 >= ?2 THEN 0 ELSE failed_logins + 1 END, \
             locked_until = CASE WHEN failed_logins + 1 >= ?2 THEN ?3 ELSE locked_until END \
             WHERE username = ?1 RETURNING failed_logins, locked_until",
        )
        .bind(username)
        .bind(i64::from(max_failures))
        .bind(lock_end(now, lock_for_secs))
        .fetch_optional(&mut *self.write().await?)
        .await
        .map_err(db)?;
        row.map(|row| {
            Ok(LoginThrottle {
                failed_logins: decode_failed_logins(row.try_get("failed_logins").map_err(db)?)?,
                locked_until: row.try_get("locked_until").map_err(db)?,
            })
        })
        .transpose()
    }

    async fn record_login_success(&self, username: &str, now: i64) -> Result<bool, StoreError> {
        if !text::storable_key(username) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE users SET failed_logins = 0, last_login_at = ?2 WHERE username = ?1",
        )
        .bind(username)
        .bind(now)
        .execute(&mut *self.write().await?)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl CodeStore for SqliteStore {
    async fn put_code(&self, code: &NewCode) -> Result<(), StoreError> {
        code.validate()?;
        sqlx::query(concat!(
            "INSERT INTO authorization_codes (",
            code_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, NULL)"
        ))
        .bind(&code.code_hash)
        .bind(&code.client_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(encode_list(&code.scopes)?)
        .bind(encode_list(&code.audience)?)
        .bind(&code.subject)
        .bind(&code.username)
        .bind(&code.family_id)
        .bind(&code.nonce)
        .bind(code.auth_time)
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&mut *self.write().await?)
        .await
        .map_err(|e| db_unique(e, "authorization code", REDACTED_KEY))?;
        Ok(())
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<(CodeRecord, bool)>, StoreError> {
        if !text::storable_key(code_hash) {
            return Ok(None);
        }
        // The conditional update is the claim: only one statement can find redeemed_at still NULL.
        let claimed = sqlx::query(concat!(
            "UPDATE authorization_codes SET redeemed_at = ?2 \
             WHERE code_hash = ?1 AND redeemed_at IS NULL RETURNING ",
            code_columns!()
        ))
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&mut *self.write().await?)
        .await
        .map_err(db)?;
        if let Some(row) = claimed {
            let record = CodeRecord {
                redeemed_at: None,
                ..code_from_row(&row)?
            };
            return Ok(Some((record, true)));
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            code_columns!(),
            " FROM authorization_codes WHERE code_hash = ?1"
        ))
        .bind(code_hash)
        .fetch_optional(&mut *self.read().await?)
        .await
        .map_err(db)?;
        Ok(row
            .as_ref()
            .map(code_from_row)
            .transpose()?
            .map(|record| (record, false)))
    }

    async fn purge_expired_codes(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < ?1")
            .bind(now)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl RefreshStore for SqliteStore {
    async fn create_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        token.validate()?;
        let mut writer = self.write().await?;
        let mut tx = writer.begin_with(BEGIN_WRITE).await.map_err(db)?;
        // The no-op update makes RETURNING yield the family whether or not it was just created.
        let owner = sqlx::query(
            "INSERT INTO refresh_families \
             (family_id, client_id, subject, username, created_at, revoked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, NULL) \
             ON CONFLICT (family_id) DO UPDATE SET family_id = excluded.family_id \
             RETURNING client_id, subject, username",
        )
        .bind(&token.family_id)
        .bind(&token.client_id)
        .bind(&token.subject)
        .bind(&token.username)
        .bind(token.issued_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let client_id: String = owner.try_get("client_id").map_err(db)?;
        let subject: String = owner.try_get("subject").map_err(db)?;
        let username: String = owner.try_get("username").map_err(db)?;
        check_owner(token, &client_id, &subject, &username)?;
        insert_refresh_token(&mut tx, token, &token.family_id).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        successor: &NewRefreshToken,
        now: i64,
        grace_secs: i64,
    ) -> Result<Rotation, StoreError> {
        successor.validate()?;
        if !text::storable_key(token_hash) {
            return Ok(Rotation::NotFound);
        }
        // The write lock is held from the read on, so concurrent rotations run one after the other.
        let mut writer = self.write().await?;
        let mut tx = writer.begin_with(BEGIN_WRITE).await.map_err(db)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            refresh_columns!(),
            " FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
             WHERE t.token_hash = ?1"
        ))
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(Rotation::NotFound);
        };
        let old = refresh_from_row(&row)?;
        let decision = decide(&old, now, grace_secs);
        match decision {
            Decision::FamilyRevoked | Decision::Expired => return Ok(decision.outcome(old)),
            Decision::Rotated => {
                sqlx::query("UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1")
                    .bind(token_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                insert_refresh_token(&mut tx, successor, &old.family_id).await?;
            }
            Decision::WithinGrace => {
                insert_refresh_token(&mut tx, successor, &old.family_id).await?;
            }
            Decision::Reused => {
                sqlx::query(
                    "UPDATE refresh_families SET revoked_at = ?2 \
                     WHERE family_id = ?1 AND revoked_at IS NULL",
                )
                .bind(&old.family_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(decision.outcome(old))
    }

    async fn get_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        if !text::storable_key(token_hash) {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            refresh_columns!(),
            " FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
             WHERE t.token_hash = ?1"
        ))
        .bind(token_hash)
        .fetch_optional(&mut *self.read().await?)
        .await
        .map_err(db)?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> Result<bool, StoreError> {
        if !text::storable_key(family_id) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE refresh_families SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(now)
        .execute(&mut *self.write().await?)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_families(
        &self,
        subject: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        if !text::storable_key(subject) {
            return Ok(Vec::new());
        }
        let mut ids: Vec<String> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = ?2 WHERE subject = ?1 AND revoked_at IS NULL \
             RETURNING family_id",
        )
        .bind(subject)
        .bind(now)
        .fetch_all(&mut *self.write().await?)
        .await
        .map_err(db)?;
        ids.sort();
        Ok(ids)
    }

    async fn purge_expired_refresh_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let mut writer = self.write().await?;
        let mut tx = writer.begin_with(BEGIN_WRITE).await.map_err(db)?;
        let done = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "DELETE FROM refresh_families WHERE NOT EXISTS \
             (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.family_id)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &NewSession) -> Result<SessionRecord, StoreError> {
        session.validate()?;
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5, ?7)"
        ))
        .bind(&session.session_hash)
        .bind(&session.username)
        .bind(&session.subject)
        .bind(session.auth_time)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(&session.idp_id_token)
        .execute(&mut *self.write().await?)
        .await
        .map_err(|e| db_unique(e, "session", REDACTED_KEY))?;
        Ok(session.to_record())
    }

    async fn get_session(&self, session_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        if !text::storable_key(session_hash) {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE session_hash = ?1"
        ))
        .bind(session_hash)
        .fetch_optional(&mut *self.read().await?)
        .await
        .map_err(db)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, session_hash: &str, now: i64) -> Result<bool, StoreError> {
        if !text::storable_key(session_hash) {
            return Ok(false);
        }
        let done = sqlx::query("UPDATE sessions SET last_seen_at = ?2 WHERE session_hash = ?1")
            .bind(session_hash)
            .bind(now)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_session(&self, session_hash: &str) -> Result<bool, StoreError> {
        if !text::storable_key(session_hash) {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM sessions WHERE session_hash = ?1")
            .bind(session_hash)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user_sessions(&self, username: &str) -> Result<u64, StoreError> {
        if !text::storable_key(username) {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM sessions WHERE username = ?1")
            .bind(username)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at < ?1")
            .bind(now)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

fn device_from_row(row: &SqliteRow) -> Result<DeviceCodeRecord, StoreError> {
    let status: String = row.try_get("status").map_err(db)?;
    Ok(DeviceCodeRecord {
        device_code_hash: row.try_get("device_code_hash").map_err(db)?,
        user_code: row.try_get("user_code").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        scopes: decode_list(row, "device_codes", "scopes")?,
        audience: decode_list(row, "device_codes", "audience")?,
        interval_secs: row.try_get("interval_secs").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        status: decode_status(&status)?,
        last_polled_at: row.try_get("last_polled_at").map_err(db)?,
        subject: row.try_get("subject").map_err(db)?,
        username: row.try_get("username").map_err(db)?,
        family_id: row.try_get("family_id").map_err(db)?,
        auth_time: row.try_get("auth_time").map_err(db)?,
        decided_at: row.try_get("decided_at").map_err(db)?,
    })
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn create_device_code(
        &self,
        code: &NewDeviceCode,
    ) -> Result<DeviceCodeRecord, StoreError> {
        code.validate()?;
        // One transaction holding the write lock: the delete of an expired holder and the insert happen together.
        let mut writer = self.write().await?;
        let mut tx = writer.begin_with(BEGIN_WRITE).await.map_err(db)?;
        sqlx::query("DELETE FROM device_codes WHERE user_code = ?1 AND expires_at <= ?2")
            .bind(&code.user_code)
            .bind(code.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(concat!(
            "INSERT INTO device_codes (",
            device_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, '', '', '', 0, NULL)"
        ))
        .bind(&code.device_code_hash)
        .bind(&code.user_code)
        .bind(&code.client_id)
        .bind(encode_list(&code.scopes)?)
        .bind(encode_list(&code.audience)?)
        .bind(code.interval_secs)
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(DeviceStatus::Pending.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            db_unique_either(
                e,
                ("device code", REDACTED_KEY),
                ("user code", &code.user_code),
                "user_code",
            )
        })?;
        tx.commit().await.map_err(db)?;
        Ok(code.to_record())
    }

    async fn get_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<Option<DeviceCodeRecord>, StoreError> {
        if !text::storable_key(user_code) {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM device_codes WHERE user_code = ?1 AND expires_at > ?2"
        ))
        .bind(user_code)
        .bind(now)
        .fetch_optional(&mut *self.read().await?)
        .await
        .map_err(db)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<DeviceApproval>,
        now: i64,
    ) -> Result<Option<DeviceCodeRecord>, StoreError> {
        if let Some(approval) = &approval {
            approval.validate()?;
        }
        if !text::storable_key(user_code) {
            return Ok(None);
        }
        let (status, subject, username, family_id, auth_time) = decision_fields(approval.as_ref());
        // The conditional update is the decision: only one statement can find the code still pending.
        let row = sqlx::query(concat!(
            "UPDATE device_codes SET status = ?3, subject = ?4, username = ?5, family_id = ?6, \
             auth_time = ?7, decided_at = ?2 \
             WHERE user_code = ?1 AND status = ?8 AND expires_at > ?2 RETURNING ",
            device_columns!()
        ))
        .bind(user_code)
        .bind(now)
        .bind(status.as_str())
        .bind(subject)
        .bind(username)
        .bind(family_id)
        .bind(auth_time)
        .bind(DeviceStatus::Pending.as_str())
        .fetch_optional(&mut *self.write().await?)
        .await
        .map_err(db)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError> {
        if !text::storable_key(device_code_hash) {
            return Ok(DevicePoll::NotFound);
        }
        // The write lock is held from the read on, so concurrent polls of one code run one after the other.
        let mut writer = self.write().await?;
        let mut tx = writer.begin_with(BEGIN_WRITE).await.map_err(db)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM device_codes WHERE device_code_hash = ?1"
        ))
        .bind(device_code_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(DevicePoll::NotFound);
        };
        let code = device_from_row(&row)?;
        match poll_step(&code, now) {
            PollStep::Unchanged(answer) => Ok(answer.with(code)),
            PollStep::Update {
                interval_secs,
                status,
                answer,
            } => {
                let row = sqlx::query(concat!(
                    "UPDATE device_codes SET interval_secs = ?2, status = ?3, last_polled_at = ?4 \
                     WHERE device_code_hash = ?1 RETURNING ",
                    device_columns!()
                ))
                .bind(device_code_hash)
                .bind(interval_secs)
                .bind(status.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                let updated = device_from_row(&row)?;
                tx.commit().await.map_err(db)?;
                Ok(answer.with(updated))
            }
        }
    }

    async fn purge_expired_device_codes(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM device_codes WHERE expires_at < ?1")
            .bind(now)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.write().await?)
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

    /// Applies the migrations up to `version` only: the schema an older release left behind.
    async fn migrate_up_to(pool: &SqlitePool, version: i64) {
        let old = Migrator {
            migrations: std::borrow::Cow::Owned(
                MIGRATOR
                    .migrations
                    .iter()
                    .filter(|m| m.version <= version)
                    .cloned()
                    .collect(),
            ),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        old.run(pool).await.unwrap();
    }

    fn revocation() -> Revocation {
        Revocation {
            kind: crate::RevocationKind::Token,
            token_id: "jti".into(),
            expires_at: 10,
            reason: "test".into(),
            revoked_at: 1,
        }
    }

    /// Frames in the WAL now, read from the wal-index header (the `-shm` file: a 32-bit `mxFrame` at byte 16,
    /// in native byte order, per SQLite's WAL file format), which unlike `PRAGMA wal_checkpoint` does not
    /// checkpoint as it looks.
    fn wal_frames(db: &std::path::Path) -> u32 {
        let shm = std::fs::read(db.with_extension("db-shm")).unwrap();
        u32::from_ne_bytes(shm[16..20].try_into().unwrap())
    }

    /// The checkpointer, not a commit, copies the WAL back and lets the writer start it over: after three rounds
    /// of [`WRITES_PER_CHECKPOINT`] writes (well under the writer's own automatic checkpoint), the WAL holds only
    /// the frames written since the last round. Without the checkpointer it would hold every write's frames.
    #[tokio::test]
    async fn the_checkpointer_lets_the_writer_start_the_wal_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        let event = |n: u32| AuditEvent {
            at: i64::from(n),
            kind: "token.issued".into(),
            client_id: "c".into(),
            subject: "s".into(),
            outcome: "ok".into(),
            remote_addr: String::new(),
            detail: serde_json::json!({ "n": n }),
        };
        let rounds = 3 * WRITES_PER_CHECKPOINT;
        for n in 0..rounds {
            store.record(&event(n)).await.unwrap();
        }
        assert!(
            (rounds + WRITES_PER_CHECKPOINT / 2) * 4 < WRITER_AUTOCHECKPOINT_PAGES,
            "the writer's own checkpoint could explain a short WAL"
        );
        // The WAL starts over at the first write after a checkpoint completes, so keep writing (a few, 10 ms
        // apart) until it has. An audit row is about 3.4 frames: the writer's own checkpoint is not reached.
        let mut n = rounds;
        while wal_frames(&path) >= WRITES_PER_CHECKPOINT {
            assert!(
                n < rounds + WRITES_PER_CHECKPOINT / 2,
                "the WAL still holds {} frames after {n} writes",
                wal_frames(&path)
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            store.record(&event(n)).await.unwrap();
            n += 1;
        }
        assert_eq!(store.recent(u32::MAX).await.unwrap().len(), n as usize);
    }

    /// Migration 0004 rebuilds the revocations table: existing rows become `token` revocations with their
    /// sequence numbers, and numbers handed out before (even of purged rows) are never handed out again.
    #[tokio::test]
    async fn revocation_kinds_migration_keeps_rows_and_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        {
            let pool = SqlitePool::connect(&url).await.unwrap();
            migrate_up_to(&pool, 3).await;
            for id in ["a", "b", "c"] {
                sqlx::query(
                    "INSERT INTO revocations (token_id, expires_at, reason, revoked_at) \
                     VALUES (?1, 10, 'old', 1)",
                )
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            }
            sqlx::query("DELETE FROM revocations WHERE token_id = 'c'")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }

        let store = SqliteStore::connect(&url).await.unwrap();
        let all = store.revocations_since(0).await.unwrap();
        let expected = |token_id: &str| Revocation {
            kind: crate::RevocationKind::Token,
            token_id: token_id.to_owned(),
            expires_at: 10,
            reason: "old".to_owned(),
            revoked_at: 1,
        };
        assert_eq!(all, vec![(1, expected("a")), (2, expected("b"))]);
        store.revoke(&revocation()).await.unwrap();
        let new = store.revocations_since(2).await.unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].0, 4, "seq 3 was handed out before the migration");
        // The same id under another kind is a separate revocation.
        store
            .revoke(&Revocation {
                kind: crate::RevocationKind::Family,
                ..expected("a")
            })
            .await
            .unwrap();
        assert_eq!(store.revocations_since(0).await.unwrap().len(), 4);
        let index: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'revocations_expires_at'",
        )
        .fetch_optional(&mut *store.writer().await)
        .await
        .unwrap();
        assert!(index.is_some());
    }

    /// Migration 0010: accounts and sessions stored before it read back as local accounts without groups and as
    /// sessions without an ID token.
    #[tokio::test]
    async fn federated_accounts_migration_keeps_existing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        {
            let pool = SqlitePool::connect(&url).await.unwrap();
            migrate_up_to(&pool, 9).await;
            sqlx::query(
                "INSERT INTO users (username, subject, email, display_name, password_hash, is_admin, \
                 disabled, failed_logins, locked_until, created_at, updated_at, last_login_at) \
                 VALUES ('old', 'subject-old', 'o@example.com', 'Old', 'hash', 1, 0, 2, 0, 5, 6, 7)",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO sessions (session_hash, username, subject, auth_time, created_at, \
                 expires_at, last_seen_at) VALUES ('h', 'old', 'subject-old', 1, 2, 3, 4)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }

        let store = SqliteStore::connect(&url).await.unwrap();
        let user = store.get_user("old").await.unwrap().unwrap();
        assert_eq!(
            user,
            UserRecord {
                username: "old".into(),
                subject: "subject-old".into(),
                email: "o@example.com".into(),
                display_name: "Old".into(),
                password_hash: "hash".into(),
                is_admin: true,
                disabled: false,
                failed_logins: 2,
                locked_until: 0,
                created_at: 5,
                updated_at: 6,
                last_login_at: Some(7),
                origin: crate::UserOrigin::Local,
                groups: vec![],
            }
        );
        let session = store.get_session("h").await.unwrap().unwrap();
        assert_eq!(session.idp_id_token, None);
        // The table stays STRICT: a blob is refused by the new text columns, not stored as is.
        let refused = sqlx::query("UPDATE users SET groups = X'5B5D' WHERE username = 'old'")
            .execute(&mut *store.writer().await)
            .await;
        assert!(refused.is_err(), "{refused:?}");
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
        let mut conn = store.writer().await;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
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

    fn test_app(client_id: &str) -> NewApp {
        NewApp {
            client_id: client_id.to_owned(),
            client_name: client_id.to_owned(),
            organization: String::new(),
            secret_hash: format!("sha256:{}", "0f".repeat(32)),
            grant_types: vec!["client_credentials".to_owned()],
            scopes: vec![],
            audience: vec![],
            redirect_uris: vec![],
            created_by: "test".to_owned(),
            created_at: 1,
        }
    }

    /// Writers spread over several connections collided on SQLite's lock and the losers slept in the busy
    /// handler, which halved the authorization-code grant under load. Every write now waits for the one write
    /// connection, and reads go on beside it.
    #[tokio::test]
    async fn writes_queue_for_one_connection_while_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        let store = std::sync::Arc::new(SqliteStore::connect(&url).await.unwrap());
        store.create_app(&test_app("first")).await.unwrap();

        // Hold the write connection in the middle of a write transaction.
        let mut held = store.writer().await;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *held)
            .await
            .unwrap();

        let queued = tokio::spawn({
            let store = store.clone();
            async move { store.create_app(&test_app("second")).await }
        });
        // Reads are served while the writer is busy ...
        let read = tokio::time::timeout(Duration::from_secs(5), store.get_app("first"))
            .await
            .expect("a read waited for the writer")
            .unwrap();
        assert_eq!(read.unwrap().client_id, "first");
        // ... and the write waits for the connection rather than failing or racing it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !queued.is_finished(),
            "a write ran beside a held write transaction"
        );

        sqlx::query("COMMIT").execute(&mut *held).await.unwrap();
        drop(held);
        let created = tokio::time::timeout(Duration::from_secs(5), queued)
            .await
            .expect("the queued write never ran")
            .unwrap()
            .unwrap();
        assert_eq!(created.client_id, "second");
        assert!(store.get_app("second").await.unwrap().is_some());
    }
}
