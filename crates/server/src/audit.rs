//! The audit trail of credential events (tokens issued, logins, revocations, failures).

use crate::state::AppState;
use flyteauth_store::AuditEvent;
use std::net::SocketAddr;

/// One event to record.
#[derive(Debug)]
pub struct Event<'a> {
    /// What happened, e.g. `token.issued`, `login.failed`.
    pub kind: &'static str,
    /// The OAuth client involved (may be empty).
    pub client_id: &'a str,
    /// The person or app the event is about (may be empty).
    pub subject: &'a str,
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// Where the request came from.
    pub peer: Option<SocketAddr>,
    /// Anything else worth keeping; never a secret.
    pub detail: serde_json::Value,
}

/// Records `event`; a failing audit write is logged, not turned into a failed request.
pub async fn record(state: &AppState, event: Event<'_>) {
    let stored = AuditEvent {
        at: state.clock.unix_now(),
        kind: event.kind.to_owned(),
        client_id: printable(event.client_id),
        subject: printable(event.subject),
        outcome: event.outcome.to_owned(),
        remote_addr: event.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        detail: event.detail,
    };
    if let Err(e) = state.store.record(&stored).await {
        tracing::error!(error = %e, kind = event.kind, "could not record an audit event");
    }
    tracing::info!(kind = event.kind, client_id = %stored.client_id, subject = %stored.subject, outcome = event.outcome, remote = %stored.remote_addr, "credential event");
}

/// Caps and sanitises client-supplied text before it reaches a log line, the audit trail or an error body.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_strips_control_characters_and_caps_length() {
        assert_eq!(printable("a\nb\u{7}"), "a?b?");
        assert_eq!(printable(&"x".repeat(1000)).len(), 128);
    }
}
