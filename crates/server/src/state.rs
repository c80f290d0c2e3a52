//! The state every handler shares, built once at start-up.

use crate::error::ApiError;
use crate::hashing::Hashing;
use crate::rate_limit::{ClientAddress, FailureLimits};
use crate::web::cookies::CookiePolicy;
use crate::web::throttle::{AddressThrottle, Throttle};
use bytes::Bytes;
use flyteauth_core::clients::{Client, SecretHash};
use flyteauth_core::clock::Clock;
use flyteauth_core::config::{AuthServerType, Config};
use flyteauth_core::keys::KeyRing;
use flyteauth_core::metadata::{self, PublicClientConfig, ServerMetadata};
use flyteauth_core::secrets::AuthSecrets;
use flyteauth_core::token::{ExternalRules, TokenIssuer, TokenValidator};
use flyteauth_store::{AppRecord, Store};
use http::HeaderName;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

/// Why the state could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// `auth.grpcAuthorizationHeader` or `auth.httpAuthorizationHeader` is not a valid header name.
    #[error("{key}: '{value}' is not a valid HTTP header name")]
    HeaderName {
        /// The configuration key.
        key: &'static str,
        /// The configured value.
        value: String,
    },
    /// A static client is misconfigured.
    #[error("auth.appAuth.selfAuthServer.staticClients: {0}")]
    Clients(#[from] flyteauth_core::clients::ClientError),
    /// The cookie keys are unusable.
    #[error("cookie keys: {0}")]
    CookieKeys(#[from] flyteauth_core::seal::SealError),
    /// The upstream identity provider is misconfigured.
    #[error("{0}")]
    Federation(#[from] crate::federation::FederationSetupError),
    /// The external authorization server is misconfigured.
    #[error("{0}")]
    External(#[from] crate::external::ExternalSetupError),
    /// A document could not be serialized.
    #[error("could not render a metadata document: {0}")]
    Render(#[from] serde_json::Error),
}

/// An authorization server metadata document as served: its fields for GetOAuth2Metadata (gRPC and Connect),
/// and the JSON of `/.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataDocument {
    /// The fields.
    pub metadata: ServerMetadata,
    /// The rendered document.
    pub json: Bytes,
}

/// Cheaply cloneable handle to the shared state.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Everything handlers need; immutable after start-up.
pub struct Shared {
    /// The effective configuration.
    pub config: Config,
    /// The clock every expiry decision uses.
    pub clock: Arc<dyn Clock>,
    /// Signing and verification keys.
    pub keys: Arc<KeyRing>,
    /// Mints access tokens.
    pub issuer: TokenIssuer,
    /// Validates access tokens (the hot path): ours, or in External mode the external server's.
    pub validator: TokenValidator,
    /// The external authorization server, in External mode (`auth.appAuth.authServerType: External`).
    pub external: Option<Arc<crate::external::ExternalAuthority>>,
    /// Clients from `staticClients`, by id.
    pub static_clients: HashMap<String, Client>,
    /// Persistence shared by every replica.
    pub store: Arc<dyn Store>,
    /// The RFC 8414 metadata document of the built-in authorization server (what is served in Self mode; in
    /// External mode its endpoints stay mounted but [`AppState::served_metadata`] advertises the external ones).
    pub metadata: ServerMetadata,
    /// `GET /config/v1/flyte_client` and GetPublicClientConfig.
    pub public_client: PublicClientConfig,
    /// [`Self::metadata`] with its pre-rendered JSON.
    pub self_metadata: Arc<MetadataDocument>,
    /// Pre-rendered JWKS document.
    pub jwks_json: Bytes,
    /// Token audiences the server accepts.
    pub accepted_audiences: Vec<String>,
    /// The audience of tokens minted without an `audience` parameter.
    pub default_audience: String,
    /// The extra header gRPC and Connect callers may carry the token in.
    pub grpc_header: HeaderName,
    /// The extra header HTTP callers may carry the token in.
    pub http_header: HeaderName,
    /// How the browser routes write cookies.
    pub cookies: CookiePolicy,
    /// Seals and opens the session and pending-login cookies (keys from `cookie_block_key`/`cookie_hash_key`).
    pub sealer: flyteauth_core::seal::Sealer,
    /// The upstream OpenID provider people sign in with, when `auth.userAuth.openId.baseUrl` is set.
    pub federation: Option<Arc<crate::federation::Federation>>,
    /// `/me` answers of the session cookies this replica has opened.
    pub session_answers: crate::http_api::SessionAnswers,
    /// Failed sign-ins per source address and per (account, source address).
    pub login_limits: FailureLimits,
    /// Failed client authentications per source address and per (client id, source address).
    pub client_auth_limits: FailureLimits,
    /// The bound on concurrent bcrypt and argon2 checks.
    pub hashing: Hashing,
    /// Where a request comes from (the peer, or behind a trusted proxy the address it forwards).
    pub client_address: ClientAddress,
    /// Repeated failed client authentications, written as one audit row per caller and window.
    pub audit_aggregator: crate::audit::FailureAggregator,
    /// The audit trail's group-commit writer: [`crate::audit::record`] goes through it.
    pub audit: crate::audit::AuditWriter,
    /// Apps read from the store, for [`AppState::find_client`].
    pub apps: crate::app_cache::AppCache,
    /// Wrong device user codes per login session (keyed by the session cookie's digest).
    pub device_attempts_by_session: Throttle<String>,
    /// Wrong device user codes per source address.
    pub device_attempts_by_address: AddressThrottle,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("issuer", &self.metadata.issuer)
            .field("static_clients", &self.static_clients.len())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn header_name(key: &'static str, value: &str) -> Result<HeaderName, StateError> {
    HeaderName::from_bytes(value.trim().to_ascii_lowercase().as_bytes()).map_err(|_| {
        StateError::HeaderName {
            key,
            value: value.to_owned(),
        }
    })
}

/// A handle on the state that does not keep it alive (for background tasks that end with the server).
#[derive(Clone, Debug)]
pub struct WeakAppState(std::sync::Weak<Shared>);

impl WeakAppState {
    /// The state, if the server still holds it.
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

impl AppState {
    /// A handle that does not keep the state alive.
    pub fn downgrade(&self) -> WeakAppState {
        WeakAppState(Arc::downgrade(&self.0))
    }

    /// Builds the state from a validated configuration, its secrets and an open store.
    pub fn new(
        config: Config,
        secrets: AuthSecrets,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StateError> {
        let sealer = flyteauth_core::seal::Sealer::from_secrets(
            secrets.cookie_block_key.expose(),
            secrets.cookie_hash_key.expose(),
        )?;
        let federation = crate::federation::Federation::from_config(
            &config,
            secrets.oidc_client_secret.clone(),
            clock.clone(),
        )?
        .map(Arc::new);
        let keys = Arc::new(secrets.key_ring);
        let issuer_url = config.issuer();
        let self_server = &config.auth.app_auth.self_auth_server;
        let accepted_audiences = config.accepted_audiences();
        let issuer = TokenIssuer::new(
            keys.clone(),
            issuer_url.clone(),
            self_server.access_token_lifespan,
            clock.clone(),
        );
        let external = if config.auth.app_auth.auth_server_type == AuthServerType::External {
            Some(Arc::new(crate::external::ExternalAuthority::from_config(
                &config,
            )?))
        } else {
            None
        };
        let validator = match &external {
            None => TokenValidator::new(
                keys.clone(),
                issuer_url.clone(),
                accepted_audiences.clone(),
                config.flyteauth.token_leeway,
                clock.clone(),
            ),
            Some(authority) => TokenValidator::external(
                authority.keys().clone(),
                ExternalRules {
                    check_issuer: config.flyteauth.external_issuer_check,
                    audiences: config.external_audiences(),
                },
                config.flyteauth.token_leeway,
                clock.clone(),
            ),
        };
        let mut static_clients = flyteauth_core::clients::static_clients(self_server)?;
        if let Some(note) = flyteauth_core::clients::ensure_flyte_client(
            &mut static_clients,
            &config.auth.app_auth.third_party_config.flyte_client,
        ) {
            tracing::info!("{note}");
        }
        let static_clients = static_clients
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let metadata = metadata::server_metadata(&config);
        let public_client = metadata::public_client_config(&config);
        let self_metadata = Arc::new(MetadataDocument {
            metadata: metadata.clone(),
            json: Bytes::from(serde_json::to_vec(&metadata)?),
        });
        let jwks_json = Bytes::from(serde_json::to_vec(&keys.jwks())?);
        let grpc_header = header_name(
            "auth.grpcAuthorizationHeader",
            &config.auth.grpc_authorization_header,
        )?;
        let http_header = header_name(
            "auth.httpAuthorizationHeader",
            &config.auth.http_authorization_header,
        )?;
        let cookies = CookiePolicy::from_config(&config);
        let ext = &config.flyteauth;
        let login_limits = FailureLimits::for_logins(ext, clock.clone());
        let client_auth_limits = FailureLimits::for_clients(ext, clock.clone());
        let hashing = Hashing::new(&ext.hashing);
        let client_address = ClientAddress::from_config(ext);
        let audit_aggregator = crate::audit::FailureAggregator::new(
            ext.rate_limits.audit_window,
            ext.rate_limits.max_tracked_keys,
        );
        let audit = crate::audit::AuditWriter::new(store.clone());
        let device = &ext.device;
        let device_attempts_by_session = Throttle::per_window(
            device.max_code_attempts,
            device.attempt_window,
            clock.clone(),
        );
        let device_attempts_by_address = AddressThrottle::per_window(
            device.max_code_attempts,
            device.attempt_window,
            clock.clone(),
        );
        Ok(Self(Arc::new(Shared {
            default_audience: issuer_url,
            config,
            clock,
            keys,
            issuer,
            validator,
            external,
            static_clients,
            store,
            metadata,
            public_client,
            self_metadata,
            jwks_json,
            accepted_audiences,
            grpc_header,
            http_header,
            cookies,
            sealer,
            federation,
            session_answers: Default::default(),
            login_limits,
            client_auth_limits,
            hashing,
            client_address,
            audit_aggregator,
            audit,
            apps: crate::app_cache::AppCache::default(),
            device_attempts_by_session,
            device_attempts_by_address,
        })))
    }

    /// The metadata document to advertise: the built-in server's, or in External mode the external server's last
    /// good copy (`None` until it was fetched once).
    pub fn served_metadata(&self) -> Option<Arc<MetadataDocument>> {
        match &self.external {
            None => Some(self.self_metadata.clone()),
            Some(external) => external.document(),
        }
    }

    /// Finds a client by id: static clients first, then apps (held in memory for up to
    /// [`crate::app_cache::MAX_AGE`] after they were read from the store).
    pub async fn find_client(&self, client_id: &str) -> Result<Option<Client>, ApiError> {
        self.lookup_client(client_id, Lookup::Cached)
            .await
            .map(|found| found.client)
    }

    /// [`Self::find_client`], saying whether the answer came from memory; [`Lookup::Store`] reads the store
    /// whatever the cache holds (and refreshes it).
    pub(crate) async fn lookup_client(
        &self,
        client_id: &str,
        how: Lookup,
    ) -> Result<Found, ApiError> {
        if let Some(client) = self.static_clients.get(client_id) {
            return Ok(Found {
                client: Some(client.clone()),
                cached: false,
            });
        }
        let now = self.clock.now();
        if how == Lookup::Cached
            && let Some(client) = self.apps.get(client_id, now)
        {
            return Ok(Found {
                client: Some(client),
                cached: true,
            });
        }
        let fetch = self.apps.begin(now);
        let record = self
            .store
            .get_app(client_id)
            .await
            .map_err(ApiError::internal)?;
        let client = record.map(client_from_app).transpose()?;
        self.apps.insert(fetch, client_id, client.as_ref());
        Ok(Found {
            client,
            cached: false,
        })
    }
}

/// Where [`AppState::lookup_client`] may look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Memory first.
    Cached,
    /// The store, refreshing memory.
    Store,
}

/// What [`AppState::lookup_client`] found.
#[derive(Debug)]
pub(crate) struct Found {
    /// The client, if there is one.
    pub(crate) client: Option<Client>,
    /// Whether it came from memory (and so may be up to [`crate::app_cache::MAX_AGE`] old).
    pub(crate) cached: bool,
}

/// An app from the store as a client of the token endpoint.
fn client_from_app(app: AppRecord) -> Result<Client, ApiError> {
    let secret = SecretHash::parse(&app.secret_hash).map_err(|e| {
        ApiError::internal(format!(
            "stored secret hash of app '{}' is unreadable: {e}",
            app.client_id
        ))
    })?;
    Ok(Client {
        id: app.client_id,
        name: app.client_name,
        secret: Some(secret),
        // Apps are machine credentials: whatever else was registered (the SDK's Create asks for
        // authorization_code too), the token endpoint honours client_credentials only.
        grant_types: app
            .grant_types
            .into_iter()
            .filter(|g| g == flyteauth_core::grant::CLIENT_CREDENTIALS)
            .collect(),
        scopes: app.scopes,
        audience: app.audience,
        redirect_uris: app.redirect_uris,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteauth_core::clock::ManualClock;
    use flyteauth_core::secrets::SecretSource;
    use flyteauth_store::{AppUpdate, NewApp, Revocation, RevocationKind};
    use time::macros::datetime;

    /// A state over an in-memory store with a clock the test moves.
    async fn state_at(clock: Arc<ManualClock>) -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded_default(dir.path());
        flyteauth_core::secrets::write_fresh_set(&dir.path().join("secrets")).unwrap();
        let secrets =
            AuthSecrets::load(&SecretSource::from_config(&config.secrets), &config).unwrap();
        let store = flyteauth_store::connect("sqlite::memory:").await.unwrap();
        let state = AppState::new(config, secrets, store, clock).unwrap();
        (state, dir)
    }

    fn app(client_id: &str, name: &str) -> NewApp {
        NewApp {
            client_id: client_id.into(),
            client_name: name.into(),
            organization: String::new(),
            secret_hash: flyteauth_core::clients::hash_generated_secret("s").encode(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["all".into()],
            audience: vec![],
            redirect_uris: vec![],
            created_by: "test".into(),
            created_at: 1,
        }
    }

    async fn name_of(state: &AppState, client_id: &str) -> Option<String> {
        state
            .find_client(client_id)
            .await
            .unwrap()
            .map(|client| client.name)
    }

    #[tokio::test]
    async fn an_app_changed_in_the_store_is_seen_once_its_entry_is_two_seconds_old() {
        let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
        let (state, _dir) = state_at(clock.clone()).await;
        state.store.create_app(&app("bot", "v1")).await.unwrap();
        assert_eq!(name_of(&state, "bot").await.as_deref(), Some("v1"));
        assert_eq!(state.apps.len(), 1);

        // Changed behind this replica's back (another replica, the CLI).
        let update = AppUpdate {
            client_name: Some("v2".into()),
            ..AppUpdate::at(2)
        };
        state.store.update_app("bot", &update).await.unwrap();
        clock.advance(time::Duration::milliseconds(1_900));
        assert_eq!(name_of(&state, "bot").await.as_deref(), Some("v1"), "held");
        clock.advance(time::Duration::milliseconds(100));
        assert_eq!(
            name_of(&state, "bot").await.as_deref(),
            Some("v2"),
            "read again"
        );

        // Deleted behind its back: gone once the entry is old, and the entry with it.
        assert!(state.store.delete_app("bot").await.unwrap());
        clock.advance(time::Duration::seconds(2));
        assert_eq!(name_of(&state, "bot").await, None);
        assert!(state.apps.is_empty());
    }

    #[tokio::test]
    async fn unknown_client_ids_are_not_kept() {
        let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
        let (state, _dir) = state_at(clock).await;
        for i in 0..500 {
            assert!(
                state
                    .find_client(&format!("guess-{i}"))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        assert!(state.apps.is_empty());
        // Static clients are not copied into it either.
        assert!(state.find_client("flytectl").await.unwrap().is_some());
        assert!(state.apps.is_empty());
    }

    #[tokio::test]
    async fn an_app_revocation_from_the_mirror_drops_the_entry_at_once() {
        let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
        let (state, _dir) = state_at(clock.clone()).await;
        state.store.create_app(&app("bot", "v1")).await.unwrap();
        assert_eq!(name_of(&state, "bot").await.as_deref(), Some("v1"));
        // Another replica rotates the secret (here: renames) and writes the app's revocation.
        let update = AppUpdate {
            client_name: Some("v2".into()),
            ..AppUpdate::at(2)
        };
        state.store.update_app("bot", &update).await.unwrap();
        let now = clock.unix_now();
        state
            .store
            .revoke(&Revocation {
                kind: RevocationKind::App,
                token_id: "bot".into(),
                expires_at: now + 3600,
                reason: "app.secret_rotated".into(),
                revoked_at: now,
            })
            .await
            .unwrap();
        crate::revocation_mirror::load(&state).await.unwrap();
        assert!(state.apps.is_empty());
        assert_eq!(name_of(&state, "bot").await.as_deref(), Some("v2"));
    }

    #[tokio::test]
    async fn revoking_an_app_here_drops_it_and_covers_what_other_copies_may_issue() {
        let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
        let (state, _dir) = state_at(clock.clone()).await;
        state.store.create_app(&app("bot", "v1")).await.unwrap();
        assert!(name_of(&state, "bot").await.is_some());
        assert!(state.store.delete_app("bot").await.unwrap());
        let now = clock.unix_now();
        let revoked_at = crate::grants::revoke_app(&state, "bot", "app.deleted")
            .await
            .unwrap();
        assert_eq!(revoked_at, now + crate::app_cache::REVOCATION_COVER_SECS);
        assert!(state.apps.is_empty());
        assert_eq!(name_of(&state, "bot").await, None, "at once, no waiting");
        let stored = state.store.revocations_since(0).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1.revoked_at, revoked_at);
    }
}
