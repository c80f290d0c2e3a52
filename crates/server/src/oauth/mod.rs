//! The OAuth 2.0 endpoints of the built-in authorization server: `POST /oauth2/token`,
//! `GET /oauth2/jwks` and the discovery documents.

use crate::error::{ApiError, no_store};
use crate::form::{self, FormError};
use crate::metrics;
use crate::state::AppState;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use flyteauth_core::clients::{Client, equalize_timing_for_unknown_client};
use flyteauth_core::grant::{self, ClientCredentialsRequest};
use flyteauth_core::oauth::{ErrorCode, OAuthError};
use flyteauth_core::token::AccessTokenRequest;
use flyteauth_store::AuditEvent;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Grant type of the client credentials grant (RFC 6749 §4.4).
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// Largest token request body accepted; real requests are a few hundred bytes.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 64 * 1024;

fn invalid_request(description: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::OAuth(OAuthError {
        code: ErrorCode::InvalidRequest,
        description: description.into(),
    })
}

/// Client credentials as presented, before they are checked.
struct PresentedClient {
    id: String,
    secret: Option<String>,
    via_basic: bool,
}

/// Reads client authentication from `Authorization: Basic` (both parts form-URL-decoded, as
/// RFC 6749 §2.3.1 asks and as the Flyte SDKs encode the secret) or from the form body.
fn presented_client(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Option<PresentedClient>, ApiError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(value) => Some(parse_basic(value.as_bytes())?),
        None => None,
    };
    let body_id = params.get("client_id").filter(|s| !s.is_empty());
    let body_secret = params.get("client_secret").filter(|s| !s.is_empty());
    match (basic, body_id) {
        (Some(_), _) if body_secret.is_some() => Err(invalid_request(
            "use exactly one client authentication method (Basic header or form body)",
        )),
        (Some((id, secret)), other_id) => {
            if other_id.is_some_and(|other| *other != id) {
                return Err(invalid_request(
                    "client_id in the body does not match the Basic credentials",
                ));
            }
            Ok(Some(PresentedClient {
                id,
                secret: Some(secret),
                via_basic: true,
            }))
        }
        (None, Some(id)) => Ok(Some(PresentedClient {
            id: id.clone(),
            secret: body_secret.cloned(),
            via_basic: false,
        })),
        (None, None) => Ok(None),
    }
}

fn parse_basic(value: &[u8]) -> Result<(String, String), ApiError> {
    let bad = || ApiError::ClientAuthentication { basic: true };
    let value = std::str::from_utf8(value).map_err(|_| bad())?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_request(
            "the token endpoint accepts only Basic client authentication in the Authorization header",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let colon = decoded.iter().position(|b| *b == b':').ok_or_else(bad)?;
    let id = form::decode_component(&decoded[..colon]).map_err(|_| bad())?;
    let secret = form::decode_component(&decoded[colon + 1..]).map_err(|_| bad())?;
    Ok((id, secret))
}

/// Successful token response (RFC 6749 §5.1). `expires_in` is mandatory for the Flyte SDKs.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
}

/// `POST /oauth2/token`.
pub async fn token(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_rejected(&rejection),
    };
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let mut grant = "none";
    match token_inner(&state, peer, &headers, &body, &mut grant).await {
        Ok(response) => response,
        Err(e) => {
            let outcome = match &e {
                ApiError::ClientAuthentication { .. } => "invalid_client",
                ApiError::OAuth(o) => o.code.as_str(),
                _ => "server_error",
            };
            metrics::token_issued(grant, outcome);
            e.into_response()
        }
    }
}

/// A body that could not be read (too large, broken stream) as an RFC 6749 error.
fn body_rejected(rejection: &BytesRejection) -> Response {
    metrics::token_issued("none", "invalid_request");
    let mut response = crate::error::oauth_error_response(
        ErrorCode::InvalidRequest,
        "the request body could not be read or is too large",
    );
    *response.status_mut() = rejection.status();
    response
}

/// Bounded label set for the grant metric, whatever the request says.
fn grant_label(grant: &str) -> &'static str {
    match grant {
        CLIENT_CREDENTIALS => CLIENT_CREDENTIALS,
        "authorization_code" => "authorization_code",
        "refresh_token" => "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code" => "device_code",
        "" => "none",
        _ => "other",
    }
}

async fn token_inner(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
    grant_metric: &mut &'static str,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid_request(
            "the token request must be application/x-www-form-urlencoded",
        ));
    }
    let params = form::parse(body).map_err(|e| match e {
        FormError::Repeated(name) => invalid_request(format!("parameter '{name}' is repeated")),
        other => invalid_request(other.to_string()),
    })?;
    let grant_type = match params.get("grant_type").map(String::as_str) {
        None | Some("") => return Err(invalid_request("grant_type is required")),
        Some(g) => g,
    };
    *grant_metric = grant_label(grant_type);
    if grant_type != CLIENT_CREDENTIALS {
        return Err(ApiError::OAuth(OAuthError {
            code: ErrorCode::UnsupportedGrantType,
            description: format!("grant_type '{}' is not supported", printable(grant_type)).into(),
        }));
    }
    let client = authenticate_client(state, peer, headers, &params).await?;
    let request = ClientCredentialsRequest {
        scope: params.get("scope").map(String::as_str),
        audience: params
            .get("audience")
            .map(String::as_str)
            .filter(|a| !a.is_empty()),
    };
    let granted = grant::client_credentials(
        &client,
        &request,
        &state.accepted_audiences,
        &state.default_audience,
    )?;
    let issued = state
        .issuer
        .issue(&AccessTokenRequest {
            subject: client.id.clone(),
            client_id: client.id.clone(),
            client_name: Some(client.name.clone()).filter(|n| !n.is_empty()),
            audience: granted.audience,
            scopes: granted.scopes,
            user_info: None,
        })
        .map_err(ApiError::internal)?;
    let scope = issued.claims.scp.join(" ");
    audit(
        state,
        "token.issued",
        &client.id,
        "success",
        peer,
        serde_json::json!({"grant_type": CLIENT_CREDENTIALS, "jti": issued.claims.jti, "scope": scope}),
    )
    .await;
    metrics::token_issued(CLIENT_CREDENTIALS, "success");
    let mut response = axum::Json(TokenResponse {
        access_token: &issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: &scope,
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

/// Checks the presented client credentials. Unknown clients and wrong secrets get the same
/// answer in about the same time, so the endpoint does not reveal which client ids exist.
async fn authenticate_client(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Client, ApiError> {
    let Some(presented) = presented_client(headers, params)? else {
        return Err(ApiError::ClientAuthentication { basic: false });
    };
    let failure = ApiError::ClientAuthentication {
        basic: presented.via_basic,
    };
    let client = state.find_client(&presented.id).await?;
    let secret = presented.secret.unwrap_or_default();
    // bcrypt is deliberately slow: keep it off the async workers.
    let (client, verified) = tokio::task::spawn_blocking(move || {
        let verified = match client.as_ref().and_then(|c| c.secret.as_ref()) {
            Some(hash) => hash.verify(&secret),
            None => {
                equalize_timing_for_unknown_client(&secret);
                false
            }
        };
        (client, verified)
    })
    .await
    .map_err(ApiError::internal)?;
    match client {
        Some(client) if verified => Ok(client),
        _ => {
            audit(
                state,
                "client.authentication_failed",
                &presented.id,
                "failure",
                peer,
                serde_json::json!({"via": if presented.via_basic { "basic" } else { "body" }}),
            )
            .await;
            Err(failure)
        }
    }
}

/// Records a credential event; a failing audit write is logged, not turned into a failed request.
async fn audit(
    state: &AppState,
    kind: &str,
    client_id: &str,
    outcome: &str,
    peer: Option<SocketAddr>,
    detail: serde_json::Value,
) {
    let event = AuditEvent {
        at: state.clock.unix_now(),
        kind: kind.to_owned(),
        client_id: printable(client_id),
        subject: printable(client_id),
        outcome: outcome.to_owned(),
        remote_addr: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        detail,
    };
    if let Err(e) = state.store.record(&event).await {
        tracing::error!(error = %e, kind, "could not record an audit event");
    }
    tracing::info!(kind, client_id = %event.client_id, outcome, remote = %event.remote_addr, "credential event");
}

/// Caps and sanitises client-supplied text before it reaches a log line or an error body.
fn printable(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `GET /oauth2/jwks`.
pub async fn jwks(State(state): State<AppState>) -> Response {
    json_document(state.jwks_json.clone(), "public, max-age=60")
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
pub async fn server_metadata(State(state): State<AppState>) -> Response {
    json_document(state.metadata_json.clone(), "public, max-age=300")
}

fn json_document(body: Bytes, cache: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// Any method other than POST on the token endpoint.
pub async fn token_method_not_allowed() -> Response {
    let mut response = crate::error::oauth_error_response(
        ErrorCode::InvalidRequest,
        "the token endpoint accepts only POST",
    );
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    #[test]
    fn basic_password_is_form_url_decoded() {
        // What the Flyte SDKs send for the secret "s3cr+t/=x y" (quote_plus before base64).
        let (id, secret) =
            parse_basic(basic("my-app:s3cr%2Bt%2F%3Dx+y")[header::AUTHORIZATION].as_bytes())
                .unwrap();
        assert_eq!(id, "my-app");
        assert_eq!(secret, "s3cr+t/=x y");
    }

    #[test]
    fn two_authentication_methods_are_rejected() {
        let mut params = HashMap::new();
        params.insert("client_secret".to_owned(), "x".to_owned());
        let err = presented_client(&basic("a:b"), &params).err().unwrap();
        assert!(matches!(err, ApiError::OAuth(ref o) if o.code == ErrorCode::InvalidRequest));
    }

    #[test]
    fn garbage_basic_header_is_invalid_client() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(matches!(
            presented_client(&h, &HashMap::new()),
            Err(ApiError::ClientAuthentication { basic: true })
        ));
    }

    #[test]
    fn printable_strips_control_characters_and_caps_length() {
        assert_eq!(printable("a\nb\u{7}"), "a?b?");
        assert_eq!(printable(&"x".repeat(1000)).len(), 128);
    }
}
