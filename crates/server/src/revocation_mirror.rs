//! Keeps this replica's revocation set in step with the store, so a token revoked on any replica fails here
//! within one poll interval, while validation itself never waits on the database.

use crate::state::AppState;
use flyteauth_core::revocation::Revoked;
use flyteauth_store::{Revocation, RevocationKind};
use std::time::Duration;

/// How often the store is asked for new revocations; well inside the 5 seconds a revocation may take to
/// reach every replica.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Every this many polls, expired codes, sessions, refresh tokens and revocations are deleted from the store.
const PURGE_EVERY_POLLS: u64 = 300;

/// The set entry for a stored revocation.
pub fn as_revoked(kind: RevocationKind, id: &str, revoked_at: i64) -> Revoked {
    match kind {
        RevocationKind::Token => Revoked::Token(id.to_owned()),
        RevocationKind::Family => Revoked::Family(id.to_owned()),
        RevocationKind::App => Revoked::App {
            client_id: id.to_owned(),
            revoked_at,
        },
        RevocationKind::User => Revoked::User {
            subject: id.to_owned(),
            revoked_at,
        },
    }
}

fn apply(state: &AppState, r: &Revocation) {
    state
        .validator
        .revocations()
        .insert(as_revoked(r.kind, &r.token_id, r.revoked_at), r.expires_at);
    if r.kind == RevocationKind::App {
        // The app was deleted or got a new secret on another replica (or with the CLI): read it again.
        state.apps.forget(&r.token_id);
    }
}

/// Loads every revocation once; returns the highest sequence number seen.
pub async fn load(state: &AppState) -> Result<i64, flyteauth_store::StoreError> {
    let all = state.store.revocations_since(0).await?;
    let now = state.clock.unix_now();
    let mut seq = 0;
    for (s, r) in &all {
        seq = seq.max(*s);
        if r.expires_at >= now {
            apply(state, r);
        }
    }
    Ok(seq)
}

/// Polls for new revocations forever (spawned at start-up; ends with the runtime). A failing poll is logged
/// and retried at the next tick; expired entries are pruned from the set as it goes.
pub async fn run(state: AppState, mut seq: i64) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls: u64 = 0;
    loop {
        tick.tick().await;
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(PURGE_EVERY_POLLS) {
            purge(&state).await;
        }
        match state.store.revocations_since(seq).await {
            Ok(new) => {
                for (s, r) in &new {
                    seq = seq.max(*s);
                    apply(&state, r);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not poll revocations; retrying"),
        }
        state.validator.revocations().prune(state.clock.unix_now());
    }
}

/// Deletes what can no longer be used. Revocations are kept until their tokens expire, and are purged only
/// after they have been applied here.
async fn purge(state: &AppState) {
    let now = state.clock.unix_now();
    let store = &state.store;
    let results = [
        ("codes", store.purge_expired_codes(now).await),
        ("sessions", store.purge_expired_sessions(now).await),
        (
            "refresh tokens",
            store.purge_expired_refresh_tokens(now).await,
        ),
        ("device codes", store.purge_expired_device_codes(now).await),
        ("revocations", store.purge_expired(now).await),
    ];
    for (what, result) in results {
        match result {
            Ok(n) if n > 0 => tracing::debug!(what, deleted = n, "purged expired records"),
            Ok(_) => {}
            Err(e) => tracing::warn!(what, error = %e, "could not purge expired records"),
        }
    }
}
