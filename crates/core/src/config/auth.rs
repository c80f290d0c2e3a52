//! The `auth:` section (flyteadmin's `auth/config`): headers, authorized URIs, user and app authentication.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::duration::go;
use super::serde_util::{list_or_csv, map_or_list, null_default, opt_path, opt_string, url_list};

/// The header name flyteadmin uses for bearer tokens when none is configured.
pub const DEFAULT_AUTHORIZATION_HEADER: &str = "flyte-authorization";

/// `auth:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AuthConfig {
    /// `httpAuthorizationHeader` ("flyte-authorization"): extra header carrying the bearer token on HTTP.
    pub http_authorization_header: String,
    /// `grpcAuthorizationHeader` ("flyte-authorization"): extra metadata key carrying the bearer token on gRPC;
    /// also advertised to clients as `authorization_metadata_key`.
    pub grpc_authorization_header: String,
    /// `disableForHttp` (false).
    pub disable_for_http: bool,
    /// `disableForGrpc` (false).
    pub disable_for_grpc: bool,
    /// `authorizedUris` (empty): the URLs this server is reached at; the first is the public URL, all are
    /// accepted token audiences.
    #[serde(with = "url_list")]
    pub authorized_uris: Vec<Url>,
    /// `httpProxyURL`: proxy for calls to an external authorization server's metadata.
    #[serde(rename = "httpProxyURL", alias = "httpProxyUrl", with = "opt_string")]
    pub http_proxy_url: Option<String>,
    /// `userAuth`: browser login (parsed and validated; not used yet).
    #[serde(deserialize_with = "null_default")]
    pub user_auth: UserAuthConfig,
    /// `appAuth`: the authorization server.
    #[serde(deserialize_with = "null_default")]
    pub app_auth: AppAuthConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            http_authorization_header: DEFAULT_AUTHORIZATION_HEADER.to_owned(),
            grpc_authorization_header: DEFAULT_AUTHORIZATION_HEADER.to_owned(),
            disable_for_http: false,
            disable_for_grpc: false,
            authorized_uris: Vec::new(),
            http_proxy_url: None,
            user_auth: UserAuthConfig::default(),
            app_auth: AppAuthConfig::default(),
        }
    }
}

/// `auth.userAuth:` — human login (roadmap; parsed and validated now so flyteadmin files load unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserAuthConfig {
    /// `redirectUrl` ("/console"): where a finished login lands by default.
    pub redirect_url: String,
    /// `httpProxyURL`: proxy for calls to the identity provider.
    #[serde(rename = "httpProxyURL", alias = "httpProxyUrl", with = "opt_string")]
    pub http_proxy_url: Option<String>,
    /// `cookieHashKeySecretName` ("cookie_hash_key").
    pub cookie_hash_key_secret_name: String,
    /// `cookieBlockKeySecretName` ("cookie_block_key").
    pub cookie_block_key_secret_name: String,
    /// `cookieSetting`.
    #[serde(deserialize_with = "null_default")]
    pub cookie_setting: CookieSetting,
    /// `idpQueryParameter` (""): query parameter naming the identity provider (e.g. Okta's `idp`).
    pub idp_query_parameter: String,
    /// `openId`: the upstream OpenID Connect provider.
    #[serde(deserialize_with = "null_default")]
    pub open_id: OpenIdConfig,
}

impl Default for UserAuthConfig {
    fn default() -> Self {
        Self {
            redirect_url: "/console".to_owned(),
            http_proxy_url: None,
            cookie_hash_key_secret_name: crate::secrets::COOKIE_HASH_KEY.to_owned(),
            cookie_block_key_secret_name: crate::secrets::COOKIE_BLOCK_KEY.to_owned(),
            cookie_setting: CookieSetting::default(),
            idp_query_parameter: String::new(),
            open_id: OpenIdConfig::default(),
        }
    }
}

/// `auth.userAuth.cookieSetting:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CookieSetting {
    /// `sameSitePolicy` (DefaultMode).
    pub same_site_policy: SameSitePolicy,
    /// `domain` (""): cookie domain.
    pub domain: String,
}

/// The `SameSite` cookie attribute, spelled as flyteadmin spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SameSitePolicy {
    /// No `SameSite` attribute.
    #[default]
    DefaultMode,
    /// `SameSite=Lax`.
    LaxMode,
    /// `SameSite=Strict`.
    StrictMode,
    /// `SameSite=None`.
    NoneMode,
}

/// `auth.userAuth.openId:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OpenIdConfig {
    /// `clientId`.
    pub client_id: String,
    /// `clientSecretName` ("oidc_client_secret").
    pub client_secret_name: String,
    /// `clientSecretFile` (deprecated in flyteadmin): absolute path of the client secret.
    #[serde(with = "opt_path")]
    pub client_secret_file: Option<PathBuf>,
    /// `baseUrl`: issuer / discovery base URL.
    pub base_url: String,
    /// `issuerUrl`: issuer override when discovery's issuer differs from `baseUrl`.
    pub issuer_url: String,
    /// `scopes` (`[openid, profile]`).
    #[serde(deserialize_with = "null_default")]
    pub scopes: Vec<String>,
}

impl Default for OpenIdConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret_name: crate::secrets::OIDC_CLIENT_SECRET.to_owned(),
            client_secret_file: None,
            base_url: String::new(),
            issuer_url: String::new(),
            scopes: vec!["openid".to_owned(), "profile".to_owned()],
        }
    }
}

/// `auth.appAuth:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AppAuthConfig {
    /// `authServerType` (Self).
    pub auth_server_type: AuthServerType,
    /// `selfAuthServer`: the built-in authorization server.
    #[serde(deserialize_with = "null_default")]
    pub self_auth_server: SelfAuthServerConfig,
    /// `externalAuthServer`: the external authorization server, used when `authServerType` is `External`.
    #[serde(deserialize_with = "null_default")]
    pub external_auth_server: ExternalAuthServerConfig,
    /// `thirdPartyConfig`: what clients are told to use.
    #[serde(deserialize_with = "null_default")]
    pub third_party_config: ThirdPartyConfig,
}

/// Which authorization server issues tokens (`Self` | `External`, case-sensitive as in flyteadmin).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthServerType {
    /// The built-in server (YAML `Self`).
    #[default]
    #[serde(rename = "Self")]
    SelfServer,
    /// An external server (YAML `External`).
    External,
}

/// `auth.appAuth.selfAuthServer:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SelfAuthServerConfig {
    /// `issuer` (""): the `iss` of minted tokens; empty means the public URL.
    pub issuer: String,
    /// `accessTokenLifespan` (30m).
    #[serde(with = "go")]
    pub access_token_lifespan: Duration,
    /// `refreshTokenLifespan` (1h).
    #[serde(with = "go")]
    pub refresh_token_lifespan: Duration,
    /// `authorizationCodeLifespan` (5m).
    #[serde(with = "go")]
    pub authorization_code_lifespan: Duration,
    /// `claimSymmetricEncryptionKeySecretName` ("claim_symmetric_key").
    pub claim_symmetric_encryption_key_secret_name: String,
    /// `tokenSigningRSAKeySecretName` ("token_rsa_key.pem").
    #[serde(
        rename = "tokenSigningRSAKeySecretName",
        alias = "tokenSigningRsaKeySecretName"
    )]
    pub token_signing_rsa_key_secret_name: String,
    /// `oldTokenSigningRSAKeySecretName` ("token_rsa_key_old.pem"): optional previous key, for validation only.
    #[serde(
        rename = "oldTokenSigningRSAKeySecretName",
        alias = "oldTokenSigningRsaKeySecretName"
    )]
    pub old_token_signing_rsa_key_secret_name: String,
    /// `staticClients`: clients defined in configuration, keyed by client id, merged over flyteadmin's public
    /// `flytectl` and `flyte-cli` clients as flyteadmin merges them (a configured client of the same id replaces
    /// the default). Never its `flytepropeller`, whose secret is publicly known.
    #[serde(deserialize_with = "merged_with_default_clients")]
    pub static_clients: BTreeMap<String, StaticClient>,
}

impl Default for SelfAuthServerConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            access_token_lifespan: Duration::from_secs(30 * 60),
            refresh_token_lifespan: Duration::from_secs(60 * 60),
            authorization_code_lifespan: Duration::from_secs(5 * 60),
            claim_symmetric_encryption_key_secret_name: crate::secrets::CLAIM_SYMMETRIC_KEY
                .to_owned(),
            token_signing_rsa_key_secret_name: crate::secrets::TOKEN_RSA_KEY.to_owned(),
            old_token_signing_rsa_key_secret_name: crate::secrets::TOKEN_RSA_KEY_OLD.to_owned(),
            static_clients: default_static_clients(),
        }
    }
}

/// Configured clients over the defaults: flyteadmin decodes `staticClients` into its pre-filled default map, so a
/// values file that lists only its own clients still has `flytectl`, which `thirdPartyConfig.flyteClient` names.
fn merged_with_default_clients<'de, D>(
    deserializer: D,
) -> Result<BTreeMap<String, StaticClient>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let mut clients = default_static_clients();
    clients.extend(map_or_list::deserialize(deserializer)?);
    Ok(clients)
}

/// flyteadmin's built-in public clients, `flyte-cli` and `flytectl`.
pub fn default_static_clients() -> BTreeMap<String, StaticClient> {
    ["flyte-cli", "flytectl"]
        .into_iter()
        .map(|id| {
            let client = StaticClient {
                id: id.to_owned(),
                client_secret: None,
                redirect_uris: vec![
                    "http://localhost:53593/callback".to_owned(),
                    "http://localhost:12345/callback".to_owned(),
                ],
                grant_types: vec!["refresh_token".to_owned(), "authorization_code".to_owned()],
                response_types: vec!["code".to_owned(), "token".to_owned()],
                scopes: vec![
                    "all".to_owned(),
                    "offline".to_owned(),
                    "access_token".to_owned(),
                ],
                audience: Vec::new(),
                public: true,
            };
            (id.to_owned(), client)
        })
        .collect()
}

/// One entry of `staticClients`, with fosite's snake_case keys as flyteadmin writes them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticClient {
    /// `id`: the client id; when empty, the map key.
    pub id: String,
    /// `client_secret`: standard base64 of a bcrypt hash of the secret, as flyteadmin expects.
    #[serde(with = "opt_string")]
    pub client_secret: Option<String>,
    /// `redirect_uris`.
    #[serde(deserialize_with = "null_default")]
    pub redirect_uris: Vec<String>,
    /// `grant_types`.
    #[serde(deserialize_with = "null_default")]
    pub grant_types: Vec<String>,
    /// `response_types`.
    #[serde(deserialize_with = "null_default")]
    pub response_types: Vec<String>,
    /// `scopes`.
    #[serde(deserialize_with = "null_default")]
    pub scopes: Vec<String>,
    /// `audience`: audiences the client may request besides the server's own.
    #[serde(deserialize_with = "null_default")]
    pub audience: Vec<String>,
    /// `public`: a public client has no secret.
    pub public: bool,
}

impl fmt::Debug for StaticClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticClient")
            .field("id", &self.id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("response_types", &self.response_types)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("public", &self.public)
            .finish()
    }
}

/// `auth.appAuth.externalAuthServer:` — the external authorization server used when `authServerType` is
/// `External`: its metadata and keys are fetched from `baseUrl` (see [`super::Config::external_metadata_url`])
/// and its access tokens are the ones accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExternalAuthServerConfig {
    /// `baseUrl` (""): defaults to `userAuth.openId.baseUrl`.
    pub base_url: String,
    /// `allowedAudience`: a list, or a scalar / comma-separated string.
    #[serde(deserialize_with = "list_or_csv::deserialize")]
    pub allowed_audience: Vec<String>,
    /// `metadataUrl` (""): resolved against `baseUrl` + `/`; empty means `.well-known/oauth-authorization-server`.
    pub metadata_url: String,
    /// `httpProxyURL`.
    #[serde(rename = "httpProxyURL", alias = "httpProxyUrl", with = "opt_string")]
    pub http_proxy_url: Option<String>,
    /// `retryAttempts` (5): tries of the first metadata fetch at start; 0 means a single try.
    pub retry_attempts: u32,
    /// `retryDelay` (1s): the wait before the first retry, doubled after each (capped at 30s).
    #[serde(with = "go")]
    pub retry_delay: Duration,
}

impl Default for ExternalAuthServerConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            allowed_audience: Vec::new(),
            metadata_url: String::new(),
            http_proxy_url: None,
            retry_attempts: 5,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// `auth.appAuth.thirdPartyConfig:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ThirdPartyConfig {
    /// `flyteClient`: returned by `GetPublicClientConfig`.
    #[serde(deserialize_with = "null_default")]
    pub flyte_client: FlyteClientConfig,
}

/// `auth.appAuth.thirdPartyConfig.flyteClient:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FlyteClientConfig {
    /// `clientId` ("flytectl").
    pub client_id: String,
    /// `redirectUri` ("http://localhost:53593/callback").
    pub redirect_uri: String,
    /// `scopes` (`[all, offline]`).
    #[serde(deserialize_with = "null_default")]
    pub scopes: Vec<String>,
    /// `audience` (""): audience clients should request; also accepted in tokens.
    pub audience: String,
}

impl Default for FlyteClientConfig {
    fn default() -> Self {
        Self {
            client_id: "flytectl".to_owned(),
            redirect_uri: "http://localhost:53593/callback".to_owned(),
            scopes: vec!["all".to_owned(), "offline".to_owned()],
            audience: String::new(),
        }
    }
}
