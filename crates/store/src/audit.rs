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
}

/// Something worth keeping a record of. Must never contain a secret or a secret hash.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// When it happened, unix seconds.
    pub at: i64,
    /// Dotted event name, e.g. `"token.issued"`, `"client.auth_failed"`, `"app.created"`.
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
