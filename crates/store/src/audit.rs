//! The audit trail.

use std::borrow::Cow;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::error::DbError;
use crate::{StoreError, text};

/// Persistence of audit events.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event.
    ///
    /// Never fails because of what the event says: NUL characters (which PostgreSQL cannot store) in any text,
    /// including inside `detail`, are replaced by U+FFFD on every backend, so a hostile client id is still recorded.
    async fn record(&self, e: &AuditEvent) -> Result<(), StoreError>;

    /// Appends `events` in one transaction, in their order (so among equal `at` the later in the slice is
    /// listed first, as if recorded one by one): either all of them are stored or, on an error, none.
    ///
    /// NUL characters are replaced as [`AuditStore::record`] does. An empty slice writes nothing. This is how a
    /// busy server records: one commit for many events costs about what one commit for one event costs.
    async fn record_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// The most recent `limit` events, newest first (by `at`, then by order of recording).
    async fn recent(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;

    /// The most recent `limit` events that `filter` selects, newest first like [`AuditStore::recent`] (whose
    /// result equals this one's with the default filter).
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// Deletes events older than `before` (`at < before`), the oldest first and at most `batch` rows per call;
    /// returns how many. Call again until it returns less than `batch`: short statements keep the table
    /// writable for the events being recorded meanwhile.
    async fn prune_audit(&self, before: i64, batch: u32) -> Result<u64, StoreError>;
}

/// Which audit events a listing returns.
///
/// Each field that is set must match; the default selects every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events of this kind, e.g. `"app.created"` (compared exactly, with NUL read as U+FFFD as
    /// [`AuditStore::record`] stores it).
    pub kind: Option<String>,
    /// Only events at or after this time, unix seconds.
    pub since: Option<i64>,
}

/// Something worth keeping a record of. Must never contain a secret or a secret hash.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// When it happened, unix seconds.
    pub at: i64,
    /// Dotted event name, e.g. `"token.issued"`, `"client.authentication_failed"`, `"app.created"`.
    pub kind: String,
    /// The client involved (empty if none).
    pub client_id: String,
    /// The subject involved (empty if none).
    pub subject: String,
    /// Result, e.g. `"ok"`, `"denied"`.
    pub outcome: String,
    /// Peer address as seen by the server (empty if unknown).
    pub remote_addr: String,
    /// Event-specific details.
    pub detail: serde_json::Value,
}

/// Rows of one multi-row `INSERT` of [`AuditStore::record_batch`]: 7 parameters each, so a statement stays
/// under SQLite's historical limit of 999 parameters (and far under PostgreSQL's 65,535) whatever the batch size.
pub(crate) const ROWS_PER_INSERT: usize = 128;

/// An event as both backends store it: text with NUL replaced, `detail` encoded as JSON text.
pub(crate) struct StoredEvent<'a> {
    pub(crate) at: i64,
    pub(crate) kind: Cow<'a, str>,
    pub(crate) client_id: Cow<'a, str>,
    pub(crate) subject: Cow<'a, str>,
    pub(crate) outcome: Cow<'a, str>,
    pub(crate) remote_addr: Cow<'a, str>,
    pub(crate) detail: String,
}

impl<'a> StoredEvent<'a> {
    /// Scrubs and encodes `e`; done for a whole batch before its transaction starts, so a batch that cannot be
    /// encoded never opens one.
    pub(crate) fn of(e: &'a AuditEvent) -> Result<Self, StoreError> {
        let detail = serde_json::to_string(&*text::scrub_json(&e.detail))
            .map_err(|err| StoreError::Database(DbError::new(format!("encoding detail: {err}"))))?;
        Ok(Self {
            at: e.at,
            kind: text::scrub(&e.kind),
            client_id: text::scrub(&e.client_id),
            subject: text::scrub(&e.subject),
            outcome: text::scrub(&e.outcome),
            remote_addr: text::scrub(&e.remote_addr),
            detail,
        })
    }
}

/// One multi-row `INSERT` of audit events (at most [`ROWS_PER_INSERT`] of them), for either backend.
///
/// `detail_cast` follows each `detail` placeholder: PostgreSQL stores `detail` as `jsonb` and is sent text (so
/// sqlx's `json` feature is not needed), SQLite stores the text as it is. Rows are numbered in the order of the
/// `VALUES` list, so a batch keeps its order in listings.
pub(crate) fn insert_events<'a, DB>(
    chunk: &'a [StoredEvent<'_>],
    detail_cast: &'static str,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut insert = QueryBuilder::<DB>::new(
        "INSERT INTO audit_events (at, kind, client_id, subject, outcome, remote_addr, detail) ",
    );
    insert.push_values(chunk, |mut row, e| {
        row.push_bind(e.at)
            .push_bind(&*e.kind)
            .push_bind(&*e.client_id)
            .push_bind(&*e.subject)
            .push_bind(&*e.outcome)
            .push_bind(&*e.remote_addr)
            .push_bind(e.detail.as_str())
            .push_unseparated(detail_cast);
    });
    insert
}
