//! PostgreSQL backend: shared by any number of replicas.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row};

use crate::error::{self, DbError, db, db_unique};
use crate::text;
use crate::{
    AppRecord, AppStore, AppUpdate, AuditEvent, AuditStore, Backend, NewApp, Revocation,
    RevocationStore, Store, StoreError,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const APPLICATION_NAME: &str = "flyteauth";
/// Per replica; several replicas must stay well under the server's max_connections (default 100).
const MAX_CONNECTIONS: u32 = 10;
/// Fail fast: a request waiting longer than this on the pool is better answered with "unavailable".
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Recycling connections lets a replica follow DNS changes and spreads load after a failover.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

macro_rules! app_columns {
    () => {
        "client_id, client_name, organization, secret_hash, grant_types, scopes, audience, \
         redirect_uris, created_by, created_at, updated_at"
    };
}

/// A [`Store`] on PostgreSQL.
pub(crate) struct PostgresStore {
    pool: PgPool,
    /// `host:port/database`, never the user or password; for `Debug` and logs.
    location: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens a pool for a `postgres:` URL and applies the migrations.
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        if options.get_application_name().is_none() {
            options = options.application_name(APPLICATION_NAME);
        }
        let location = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        // The pool retries failed connections until its acquire timeout and then reports only "timed out". One
        // direct attempt first fails fast with the real reason (refused, authentication, unknown database).
        let probe = options.connect().await.map_err(error::connect)?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .max_lifetime(MAX_LIFETIME)
            .connect_with(options)
            .await
            .map_err(error::connect)?;
        // sqlx takes an advisory lock around the whole run, so replicas starting together migrate one at a time.
        MIGRATOR.run(&pool).await.map_err(error::migrate)?;
        tracing::debug!(location = %location, "postgres store ready");
        Ok(PostgresStore { pool, location })
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn app_from_row(row: &PgRow) -> Result<AppRecord, StoreError> {
    Ok(AppRecord {
        client_id: row.try_get("client_id").map_err(db)?,
        client_name: row.try_get("client_name").map_err(db)?,
        organization: row.try_get("organization").map_err(db)?,
        secret_hash: row.try_get("secret_hash").map_err(db)?,
        grant_types: row.try_get("grant_types").map_err(db)?,
        scopes: row.try_get("scopes").map_err(db)?,
        audience: row.try_get("audience").map_err(db)?,
        redirect_uris: row.try_get("redirect_uris").map_err(db)?,
        created_by: row.try_get("created_by").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

fn revocation_from_row(row: &PgRow) -> Result<Revocation, StoreError> {
    Ok(Revocation {
        token_id: row.try_get("token_id").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        reason: row.try_get("reason").map_err(db)?,
        revoked_at: row.try_get("revoked_at").map_err(db)?,
    })
}

#[async_trait]
impl AppStore for PostgresStore {
    async fn create_app(&self, app: &NewApp) -> Result<AppRecord, StoreError> {
        app.validate()?;
        sqlx::query(concat!(
            "INSERT INTO apps (",
            app_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"
        ))
        .bind(&app.client_id)
        .bind(&app.client_name)
        .bind(&app.organization)
        .bind(&app.secret_hash)
        .bind(&app.grant_types)
        .bind(&app.scopes)
        .bind(&app.audience)
        .bind(&app.redirect_uris)
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
            " FROM apps WHERE client_id = $1"
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
        // Two statements rather than `$1 IS NULL OR client_id > $1`: a generic plan for the combined form cannot
        // use an index range scan and would walk every earlier key.
        let query = match after {
            Some(after) => sqlx::query(concat!(
                "SELECT ",
                app_columns!(),
                " FROM apps WHERE client_id > $1 ORDER BY client_id LIMIT $2"
            ))
            .bind(text::cursor(after))
            .bind(i64::from(limit)),
            None => sqlx::query(concat!(
                "SELECT ",
                app_columns!(),
                " FROM apps ORDER BY client_id LIMIT $1"
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
        let row = sqlx::query(concat!(
            "UPDATE apps SET ",
            "client_name = COALESCE($2, client_name), ",
            "secret_hash = COALESCE($3, secret_hash), ",
            "grant_types = COALESCE($4::text[], grant_types), ",
            "scopes = COALESCE($5::text[], scopes), ",
            "audience = COALESCE($6::text[], audience), ",
            "redirect_uris = COALESCE($7::text[], redirect_uris), ",
            "updated_at = $8 ",
            "WHERE client_id = $1 RETURNING ",
            app_columns!()
        ))
        .bind(client_id)
        .bind(update.client_name.as_deref())
        .bind(update.secret_hash.as_deref())
        .bind(update.grant_types.as_deref())
        .bind(update.scopes.as_deref())
        .bind(update.audience.as_deref())
        .bind(update.redirect_uris.as_deref())
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
        let done = sqlx::query("DELETE FROM apps WHERE client_id = $1")
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl RevocationStore for PostgresStore {
    async fn revoke(&self, r: &Revocation) -> Result<(), StoreError> {
        r.validate()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Identity values are handed out when rows are inserted, not when they commit: two concurrent revokes
        // could commit seq 8 before seq 7, and a replica polling in between would move past 7 and never see
        // it. This lock (self-conflicting, but not blocking readers) makes inserts commit in seq order.
        // Revocations are rare enough that serializing them costs nothing.
        sqlx::query("LOCK TABLE revocations IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO revocations (token_id, expires_at, reason, revoked_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(&r.token_id)
        .bind(r.expires_at)
        .bind(&r.reason)
        .bind(r.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn active_revocations(&self, now: i64) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_id, expires_at, reason, revoked_at FROM revocations \
             WHERE expires_at >= $1 ORDER BY seq",
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
             WHERE seq > $1 ORDER BY seq",
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
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record(&self, e: &AuditEvent) -> Result<(), StoreError> {
        // Sent as text and cast, so sqlx's `json` feature is not needed.
        let detail = serde_json::to_string(&*text::scrub_json(&e.detail))
            .map_err(|err| StoreError::Database(DbError::new(format!("encoding detail: {err}"))))?;
        sqlx::query(
            "INSERT INTO audit_events (at, kind, client_id, subject, outcome, remote_addr, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
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
            "SELECT at, kind, client_id, subject, outcome, remote_addr, detail::text AS detail \
             FROM audit_events ORDER BY at DESC, id DESC LIMIT $1",
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
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::harness::with_postgres_database;

    async fn application_name(store: &PostgresStore) -> String {
        sqlx::query_scalar("SELECT current_setting('application_name')")
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn application_name_defaults_to_flyteauth() {
        with_postgres_database(|url| async move {
            let store = PostgresStore::connect(&url).await.unwrap();
            assert_eq!(application_name(&store).await, "flyteauth");

            let mut custom = url::Url::parse(&url).unwrap();
            custom
                .query_pairs_mut()
                .append_pair("application_name", "custom");
            let store = PostgresStore::connect(custom.as_str()).await.unwrap();
            assert_eq!(application_name(&store).await, "custom");
        })
        .await;
    }

    #[tokio::test]
    async fn debug_output_has_no_credentials() {
        with_postgres_database(|url| async move {
            let mut with_password = url::Url::parse(&url).unwrap();
            // The test server trusts every connection, so any password works.
            with_password.set_password(Some("hunter2")).unwrap();
            let store = PostgresStore::connect(with_password.as_str())
                .await
                .unwrap();
            let debug = format!("{store:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(
                debug.contains(with_password.path().trim_start_matches('/')),
                "{debug}"
            );
        })
        .await;
    }

    /// Replicas starting at the same time against an empty database must not trip over each other's migrations.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_connects_migrate_once() {
        with_postgres_database(|url| async move {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { PostgresStore::connect(&url).await })
                })
                .collect();
            for task in tasks {
                let store = task.await.unwrap().unwrap();
                store.ping().await.unwrap();
            }
        })
        .await;
    }

    #[tokio::test]
    async fn client_id_orders_bytewise_whatever_the_database_collation() {
        with_postgres_database(|url| async move {
            let store = PostgresStore::connect(&url).await.unwrap();
            let collation: Option<String> = sqlx::query_scalar(
                "SELECT collation_name FROM information_schema.columns \
                 WHERE table_name = 'apps' AND column_name = 'client_id'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(collation.as_deref(), Some("C"));
        })
        .await;
    }
}
