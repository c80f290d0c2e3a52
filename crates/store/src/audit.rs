//! The audit trail.

use async_trait::async_trait;

use crate::StoreError;

/// Persistence of audit events.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event.
    ///
    /// Never fails because of what the event says: NUL characters (which PostgreSQL cannot store) in any text,
    /// including inside `detail`, are replaced by U+FFFD on every backend, so a hostile client id is still recorded.
    async fn record(&self, e: &AuditEvent) -> Result<(), StoreError>;

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
