//! PostgreSQL backend: shared by any number of replicas.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Postgres, QueryBuilder, Row};

use crate::audit::{ROWS_PER_INSERT, StoredEvent, insert_events};
use crate::devices::{PollStep, decision_fields, decode_status, poll_step};
use crate::error::{self, db, db_unique, db_unique_either};
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

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const APPLICATION_NAME: &str = "flyteauth";
/// Per replica; several replicas must stay well under the server's max_connections (default 100).
const MAX_CONNECTIONS: u32 = 10;
/// Fail fast: a request waiting longer than this on the pool is better answered with "unavailable".
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Recycling connections lets a replica follow DNS changes and spreads load after a failover.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// First key of the advisory locks that serialize [`UserStore::upsert_federated_user`] per subject ("fedu").
const FEDERATED_SUBJECT_LOCK: i32 = 0x6665_6475;

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
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE TRUE"
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
        let rows = query.build().fetch_all(&self.pool).await.map_err(db)?;
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
            // Revoking the same thing again with a later cut-off or expiry keeps one row with the later values
            // and a new identity value, so replicas polling with "seq > last seen" see it.
            "INSERT INTO revocations (kind, token_id, expires_at, reason, revoked_at) \
             VALUES ($5, $1, $2, $3, $4) ON CONFLICT (kind, token_id) DO UPDATE SET \
               seq = DEFAULT, \
               revoked_at = GREATEST(revocations.revoked_at, EXCLUDED.revoked_at), \
               expires_at = GREATEST(revocations.expires_at, EXCLUDED.expires_at), \
               reason = EXCLUDED.reason \
             WHERE EXCLUDED.revoked_at > revocations.revoked_at OR EXCLUDED.expires_at > revocations.expires_at",
        )
        .bind(&r.token_id)
        .bind(r.expires_at)
        .bind(&r.reason)
        .bind(r.revoked_at)
        .bind(r.kind.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn active_revocations(&self, now: i64) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, token_id, expires_at, reason, revoked_at FROM revocations \
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
            "SELECT seq, kind, token_id, expires_at, reason, revoked_at FROM revocations \
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
            // One statement is a transaction of its own: the same atomic commit, two round trips fewer.
            insert_events::<Postgres>(&rows, "::jsonb")
                .build()
                .execute(&self.pool)
                .await
                .map_err(db)?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            insert_events::<Postgres>(chunk, "::jsonb")
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
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT at, kind, client_id, subject, outcome, remote_addr, detail::text AS detail \
             FROM audit_events WHERE TRUE",
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
        let rows = query.build().fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn prune_audit(&self, before: i64, batch: u32) -> Result<u64, StoreError> {
        if batch == 0 {
            return Ok(0);
        }
        // SKIP LOCKED: replicas pruning at the same time delete different rows instead of queueing on each other's.
        let done = sqlx::query(
            "WITH doomed AS (SELECT id FROM audit_events WHERE at < $1 ORDER BY at, id LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
             DELETE FROM audit_events AS e USING doomed WHERE e.id = doomed.id",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }
}

fn audit_from_row(row: &PgRow) -> Result<AuditEvent, StoreError> {
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

fn user_from_row(row: &PgRow) -> Result<UserRecord, StoreError> {
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

fn code_from_row(row: &PgRow) -> Result<CodeRecord, StoreError> {
    Ok(CodeRecord {
        code_hash: row.try_get("code_hash").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        redirect_uri: row.try_get("redirect_uri").map_err(db)?,
        code_challenge: row.try_get("code_challenge").map_err(db)?,
        scopes: row.try_get("scopes").map_err(db)?,
        audience: row.try_get("audience").map_err(db)?,
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

fn refresh_from_row(row: &PgRow) -> Result<RefreshTokenRecord, StoreError> {
    Ok(RefreshTokenRecord {
        token_hash: row.try_get("token_hash").map_err(db)?,
        family_id: row.try_get("family_id").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        subject: row.try_get("subject").map_err(db)?,
        username: row.try_get("username").map_err(db)?,
        scopes: row.try_get("scopes").map_err(db)?,
        audience: row.try_get("audience").map_err(db)?,
        auth_time: row.try_get("auth_time").map_err(db)?,
        issued_at: row.try_get("issued_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        used_at: row.try_get("used_at").map_err(db)?,
        family_revoked_at: row.try_get("family_revoked_at").map_err(db)?,
    })
}

fn session_from_row(row: &PgRow) -> Result<SessionRecord, StoreError> {
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
    conn: &mut sqlx::PgConnection,
    token: &NewRefreshToken,
    family_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens \
         (token_hash, family_id, scopes, audience, auth_time, issued_at, expires_at, used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
    )
    .bind(&token.token_hash)
    .bind(family_id)
    .bind(&token.scopes)
    .bind(&token.audience)
    .bind(token.auth_time)
    .bind(token.issued_at)
    .bind(token.expires_at)
    .execute(conn)
    .await
    .map_err(|e| db_unique(e, "refresh token", REDACTED_KEY))?;
    Ok(())
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        user.validate()?;
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, FALSE, 0, 0, $7, $7, NULL, 'local', '[]')"
        ))
        .bind(&user.username)
        .bind(&user.subject)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.created_at)
        .execute(&self.pool)
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
        let groups = encode_groups(&user.groups)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // ON CONFLICT only arbitrates the username. Two first sign-ins of one identity inserting at once also
        // collide on the subject index, which PostgreSQL reports as a clash or even a deadlock; taking a lock on
        // the subject first makes the second wait and then find the row by its username. (The two-key advisory
        // lock space is separate from the one sqlx migrations use; a hash collision only makes two sign-ins wait
        // for each other.)
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(FEDERATED_SUBJECT_LOCK)
            .bind(&user.subject)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // The WHERE turns a clash with a local account or another subject into no row (the row is left as is).
        let row = sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, '', FALSE, FALSE, 0, 0, $6, $6, $6, 'oidc', $5) \
             ON CONFLICT (username) DO UPDATE SET email = EXCLUDED.email, \
             display_name = EXCLUDED.display_name, groups = EXCLUDED.groups, \
             updated_at = EXCLUDED.updated_at, last_login_at = EXCLUDED.last_login_at \
             WHERE users.origin = 'oidc' AND users.subject = EXCLUDED.subject \
             RETURNING ",
            user_columns!()
        ))
        .bind(&user.username)
        .bind(&user.subject)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(groups)
        .bind(user.now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| {
            db_unique_either(
                e,
                ("user", &user.username),
                ("user subject", &user.subject),
                "subject",
            )
        })?;
        let Some(row) = row else {
            return Err(StoreError::AlreadyExists {
                entity: "user",
                key: user.username.clone(),
            });
        };
        let record = user_from_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(record)
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        if !text::storable_key(username) {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
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
            " FROM users WHERE subject = $1"
        ))
        .bind(subject)
        .fetch_optional(&self.pool)
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
                " FROM users WHERE username > $1 ORDER BY username LIMIT $2"
            ))
            .bind(text::cursor(after))
            .bind(i64::from(limit)),
            None => sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users ORDER BY username LIMIT $1"
            ))
            .bind(i64::from(limit)),
        };
        let rows = query.fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
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
            "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = 0, \
             updated_at = $3 WHERE username = $1",
        )
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .execute(&self.pool)
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
            sqlx::query("UPDATE users SET disabled = $2, updated_at = $3 WHERE username = $1")
                .bind(username)
                .bind(disabled)
                .bind(now)
                .execute(&self.pool)
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
        // One statement: the right-hand sides see the row as it was, and the row lock serializes concurrent updates.
        let row = sqlx::query(
            "UPDATE users SET \
             failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END, \
             locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END \
             WHERE username = $1 RETURNING failed_logins, locked_until",
        )
        .bind(username)
        .bind(i64::from(max_failures))
        .bind(lock_end(now, lock_for_secs))
        .fetch_optional(&self.pool)
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
            "UPDATE users SET failed_logins = 0, last_login_at = $2 WHERE username = $1",
        )
        .bind(username)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl CodeStore for PostgresStore {
    async fn put_code(&self, code: &NewCode) -> Result<(), StoreError> {
        code.validate()?;
        sqlx::query(concat!(
            "INSERT INTO authorization_codes (",
            code_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL)"
        ))
        .bind(&code.code_hash)
        .bind(&code.client_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.scopes)
        .bind(&code.audience)
        .bind(&code.subject)
        .bind(&code.username)
        .bind(&code.family_id)
        .bind(&code.nonce)
        .bind(code.auth_time)
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&self.pool)
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
            "UPDATE authorization_codes SET redeemed_at = $2 \
             WHERE code_hash = $1 AND redeemed_at IS NULL RETURNING ",
            code_columns!()
        ))
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
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
            " FROM authorization_codes WHERE code_hash = $1"
        ))
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row
            .as_ref()
            .map(code_from_row)
            .transpose()?
            .map(|record| (record, false)))
    }

    async fn purge_expired_codes(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl RefreshStore for PostgresStore {
    async fn create_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        token.validate()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The no-op update makes RETURNING yield the family whether or not it was just created, and locks it so a
        // concurrent purge cannot delete it before the token is in.
        let owner = sqlx::query(
            "INSERT INTO refresh_families \
             (family_id, client_id, subject, username, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, NULL) \
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
        // Locking the token and its family rows makes concurrent rotations (and reuse detection) of one family run
        // one after the other; a waiting rotation then sees the committed state of both rows.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            refresh_columns!(),
            " FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
             WHERE t.token_hash = $1 FOR UPDATE OF t, f"
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
                sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1")
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
                    "UPDATE refresh_families SET revoked_at = $2 \
                     WHERE family_id = $1 AND revoked_at IS NULL",
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
             WHERE t.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> Result<bool, StoreError> {
        if !text::storable_key(family_id) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(now)
        .execute(&self.pool)
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
            "UPDATE refresh_families SET revoked_at = $2 WHERE subject = $1 AND revoked_at IS NULL \
             RETURNING family_id",
        )
        .bind(subject)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        ids.sort();
        Ok(ids)
    }

    async fn purge_expired_refresh_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
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
impl SessionStore for PostgresStore {
    async fn create_session(&self, session: &NewSession) -> Result<SessionRecord, StoreError> {
        session.validate()?;
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $5, $7)"
        ))
        .bind(&session.session_hash)
        .bind(&session.username)
        .bind(&session.subject)
        .bind(session.auth_time)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(&session.idp_id_token)
        .execute(&self.pool)
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
            " FROM sessions WHERE session_hash = $1"
        ))
        .bind(session_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, session_hash: &str, now: i64) -> Result<bool, StoreError> {
        if !text::storable_key(session_hash) {
            return Ok(false);
        }
        let done = sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE session_hash = $1")
            .bind(session_hash)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_session(&self, session_hash: &str) -> Result<bool, StoreError> {
        if !text::storable_key(session_hash) {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM sessions WHERE session_hash = $1")
            .bind(session_hash)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user_sessions(&self, username: &str) -> Result<u64, StoreError> {
        if !text::storable_key(username) {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

fn device_from_row(row: &PgRow) -> Result<DeviceCodeRecord, StoreError> {
    let status: String = row.try_get("status").map_err(db)?;
    Ok(DeviceCodeRecord {
        device_code_hash: row.try_get("device_code_hash").map_err(db)?,
        user_code: row.try_get("user_code").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        scopes: row.try_get("scopes").map_err(db)?,
        audience: row.try_get("audience").map_err(db)?,
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
impl DeviceStore for PostgresStore {
    async fn create_device_code(
        &self,
        code: &NewDeviceCode,
    ) -> Result<DeviceCodeRecord, StoreError> {
        code.validate()?;
        // A concurrent create of the same user code waits on the unique index (or on the expired row being
        // deleted) and then fails with a unique violation, so at most one of them succeeds.
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM device_codes WHERE user_code = $1 AND expires_at <= $2")
            .bind(&code.user_code)
            .bind(code.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(concat!(
            "INSERT INTO device_codes (",
            device_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, '', '', '', 0, NULL)"
        ))
        .bind(&code.device_code_hash)
        .bind(&code.user_code)
        .bind(&code.client_id)
        .bind(&code.scopes)
        .bind(&code.audience)
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
            " FROM device_codes WHERE user_code = $1 AND expires_at > $2"
        ))
        .bind(user_code)
        .bind(now)
        .fetch_optional(&self.pool)
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
            "UPDATE device_codes SET status = $3, subject = $4, username = $5, family_id = $6, \
             auth_time = $7, decided_at = $2 \
             WHERE user_code = $1 AND status = $8 AND expires_at > $2 RETURNING ",
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
        .fetch_optional(&self.pool)
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
        // Locking the row makes concurrent polls of one code run one after the other; a waiting poll then reads
        // the row as the previous one committed it.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM device_codes WHERE device_code_hash = $1 FOR UPDATE"
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
                    "UPDATE device_codes SET interval_secs = $2, status = $3, last_polled_at = $4 \
                     WHERE device_code_hash = $1 RETURNING ",
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
        let done = sqlx::query("DELETE FROM device_codes WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
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

    /// Applies the migrations up to `version` only: the schema an older release left behind.
    async fn migrate_up_to(pool: &PgPool, version: i64) {
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

    async fn application_name(store: &PostgresStore) -> String {
        sqlx::query_scalar("SELECT current_setting('application_name')")
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    /// Migration 0004 adds the kind column: existing rows become `token` revocations and keep their sequence
    /// numbers, the identity keeps counting, and uniqueness is per kind.
    #[tokio::test]
    async fn revocation_kinds_migration_keeps_rows_and_sequence() {
        with_postgres_database(|url| async move {
            {
                let pool = PgPool::connect(&url).await.unwrap();
                migrate_up_to(&pool, 3).await;
                for id in ["a", "b", "c"] {
                    sqlx::query(
                        "INSERT INTO revocations (token_id, expires_at, reason, revoked_at) \
                         VALUES ($1, 10, 'old', 1)",
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

            let store = PostgresStore::connect(&url).await.unwrap();
            let expected = |kind, token_id: &str| Revocation {
                kind,
                token_id: token_id.to_owned(),
                expires_at: 10,
                reason: "old".to_owned(),
                revoked_at: 1,
            };
            let token = crate::RevocationKind::Token;
            assert_eq!(
                store.revocations_since(0).await.unwrap(),
                vec![(1, expected(token, "a")), (2, expected(token, "b"))]
            );
            store
                .revoke(&expected(crate::RevocationKind::Family, "a"))
                .await
                .unwrap();
            store.revoke(&expected(token, "a")).await.unwrap();
            let new = store.revocations_since(2).await.unwrap();
            assert_eq!(new, vec![(4, expected(crate::RevocationKind::Family, "a"))]);
        })
        .await;
    }

    /// Migration 0010: accounts and sessions stored before it read back as local accounts without groups and as
    /// sessions without an ID token.
    #[tokio::test]
    async fn federated_accounts_migration_keeps_existing_rows() {
        with_postgres_database(|url| async move {
            {
                let pool = PgPool::connect(&url).await.unwrap();
                migrate_up_to(&pool, 9).await;
                sqlx::query(
                    "INSERT INTO users (username, subject, email, display_name, password_hash, \
                     is_admin, disabled, failed_logins, locked_until, created_at, updated_at, \
                     last_login_at) VALUES ('old', 'subject-old', 'o@example.com', 'Old', 'hash', \
                     TRUE, FALSE, 2, 0, 5, 6, 7)",
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

            let store = PostgresStore::connect(&url).await.unwrap();
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
        })
        .await;
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
