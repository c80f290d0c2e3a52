//! Where the client's settings come from.
//!
//! One file is loaded, found the way the `flyte` 2.x SDK finds it (`-c/--config`, then `./config.yaml`,
//! `./.flyte/config.yaml`, `<git root>/.flyte/config.yaml`, `$UCTL_CONFIG`, `$FLYTECTL_CONFIG`,
//! `~/.union/config.yaml`, `~/.flyte/config.yaml`). Each setting is then taken from, in order: a command-line
//! flag, an environment variable (the `flyte` SDK's `FLYTE_ADMIN_*` / `FLYTE_AUTH_*`, flytekit's
//! `FLYTE_CREDENTIALS_*` / `FLYTE_PLATFORM_*`), the file's `admin.*` / `task.*` keys, the default.
//! Any variable `X` may instead be given as `X_FROM_FILE` (a path; trailing newline dropped) or `X_FROM_ENV_VAR`
//! (the name of another variable). `FLYTE_API_KEY` (or `--api-key`) replaces endpoint, auth type, client id
//! and secret.
//!
//! Unlike the `flyte` 2.x SDK, variables apply even when no file is found. Every file is read as YAML: flytekit's
//! INI files (`flytekit.config`, `~/.flyte/config`) are not. Keys this client does not know are ignored, since the
//! file is shared with the Python SDKs.

mod describe;
mod env;
mod file;
mod resolve;
#[cfg(test)]
mod tests;
mod values;
mod write;
mod yaml;

use std::path::PathBuf;
use std::time::Duration;

pub use env::{Env, MapEnv, ProcessEnv};
pub use write::{NewConfig, render_new_config};

use crate::Secret;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file named by `-c/--config`, `$UCTL_CONFIG` or `$FLYTECTL_CONFIG` does not exist or cannot be read.
    #[error("cannot read the config file {}: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's explanation.
        reason: String,
    },
    /// The file is not valid YAML, or one of its keys has the wrong type or a value that means nothing (the
    /// message names the key and its line).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key's path and line where known.
        message: String,
    },
    /// A setting has a value that means nothing (an unknown auth type, a malformed endpoint or duration).
    #[error("{setting}: {message}")]
    BadValue {
        /// Where the value came from: a variable (`FLYTE_AUTH_TYPE`, `X_FROM_FILE`) or a flag (`--endpoint`);
        /// a file key's bad value is [`ConfigError::Invalid`], which also names the file and the line.
        setting: String,
        /// What is wrong with it.
        message: String,
    },
    /// No endpoint is configured.
    #[error(
        "no endpoint is configured: pass --endpoint, set FLYTE_ADMIN_ENDPOINT, or run `flyte create config --endpoint HOST`"
    )]
    NoEndpoint,
    /// The auth type needs a setting that is missing (a client id or secret, a command).
    #[error("{0}")]
    Missing(String),
    /// The API key cannot be decoded (discovery reports it as a [`ConfigError::BadValue`] naming `--api-key` or
    /// the variable).
    #[error("{0}")]
    ApiKey(#[from] flyteauth_types::api_key::ApiKeyError),
}

/// How the client gets its credentials (`admin.authType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthType {
    /// A browser login with PKCE (the default of both SDKs).
    #[default]
    Pkce,
    /// The client-credentials grant with a client id and secret (also every API key).
    ClientSecret,
    /// The device authorization grant (RFC 8628): a code typed in on another device.
    DeviceFlow,
    /// The access token is printed by `admin.command`.
    ExternalCommand,
}

impl AuthType {
    /// Parses the spellings of the `flyte` 2.x config (`Pkce`, `ClientSecret`, `DeviceFlow`, `ExternalCommand`),
    /// flytekit's (`standard`, `basic`, `client_credentials`, `external_process`, …) and the `flyte` CLI's
    /// `--auth-type` aliases (`client-secret`, `app-credential`, `headless`, `device-flow`, `command`, `custom`,
    /// …), case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        values::parse_auth_type(value)
    }

    /// The spelling written to config files (`Pkce`, `ClientSecret`, `DeviceFlow`, `ExternalCommand`).
    pub fn as_config_str(self) -> &'static str {
        match self {
            Self::Pkce => "Pkce",
            Self::ClientSecret => "ClientSecret",
            Self::DeviceFlow => "DeviceFlow",
            Self::ExternalCommand => "ExternalCommand",
        }
    }
}

/// A control-plane address as the SDKs accept it (`dns:///host:port`, `host:port`, `https://host/prefix`),
/// normalised to an authority and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`, lower-case host, as typed otherwise.
    pub authority: String,
    /// A path prefix without a trailing slash (`""` for none), kept as the `flyte` SDK keeps it.
    pub path_prefix: String,
}

impl Endpoint {
    /// Parses an endpoint in any of the forms the SDKs accept. `http://` and `https://` do not decide TLS (as in
    /// the `flyte` SDK, only `insecure` does).
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        values::parse_endpoint(value).map_err(|message| ConfigError::BadValue {
            setting: "endpoint".into(),
            message,
        })
    }

    /// The base URL of RPCs: `https://authority[/prefix]`, or `http://` when `insecure`.
    pub fn base_url(&self, insecure: bool) -> url::Url {
        values::base_url(self, insecure)
    }

    /// The keyring service under which the `flyte` SDK caches this endpoint's tokens: `host[:port][/prefix]`.
    pub fn cache_service(&self) -> String {
        format!("{}{}", self.authority, self.path_prefix)
    }

    /// As written to a config file: `dns:///authority[/prefix]`.
    pub fn to_config_string(&self) -> String {
        format!("dns:///{}{}", self.authority, self.path_prefix)
    }
}

/// Where the client secret came from, for messages (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// `admin.clientSecretLocation` / `FLYTE_CREDENTIALS_CLIENT_SECRET_LOCATION`: a file.
    File(PathBuf),
    /// `admin.clientSecretEnvVar`: the named variable.
    EnvVar(String),
    /// `FLYTE_CREDENTIALS_CLIENT_SECRET` (flytekit): the value itself.
    Inline,
    /// An API key (`FLYTE_API_KEY` or `--api-key`).
    ApiKey,
}

/// The settings in force, after discovery and precedence.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The control plane; `None` when nothing names one.
    pub endpoint: Option<Endpoint>,
    /// Plaintext HTTP (and no auth, in the `flyte` SDK; this client still authenticates).
    pub insecure: bool,
    /// Accept any server certificate (a warning is printed).
    pub insecure_skip_verify: bool,
    /// A CA bundle (PEM) to trust in addition to the system's.
    pub ca_cert_file_path: Option<PathBuf>,
    /// An HTTP proxy for every request (`admin.httpProxyURL`).
    pub http_proxy_url: Option<String>,
    /// The flow.
    pub auth_type: AuthType,
    /// The client id of `ClientSecret` (the public client of PKCE and device flow comes from the server).
    pub client_id: Option<String>,
    /// The client secret of `ClientSecret`, already read from its file or variable.
    pub client_secret: Option<Secret>,
    /// Where [`Settings::client_secret`] came from.
    pub client_secret_origin: Option<SecretOrigin>,
    /// Scopes to ask for; empty means the server's.
    pub scopes: Vec<String>,
    /// The audience to ask for (`admin.audience`).
    pub audience: Option<String>,
    /// Use the audience of the server's public client config (`admin.useAudienceFromAdmin`).
    pub use_audience_from_admin: bool,
    /// Refresh a token this long before it expires (`admin.tokenRefreshWindow`).
    pub token_refresh_window: Duration,
    /// `admin.command`: prints an access token (`ExternalCommand`).
    pub command: Vec<String>,
    /// `admin.proxyCommand`: prints a token sent as `proxy-authorization` on every request.
    pub proxy_command: Vec<String>,
    /// Keep tokens out of the OS keyring and in the 0600 file cache instead (`admin.disableKeyring`).
    pub disable_keyring: bool,
    /// How long the PKCE listener waits for the browser (`admin.pkceConfig.timeout`).
    pub pkce_timeout: Duration,
    /// How long the device flow waits for approval at most (`admin.deviceFlowConfig.timeout`); the server's
    /// `expires_in` may shorten it.
    pub device_timeout: Duration,
    /// `task.org` (from the API key or `--org` when given).
    pub org: Option<String>,
    /// `task.project`.
    pub project: Option<String>,
    /// `task.domain`.
    pub domain: Option<String>,
    /// The file the settings were read from, if any.
    pub config_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            insecure: false,
            insecure_skip_verify: false,
            ca_cert_file_path: None,
            http_proxy_url: None,
            auth_type: AuthType::Pkce,
            client_id: None,
            client_secret: None,
            client_secret_origin: None,
            scopes: Vec::new(),
            audience: None,
            use_audience_from_admin: false,
            token_refresh_window: DEFAULT_TOKEN_REFRESH_WINDOW,
            command: Vec::new(),
            proxy_command: Vec::new(),
            disable_keyring: false,
            pkce_timeout: DEFAULT_PKCE_TIMEOUT,
            device_timeout: DEFAULT_DEVICE_TIMEOUT,
            org: None,
            project: None,
            domain: None,
            config_file: None,
        }
    }
}

/// Default of [`Settings::token_refresh_window`].
pub const DEFAULT_TOKEN_REFRESH_WINDOW: Duration = Duration::from_secs(60);
/// Default of [`Settings::pkce_timeout`] (flytectl's `pkceConfig.timeout`).
pub const DEFAULT_PKCE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of [`Settings::device_timeout`] (flytectl's `deviceFlowConfig.timeout`).
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(600);

/// What the command line adds on top of files and variables.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-c/--config`.
    pub config_file: Option<PathBuf>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--auth-type`.
    pub auth_type: Option<AuthType>,
    /// `--api-key`.
    pub api_key: Option<Secret>,
    /// `--org`.
    pub org: Option<String>,
}

/// The places discovery looks at, injectable for tests.
#[derive(Debug, Clone)]
pub struct Places {
    /// The working directory (for `./config.yaml`, `./.flyte/config.yaml` and the git root).
    pub cwd: PathBuf,
    /// The home directory (for `~/.union/config.yaml`, `~/.flyte/config.yaml`); `None` when unknown.
    pub home: Option<PathBuf>,
}

impl Places {
    /// The process's working directory and `$HOME`.
    pub fn of_process() -> Self {
        Self {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

impl Settings {
    /// Finds the config file, reads it and applies variables and overrides. A missing default file is not an
    /// error (the settings then come from variables and flags alone); a named one that is missing is.
    pub fn discover(
        overrides: &Overrides,
        places: &Places,
        env: &dyn Env,
    ) -> Result<Self, ConfigError> {
        resolve::discover(overrides, places, env)
    }

    /// The file discovery would load, without reading it.
    pub fn find_config_file(
        overrides: &Overrides,
        places: &Places,
        env: &dyn Env,
    ) -> Option<PathBuf> {
        let vars = env::Vars::new(env, &places.cwd, places.home.as_deref());
        file::search(overrides, places, &vars)
            .ok()
            .flatten()
            .map(|candidate| candidate.path)
    }

    /// The endpoint, or [`ConfigError::NoEndpoint`].
    pub fn require_endpoint(&self) -> Result<&Endpoint, ConfigError> {
        self.endpoint.as_ref().ok_or(ConfigError::NoEndpoint)
    }

    /// A JSON view for `flyte get config`: every setting, secrets shown only as where they came from.
    pub fn describe(&self) -> serde_json::Value {
        describe::describe(self)
    }
}
