//! The RFC 8414 authorization server metadata and Flyte's public client configuration, derived from the
//! configuration. Only what is implemented is advertised.

use serde::Serialize;

use crate::config::{Config, DEFAULT_AUTHORIZATION_HEADER};

/// Path of the token endpoint below the public URL.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Path of the JWKS endpoint below the public URL.
pub const JWKS_PATH: &str = "/oauth2/jwks";

/// RFC 8414 authorization server metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerMetadata {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`; absent until the authorization-code grant exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `response_types_supported` (empty: no authorization endpoint yet).
    pub response_types_supported: Vec<String>,
    /// `grant_types_supported`.
    pub grant_types_supported: Vec<String>,
    /// `token_endpoint_auth_methods_supported`.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// `scopes_supported`: every scope some static client has, sorted.
    pub scopes_supported: Vec<String>,
    /// `code_challenge_methods_supported` (empty until PKCE exists).
    pub code_challenge_methods_supported: Vec<String>,
    /// `device_authorization_endpoint`; absent until the device grant exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
}

/// The metadata document for `cfg`, with endpoints below its public URL.
pub fn server_metadata(cfg: &Config) -> ServerMetadata {
    let base = public_base(cfg);
    let mut scopes: Vec<String> = cfg
        .auth
        .app_auth
        .self_auth_server
        .static_clients
        .values()
        .flat_map(|c| c.scopes.iter().cloned())
        .collect();
    scopes.sort();
    scopes.dedup();
    ServerMetadata {
        issuer: cfg.issuer(),
        authorization_endpoint: None,
        token_endpoint: format!("{base}{TOKEN_PATH}"),
        jwks_uri: format!("{base}{JWKS_PATH}"),
        response_types_supported: Vec::new(),
        grant_types_supported: vec![crate::grant::CLIENT_CREDENTIALS.to_owned()],
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic".to_owned(),
            "client_secret_post".to_owned(),
        ],
        scopes_supported: scopes,
        code_challenge_methods_supported: Vec::new(),
        device_authorization_endpoint: None,
    }
}

/// What `GetPublicClientConfig` / `GET /config/v1/flyte_client` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicClientConfig {
    /// `client_id` clients should use for interactive login.
    pub client_id: String,
    /// `redirect_uri` for interactive login.
    pub redirect_uri: String,
    /// `scopes` to request.
    pub scopes: Vec<String>,
    /// `authorization_metadata_key`: the header to send the token in; never empty.
    pub authorization_metadata_key: String,
    /// `service_http_endpoint`: the public URL.
    pub service_http_endpoint: String,
    /// `audience` to request (may be empty).
    pub audience: String,
}

/// The public client configuration for `cfg`.
pub fn public_client_config(cfg: &Config) -> PublicClientConfig {
    let fc = &cfg.auth.app_auth.third_party_config.flyte_client;
    let header = cfg.auth.grpc_authorization_header.trim();
    PublicClientConfig {
        client_id: fc.client_id.clone(),
        redirect_uri: fc.redirect_uri.clone(),
        scopes: fc.scopes.clone(),
        authorization_metadata_key: if header.is_empty() {
            DEFAULT_AUTHORIZATION_HEADER.to_owned()
        } else {
            header.to_owned()
        },
        service_http_endpoint: public_base(cfg),
        audience: fc.audience.clone(),
    }
}

/// The public URL without a trailing '/', so paths can be appended.
fn public_base(cfg: &Config) -> String {
    cfg.public_url().as_str().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests;
