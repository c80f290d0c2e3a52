//! The operator's side of apps and the audit trail: what `flyteauth apps …` and `flyteauth audit list` do.
//!
//! The commands open the database a server started with the same `--config` / `--data-dir` uses, so they work
//! while it runs. They have no server state: a deletion or rotation writes its revocation to the store, and the
//! running servers pick it up within their revocation poll interval. Changes are audited with the subject
//! `operator` and `via = cli`.

use super::wire::{AppSpec, InvalidField};
use flyteauth_core::api_key::{self, ApiKeyError};
use flyteauth_core::clients::{generate_secret, hash_generated_secret};
use flyteauth_core::clock::Clock;
use flyteauth_core::config::{Config, parse_go_duration};
use flyteauth_store::{
    AppRecord, AppUpdate, AuditEvent, AuditFilter, Revocation, RevocationKind, Store, StoreError,
};
use std::time::Duration;

/// Who the audit trail names for changes made with these commands.
pub const OPERATOR: &str = "operator";

/// `via` of the audit events of these commands.
const VIA_CLI: &str = "cli";

/// How many apps `list` reads per query.
const LIST_PAGE: u32 = 100;

/// Why an apps or audit command failed; each message is one line naming what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppCommandError {
    /// An argument is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The client id is taken, by an app or by a client of the configuration.
    #[error("a client with client_id {0:?} already exists")]
    Exists(String),
    /// No such app.
    #[error("there is no app with client_id {0:?}")]
    NoSuchApp(String),
    /// The change was made but could not be audited.
    #[error("{done}, but its audit event could not be recorded: {source}")]
    Audit {
        /// What was done, e.g. `app ci-bot was deleted`.
        done: String,
        /// The store's error.
        source: StoreError,
    },
    /// The store failed.
    #[error("database: {0}")]
    Store(StoreError),
}

impl From<StoreError> for AppCommandError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { key, .. } => Self::Exists(key),
            StoreError::InvalidInput { field, reason } => {
                Self::Invalid(format!("invalid {field}: {reason}"))
            }
            other => Self::Store(other),
        }
    }
}

impl From<InvalidField> for AppCommandError {
    fn from(e: InvalidField) -> Self {
        Self::Invalid(e.0)
    }
}

/// What `flyteauth apps create` was asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The app's name; its slug is the client id.
    pub name: String,
    /// The organization (may be empty).
    pub organization: String,
    /// The owner's subject; `operator` when none is given, so that only admins see the app.
    pub owner: Option<String>,
    /// Redirect URIs to register.
    pub redirect_uris: Vec<String>,
}

/// An app's credentials, shown once.
#[derive(Debug)]
pub struct Credentials {
    /// The client id.
    pub client_id: String,
    /// The client secret; the store keeps its hash only.
    pub client_secret: String,
    /// The `FLYTE_API_KEY` value, or why this public URL cannot be put in one.
    pub api_key: Result<String, ApiKeyError>,
}

/// The client id the flyte SDK derives from a name: lower case, every run of characters other than ASCII
/// letters and digits replaced by one '-'. Dashes at either end, which the SDK keeps and a client id may not
/// have, are dropped.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    out.trim_matches('-').to_owned()
}

fn credentials(config: &Config, app: &AppRecord, client_secret: String) -> Credentials {
    let api_key = api_key::encode(
        &config.public_url(),
        &app.client_id,
        &client_secret,
        &app.organization,
    );
    Credentials {
        client_id: app.client_id.clone(),
        client_secret,
        api_key,
    }
}

/// The client ids of the configuration's static clients (the token endpoint finds those before any app).
fn static_client_ids(config: &Config) -> Result<Vec<String>, AppCommandError> {
    let mut clients =
        flyteauth_core::clients::static_clients(&config.auth.app_auth.self_auth_server)
            .map_err(|e| AppCommandError::Invalid(e.to_string()))?;
    let _ = flyteauth_core::clients::ensure_flyte_client(
        &mut clients,
        &config.auth.app_auth.third_party_config.flyte_client,
    );
    Ok(clients.into_iter().map(|c| c.id).collect())
}

async fn record(store: &dyn Store, done: String, event: AuditEvent) -> Result<(), AppCommandError> {
    store
        .record(&event)
        .await
        .map_err(|source| AppCommandError::Audit { done, source })
}

fn event(kind: &str, client_id: &str, now: i64, detail: serde_json::Value) -> AuditEvent {
    let mut detail = detail;
    if let Some(map) = detail.as_object_mut() {
        map.insert("via".into(), VIA_CLI.into());
    }
    AuditEvent {
        at: now,
        kind: kind.to_owned(),
        client_id: client_id.to_owned(),
        subject: OPERATOR.to_owned(),
        outcome: "success".to_owned(),
        remote_addr: String::new(),
        detail,
    }
}

/// Creates an app whose client id is the slug of `options.name` and returns its credentials.
pub async fn create(
    store: &dyn Store,
    config: &Config,
    options: &CreateOptions,
    now: i64,
) -> Result<Credentials, AppCommandError> {
    let client_id = slug(&options.name);
    if client_id.is_empty() {
        return Err(AppCommandError::Invalid(format!(
            "the name {:?} has no letters or digits to make a client id of",
            options.name
        )));
    }
    let spec = AppSpec::new(
        &client_id,
        &options.name,
        &options.organization,
        &[],
        options.redirect_uris.clone(),
    )?;
    if static_client_ids(config)?.contains(&spec.client_id) {
        return Err(AppCommandError::Exists(spec.client_id));
    }
    let owner = match options.owner.as_deref().map(str::trim) {
        None => OPERATOR,
        Some("") => return Err(AppCommandError::Invalid("--owner must not be empty".into())),
        Some(owner) => owner,
    };
    let secret = generate_secret();
    let new = spec.into_new_app(hash_generated_secret(&secret).encode(), owner, now);
    let app = store.create_app(&new).await?;
    let detail = serde_json::json!({
        "client_name": app.client_name,
        "organization": app.organization,
        "owner": app.created_by,
    });
    record(
        store,
        format!("app {} was created", app.client_id),
        event("app.created", &app.client_id, now, detail),
    )
    .await?;
    Ok(credentials(config, &app, secret))
}

/// Every app, in client id order.
pub async fn list(store: &dyn Store) -> Result<Vec<AppRecord>, AppCommandError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_apps(after.as_deref(), LIST_PAGE).await?;
        let done = page.len() < LIST_PAGE as usize;
        after = page.last().map(|a| a.client_id.clone());
        all.extend(page);
        if done || after.is_none() {
            return Ok(all);
        }
    }
}

/// How long an app's access token can be accepted after it was issued: its lifetime plus the validation leeway.
/// Apps have no browser sessions, so unlike a person's revocation this one need not outlive those.
fn app_token_lifetime_secs(config: &Config) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    secs(config.auth.app_auth.self_auth_server.access_token_lifespan)
        .saturating_add(secs(config.flyteauth.token_leeway))
}

/// The revocation of every token issued to `client_id` up to [`crate::app_cache::REVOCATION_COVER_SECS`] after
/// `now` (a running server may go on using the app as it read it that long), kept as long as such a token can
/// live.
fn app_revocation(config: &Config, client_id: &str, reason: &str, now: i64) -> Revocation {
    let revoked_at = now.saturating_add(crate::app_cache::REVOCATION_COVER_SECS);
    Revocation {
        kind: RevocationKind::App,
        token_id: client_id.to_owned(),
        expires_at: revoked_at.saturating_add(app_token_lifetime_secs(config)),
        reason: reason.to_owned(),
        revoked_at,
    }
}

/// Deletes an app; its tokens stop working on every server within the revocation poll interval.
pub async fn delete(
    store: &dyn Store,
    config: &Config,
    client_id: &str,
    clock: &dyn Clock,
) -> Result<AppRecord, AppCommandError> {
    let Some(app) = store.get_app(client_id).await? else {
        return Err(AppCommandError::NoSuchApp(client_id.to_owned()));
    };
    if !store.delete_app(client_id).await? {
        return Err(AppCommandError::NoSuchApp(client_id.to_owned()));
    }
    // Read after the change: every token the old registration could get here was issued by now; the
    // revocation's cut-off lies ahead to catch those the servers issue from their copy of the app meanwhile.
    let now = clock.unix_now();
    let revocation = app_revocation(config, client_id, "app.deleted", now);
    store.revoke(&revocation).await?;
    let detail = serde_json::json!({"organization": app.organization});
    record(
        store,
        format!("app {client_id} was deleted"),
        event("app.deleted", client_id, now, detail),
    )
    .await?;
    super::let_revocation_pass(revocation.revoked_at).await;
    Ok(app)
}

/// Gives an app a new secret; tokens issued with the old one stop working like those of a deleted app.
pub async fn rotate_secret(
    store: &dyn Store,
    config: &Config,
    client_id: &str,
    clock: &dyn Clock,
) -> Result<Credentials, AppCommandError> {
    let secret = generate_secret();
    let update = AppUpdate {
        secret_hash: Some(hash_generated_secret(&secret).encode()),
        ..AppUpdate::at(clock.unix_now())
    };
    let Some(app) = store.update_app(client_id, &update).await? else {
        return Err(AppCommandError::NoSuchApp(client_id.to_owned()));
    };
    let now = clock.unix_now();
    let revocation = app_revocation(config, client_id, "app.secret_rotated", now);
    store.revoke(&revocation).await?;
    record(
        store,
        format!("the secret of app {client_id} was replaced"),
        event("app.secret_rotated", client_id, now, serde_json::json!({})),
    )
    .await?;
    super::let_revocation_pass(revocation.revoked_at).await;
    Ok(credentials(config, &app, secret))
}

/// What `flyteauth audit list` was asked for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// At most this many events.
    pub limit: u32,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only events of the last such span, e.g. `1h`, `30m`, `7d`.
    pub since: Option<String>,
}

/// A span of time for `--since`: a Go duration (`90m`, `1h30m`) or a number of days (`7d`).
pub fn parse_span(text: &str) -> Result<Duration, AppCommandError> {
    let text = text.trim();
    if let Some(days) = text.strip_suffix('d')
        && let Ok(days) = days.parse::<u64>()
    {
        return Ok(Duration::from_secs(days.saturating_mul(24 * 3600)));
    }
    parse_go_duration(text).map_err(|e| AppCommandError::Invalid(format!("--since: {e}")))
}

/// The newest events `query` selects, newest first.
pub async fn audit_list(
    store: &dyn Store,
    query: &AuditQuery,
    now: i64,
) -> Result<Vec<AuditEvent>, AppCommandError> {
    let since = match query.since.as_deref() {
        None => None,
        Some(span) => {
            let secs = i64::try_from(parse_span(span)?.as_secs()).unwrap_or(i64::MAX);
            Some(now.saturating_sub(secs))
        }
    };
    let filter = AuditFilter {
        kind: query.kind.clone().filter(|k| !k.is_empty()),
        since,
    };
    Ok(store.list_audit(&filter, query.limit).await?)
}

/// Unix seconds as RFC 3339 in UTC (`2024-05-01T12:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Tabs and line breaks inside a field would break the one-line, tab-separated form.
fn field(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One audit event as a tab-separated line: time, kind, outcome, client id, subject, remote address, detail.
pub fn audit_line(e: &AuditEvent) -> String {
    // serde_json escapes control characters, so the detail stays on its line.
    let detail = serde_json::to_string(&e.detail).unwrap_or_default();
    [
        rfc3339(e.at),
        field(&e.kind),
        field(&e.outcome),
        field(&e.client_id),
        field(&e.subject),
        field(&e.remote_addr),
        detail,
    ]
    .join("\t")
}

/// One app as a tab-separated line: client id, name, organization, owner, creation time.
pub fn app_line(a: &AppRecord) -> String {
    [
        field(&a.client_id),
        field(&a.client_name),
        field(&a.organization),
        field(&a.created_by),
        rfc3339(a.created_at),
    ]
    .join("\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_slug_like_the_sdk() {
        assert_eq!(slug("My Bot"), "my-bot");
        assert_eq!(slug("CI_bot  2"), "ci-bot-2");
        assert_eq!(slug("a--b"), "a-b");
        assert_eq!(slug("  ci.bot!  "), "ci-bot");
        assert_eq!(slug("Ünïcode"), "n-code");
        assert_eq!(slug("!!!"), "");
    }

    #[test]
    fn spans_are_go_durations_or_days() {
        assert_eq!(parse_span("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_span("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_span("7d").unwrap(), Duration::from_secs(7 * 86400));
        let err = parse_span("soon").unwrap_err().to_string();
        assert!(err.starts_with("--since: "), "{err}");
    }

    #[test]
    fn audit_lines_are_one_line_of_seven_fields() {
        let e = AuditEvent {
            at: 0,
            kind: "app.created".into(),
            client_id: "ci\tbot".into(),
            subject: "operator".into(),
            outcome: "success".into(),
            remote_addr: "127.0.0.1".into(),
            detail: serde_json::json!({"via": "cli", "note": "a\nb"}),
        };
        let line = audit_line(&e);
        assert!(!line.contains('\n'));
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 7, "{line}");
        assert_eq!(fields[0], "1970-01-01T00:00:00Z");
        assert_eq!(fields[3], "ci bot");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(fields[6]).unwrap()["via"],
            "cli"
        );
    }
}
