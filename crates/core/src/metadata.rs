//! The RFC 8414 authorization server metadata (also served as the OpenID Connect Discovery document) and
//! Flyte's public client configuration, derived from the configuration; and the paths of the endpoints.

use serde::Serialize;

use crate::config::{Config, DEFAULT_AUTHORIZATION_HEADER};

/// Path of the token endpoint below the public URL.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Path of the JWKS endpoint below the public URL.
pub const JWKS_PATH: &str = "/oauth2/jwks";
/// Path of the authorization endpoint below the public URL.
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
/// Path of the RFC 7009 revocation endpoint below the public URL.
pub const REVOKE_PATH: &str = "/oauth2/revoke";
/// Path of the RFC 7662 introspection endpoint below the public URL.
pub const INTROSPECT_PATH: &str = "/oauth2/introspect";
/// Path of the OpenID Connect UserInfo endpoint below the public URL.
pub const USERINFO_PATH: &str = "/oauth2/userinfo";
/// Path of the login page below the public URL.
pub const LOGIN_PATH: &str = "/login";
/// Path of the RFC 8628 device authorization endpoint below the public URL.
pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth2/device/code";
/// Path of the page where a person enters a device's user code (the RFC 8628 `verification_uri`) below the
/// public URL.
pub const ACTIVATE_PATH: &str = "/activate";

/// Scopes every client may ask for, advertised whatever the clients register.
const STANDARD_SCOPES: &[&str] = &["openid", "profile", "email", "offline", "offline_access"];

/// The claims our ID tokens and UserInfo responses may carry.
const CLAIMS_SUPPORTED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "sid",
    "name",
    "preferred_username",
    "email",
];

/// RFC 8414 authorization server metadata, which is also the OpenID Connect Discovery 1.0 document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerMetadata {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `userinfo_endpoint`.
    pub userinfo_endpoint: String,
    /// `revocation_endpoint` (RFC 7009).
    pub revocation_endpoint: String,
    /// `introspection_endpoint` (RFC 7662).
    pub introspection_endpoint: String,
    /// `response_types_supported`: `code`.
    pub response_types_supported: Vec<String>,
    /// `response_modes_supported`: `query`.
    pub response_modes_supported: Vec<String>,
    /// `grant_types_supported`.
    pub grant_types_supported: Vec<String>,
    /// `token_endpoint_auth_methods_supported`: Basic, form body, and `none` for public clients.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// `revocation_endpoint_auth_methods_supported`: as for the token endpoint.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// `introspection_endpoint_auth_methods_supported`: confidential clients only.
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// `scopes_supported`: the OpenID Connect and offline scopes plus every scope some static client has,
    /// sorted.
    pub scopes_supported: Vec<String>,
    /// `code_challenge_methods_supported`: `S256` only.
    pub code_challenge_methods_supported: Vec<String>,
    /// `subject_types_supported`: `public`.
    pub subject_types_supported: Vec<String>,
    /// `id_token_signing_alg_values_supported`: `flyteauth.signingAlgorithm` (`RS256` by default).
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `claims_supported`.
    pub claims_supported: Vec<String>,
    /// `device_authorization_endpoint` (RFC 8628 §4); `None` leaves the member out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
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
        .chain(STANDARD_SCOPES.iter().map(|s| (*s).to_owned()))
        .collect();
    scopes.sort();
    scopes.dedup();
    let client_auth = strings(&["client_secret_basic", "client_secret_post", "none"]);
    ServerMetadata {
        issuer: cfg.issuer(),
        authorization_endpoint: format!("{base}{AUTHORIZE_PATH}"),
        token_endpoint: format!("{base}{TOKEN_PATH}"),
        jwks_uri: format!("{base}{JWKS_PATH}"),
        userinfo_endpoint: format!("{base}{USERINFO_PATH}"),
        revocation_endpoint: format!("{base}{REVOKE_PATH}"),
        introspection_endpoint: format!("{base}{INTROSPECT_PATH}"),
        response_types_supported: strings(&["code"]),
        response_modes_supported: strings(&["query"]),
        grant_types_supported: strings(&[
            crate::grant::AUTHORIZATION_CODE,
            crate::grant::REFRESH_TOKEN,
            crate::grant::CLIENT_CREDENTIALS,
            crate::grant::DEVICE_CODE,
        ]),
        token_endpoint_auth_methods_supported: client_auth.clone(),
        revocation_endpoint_auth_methods_supported: client_auth,
        introspection_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
        ]),
        scopes_supported: scopes,
        code_challenge_methods_supported: strings(&[crate::pkce::S256]),
        subject_types_supported: strings(&["public"]),
        id_token_signing_alg_values_supported: strings(&[cfg.flyteauth.signing_algorithm.as_str()]),
        claims_supported: strings(CLAIMS_SUPPORTED),
        device_authorization_endpoint: Some(format!("{base}{DEVICE_AUTHORIZATION_PATH}")),
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
