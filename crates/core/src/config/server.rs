//! The `server:` section (flyteadmin's `server` config: ports, TLS, CORS).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::serde_util::{null_default, opt_path};

/// `server:` — where and how the server listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServerConfig {
    /// `httpPort` (8088): the one port serving HTTP, gRPC and Connect.
    pub http_port: u16,
    /// `grpc`: gRPC settings.
    #[serde(deserialize_with = "null_default")]
    pub grpc: GrpcConfig,
    /// `security`: TLS, CORS and whether authentication is enforced.
    #[serde(deserialize_with = "null_default")]
    pub security: SecurityConfig,
    /// `readHeaderTimeoutSeconds` (32): how long a client may take to send request headers.
    pub read_header_timeout_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_port: 8088,
            grpc: GrpcConfig::default(),
            security: SecurityConfig::default(),
            read_header_timeout_seconds: 32,
        }
    }
}

/// `server.grpc:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcConfig {
    /// `port` (8089): flyteadmin's separate gRPC port; flyteauth multiplexes gRPC on `httpPort`.
    pub port: u16,
    /// `serverReflection` (true): serve the gRPC reflection service.
    pub server_reflection: bool,
    /// `maxMessageSizeBytes` (0 = library default).
    pub max_message_size_bytes: u64,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            port: 8089,
            server_reflection: true,
            max_message_size_bytes: 0,
        }
    }
}

/// `server.security:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecurityConfig {
    /// `secure` (false): serve TLS on `httpPort`; needs `ssl.certificateFile` and `ssl.keyFile`.
    pub secure: bool,
    /// `ssl`: certificate and key files.
    #[serde(deserialize_with = "null_default")]
    pub ssl: SslConfig,
    /// `useAuth` (false): require credentials on protected calls.
    pub use_auth: bool,
    /// `insecureCookieHeader` (false): drop the `Secure` cookie flag (development only).
    pub insecure_cookie_header: bool,
    /// `allowCors` (true).
    pub allow_cors: bool,
    /// `allowedOrigins` (`["*"]`).
    #[serde(deserialize_with = "null_default")]
    pub allowed_origins: Vec<String>,
    /// `allowedHeaders` (`["Content-Type", "flyte-authorization"]`).
    #[serde(deserialize_with = "null_default")]
    pub allowed_headers: Vec<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            secure: false,
            ssl: SslConfig::default(),
            use_auth: false,
            insecure_cookie_header: false,
            allow_cors: true,
            allowed_origins: vec!["*".to_owned()],
            allowed_headers: vec!["Content-Type".to_owned(), "flyte-authorization".to_owned()],
        }
    }
}

/// `server.security.ssl:`. Empty strings mean "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SslConfig {
    /// `certificateFile`: PEM certificate chain.
    #[serde(with = "opt_path")]
    pub certificate_file: Option<PathBuf>,
    /// `keyFile`: PEM private key.
    #[serde(with = "opt_path")]
    pub key_file: Option<PathBuf>,
}
