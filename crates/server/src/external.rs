//! The external authorization server of `auth.appAuth.authServerType: External` (Okta, Entra ID, Keycloak, …):
//! its metadata document and its signing keys, fetched at start-up, cached, and refreshed in the background.
//!
//! * At start-up the metadata (then the keys at its `jwks_uri`) are fetched with `retryAttempts` tries,
//!   `retryDelay` apart and doubling up to [`MAX_RETRY_DELAY`]; when every try fails the server starts anyway, not
//!   ready, and keeps trying every [`NOT_READY_RETRY`] in the background.
//! * Once fetched, both are refreshed every [`REFRESH_INTERVAL`]; a failed refresh keeps the last good copy (and
//!   `/readyz` says "degraded").
//! * A token naming a key we do not have triggers one refetch of the keys — at most one per [`KEY_REFETCH_SECS`]
//!   however many such tokens arrive, so garbage tokens cannot turn this server into a load generator against
//!   the identity provider.
//!
//! The validation itself is [`flyteauth_core::token::TokenValidator::external`] over the shared
//! [`RemoteAuthority`] this module fills.

use crate::health::Readiness;
use crate::state::MetadataDocument;
use bytes::Bytes;
use flyteauth_core::config::Config;
use flyteauth_core::metadata::ServerMetadata;
use flyteauth_core::token::RemoteAuthority;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often the metadata and keys are fetched again once they were fetched.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// How often the background task tries again while nothing was ever fetched.
pub const NOT_READY_RETRY: Duration = Duration::from_secs(30);
/// The longest wait between two start-up tries.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// The shortest time between two refetches of the keys caused by unknown key ids.
pub const KEY_REFETCH_SECS: u64 = 30;
/// The largest document read from the external server.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The RFC 8414 path tried first when `metadataUrl` is empty, and the OpenID Connect one tried when it is 404.
const OPENID_CONFIGURATION: &str = ".well-known/openid-configuration";
/// The longest JOSE header read for its `kid` (the validator has already refused anything unreadable).
const MAX_HEADER_CHARS: usize = 4096;

/// Why the external authorization server could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalSetupError {
    /// Neither `auth.appAuth.externalAuthServer.baseUrl` nor `auth.userAuth.openId.baseUrl` is set.
    #[error(
        "auth.appAuth.externalAuthServer.baseUrl (or auth.userAuth.openId.baseUrl) is required with authServerType: External"
    )]
    NoBaseUrl,
    /// `httpProxyURL` is not a usable proxy URL.
    #[error("auth.appAuth.externalAuthServer.httpProxyURL: {0}")]
    Proxy(String),
    /// The HTTP client could not be built.
    #[error("could not build the external authorization server client: {0}")]
    Client(String),
}

/// Which document a fetch was for (the `document` label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Document {
    Metadata,
    Jwks,
}

impl Document {
    fn label(self) -> &'static str {
        match self {
            Self::Metadata => "metadata",
            Self::Jwks => "jwks",
        }
    }
}

/// When the documents were last fetched, and what went wrong since.
#[derive(Debug, Default)]
struct Status {
    metadata_at: Option<Instant>,
    keys_at: Option<Instant>,
    /// When the fetch whose keys are in use started: an older fetch finishing later must not replace them.
    keys_started: Option<Instant>,
    metadata_error: Option<(Instant, String)>,
    keys_error: Option<(Instant, String)>,
}

impl Status {
    /// The most recent failure still standing.
    fn last_error(&self) -> Option<&str> {
        match (&self.metadata_error, &self.keys_error) {
            (Some(m), Some(k)) => Some(if m.0 >= k.0 { &m.1 } else { &k.1 }),
            (Some(m), None) => Some(&m.1),
            (None, Some(k)) => Some(&k.1),
            (None, None) => None,
        }
    }
}

/// The external authorization server: where it is, what it said last, and its keys.
pub struct ExternalAuthority {
    metadata_url: String,
    /// `<base>/.well-known/openid-configuration`, tried when [`Self::metadata_url`] answers 404.
    fallback_url: Option<String>,
    retry_attempts: u32,
    retry_delay: Duration,
    http: reqwest::Client,
    keys: Arc<RemoteAuthority>,
    document: RwLock<Option<Arc<MetadataDocument>>>,
    status: Mutex<Status>,
    /// Serializes the scheduled refreshes (start-up, background).
    refreshing: tokio::sync::Mutex<()>,
    /// Serializes the refetches caused by unknown key ids.
    refetching: tokio::sync::Mutex<()>,
    refetch_in_flight: AtomicBool,
    last_refetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ExternalAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalAuthority")
            .field("metadata_url", &self.metadata_url)
            .field("keys", &self.keys.key_count())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ExternalAuthority {
    /// The external server `config` names (`authServerType: External`). Nothing is fetched yet: see
    /// [`Self::start`] and [`Self::run`].
    pub fn from_config(config: &Config) -> Result<Self, ExternalSetupError> {
        let external = &config.auth.app_auth.external_auth_server;
        let base = config
            .external_base_url()
            .ok_or(ExternalSetupError::NoBaseUrl)?;
        let base = base.trim().trim_end_matches('/').to_owned();
        let metadata_url = config
            .external_metadata_url()
            .unwrap_or_else(|| format!("{base}/.well-known/oauth-authorization-server"));
        let fallback = format!("{base}/{OPENID_CONFIGURATION}");
        let fallback_url = (fallback != metadata_url).then_some(fallback);
        let mut builder = reqwest::Client::builder()
            // Every URL we call is configured or named by the server's own metadata: a redirect is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("flyteauth/", env!("CARGO_PKG_VERSION")));
        let proxy = external
            .http_proxy_url
            .as_deref()
            .or(config.auth.http_proxy_url.as_deref())
            .map(str::trim)
            .filter(|p| !p.is_empty());
        if let Some(proxy) = proxy {
            // The error text of a bad proxy URL could repeat credentials written into it: say only that it is bad.
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|_| ExternalSetupError::Proxy("not a usable proxy URL".into()))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| ExternalSetupError::Client(e.to_string()))?;
        Ok(Self {
            metadata_url,
            fallback_url,
            retry_attempts: external.retry_attempts.max(1),
            retry_delay: external.retry_delay,
            http,
            keys: Arc::new(RemoteAuthority::new()),
            document: RwLock::new(None),
            status: Mutex::new(Status::default()),
            refreshing: tokio::sync::Mutex::new(()),
            refetching: tokio::sync::Mutex::new(()),
            refetch_in_flight: AtomicBool::new(false),
            last_refetch: Mutex::new(None),
        })
    }

    /// The keys (and issuer) tokens are checked against; shared with the validator.
    pub fn keys(&self) -> &Arc<RemoteAuthority> {
        &self.keys
    }

    /// The metadata document as served, once it was fetched (the last good copy).
    pub fn document(&self) -> Option<Arc<MetadataDocument>> {
        self.document
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether metadata and keys were both fetched at least once.
    pub fn is_ready(&self) -> bool {
        let status = lock(&self.status);
        status.metadata_at.is_some() && status.keys_at.is_some()
    }

    /// The first fetch, with the configured retries. Returns once it succeeded or every try failed; in the latter
    /// case the server serves anyway (not ready) and [`Self::run`] keeps trying.
    pub async fn start(&self) {
        let mut delay = self.retry_delay;
        for attempt in 1..=self.retry_attempts {
            match self.refresh().await {
                Ok(()) => {
                    tracing::info!(
                        metadata_url = %self.metadata_url,
                        keys = self.keys.key_count(),
                        "fetched the external authorization server's metadata and keys"
                    );
                    return;
                }
                Err(e) if attempt < self.retry_attempts => {
                    tracing::warn!(attempt, error = %e, retry_in = ?delay, "the external authorization server is not reachable yet");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(MAX_RETRY_DELAY);
                }
                Err(e) => {
                    tracing::error!(
                        attempts = self.retry_attempts,
                        error = %e,
                        "the external authorization server is not reachable; serving without it (not ready) and \
                         retrying every {}s",
                        NOT_READY_RETRY.as_secs()
                    );
                }
            }
        }
    }

    /// Refreshes metadata and keys forever: every [`REFRESH_INTERVAL`], or every [`NOT_READY_RETRY`] while they
    /// were never fetched. Spawned when the server starts serving, aborted when it stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            let wait = if self.is_ready() {
                REFRESH_INTERVAL
            } else {
                NOT_READY_RETRY
            };
            tokio::time::sleep(wait).await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "could not refresh the external authorization server's documents; keeping the last good copy");
            }
        }
    }

    /// Fetches the metadata, then the keys its `jwks_uri` names (with the last good metadata when the metadata
    /// fetch fails). `Err` names the first failure.
    pub async fn refresh(&self) -> Result<(), String> {
        let _one_at_a_time = self.refreshing.lock().await;
        let metadata = self.fetch_metadata().await;
        let document = match (&metadata, self.document()) {
            (Ok(fresh), _) => fresh.clone(),
            (Err(_), Some(stale)) => stale,
            (Err(e), None) => return Err(e.clone()),
        };
        let keys = self.fetch_keys(&document).await;
        metadata.map(|_| ()).and(keys.map(|_| ()))
    }

    /// Fetches the keys again because a token names the key `kid`, which we do not have (`None`: the token's
    /// `kid` is unreadable). Single-flight, and at most once per [`KEY_REFETCH_SECS`]: concurrent callers wait
    /// for the one fetch, later ones within the window are answered at once. Returns whether the token should be
    /// validated again (its key is now known, or new keys arrived for a token without a readable `kid`).
    pub async fn refetch_keys_for_unknown_kid(self: &Arc<Self>, kid: Option<&str>) -> bool {
        let known = |kid: Option<&str>| kid.is_some_and(|k| self.keys.has_key(k));
        if !self.refetch_in_flight.load(Ordering::Acquire) && self.refetched_recently() {
            return known(kid);
        }
        let _one_at_a_time = self.refetching.lock().await;
        if known(kid) {
            return true;
        }
        if self.refetched_recently() {
            return false;
        }
        let Some(document) = self.document() else {
            // Nothing was ever fetched: the background task is on it.
            return false;
        };
        *lock(&self.last_refetch) = Some(Instant::now());
        self.refetch_in_flight.store(true, Ordering::Release);
        // On a task of its own, so a caller that goes away does not cancel the fetch the others wait for.
        let me = self.clone();
        let fetched = tokio::spawn(async move {
            let result = me.fetch_keys(&document).await;
            me.refetch_in_flight.store(false, Ordering::Release);
            result
        })
        .await;
        match fetched {
            Ok(Ok(_)) => kid.is_none_or(|k| self.keys.has_key(k)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not refetch the external authorization server's keys");
                false
            }
            Err(e) => {
                self.refetch_in_flight.store(false, Ordering::Release);
                tracing::error!(error = %e, "the key refetch task failed");
                false
            }
        }
    }

    fn refetched_recently(&self) -> bool {
        lock(&self.last_refetch)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(KEY_REFETCH_SECS))
    }

    /// What `/readyz` says about the external server: not ready until metadata and keys were fetched once,
    /// degraded while the last refresh failed, ready otherwise. Error texts name the document and the failure
    /// (status, timeout, …), never a URL.
    pub fn readiness(&self) -> Readiness {
        let status = lock(&self.status);
        let age = |at: Option<Instant>| at.map(|t| t.elapsed().as_secs());
        let mut detail = Map::new();
        detail.insert("metadata_age_secs".into(), json!(age(status.metadata_at)));
        detail.insert("keys_age_secs".into(), json!(age(status.keys_at)));
        if let Some(error) = status.last_error() {
            detail.insert("last_error".into(), json!(error));
        }
        let body = json!({ "external": Value::Object(detail) });
        if status.metadata_at.is_none() || status.keys_at.is_none() {
            Readiness::NotReady(body)
        } else if status.last_error().is_some() {
            Readiness::Degraded(body)
        } else {
            Readiness::Ready(body)
        }
    }

    /// Fetches and parses the metadata document; on success it becomes the one served.
    async fn fetch_metadata(&self) -> Result<Arc<MetadataDocument>, String> {
        let started = Instant::now();
        let result = self.fetch_metadata_document().await;
        let mut status = lock(&self.status);
        match result {
            Ok(document) => {
                crate::metrics::external_fetch(Document::Metadata.label(), "ok");
                let document = Arc::new(document);
                *self.document.write().unwrap_or_else(|e| e.into_inner()) = Some(document.clone());
                status.metadata_at = Some(Instant::now());
                status.metadata_error = None;
                Ok(document)
            }
            Err(e) => {
                crate::metrics::external_fetch(Document::Metadata.label(), "error");
                status.metadata_error = Some((started, e.clone()));
                Err(e)
            }
        }
    }

    async fn fetch_metadata_document(&self) -> Result<MetadataDocument, String> {
        let body = match self.get(&self.metadata_url, Document::Metadata).await {
            Err(Fetch::NotFound) => match &self.fallback_url {
                Some(fallback) => self.get(fallback, Document::Metadata).await,
                None => Err(Fetch::NotFound),
            },
            other => other,
        }
        .map_err(|e| e.describe(Document::Metadata))?;
        parse_metadata(&body).map_err(|e| format!("metadata: {e}"))
    }

    /// Fetches the keys `document` names and hands them to the validator. Returns how many keys are usable.
    async fn fetch_keys(&self, document: &MetadataDocument) -> Result<usize, String> {
        let started = Instant::now();
        let fetched = self
            .get(&document.metadata.jwks_uri, Document::Jwks)
            .await
            .map_err(|e| e.describe(Document::Jwks));
        let mut status = lock(&self.status);
        let result = fetched.and_then(|body| {
            if status.keys_started.is_some_and(|s| s > started) {
                // A fetch that started later already delivered its keys: they are at least as new as these.
                return Ok(self.keys.key_count());
            }
            let issuer =
                (!document.metadata.issuer.is_empty()).then(|| document.metadata.issuer.clone());
            match self.keys.update(issuer, &body) {
                Ok(0) => Err("jwks: no usable signing key in the key set".to_owned()),
                Ok(n) => {
                    status.keys_started = Some(started);
                    Ok(n)
                }
                Err(e) => Err(format!("jwks: {e}")),
            }
        });
        match &result {
            Ok(_) => {
                crate::metrics::external_fetch(Document::Jwks.label(), "ok");
                status.keys_at = Some(Instant::now());
                status.keys_error = None;
            }
            Err(e) => {
                crate::metrics::external_fetch(Document::Jwks.label(), "error");
                status.keys_error = Some((started, e.clone()));
            }
        }
        result
    }

    async fn get(&self, url: &str, what: Document) -> Result<Bytes, Fetch> {
        let response = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                tracing::debug!(url, document = what.label(), error = %e, "external authorization server request failed");
                Fetch::Transport(describe(&e))
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Fetch::NotFound);
        }
        if !status.is_success() {
            return Err(Fetch::Status(status.as_u16()));
        }
        read_limited(response).await.map_err(Fetch::Transport)
    }
}

/// Why one GET failed.
#[derive(Debug)]
enum Fetch {
    NotFound,
    Status(u16),
    Transport(String),
}

impl Fetch {
    fn describe(&self, what: Document) -> String {
        let what = what.label();
        match self {
            Self::NotFound => format!("{what}: HTTP 404"),
            Self::Status(code) => format!("{what}: HTTP {code}"),
            Self::Transport(reason) => format!("{what}: {reason}"),
        }
    }
}

/// A reqwest failure in a few words (its full text names the URL, which stays in the debug log).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_redirect() {
        "redirected (redirects are not followed)".into()
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read".into()
    } else {
        "request failed".into()
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Bytes, String> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(format!("answer larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("answer larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The external server's metadata as served here: its fields for GetOAuth2Metadata, and the document itself
/// (every member it has) for the well-known paths.
pub fn parse_metadata(body: &[u8]) -> Result<MetadataDocument, String> {
    let doc: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| "not a JSON object".to_owned())?;
    let text = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let list = |key: &str| -> Vec<String> {
        doc.get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let issuer = text("issuer");
    if issuer.is_empty() {
        return Err("no issuer".into());
    }
    let jwks_uri = text("jwks_uri");
    match url::Url::parse(&jwks_uri) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => {}
        _ => return Err("no usable jwks_uri".into()),
    }
    let device = text("device_authorization_endpoint");
    let metadata = ServerMetadata {
        issuer,
        authorization_endpoint: text("authorization_endpoint"),
        token_endpoint: text("token_endpoint"),
        jwks_uri,
        userinfo_endpoint: text("userinfo_endpoint"),
        revocation_endpoint: text("revocation_endpoint"),
        introspection_endpoint: text("introspection_endpoint"),
        response_types_supported: list("response_types_supported"),
        response_modes_supported: list("response_modes_supported"),
        grant_types_supported: list("grant_types_supported"),
        token_endpoint_auth_methods_supported: list("token_endpoint_auth_methods_supported"),
        revocation_endpoint_auth_methods_supported: list(
            "revocation_endpoint_auth_methods_supported",
        ),
        introspection_endpoint_auth_methods_supported: list(
            "introspection_endpoint_auth_methods_supported",
        ),
        scopes_supported: list("scopes_supported"),
        code_challenge_methods_supported: list("code_challenge_methods_supported"),
        subject_types_supported: list("subject_types_supported"),
        id_token_signing_alg_values_supported: list("id_token_signing_alg_values_supported"),
        claims_supported: list("claims_supported"),
        device_authorization_endpoint: (!device.is_empty()).then_some(device),
    };
    // Re-rendered rather than passed through: what is served is exactly one well-formed JSON object.
    let json = Bytes::from(serde_json::to_vec(&doc).map_err(|e| e.to_string())?);
    Ok(MetadataDocument { metadata, json })
}

/// The `kid` of a compact JWS's header, when it is readable.
pub fn token_kid(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    if header.len() > MAX_HEADER_CHARS {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Header {
        kid: Option<String>,
    }
    serde_json::from_slice::<Header>(&bytes).ok()?.kid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keeps_every_member_and_reads_the_known_ones() {
        let doc = json!({
            "issuer": "https://idp.example.com/oauth2/default",
            "authorization_endpoint": "https://idp.example.com/oauth2/default/v1/authorize",
            "token_endpoint": "https://idp.example.com/oauth2/default/v1/token",
            "jwks_uri": "https://idp.example.com/oauth2/default/v1/keys",
            "device_authorization_endpoint": "https://idp.example.com/oauth2/default/v1/device/authorize",
            "grant_types_supported": ["authorization_code", 7, "client_credentials"],
            "end_session_endpoint": "https://idp.example.com/logout",
        });
        let parsed = parse_metadata(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            parsed.metadata.issuer,
            "https://idp.example.com/oauth2/default"
        );
        assert_eq!(
            parsed.metadata.device_authorization_endpoint.as_deref(),
            Some("https://idp.example.com/oauth2/default/v1/device/authorize")
        );
        assert_eq!(
            parsed.metadata.grant_types_supported,
            ["authorization_code", "client_credentials"]
        );
        assert!(parsed.metadata.userinfo_endpoint.is_empty());
        let served: Value = serde_json::from_slice(&parsed.json).unwrap();
        assert_eq!(served, doc);
    }

    #[test]
    fn metadata_without_issuer_or_keys_is_refused() {
        for doc in [
            json!({"jwks_uri": "https://idp/keys"}),
            json!({"issuer": "https://idp"}),
            json!({"issuer": "https://idp", "jwks_uri": "file:///etc/passwd"}),
            json!(["not", "an", "object"]),
        ] {
            assert!(parse_metadata(doc.to_string().as_bytes()).is_err(), "{doc}");
        }
    }

    fn authority_at(base: &str) -> Arc<ExternalAuthority> {
        let yaml = format!(
            "auth:\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: {base}\n      \
             retryAttempts: 2\n      retryDelay: 10ms\n"
        );
        let config = Config::from_yaml_str(&yaml).unwrap().config;
        Arc::new(ExternalAuthority::from_config(&config).unwrap())
    }

    #[tokio::test]
    async fn unreachable_server_is_not_ready_and_grpc_health_follows() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let authority = authority_at(&format!("http://127.0.0.1:{port}"));
        let started = Instant::now();
        authority.start().await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!authority.is_ready());
        assert!(authority.document().is_none());
        match authority.readiness() {
            Readiness::NotReady(body) => {
                assert_eq!(
                    body["external"]["last_error"],
                    "metadata: connection failed"
                );
            }
            other => panic!("{other:?}"),
        }
        // Without metadata there is no key set to refetch.
        assert!(!authority.refetch_keys_for_unknown_kid(Some("k")).await);
    }

    #[test]
    fn the_openid_document_is_the_fallback_of_the_default_path() {
        let authority = authority_at("https://idp.example.com/oauth2/default/");
        assert_eq!(
            authority.metadata_url,
            "https://idp.example.com/oauth2/default/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            authority.fallback_url.as_deref(),
            Some("https://idp.example.com/oauth2/default/.well-known/openid-configuration")
        );
    }

    #[test]
    fn kid_is_read_from_the_header() {
        use base64::Engine as _;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"RS256","kid":"k-1"}"#);
        assert_eq!(
            token_kid(&format!("{header}.e30.sig")).as_deref(),
            Some("k-1")
        );
        assert_eq!(token_kid("not-a-token"), None);
        assert_eq!(token_kid(&format!("{}.e30.x", "A".repeat(5000))), None);
    }
}
