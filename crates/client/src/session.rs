//! The one place that hands out a valid access token for a control plane.
//!
//! Order: the token in memory; the token cache ([`crate::cache`], shared with the Python `flyte` SDK); a refresh
//! when the token expires within `tokenRefreshWindow`; the login flow of `admin.authType` when nothing is cached.
//! After the server rejected a token ([`Session::renew`]) the session refreshes (or asks for a new
//! client-credentials token, or re-runs the command) once; a refresh token the server refuses removes the cache
//! entry and is [`ClientError::LoginRequired`] — one line telling the person to log in again.
//!
//! Client-credentials tokens are kept in memory only: a secret on hand makes a new one cheap, and the keyring
//! entry of an endpoint belongs to the person's own login.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::AUTHORIZATION;
use tokio::sync::{Mutex, OnceCell};

use crate::cache::{CacheKind, CacheOptions, CachedTokens, TokenCache};
use crate::config::{AuthType, ConfigError, Endpoint, Settings};
use crate::connect::ConnectClient;
use crate::flows::LoginUi;
use crate::metadata::AuthMetadata;
use crate::token::{TokenClient, Tokens};
use crate::{ClientError, Secret};

/// How long `logout` spends on revoking the refresh token before it just removes the cache entry.
const REVOKE_BUDGET: Duration = Duration::from_secs(10);

/// The credentials of one process for one control plane.
pub struct Session {
    settings: Settings,
    ui: Arc<dyn LoginUi>,
    endpoint: Endpoint,
    http: reqwest::Client,
    connect: ConnectClient,
    proxy_authorization: Option<Secret>,
    cache_options: CacheOptions,
    cache: OnceCell<TokenCache>,
    metadata: OnceCell<AuthMetadata>,
    // A tokio mutex: it is held across the refresh or login, so concurrent callers wait for one renewal and
    // then find the new token instead of starting their own.
    tokens: Mutex<Option<Tokens>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.settings.endpoint)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for `settings` (which must name an endpoint). Runs `admin.proxyCommand` if set; opens nothing
    /// else until a token is needed.
    pub async fn new(
        settings: Settings,
        ui: Arc<dyn LoginUi>,
        cache: CacheOptions,
    ) -> Result<Self, ClientError> {
        let endpoint = settings.require_endpoint()?.clone();
        let proxy_authorization = if settings.proxy_command.is_empty() {
            None
        } else {
            Some(crate::flows::command::run_token_command(&settings.proxy_command).await?)
        };
        let http = crate::http::build_client(&settings, proxy_authorization.as_ref())?;
        let connect = ConnectClient::new(http.clone(), endpoint.base_url(settings.insecure));
        let cache_options = CacheOptions {
            disable_keyring: cache.disable_keyring || settings.disable_keyring,
            file: cache.file,
        };
        Ok(Self {
            settings,
            ui,
            endpoint,
            http,
            connect,
            proxy_authorization,
            cache_options,
            cache: OnceCell::new(),
            metadata: OnceCell::new(),
            tokens: Mutex::new(None),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The control plane.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The Connect client of the control plane (no credentials attached).
    pub fn connect(&self) -> &ConnectClient {
        &self.connect
    }

    /// Discovery, asked once per session.
    pub async fn metadata(&self) -> Result<AuthMetadata, ClientError> {
        self.metadata
            .get_or_try_init(|| crate::metadata::discover(&self.connect))
            .await
            .cloned()
    }

    /// Which cache holds this session's tokens, once one was opened.
    pub fn cache_kind(&self) -> Option<CacheKind> {
        self.cache.get().map(TokenCache::kind)
    }

    /// A valid access token (see the module documentation for where it comes from).
    pub async fn access_token(&self) -> Result<Secret, ClientError> {
        Ok(self.valid_tokens().await?.access_token)
    }

    /// The server rejected `rejected`: returns a newer token if another task already renewed it, else refreshes
    /// or logs in again as described in the module documentation.
    pub async fn renew(&self, rejected: &Secret) -> Result<Secret, ClientError> {
        Ok(self.renew_tokens(rejected).await?.access_token)
    }

    /// Runs the login flow of the auth type now, whatever is cached, and caches the result (`flyte login`).
    pub async fn login(&self) -> Result<Tokens, ClientError> {
        let mut guard = self.tokens.lock().await;
        let tokens = match self.settings.auth_type {
            AuthType::ClientSecret => self.client_credentials().await?,
            AuthType::ExternalCommand => self.external_command().await?,
            AuthType::Pkce | AuthType::DeviceFlow => self.login_flow().await?,
        };
        *guard = Some(tokens.clone());
        self.store(&tokens).await?;
        Ok(tokens)
    }

    /// Revokes the cached refresh token at the server (best effort) and removes the cache entry (`flyte logout`).
    /// Returns whether anything was cached.
    pub async fn logout(&self) -> Result<bool, ClientError> {
        let mut guard = self.tokens.lock().await;
        let in_memory = guard.take();
        let service = self.endpoint.cache_service();
        let cache = self.cache().await;
        let cached = match cache.load(&service).await {
            Ok(cached) => cached,
            Err(error) => {
                tracing::debug!(%error, "cannot read the cached tokens before removing them");
                None
            }
        };
        let refresh_token = cached
            .as_ref()
            .and_then(|c| c.refresh_token.clone())
            .or_else(|| in_memory.as_ref().and_then(|t| t.refresh_token.clone()));
        if let Some(refresh_token) = refresh_token {
            match tokio::time::timeout(REVOKE_BUDGET, self.revoke(&refresh_token)).await {
                Ok(Ok(true)) => tracing::debug!("refresh token revoked"),
                Ok(Ok(false)) => tracing::debug!("the server advertises no revocation endpoint"),
                Ok(Err(error)) => tracing::debug!(%error, "revoking the refresh token failed"),
                Err(_) => tracing::debug!("revoking the refresh token took too long"),
            }
        }
        let removed = cache.remove(&service).await?;
        Ok(removed || cached.is_some())
    }

    /// One Connect call of `method` with the session's token (`authorization: Bearer …`), renewed and retried
    /// once when the server answers `unauthenticated`.
    pub async fn call<Req, Resp>(&self, method: &str, request: &Req) -> Result<Resp, ClientError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let token = self.access_token().await?;
        match self
            .connect
            .unary(method, request, &authorization_headers(&token)?)
            .await
        {
            Err(ClientError::Rpc(error)) if error.is_unauthenticated() => {
                tracing::debug!(method, "the server rejected the token; renewing it once");
                let token = self.renew(&token).await?;
                self.connect
                    .unary(method, request, &authorization_headers(&token)?)
                    .await
            }
            other => other,
        }
    }

    /// The proxy command's token, sent as `proxy-authorization` on every request.
    pub(crate) fn proxy_authorization(&self) -> Option<&Secret> {
        self.proxy_authorization.as_ref()
    }

    /// The refresh window in force.
    pub(crate) fn refresh_window(&self) -> Duration {
        self.settings.token_refresh_window
    }

    /// Valid tokens with their expiry: memory, the cache, a refresh, the login flow.
    pub(crate) async fn valid_tokens(&self) -> Result<Tokens, ClientError> {
        let mut guard = self.tokens.lock().await;
        if let Some(tokens) = guard.as_ref().filter(|t| self.usable(t, None)) {
            return Ok(tokens.clone());
        }
        if self.adopt_cached(&mut guard, None).await
            && let Some(tokens) = guard.as_ref()
        {
            return Ok(tokens.clone());
        }
        self.replace(&mut guard).await
    }

    /// New tokens after the server rejected `rejected`, unless somebody else already replaced them.
    pub(crate) async fn renew_tokens(&self, rejected: &Secret) -> Result<Tokens, ClientError> {
        let mut guard = self.tokens.lock().await;
        if let Some(tokens) = guard.as_ref().filter(|t| self.usable(t, Some(rejected))) {
            return Ok(tokens.clone());
        }
        if self.adopt_cached(&mut guard, Some(rejected)).await
            && let Some(tokens) = guard.as_ref()
        {
            return Ok(tokens.clone());
        }
        self.replace(&mut guard).await
    }

    /// Whether `tokens` can be sent as they are: not `rejected`, not expiring within the window.
    fn usable(&self, tokens: &Tokens, rejected: Option<&Secret>) -> bool {
        rejected != Some(&tokens.access_token)
            && !tokens.needs_refresh(self.settings.token_refresh_window, SystemTime::now())
    }

    /// Takes the cache entry into `slot` when it differs from what `slot` holds: another process (the Python
    /// SDK, another `flyte`) may have refreshed the login, and with refresh-token rotation the refresh token in
    /// memory is then spent. Returns whether `slot` now holds usable tokens.
    async fn adopt_cached(&self, slot: &mut Option<Tokens>, rejected: Option<&Secret>) -> bool {
        if !self.uses_cache() {
            return false;
        }
        let Some(cached) = self.load_cached().await else {
            return false;
        };
        let same = slot.as_ref().is_some_and(|t| {
            t.access_token == cached.access_token && t.refresh_token == cached.refresh_token
        });
        if !same {
            tracing::debug!(kind = ?self.cache_kind(), "tokens taken from the cache");
            *slot = Some(Tokens::from_cached(
                cached.access_token,
                cached.refresh_token,
            ));
        }
        slot.as_ref().is_some_and(|t| self.usable(t, rejected))
    }

    /// Replaces the tokens in `slot`: a refresh with its refresh token, a new client-credentials token, the
    /// command again, or the login flow.
    async fn replace(&self, slot: &mut Option<Tokens>) -> Result<Tokens, ClientError> {
        let result = match self.settings.auth_type {
            AuthType::ClientSecret => self.client_credentials().await,
            AuthType::ExternalCommand => self.external_command().await,
            AuthType::Pkce | AuthType::DeviceFlow => {
                match slot.as_ref().and_then(|t| t.refresh_token.clone()) {
                    Some(refresh_token) => self.refresh(refresh_token).await,
                    None => self.login_flow().await,
                }
            }
        };
        match result {
            Ok(tokens) => {
                *slot = Some(tokens.clone());
                if let Err(error) = self.store(&tokens).await {
                    tracing::warn!(%error, "the new tokens could not be cached");
                }
                Ok(tokens)
            }
            Err(error) => {
                if matches!(error, ClientError::LoginRequired { .. }) {
                    *slot = None;
                }
                Err(error)
            }
        }
    }

    async fn refresh(&self, refresh_token: Secret) -> Result<Tokens, ClientError> {
        let metadata = self.metadata().await?;
        let client = TokenClient::new(self.http.clone(), metadata.token_endpoint.clone());
        tracing::debug!("refreshing the access token");
        match client.refresh(&metadata.client_id, &refresh_token).await {
            Ok(mut tokens) => {
                // A server that does not rotate refresh tokens keeps the old one valid.
                if tokens.refresh_token.is_none() {
                    tokens.refresh_token = Some(refresh_token);
                }
                Ok(tokens)
            }
            Err(ClientError::OAuth {
                error, description, ..
            }) if error == "invalid_grant" || error == "invalid_client" => {
                let service = self.endpoint.cache_service();
                if let Err(cache_error) = self.cache().await.remove(&service).await {
                    tracing::warn!(error = %cache_error, "the refused tokens could not be removed from the cache");
                }
                let reason = match description {
                    Some(description) => format!("{error}: {description}"),
                    None => error,
                };
                Err(ClientError::LoginRequired {
                    endpoint: service,
                    reason,
                })
            }
            Err(error) => Err(error),
        }
    }

    async fn client_credentials(&self) -> Result<Tokens, ClientError> {
        let client_id = self
            .settings
            .client_id
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| missing("the ClientSecret auth type needs admin.clientId (or FLYTE_CREDENTIALS_CLIENT_ID)"))?;
        let secret = self.settings.client_secret.as_ref().filter(|s| !s.is_empty()).ok_or_else(|| {
            missing(
                "the ClientSecret auth type needs a client secret: admin.clientSecretLocation, admin.clientSecretEnvVar or FLYTE_CREDENTIALS_CLIENT_SECRET",
            )
        })?;
        let metadata = self.metadata().await?;
        let client = TokenClient::new(self.http.clone(), metadata.token_endpoint.clone());
        tracing::debug!("asking for a client-credentials token");
        client
            .client_credentials(
                client_id,
                secret,
                &self.scopes(&metadata),
                self.audience(&metadata),
            )
            .await
    }

    async fn external_command(&self) -> Result<Tokens, ClientError> {
        if self.settings.command.is_empty() {
            return Err(missing(
                "the ExternalCommand auth type needs admin.command (a command that prints a token)",
            ));
        }
        let token = crate::flows::command::run_token_command(&self.settings.command).await?;
        Ok(Tokens::from_cached(token, None))
    }

    async fn login_flow(&self) -> Result<Tokens, ClientError> {
        let metadata = self.metadata().await?;
        let host = self.endpoint.cache_service();
        if metadata.client_id.is_empty() {
            return Err(ClientError::Unsupported(format!(
                "{host} names no public client (empty client_id in GetPublicClientConfig); use --auth-type ClientSecret"
            )));
        }
        let client = TokenClient::new(self.http.clone(), metadata.token_endpoint.clone());
        let scopes = self.scopes(&metadata);
        let audience = self.audience(&metadata);
        match self.settings.auth_type {
            AuthType::DeviceFlow => {
                let device_endpoint = metadata.device_authorization_endpoint.as_ref().ok_or_else(|| {
                    ClientError::Unsupported(format!(
                        "{host} does not offer the device flow (no device_authorization_endpoint); use --auth-type Pkce"
                    ))
                })?;
                tracing::debug!("starting the device flow");
                let login = crate::flows::device::DeviceLogin {
                    token_client: &client,
                    device_endpoint,
                    client_id: &metadata.client_id,
                    scopes: &scopes,
                    audience,
                    timeout: self.settings.device_timeout,
                };
                crate::flows::device::login(login, self.ui.as_ref()).await
            }
            _ => {
                let unsupported = |what: &str| {
                    ClientError::Unsupported(format!(
                        "{host} does not offer a browser login (no {what}); use --auth-type DeviceFlow"
                    ))
                };
                let authorization_endpoint = metadata
                    .authorization_endpoint
                    .as_ref()
                    .ok_or_else(|| unsupported("authorization_endpoint"))?;
                let redirect_uri = metadata
                    .redirect_uri
                    .as_ref()
                    .ok_or_else(|| unsupported("redirect_uri"))?;
                tracing::debug!("starting the browser login");
                let login = crate::flows::pkce::PkceLogin {
                    token_client: &client,
                    authorization_endpoint,
                    client_id: &metadata.client_id,
                    redirect_uri,
                    scopes: &scopes,
                    audience,
                    timeout: self.settings.pkce_timeout,
                };
                crate::flows::pkce::login(login, self.ui.as_ref()).await
            }
        }
    }

    /// Best-effort RFC 7009 revocation, only where the authorization server's metadata names an endpoint.
    async fn revoke(&self, refresh_token: &Secret) -> Result<bool, ClientError> {
        let metadata = self.metadata().await?;
        if metadata.issuer.is_empty() {
            return Ok(false);
        }
        let well_known = format!(
            "{}/.well-known/oauth-authorization-server",
            metadata.issuer.trim_end_matches('/')
        );
        let well_known = url::Url::parse(&well_known).map_err(|e| ClientError::Protocol {
            url: well_known.clone(),
            reason: e.to_string(),
        })?;
        let response = self
            .http
            .get(well_known.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| crate::http::unreachable(&well_known, &e))?;
        if !response.status().is_success() {
            return Ok(false);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| crate::http::unreachable(&well_known, &e))?;
        let advertised = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("revocation_endpoint")
                    .and_then(|e| e.as_str())
                    .map(str::to_owned)
            })
            .filter(|e| !e.is_empty());
        let Some(endpoint) = advertised else {
            return Ok(false);
        };
        let endpoint = url::Url::parse(&endpoint).map_err(|e| ClientError::Protocol {
            url: well_known.to_string(),
            reason: format!("revocation_endpoint: {e}"),
        })?;
        let client = TokenClient::new(self.http.clone(), metadata.token_endpoint.clone());
        client
            .revoke(&endpoint, &metadata.client_id, refresh_token)
            .await?;
        Ok(true)
    }

    /// The scopes to ask for: the configured ones, else the server's.
    fn scopes(&self, metadata: &AuthMetadata) -> Vec<String> {
        if self.settings.scopes.is_empty() {
            metadata.scopes.clone()
        } else {
            self.settings.scopes.clone()
        }
    }

    /// The audience to ask for: `admin.audience`, else the server's; the server's first with
    /// `useAudienceFromAdmin`.
    fn audience<'a>(&'a self, metadata: &'a AuthMetadata) -> Option<&'a str> {
        let local = self.settings.audience.as_deref().filter(|a| !a.is_empty());
        let server = metadata.audience.as_deref();
        if self.settings.use_audience_from_admin {
            server.or(local)
        } else {
            local.or(server)
        }
    }

    /// Client-credentials tokens stay in memory (see the module documentation).
    fn uses_cache(&self) -> bool {
        !matches!(self.settings.auth_type, AuthType::ClientSecret)
    }

    async fn cache(&self) -> &TokenCache {
        self.cache
            .get_or_init(|| TokenCache::open(&self.cache_options))
            .await
    }

    async fn load_cached(&self) -> Option<CachedTokens> {
        let service = self.endpoint.cache_service();
        match self.cache().await.load(&service).await {
            Ok(cached) => {
                cached.filter(|c| !c.access_token.is_empty() || c.refresh_token.is_some())
            }
            Err(error) => {
                tracing::warn!(%error, "the token cache cannot be read; signing in again");
                None
            }
        }
    }

    async fn store(&self, tokens: &Tokens) -> Result<(), ClientError> {
        if !self.uses_cache() {
            return Ok(());
        }
        let cached = CachedTokens {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
        };
        self.cache()
            .await
            .store(&self.endpoint.cache_service(), &cached)
            .await?;
        Ok(())
    }
}

/// `authorization: Bearer <token>`.
pub(crate) fn authorization_headers(token: &Secret) -> Result<HeaderMap, ClientError> {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, crate::http::bearer(token)?);
    Ok(headers)
}

fn missing(message: &str) -> ClientError {
    ClientError::Config(ConfigError::Missing(message.to_owned()))
}

#[cfg(test)]
mod tests;
