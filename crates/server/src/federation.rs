//! Sign-in through an upstream OpenID provider (`auth.userAuth.openId`: Okta, Entra ID, Keycloak, Google, …).
//!
//! The browser is sent to the provider with `state`, `nonce` and a PKCE challenge; the provider sends it back to
//! `/callback` with a code, which is exchanged (with the PKCE verifier and the client secret) for an ID token.
//! The ID token is checked by the `openidconnect` crate: issuer, audience, expiry (with leeway), nonce, and a
//! signature by one of the provider's keys under one of the algorithms the provider announces (never `none`).
//!
//! The provider's discovery document and keys are fetched lazily and cached: the document for an hour (the last
//! good copy is kept when a refresh fails, so a provider outage does not end sign-ins that need no new keys), the
//! keys again when a token names a key we do not know — at most once per [`JWKS_REFETCH_SECS`], however many
//! such tokens arrive.

use flyteauth_core::browser_session::PendingLogin;
use flyteauth_core::clock::Clock;
use flyteauth_core::config::Config;
use flyteauth_core::federation::{FederatedProfile, profile_from_claims};
use flyteauth_core::secrets::Secret;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClientId, ClientSecret, EndSessionUrl, IssuerUrl, LogoutRequest, Nonce, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout,
};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, RwLock};
use url::Url;

/// How long a discovery document is used before it is fetched again.
const METADATA_TTL_SECS: i64 = 3600;
/// The shortest time between two fetches of the provider's keys.
pub const JWKS_REFETCH_SECS: i64 = 30;
/// Clock skew tolerated on the ID token's expiry.
const EXPIRY_LEEWAY_SECS: i64 = 60;
/// The largest answer read from the provider (discovery, keys, tokens, userinfo).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a federated sign-in failed. Each variant is rendered as its own page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The provider could not be reached, or answered with something that is not a usable document.
    #[error("the identity provider at {url} cannot be reached: {reason}")]
    Unreachable {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The provider's token endpoint refused the code exchange.
    #[error("the identity provider refused the code exchange: {0}")]
    TokenRefused(String),
    /// The provider's answer did not carry a valid ID token for this sign-in.
    #[error("the identity provider's ID token is not valid: {0}")]
    InvalidIdToken(String),
    /// The ID token is valid but does not describe a usable identity.
    #[error("the identity provider's claims cannot be used: {0}")]
    Profile(String),
}

/// What the provider told us about itself, and its keys.
struct Provider {
    metadata: ProviderMetadataWithLogout,
    /// Algorithms an ID token may be signed with: the provider's list, without `none`.
    algorithms: Vec<CoreJwsSigningAlgorithm>,
    fetched_at: i64,
    jwks_fetched_at: i64,
}

/// A successful sign-in at the provider.
#[derive(Debug)]
pub struct SignedIn {
    /// Who signed in.
    pub profile: FederatedProfile,
    /// The raw ID token, kept server-side for the `id_token_hint` of a logout at the provider.
    pub id_token: String,
}

/// The upstream OpenID provider of this deployment.
pub struct Federation {
    base_url: String,
    issuer_override: Option<IssuerUrl>,
    client_id: ClientId,
    client_secret: Option<Secret>,
    scopes: String,
    redirect_uri: String,
    idp_query_parameter: Option<String>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    provider: RwLock<Option<Arc<Provider>>>,
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

/// Why federation could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationSetupError {
    /// A URL in the configuration is not usable.
    #[error("{key}: {reason}")]
    Url {
        /// The configuration key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the identity provider client: {0}")]
    Client(String),
}

impl Federation {
    /// The provider `config` names, or `None` when `auth.userAuth.openId.baseUrl` is empty.
    pub fn from_config(
        config: &Config,
        client_secret: Option<Secret>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, FederationSetupError> {
        if !config.federation_enabled() {
            return Ok(None);
        }
        let open_id = &config.auth.user_auth.open_id;
        let base_url = open_id.base_url.trim().trim_end_matches('/').to_owned();
        Url::parse(&base_url).map_err(|e| FederationSetupError::Url {
            key: "auth.userAuth.openId.baseUrl",
            reason: e.to_string(),
        })?;
        let issuer_override = match open_id.issuer_url.trim() {
            "" => None,
            url => Some(
                IssuerUrl::new(url.to_owned()).map_err(|e| FederationSetupError::Url {
                    key: "auth.userAuth.openId.issuerUrl",
                    reason: e.to_string(),
                })?,
            ),
        };
        let redirect_uri = public_path(config, "callback");
        let http = reqwest::Client::builder()
            // Never follow a redirect from the provider: every endpoint we call is named in its metadata.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("flyteauth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FederationSetupError::Client(e.to_string()))?;
        let idp = config.auth.user_auth.idp_query_parameter.trim();
        Ok(Some(Self {
            base_url,
            issuer_override,
            client_id: ClientId::new(open_id.client_id.trim().to_owned()),
            client_secret,
            scopes: open_id.scopes.join(" "),
            redirect_uri,
            idp_query_parameter: (!idp.is_empty()).then(|| idp.to_owned()),
            http,
            clock,
            provider: RwLock::new(None),
            refreshing: Mutex::new(()),
        }))
    }

    /// The provider's host, for the "Sign in with …" button.
    pub fn display_name(&self) -> String {
        Url::parse(&self.base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| self.base_url.clone())
    }

    /// The name of the query parameter copied from `/login` onto the provider's URL (Okta's `idp`), if any.
    pub fn idp_query_parameter(&self) -> Option<&str> {
        self.idp_query_parameter.as_deref()
    }

    /// The provider's authorization URL for `pending`, with `idp_hint` under the configured parameter name.
    pub async fn authorization_url(
        &self,
        pending: &PendingLogin,
        idp_hint: Option<&str>,
    ) -> Result<Url, FederationError> {
        let provider = self.provider().await?;
        let mut url = provider.metadata.authorization_endpoint().url().clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", self.client_id.as_str())
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("scope", &self.scopes)
                .append_pair("state", &pending.state)
                .append_pair("nonce", &pending.nonce)
                .append_pair(
                    "code_challenge",
                    &flyteauth_core::pkce::s256_challenge(&pending.pkce_verifier),
                )
                .append_pair("code_challenge_method", "S256");
            if let (Some(name), Some(value)) = (&self.idp_query_parameter, idp_hint) {
                query.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// Exchanges `code` for an ID token, checks it against `pending`, and reads the person's profile.
    pub async fn finish(
        &self,
        code: &str,
        pending: &PendingLogin,
    ) -> Result<SignedIn, FederationError> {
        let provider = self.provider().await?;
        let token_url = provider
            .metadata
            .token_endpoint()
            .ok_or_else(|| {
                FederationError::TokenRefused("the provider announces no token endpoint".into())
            })?
            .url()
            .clone();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", pending.pkce_verifier.as_str()),
        ];
        let mut request = self.http.post(token_url.clone());
        let secret = self
            .client_secret
            .as_ref()
            .and_then(|s| std::str::from_utf8(s.expose()).ok());
        match secret {
            // client_secret_basic: both halves form-urlencoded first (RFC 6749 §2.3.1).
            Some(secret) => {
                request = request.basic_auth(
                    form_encode(self.client_id.as_str()),
                    Some(form_encode(secret)),
                );
            }
            None => form.push(("client_id", self.client_id.as_str())),
        }
        let response = request
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(&token_url, &e))?;
        let status = response.status();
        let body = read_limited(response)
            .await
            .map_err(|reason| FederationError::Unreachable {
                url: token_url.to_string(),
                reason,
            })?;
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            FederationError::TokenRefused(format!("HTTP {status} with a body that is not JSON"))
        })?;
        if !status.is_success() {
            let error = json
                .get("error")
                .and_then(|e| e.as_str())
                .map(crate::audit::printable)
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(FederationError::TokenRefused(error));
        }
        let raw_id_token = json
            .get("id_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                FederationError::InvalidIdToken("the token response has no id_token".into())
            })?
            .to_owned();
        let access_token = json
            .get("access_token")
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        let claims = self
            .verify_id_token(provider, &raw_id_token, &pending.nonce)
            .await?;
        let userinfo = match access_token {
            Some(token) => self.userinfo(&token).await,
            None => None,
        };
        let profile = profile_from_claims(&claims, userinfo.as_ref())
            .map_err(|e| FederationError::Profile(e.to_string()))?;
        Ok(SignedIn {
            profile,
            id_token: raw_id_token,
        })
    }

    /// Where to send the browser to end the provider's session too, if the provider offers that
    /// (RP-Initiated Logout): with the ID token as a hint and `post_logout` as the way back.
    pub async fn end_session_url(&self, id_token: Option<&str>, post_logout: &str) -> Option<Url> {
        let provider = self.provider().await.ok()?;
        let endpoint: &EndSessionUrl = provider
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()?;
        let mut request =
            LogoutRequest::from(endpoint.clone()).set_client_id(self.client_id.clone());
        if let Some(token) = id_token.and_then(|t| CoreIdToken::from_str(t).ok()) {
            request = request.set_id_token_hint(&token);
        }
        if let Ok(back) = PostLogoutRedirectUrl::new(post_logout.to_owned()) {
            request = request.set_post_logout_redirect_uri(back);
        }
        Some(request.http_get_url())
    }

    /// The ID token's claims, once issuer, audience, expiry, nonce, algorithm and signature hold.
    async fn verify_id_token(
        &self,
        mut provider: Arc<Provider>,
        raw: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, FederationError> {
        let token = CoreIdToken::from_str(raw)
            .map_err(|e| FederationError::InvalidIdToken(format!("unreadable: {e}")))?;
        let nonce = Nonce::new(nonce.to_owned());
        let mut refetched = false;
        loop {
            let outcome = {
                let verifier = self.verifier(&provider);
                token.claims(&verifier, &nonce).map(|_| ())
            };
            match outcome {
                Ok(()) => break,
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                )) if !refetched => {
                    refetched = true;
                    provider = self.refetch_keys(&provider).await?;
                }
                Err(e) => return Err(FederationError::InvalidIdToken(e.to_string())),
            }
        }
        // The signature covers exactly these bytes, so the payload can now be read for the claims the crate's
        // typed view leaves out (groups).
        let payload = raw
            .split('.')
            .nth(1)
            .ok_or_else(|| FederationError::InvalidIdToken("not a JWS".into()))?;
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .map_err(|_| FederationError::InvalidIdToken("payload is not base64url".into()))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| FederationError::InvalidIdToken("payload is not a JSON object".into()))
    }

    fn verifier<'a>(&'a self, provider: &'a Provider) -> CoreIdTokenVerifier<'a> {
        let issuer = self
            .issuer_override
            .clone()
            .unwrap_or_else(|| provider.metadata.issuer().clone());
        let keys = provider.metadata.jwks().clone();
        let verifier = match &self.client_secret {
            Some(secret) => CoreIdTokenVerifier::new_confidential_client(
                self.client_id.clone(),
                ClientSecret::new(String::from_utf8_lossy(secret.expose()).into_owned()),
                issuer,
                keys,
            ),
            None => CoreIdTokenVerifier::new_public_client(self.client_id.clone(), issuer, keys),
        };
        let clock = self.clock.clone();
        verifier
            .set_allowed_algs(provider.algorithms.iter().cloned())
            .set_time_fn(move || {
                let lenient = clock.unix_now().saturating_sub(EXPIRY_LEEWAY_SECS);
                chrono::DateTime::from_timestamp(lenient, 0).unwrap_or_default()
            })
    }

    /// The profile claims of the provider's userinfo endpoint, when it has one and answers with JSON. A failure
    /// here is not fatal: the ID token already says who signed in.
    async fn userinfo(
        &self,
        access_token: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let provider = self.provider().await.ok()?;
        let url = provider.metadata.userinfo_endpoint()?.url().clone();
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| tracing::warn!(error = %e, "identity provider userinfo request failed"))
            .ok()?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "identity provider userinfo refused");
            return None;
        }
        let body = read_limited(response).await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// The cached provider, fetched when missing or older than [`METADATA_TTL_SECS`]; the stale copy when a
    /// refresh fails.
    async fn provider(&self) -> Result<Arc<Provider>, FederationError> {
        let now = self.clock.unix_now();
        if let Some(p) = self.provider.read().await.as_ref()
            && now < p.fetched_at.saturating_add(METADATA_TTL_SECS)
        {
            return Ok(p.clone());
        }
        // One fetch at a time: whoever waited here finds the fresh copy.
        let _guard = self.refreshing.lock().await;
        let cached = self.provider.read().await.clone();
        if let Some(p) = &cached
            && now < p.fetched_at.saturating_add(METADATA_TTL_SECS)
        {
            return Ok(p.clone());
        }
        match self.discover().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.provider.write().await = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match cached {
                Some(stale) => {
                    tracing::warn!(error = %e, "keeping the identity provider's last good metadata");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    /// Fetches the keys again, unless that was done less than [`JWKS_REFETCH_SECS`] ago.
    async fn refetch_keys(&self, seen: &Arc<Provider>) -> Result<Arc<Provider>, FederationError> {
        let _guard = self.refreshing.lock().await;
        let now = self.clock.unix_now();
        let current = self
            .provider
            .read()
            .await
            .clone()
            .unwrap_or_else(|| seen.clone());
        if now < current.jwks_fetched_at.saturating_add(JWKS_REFETCH_SECS) {
            return Ok(current);
        }
        let jwks = self.fetch_jwks(&current.metadata).await?;
        let mut metadata = current.metadata.clone();
        metadata = metadata.set_jwks(jwks);
        let fresh = Arc::new(Provider {
            metadata,
            algorithms: current.algorithms.clone(),
            fetched_at: current.fetched_at,
            jwks_fetched_at: now,
        });
        *self.provider.write().await = Some(fresh.clone());
        crate::metrics::federation_fetch("jwks");
        Ok(fresh)
    }

    async fn discover(&self) -> Result<Provider, FederationError> {
        let url = format!("{}/.well-known/openid-configuration", self.base_url);
        let body = self.get(&url).await?;
        let mut metadata: ProviderMetadataWithLogout =
            serde_json::from_slice(&body).map_err(|e| FederationError::Unreachable {
                url: url.clone(),
                reason: format!("not an OpenID discovery document: {e}"),
            })?;
        // Discovery must describe the provider we were pointed at (OpenID Connect Discovery §4.3), unless the
        // deployment names the issuer it expects instead (flyteadmin's issuerUrl).
        let announced = metadata.issuer().as_str().trim_end_matches('/');
        if self.issuer_override.is_none() && announced != self.base_url {
            return Err(FederationError::Unreachable {
                url,
                reason: format!(
                    "its issuer is {announced:?}, not the configured baseUrl (set auth.userAuth.openId.issuerUrl \
                     if that is intended)"
                ),
            });
        }
        let jwks = self.fetch_jwks(&metadata).await?;
        metadata = metadata.set_jwks(jwks);
        let algorithms: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| **a != CoreJwsSigningAlgorithm::None)
            .cloned()
            .collect();
        let now = self.clock.unix_now();
        crate::metrics::federation_fetch("discovery");
        Ok(Provider {
            metadata,
            algorithms: if algorithms.is_empty() {
                vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
            } else {
                algorithms
            },
            fetched_at: now,
            jwks_fetched_at: now,
        })
    }

    async fn fetch_jwks(
        &self,
        metadata: &ProviderMetadataWithLogout,
    ) -> Result<CoreJsonWebKeySet, FederationError> {
        let url = metadata.jwks_uri().url().to_string();
        let body = self.get(&url).await?;
        serde_json::from_slice(&body).map_err(|e| FederationError::Unreachable {
            url,
            reason: format!("not a JSON Web Key Set: {e}"),
        })
    }

    async fn get(&self, url: &str) -> Result<bytes::Bytes, FederationError> {
        let failed = |reason: String| {
            crate::metrics::federation_failure();
            FederationError::Unreachable {
                url: url.to_owned(),
                reason,
            }
        };
        let response = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        read_limited(response).await.map_err(failed)
    }
}

/// `<public URL>/<path>` (the public URL may itself have a path).
pub fn public_path(config: &Config, path: &str) -> String {
    let base = config.public_url();
    format!("{}/{path}", base.as_str().trim_end_matches('/'))
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn unreachable(url: &Url, e: &reqwest::Error) -> FederationError {
    crate::metrics::federation_failure();
    FederationError::Unreachable {
        url: url.to_string(),
        reason: describe(e),
    }
}

/// A reqwest error in one line (the URLs involved are the provider's published endpoints; codes travel in
/// request bodies, never in these URLs).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.to_string()
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<bytes::Bytes, String> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
