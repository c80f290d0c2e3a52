//! Configuration: a flyteadmin values file loads unchanged.
//!
//! The top-level sections `server`, `auth`, `database` and `secrets` mean what they mean for flyteadmin (same
//! camelCase keys, same defaults, Go duration strings); our own additions live under `flyteauth`. Other top-level
//! sections of a flyteadmin file (`logger`, `flyteadmin`, `scheduler`, …) are ignored silently, while unknown keys
//! inside our sections become warnings naming the dotted key path.

mod auth;
mod connections;
mod database;
mod duration;
mod rate_limits;
mod serde_util;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

pub use crate::keys::SigningAlgorithm;

pub use auth::{
    AppAuthConfig, AuthConfig, AuthServerType, CookieSetting, DEFAULT_AUTHORIZATION_HEADER,
    ExternalAuthServerConfig, FlyteClientConfig, OpenIdConfig, SameSitePolicy,
    SelfAuthServerConfig, StaticClient, ThirdPartyConfig, UserAuthConfig, default_static_clients,
};
pub use connections::{ConnectionsConfig, MIN_HEADER_BYTES};
pub use database::{DEFAULT_SQLITE_FILE, DatabaseConfig, PostgresConfig, SqliteConfig};
pub use duration::{format_go_duration, parse_go_duration};
pub use rate_limits::{
    DEFAULT_CLIENT_ADDRESS_HEADER, FailureQuota, HashingConfig, RateLimitsConfig, TrustedProxy,
};
pub use server::{GrpcConfig, SecurityConfig, ServerConfig, SslConfig};

use serde_util::{list_or_csv, null_default, opt_from_str, opt_path};

/// What replaces secret-bearing values in [`Config::redacted_yaml`].
pub const REDACTED: &str = "<redacted>";

/// The standard base64 of flyteadmin's well-known placeholder bcrypt hash
/// (`$2a$06$d6PQn2QAFU3cL5V8MDkeuuk63xubqUxNxjtfPw.Fc9MgV6vpmyOIy`), shipped in its default `flytepropeller`
/// client. Anyone can compute a secret for it, so a configuration carrying it is refused.
pub const PLACEHOLDER_SECRET_HASH_B64: &str =
    "JDJhJDA2JGQ2UFFuMlFBRlUzY0w1VjhNRGtldXVrNjN4dWJxVXhOeGp0ZlB3LkZjOU1nVjZ2cG15T0l5";

/// The decoded form of [`PLACEHOLDER_SECRET_HASH_B64`].
pub const PLACEHOLDER_SECRET_HASH: &str =
    "$2a$06$d6PQn2QAFU3cL5V8MDkeuuk63xubqUxNxjtfPw.Fc9MgV6vpmyOIy";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The YAML could not be parsed into the configuration; the message names the key path and the position.
    #[error("invalid configuration: {message}")]
    Parse {
        /// Key path, position and what was expected.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("invalid configuration at `{key}`: expected {expected}")]
    Invalid {
        /// Dotted key path, e.g. `auth.appAuth.selfAuthServer.accessTokenLifespan`.
        key: String,
        /// What an acceptable value looks like.
        expected: String,
    },
}

/// A parsed and validated configuration plus the warnings found on the way (unknown keys and the like).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The effective configuration, defaults filled in.
    pub config: Config,
    /// Human-readable warnings, each naming the key it is about.
    pub warnings: Vec<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `server:`.
    #[serde(deserialize_with = "null_default")]
    pub server: ServerConfig,
    /// `auth:`.
    #[serde(deserialize_with = "null_default")]
    pub auth: AuthConfig,
    /// `database:`.
    #[serde(deserialize_with = "null_default")]
    pub database: DatabaseConfig,
    /// `secrets:`.
    #[serde(deserialize_with = "null_default")]
    pub secrets: SecretsConfig,
    /// `flyteauth:` — settings flyteadmin does not have.
    #[serde(deserialize_with = "null_default")]
    pub flyteauth: ExtensionsConfig,
}

/// `secrets:` — where secrets are read from (flytestdlib's secret manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct SecretsConfig {
    /// `secrets-prefix` ("/etc/secrets"): directory holding one file per secret.
    pub secrets_prefix: PathBuf,
    /// `env-prefix` ("FLYTE_SECRET_"): environment variable `<env-prefix><name>` is looked at first.
    pub env_prefix: String,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            secrets_prefix: PathBuf::from("/etc/secrets"),
            env_prefix: "FLYTE_SECRET_".to_owned(),
        }
    }
}

/// `flyteauth:` — our own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExtensionsConfig {
    /// `dataDir`: where the embedded default keeps its database and generated secrets.
    #[serde(with = "opt_path")]
    pub data_dir: Option<PathBuf>,
    /// `listenAddress`: the IP address to bind (the port is `server.httpPort`).
    #[serde(with = "opt_from_str")]
    pub listen_address: Option<IpAddr>,
    /// `tokenLeeway` (30s): clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "duration::go")]
    pub token_leeway: Duration,
    /// `signingAlgorithm` (RS256): how our tokens are signed, `RS256`, `ES256` or `EdDSA`; the signing key secret
    /// must be a key of that kind (checked at start-up).
    pub signing_algorithm: SigningAlgorithm,
    /// `logFormat` (plain): `plain` or `json`.
    pub log_format: LogFormat,
    /// `maxRequestBytes` (1 MiB): largest accepted request body.
    pub max_request_bytes: usize,
    /// `refreshTokenReuseGrace` (5s): how long after a refresh token was rotated presenting it again still
    /// counts as a retry (a lost response) rather than as theft, which revokes the whole login.
    #[serde(with = "duration::go")]
    pub refresh_token_reuse_grace: Duration,
    /// `login`: lockout after failed sign-ins.
    #[serde(deserialize_with = "null_default")]
    pub login: LoginConfig,
    /// `session`: the browser session the login page opens.
    #[serde(deserialize_with = "null_default")]
    pub session: SessionConfig,
    /// `firstAdmin`: the account created when the store has none.
    #[serde(deserialize_with = "null_default")]
    pub first_admin: FirstAdminConfig,
    /// `device`: the RFC 8628 device authorization grant.
    #[serde(deserialize_with = "null_default")]
    pub device: DeviceConfig,
    /// `admins` (empty): who administers apps besides accounts marked admin: subjects or user names of people,
    /// client ids of apps (see [`crate::access`]). A list, or one comma-separated string; entries are trimmed.
    #[serde(deserialize_with = "list_or_csv::deserialize")]
    pub admins: Vec<String>,
    /// `audit`: the audit trail.
    #[serde(deserialize_with = "null_default")]
    pub audit: AuditConfig,
    /// `externalIssuerCheck` (true): with `auth.appAuth.authServerType: External`, whether a token's `iss` must
    /// equal the `issuer` of the external server's metadata (flyteadmin does not check it).
    pub external_issuer_check: bool,
    /// `rateLimits`: how failed authentications slow down.
    #[serde(deserialize_with = "null_default")]
    pub rate_limits: RateLimitsConfig,
    /// `hashing`: the bound on concurrent bcrypt and argon2 checks.
    #[serde(deserialize_with = "null_default")]
    pub hashing: HashingConfig,
    /// `trustedProxies` (empty): addresses or CIDR blocks of proxies whose `clientAddressHeader` is believed.
    #[serde(deserialize_with = "list_or_csv::deserialize")]
    pub trusted_proxies: Vec<String>,
    /// `clientAddressHeader` (`X-Forwarded-For`): the header a trusted proxy puts the client's address in.
    pub client_address_header: String,
    /// `connections`: connection limits and timeouts.
    #[serde(deserialize_with = "null_default")]
    pub connections: ConnectionsConfig,
    /// `metricsListenAddress` (unset): a second listener for `/metrics`, `/healthz` and `/readyz`; when set,
    /// `/metrics` is no longer served on the public port.
    #[serde(with = "opt_from_str")]
    pub metrics_listen_address: Option<SocketAddr>,
}

impl Default for ExtensionsConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            listen_address: None,
            token_leeway: Duration::from_secs(30),
            signing_algorithm: SigningAlgorithm::default(),
            log_format: LogFormat::Plain,
            max_request_bytes: 1024 * 1024,
            refresh_token_reuse_grace: Duration::from_secs(5),
            login: LoginConfig::default(),
            session: SessionConfig::default(),
            first_admin: FirstAdminConfig::default(),
            device: DeviceConfig::default(),
            admins: Vec::new(),
            audit: AuditConfig::default(),
            external_issuer_check: true,
            rate_limits: RateLimitsConfig::default(),
            hashing: HashingConfig::default(),
            trusted_proxies: Vec::new(),
            client_address_header: DEFAULT_CLIENT_ADDRESS_HEADER.to_owned(),
            connections: ConnectionsConfig::default(),
            metrics_listen_address: None,
        }
    }
}

/// `flyteauth.audit:` — how long audit events are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AuditConfig {
    /// `retention` (2160h, 90 days): events older than this are deleted; `0s` keeps them forever.
    #[serde(with = "duration::go")]
    pub retention: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl AuditConfig {
    /// How long events are kept, `None` for forever (`retention: 0s`).
    pub fn retention_period(&self) -> Option<Duration> {
        Some(self.retention).filter(|d| !d.is_zero())
    }
}

/// `flyteauth.login:` — how failed sign-ins are throttled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LoginConfig {
    /// `maxFailures` (5): consecutive wrong passwords after which an account is locked.
    pub max_failures: u32,
    /// `lockoutDuration` (15m): how long a locked account stays locked.
    #[serde(with = "duration::go")]
    pub lockout_duration: Duration,
    /// `addressMaxFailures` (50): failed sign-ins one client address may make at once (whatever the account);
    /// after that one more every `addressWindow / addressMaxFailures`. 0 switches the limit off.
    pub address_max_failures: u32,
    /// `addressWindow` (15m): the time over which the allowance of `addressMaxFailures` comes back in full.
    #[serde(with = "duration::go")]
    pub address_window: Duration,
    /// `localAccounts` (unset): whether people may sign in with a local account (`flyteauth users`). Unset means
    /// yes without federation and no when `auth.userAuth.openId.baseUrl` is set; `true` keeps both.
    pub local_accounts: Option<bool>,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            lockout_duration: Duration::from_secs(15 * 60),
            address_max_failures: 50,
            address_window: Duration::from_secs(15 * 60),
            local_accounts: None,
        }
    }
}

/// `flyteauth.session:` — the browser session after a sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SessionConfig {
    /// `lifetime` (12h): a session ends this long after the sign-in, however active.
    #[serde(with = "duration::go")]
    pub lifetime: Duration,
    /// `idleTimeout` (1h): a session unused this long ends.
    #[serde(with = "duration::go")]
    pub idle_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// `flyteauth.device:` — the device authorization grant (RFC 8628), see [`crate::device`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeviceConfig {
    /// `codeLifetime` (10m): how long a device code and its user code stay usable (`expires_in`).
    #[serde(with = "duration::go")]
    pub code_lifetime: Duration,
    /// `interval` (5s): the polling interval first given to the device (`interval`); each `slow_down` adds 5s.
    #[serde(with = "duration::go")]
    pub interval: Duration,
    /// `maxCodeAttempts` (10): wrong user codes accepted at once per browser session, and per client address;
    /// after that one more every `attemptWindow / maxCodeAttempts`. Bounds guessing of the 20^8 user codes
    /// (see [`crate::device`]).
    pub max_code_attempts: u32,
    /// `attemptWindow` (15m): the time over which the allowance of `maxCodeAttempts` comes back in full.
    #[serde(with = "duration::go")]
    pub attempt_window: Duration,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            code_lifetime: Duration::from_secs(10 * 60),
            interval: Duration::from_secs(5),
            max_code_attempts: 10,
            attempt_window: Duration::from_secs(15 * 60),
        }
    }
}

/// `flyteauth.firstAdmin:` — the administrator account created when there is no account yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FirstAdminConfig {
    /// `username` ("admin").
    pub username: String,
    /// `passwordFile` (""): a file holding its initial password; empty means one is generated and printed once.
    #[serde(with = "opt_path")]
    pub password_file: Option<PathBuf>,
}

impl Default for FirstAdminConfig {
    fn default() -> Self {
        Self {
            username: "admin".to_owned(),
            password_file: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    #[serde(alias = "Plain", alias = "text")]
    Plain,
    /// One JSON object per line.
    #[serde(alias = "Json", alias = "JSON")]
    Json,
}

/// Top-level sections this crate owns; unknown keys below them are reported.
const OUR_SECTIONS: &[&str] = &["server", "auth", "database", "secrets", "flyteauth"];

/// flyteadmin keys inside our sections that flyteauth reads but has no use for; reported more gently.
const FLYTEADMIN_ONLY_KEYS: &[&str] = &[
    "server.kube-config",
    "server.master",
    "server.dataProxy",
    "server.grpcPort",
    "server.grpcServerReflection",
    "server.watchService",
    "server.thirdPartyConfig",
    "server.security.auditAccess",
    "server.grpc.enableGrpcLatencyMetrics",
    "server.grpc.maxConcurrentStreams",
];

impl Config {
    /// Parses YAML (defaults fill what is absent) and validates the result.
    pub fn from_yaml_str(yaml: &str) -> Result<LoadedConfig, ConfigError> {
        let (config, mut warnings) = parse(yaml)?;
        config.validate()?;
        warnings.extend(config.semantic_warnings());
        if explicitly_false(yaml, &["server", "security", "useAuth"]) {
            warnings.push(
                "`server.security.useAuth: false` has no effect: flyteauth always authenticates protected calls"
                    .to_owned(),
            );
        }
        Ok(LoadedConfig { config, warnings })
    }

    /// Reads, parses and validates a YAML file.
    pub fn from_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml_str(&yaml)
    }

    /// The configuration used when no file is given: SQLite at `<data_dir>/flyteauth.db`, secrets in
    /// `<data_dir>/secrets`, public URL `http://localhost:8088` (also reachable as `http://127.0.0.1:8088`).
    pub fn embedded_default(data_dir: &Path) -> Config {
        let mut config = Config::default();
        config.database.sqlite = Some(SqliteConfig {
            file: data_dir.join(DEFAULT_SQLITE_FILE),
        });
        config.secrets.secrets_prefix = data_dir.join("secrets");
        config.flyteauth.data_dir = Some(data_dir.to_owned());
        let port = config.server.http_port;
        config.auth.authorized_uris = [
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
        ]
        .iter()
        .filter_map(|s| Url::parse(s).ok())
        .collect();
        config
    }

    /// Checks what the types cannot: URL schemes, TLS files, positive lifespans, static clients.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, expected: &str| ConfigError::Invalid {
            key,
            expected: expected.to_owned(),
        };
        for (i, uri) in self.auth.authorized_uris.iter().enumerate() {
            if !matches!(uri.scheme(), "http" | "https") || uri.host_str().is_none_or(str::is_empty)
            {
                return Err(invalid(
                    format!("auth.authorizedUris[{i}]"),
                    &format!(
                        "an absolute http(s) URL with a host, not {:?}",
                        uri.as_str()
                    ),
                ));
            }
        }
        let ssl = &self.server.security.ssl;
        if self.server.security.secure {
            if ssl.certificate_file.is_none() {
                return Err(invalid(
                    "server.security.ssl.certificateFile".into(),
                    "a PEM certificate file because server.security.secure is true",
                ));
            }
            if ssl.key_file.is_none() {
                return Err(invalid(
                    "server.security.ssl.keyFile".into(),
                    "a PEM private key file because server.security.secure is true",
                ));
            }
        }
        for (key, value) in [
            (
                "auth.httpAuthorizationHeader",
                &self.auth.http_authorization_header,
            ),
            (
                "auth.grpcAuthorizationHeader",
                &self.auth.grpc_authorization_header,
            ),
        ] {
            if !value.is_empty() && !value.bytes().all(is_header_name_byte) {
                return Err(invalid(
                    key.into(),
                    &format!("an HTTP header name (letters, digits, '-', …), not {value:?}"),
                ));
            }
        }
        let sas = &self.auth.app_auth.self_auth_server;
        let base = "auth.appAuth.selfAuthServer";
        for (key, value) in [
            ("accessTokenLifespan", sas.access_token_lifespan),
            ("refreshTokenLifespan", sas.refresh_token_lifespan),
            ("authorizationCodeLifespan", sas.authorization_code_lifespan),
        ] {
            if value.is_zero() {
                return Err(invalid(
                    format!("{base}.{key}"),
                    "a duration greater than zero, such as \"30m\"",
                ));
            }
        }
        if sas.token_signing_rsa_key_secret_name.trim().is_empty() {
            return Err(invalid(
                format!("{base}.tokenSigningRSAKeySecretName"),
                "a secret name",
            ));
        }
        if sas
            .claim_symmetric_encryption_key_secret_name
            .trim()
            .is_empty()
        {
            return Err(invalid(
                format!("{base}.claimSymmetricEncryptionKeySecretName"),
                "a secret name",
            ));
        }
        for (name, client) in &sas.static_clients {
            let key = format!("{base}.staticClients.{name}");
            if name.trim().is_empty() {
                return Err(invalid(format!("{key}.id"), "a non-empty client id"));
            }
            if !client.id.is_empty() && client.id != *name {
                return Err(invalid(
                    format!("{key}.id"),
                    &format!(
                        "the same id as the entry's key {name:?} (or no id), not {:?}",
                        client.id
                    ),
                ));
            }
            match &client.client_secret {
                Some(secret) => {
                    let hash = crate::clients::decode_config_secret(secret).map_err(|reason| {
                        invalid(
                            format!("{key}.client_secret"),
                            &format!("the standard base64 of a bcrypt hash ({reason})"),
                        )
                    })?;
                    if hash == PLACEHOLDER_SECRET_HASH {
                        return Err(invalid(
                            format!("{key}.client_secret"),
                            "a hash of your own secret: this is flyteadmin's well-known placeholder hash, whose \
                             secret is public; generate one with e.g. `htpasswd -bnBC 10 \"\" SECRET | tr -d ':\\n' \
                             | base64 -w0`",
                        ));
                    }
                }
                None if !client.public => {
                    return Err(invalid(
                        format!("{key}.client_secret"),
                        "a client_secret (standard base64 of a bcrypt hash) for a client that is not public",
                    ));
                }
                None => {}
            }
        }
        for (key, value) in [
            (
                "auth.userAuth.openId.baseUrl",
                &self.auth.user_auth.open_id.base_url,
            ),
            (
                "auth.userAuth.openId.issuerUrl",
                &self.auth.user_auth.open_id.issuer_url,
            ),
            (
                "auth.appAuth.externalAuthServer.baseUrl",
                &self.auth.app_auth.external_auth_server.base_url,
            ),
        ] {
            if !value.is_empty() && !is_http_url(value) {
                return Err(invalid(
                    key.into(),
                    &format!("an absolute http(s) URL, not {value:?}"),
                ));
            }
        }
        let open_id = &self.auth.user_auth.open_id;
        if !open_id.base_url.is_empty() {
            if open_id.client_id.trim().is_empty() {
                return Err(invalid(
                    "auth.userAuth.openId.clientId".into(),
                    "the client id registered at the identity provider (baseUrl is set)",
                ));
            }
            if !open_id.scopes.iter().any(|s| s == "openid") {
                return Err(invalid(
                    "auth.userAuth.openId.scopes".into(),
                    "a list that includes openid",
                ));
            }
        }
        if self.auth.app_auth.auth_server_type == AuthServerType::External
            && self.external_base_url().is_none()
        {
            return Err(invalid(
                "auth.appAuth.externalAuthServer.baseUrl".into(),
                "the external authorization server's URL because auth.appAuth.authServerType is External \
                 (or set auth.userAuth.openId.baseUrl, which it defaults to)",
            ));
        }
        if self.flyteauth.login.local_accounts == Some(false) && !self.federation_enabled() {
            return Err(invalid(
                "flyteauth.login.localAccounts".into(),
                "true or unset while auth.userAuth.openId.baseUrl is empty (nobody could sign in)",
            ));
        }
        if let Some(pg) = &self.database.postgres {
            if pg.host.trim().is_empty() {
                return Err(invalid(
                    "database.postgres.host".into(),
                    "a host name or address",
                ));
            }
            if pg.dbname.trim().is_empty() {
                return Err(invalid(
                    "database.postgres.dbname".into(),
                    "a database name",
                ));
            }
        }
        if self.flyteauth.max_request_bytes == 0 {
            return Err(invalid(
                "flyteauth.maxRequestBytes".into(),
                "a size in bytes greater than zero",
            ));
        }
        let ext = &self.flyteauth;
        ext.connections
            .check()
            .map_err(|(key, expected)| invalid(key.into(), expected))?;
        rate_limits::check(ext).map_err(|(key, expected)| invalid(key, expected))?;
        for (key, value) in [
            ("flyteauth.login.maxFailures", ext.login.max_failures),
            (
                "flyteauth.login.addressMaxFailures",
                ext.login.address_max_failures,
            ),
            (
                "flyteauth.device.maxCodeAttempts",
                ext.device.max_code_attempts,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "a whole number greater than zero"));
            }
        }
        for (key, value) in [
            (
                "flyteauth.login.lockoutDuration",
                ext.login.lockout_duration,
            ),
            ("flyteauth.login.addressWindow", ext.login.address_window),
            ("flyteauth.session.lifetime", ext.session.lifetime),
            ("flyteauth.session.idleTimeout", ext.session.idle_timeout),
            ("flyteauth.device.codeLifetime", ext.device.code_lifetime),
            ("flyteauth.device.interval", ext.device.interval),
            ("flyteauth.device.attemptWindow", ext.device.attempt_window),
        ] {
            if value.is_zero() {
                return Err(invalid(
                    key.into(),
                    "a duration greater than zero, such as \"15m\"",
                ));
            }
        }
        for (i, admin) in ext.admins.iter().enumerate() {
            if admin.trim().is_empty() {
                return Err(invalid(
                    format!("flyteauth.admins[{i}]"),
                    "a subject, user name or client id, not an empty string",
                ));
            }
        }
        if let Err(e) = crate::users::normalize_username(&ext.first_admin.username) {
            return Err(invalid(
                "flyteauth.firstAdmin.username".into(),
                &format!("a valid user name ({e})"),
            ));
        }
        Ok(())
    }

    /// Things that are allowed but probably not what the author meant.
    fn semantic_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (key, set) in [
            ("auth.disableForHttp", self.auth.disable_for_http),
            ("auth.disableForGrpc", self.auth.disable_for_grpc),
        ] {
            if set {
                warnings.push(format!(
                    "`{key}: true` has no effect: flyteauth always authenticates protected calls"
                ));
            }
        }
        if self.database.sqlite.is_some() && self.database.postgres.is_some() {
            warnings.push(
                "both `database.sqlite` and `database.postgres` are set; using SQLite (as flyteadmin does)".to_owned(),
            );
        }
        for (name, client) in &self.auth.app_auth.self_auth_server.static_clients {
            if client.public && client.client_secret.is_some() {
                warnings.push(format!(
                    "`auth.appAuth.selfAuthServer.staticClients.{name}.client_secret` is ignored: the client is public"
                ));
            }
        }
        warnings
    }

    /// Whether people sign in through an upstream OpenID provider (`auth.userAuth.openId.baseUrl` is set).
    pub fn federation_enabled(&self) -> bool {
        !self.auth.user_auth.open_id.base_url.trim().is_empty()
    }

    /// The external authorization server's base URL: `auth.appAuth.externalAuthServer.baseUrl`, else
    /// `auth.userAuth.openId.baseUrl`, trimmed and without trailing '/'; `None` when both are empty.
    pub fn external_base_url(&self) -> Option<String> {
        [
            &self.auth.app_auth.external_auth_server.base_url,
            &self.auth.user_auth.open_id.base_url,
        ]
        .into_iter()
        .map(|u| u.trim().trim_end_matches('/'))
        .find(|u| !u.is_empty())
        .map(str::to_owned)
    }

    /// Where the external server's metadata is fetched: `metadataUrl` (default
    /// `.well-known/oauth-authorization-server`) resolved against the base URL plus `/`, as flyteadmin resolves it
    /// (a relative path is appended, an absolute URL replaces the base). `None` without a base URL.
    pub fn external_metadata_url(&self) -> Option<String> {
        let base = self.external_base_url()?;
        let configured = self.auth.app_auth.external_auth_server.metadata_url.trim();
        let relative = if configured.is_empty() {
            ".well-known/oauth-authorization-server"
        } else {
            configured
        };
        let joined = Url::parse(&format!("{base}/"))
            .and_then(|b| b.join(relative))
            .map(String::from);
        // The base passed validation as an http(s) URL, so joining succeeds; concatenate if it ever does not.
        Some(joined.unwrap_or_else(|_| format!("{base}/{relative}")))
    }

    /// The audiences an external server's token may be for: `externalAuthServer.allowedAudience`, the public
    /// URL, and `thirdPartyConfig.flyteClient.audience` (what clients are told to request), each trimmed and
    /// without trailing '/'; the validator compares ignoring one trailing '/'.
    pub fn external_audiences(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let public = self.public_url();
        let candidates = self
            .auth
            .app_auth
            .external_auth_server
            .allowed_audience
            .iter()
            .map(String::as_str)
            .chain([
                public.as_str(),
                self.auth
                    .app_auth
                    .third_party_config
                    .flyte_client
                    .audience
                    .as_str(),
            ]);
        for candidate in candidates {
            let a = candidate.trim();
            let a = a.strip_suffix('/').unwrap_or(a);
            if !a.is_empty() && !out.iter().any(|x| x == a) {
                out.push(a.to_owned());
            }
        }
        out
    }

    /// Whether local accounts may sign in: `flyteauth.login.localAccounts`, else only without federation.
    pub fn local_accounts_enabled(&self) -> bool {
        self.flyteauth
            .login
            .local_accounts
            .unwrap_or(!self.federation_enabled())
    }

    /// The URL clients reach this server at: `auth.authorizedUris[0]`, else `http://localhost:<httpPort>`.
    pub fn public_url(&self) -> Url {
        if let Some(first) = self.auth.authorized_uris.first() {
            return first.clone();
        }
        let mut url = localhost_url();
        // Setting a port on an http URL with a host cannot fail.
        let _ = url.set_port(Some(self.server.http_port));
        url
    }

    /// The `iss` of minted tokens: `selfAuthServer.issuer` if set, else the public URL without a trailing '/'.
    pub fn issuer(&self) -> String {
        let configured = self.auth.app_auth.self_auth_server.issuer.trim();
        if configured.is_empty() {
            self.public_url().as_str().trim_end_matches('/').to_owned()
        } else {
            configured.to_owned()
        }
    }

    /// Every audience a token may carry to be accepted here: each authorized URI (with and without trailing '/',
    /// and with the scheme's default port spelled out, as flyteadmin's charts write `http://flyteadmin:80`), the
    /// public URL, the issuer (so a custom issuer does not lock out our own tokens), and
    /// `thirdPartyConfig.flyteClient.audience` if set.
    pub fn accepted_audiences(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |s: String| {
            if !s.is_empty() && !out.contains(&s) {
                out.push(s);
            }
        };
        let public = self.public_url();
        for uri in self
            .auth
            .authorized_uris
            .iter()
            .chain(std::iter::once(&public))
        {
            let s = uri.as_str();
            push(s.to_owned());
            push(s.trim_end_matches('/').to_owned());
            if uri.port().is_none()
                && let (Some(port), Some(host)) = (uri.port_or_known_default(), uri.host_str())
            {
                // `Url` drops a default port, so the explicit spelling is built by hand.
                let with_port = format!("{}://{}:{}{}", uri.scheme(), host, port, uri.path());
                push(with_port.trim_end_matches('/').to_owned());
                push(with_port);
            }
        }
        push(self.issuer());
        push(
            self.auth
                .app_auth
                .third_party_config
                .flyte_client
                .audience
                .trim()
                .to_owned(),
        );
        out
    }

    /// The socket address to bind: `flyteauth.listenAddress` if set, else 127.0.0.1 for the embedded default and
    /// 0.0.0.0 when a configuration file was given; the port is `server.httpPort`.
    pub fn listen_addr(&self, config_file_given: bool) -> SocketAddr {
        let ip = self
            .flyteauth
            .listen_address
            .unwrap_or(if config_file_given {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            });
        SocketAddr::new(ip, self.server.http_port)
    }

    /// The effective configuration as YAML, defaults filled in, with client secret hashes and the database
    /// password replaced by `"<redacted>"`.
    pub fn redacted_yaml(&self) -> String {
        let mut copy = self.clone();
        for client in copy
            .auth
            .app_auth
            .self_auth_server
            .static_clients
            .values_mut()
        {
            if client.client_secret.is_some() {
                client.client_secret = Some(REDACTED.to_owned());
            }
        }
        if let Some(pg) = copy.database.postgres.as_mut()
            && !pg.password.is_empty()
        {
            pg.password = REDACTED.to_owned();
        }
        match serde_saphyr::to_string(&copy) {
            Ok(yaml) => yaml,
            // Serializing plain structs of strings, numbers and lists does not fail; say so rather than panic.
            Err(e) => format!("# cannot render the configuration: {e}\n"),
        }
    }
}

#[allow(clippy::expect_used)]
fn localhost_url() -> Url {
    Url::parse("http://localhost/").expect("a constant URL parses")
}

/// Drops the `?` segments serde adapters put in paths for `Option` layers and unknown positions.
fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|s| *s != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// Rephrases serde's terse number errors into what the author should write.
fn friendlier(message: &str) -> String {
    const NUMBERS: &[(&str, &str)] = &[
        ("invalid u16", "expected a whole number from 0 to 65535"),
        (
            "invalid u32",
            "expected a whole number from 0 to 4294967295",
        ),
        (
            "invalid u64",
            "expected a whole number that is not negative",
        ),
        (
            "invalid usize",
            "expected a whole number that is not negative",
        ),
    ];
    for (terse, better) in NUMBERS {
        if let Some(rest) = message.strip_prefix(terse) {
            return format!("{better}{rest}");
        }
    }
    message.to_owned()
}

/// The message for a YAML syntax error (one the parser, not the deserializer, reports), else `None`.
///
/// The parser notices an unclosed quote only where the text stops making sense, often lines later; the message
/// then leads with where the quote was opened.
fn syntax_error(yaml: &str, error: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::granit_parser::ErrorKind;
    let serde_saphyr::Error::ExternalMessage { source, .. } = error.without_snippet() else {
        return None;
    };
    let serde_saphyr::ExternalMessageSource::Parser(scan) = source.as_ref() else {
        return None;
    };
    let (line, column) = (scan.marker().line(), scan.marker().col() + 1);
    let info = scan.info();
    let in_quoted_scalar = matches!(
        scan.kind(),
        ErrorKind::UnclosedQuotedScalar
            | ErrorKind::InvalidQuotedScalarIndent
            | ErrorKind::DocumentIndicatorInQuotedScalar
    );
    let opened = in_quoted_scalar
        .then(|| unclosed_quote_before(yaml, line, column))
        .flatten()
        .filter(|&(open_line, _)| open_line < line);
    Some(match opened {
        Some((open_line, open_column)) => format!(
            "YAML syntax error at line {open_line}, column {open_column}: this quote is never closed (the parser \
             stopped at line {line}, column {column}: {info})"
        ),
        None => format!("YAML syntax error at line {line}, column {column}: {info}"),
    })
}

/// The line and column (1-based) of the nearest quote before `line`:`column` that opens a quoted scalar and is
/// not closed on its own line.
fn unclosed_quote_before(yaml: &str, line: usize, column: usize) -> Option<(usize, usize)> {
    let lines: Vec<&str> = yaml.lines().take(line).collect();
    for (index, text) in lines.iter().enumerate().rev() {
        let chars: Vec<char> = if index + 1 == line {
            text.chars().take(column.saturating_sub(1)).collect()
        } else {
            text.chars().collect()
        };
        for (at, &quote) in chars.iter().enumerate().rev() {
            if (quote == '"' || quote == '\'')
                && opens_scalar(&chars[..at])
                && !closes(&chars[at + 1..], quote)
            {
                return Some((index + 1, at + 1));
            }
        }
    }
    None
}

/// Whether a quote after `before` (the text before it on its line) starts a scalar: at the start of the line or
/// after an indicator. Elsewhere, as in `it's`, a quote is part of a plain scalar.
fn opens_scalar(before: &[char]) -> bool {
    before
        .iter()
        .rev()
        .find(|c| !c.is_whitespace())
        .is_none_or(|c| matches!(c, ':' | '-' | '?' | '[' | '{' | ','))
}

/// Whether `rest` closes a scalar opened by `quote` (`\"` escapes in double quotes, `''` in single quotes).
fn closes(rest: &[char], quote: char) -> bool {
    let mut chars = rest.iter().peekable();
    while let Some(&c) = chars.next() {
        match (quote, c) {
            ('"', '\\') => {
                chars.next();
            }
            ('"', '"') => return true,
            ('\'', '\'') if chars.peek() == Some(&&'\'') => {
                chars.next();
            }
            ('\'', '\'') => return true,
            _ => {}
        }
    }
    false
}

fn is_http_url(s: &str) -> bool {
    Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Deserializes the YAML, collecting unknown keys inside our sections as warnings and tracking the key path
/// for error messages.
/// Whether the document sets the key at `path` to `false` itself (as opposed to leaving the default).
fn explicitly_false(yaml: &str, path: &[&str]) -> bool {
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(yaml) else {
        return false;
    };
    path.iter()
        .try_fold(&doc, |node, key| node.get(*key))
        .is_some_and(|v| v == &serde_json::Value::Bool(false))
}

fn parse(yaml: &str) -> Result<(Config, Vec<String>), ConfigError> {
    if yaml.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    }) {
        return Ok((Config::default(), Vec::new()));
    }
    let mut ignored: Vec<String> = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str(yaml, |de| {
        let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let de = serde_ignored::Deserializer::new(de, &mut on_ignored);
        let de = serde_path_to_error::Deserializer::new(de, &mut track);
        Config::deserialize(de)
    });
    let mut config = result.map_err(|e| {
        // A syntax error is about the text, not about a key: the key path the deserializer had reached would
        // make it read like a type error of that key.
        if let Some(message) = syntax_error(yaml, &e) {
            return ConfigError::Parse { message };
        }
        let path = clean_path(&track.path().to_string());
        let mut detail = friendlier(&e.without_snippet().to_string());
        if !detail.contains("line ")
            && let Some(l) = e.location()
        {
            detail.push_str(&format!(" at line {}, column {}", l.line(), l.column()));
        }
        let message = if path.is_empty() || path == "." {
            detail
        } else {
            format!("at `{path}`: {detail}")
        };
        ConfigError::Parse { message }
    })?;
    for (key, client) in &mut config.auth.app_auth.self_auth_server.static_clients {
        if client.id.is_empty() {
            client.id.clone_from(key);
        }
    }
    for admin in &mut config.flyteauth.admins {
        let trimmed = admin.trim();
        if trimmed.len() != admin.len() {
            *admin = trimmed.to_owned();
        }
    }
    let warnings = ignored
        .iter()
        .map(|p| clean_path(p))
        .filter(|p| OUR_SECTIONS.contains(&p.split('.').next().unwrap_or_default()))
        .map(|p| {
            if FLYTEADMIN_ONLY_KEYS.contains(&p.as_str()) {
                format!("`{p}` is a flyteadmin setting flyteauth does not use; ignored")
            } else {
                format!("unknown key `{p}` ignored")
            }
        })
        .collect();
    Ok((config, warnings))
}

#[cfg(test)]
mod tests;
