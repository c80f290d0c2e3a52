//! `POST /oauth2/token`: parse the request once, authenticate the client, run the grant, render the answer.

use super::{body_rejected, form_params, presented_client};
use crate::error::{ApiError, no_store};
use crate::grants;
use crate::metrics;
use crate::state::AppState;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use flyteauth_core::grant::TokenRequest;
use serde::Serialize;
use std::net::SocketAddr;

/// Largest token request body accepted; real requests are a few hundred bytes.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 64 * 1024;

/// Successful token response (RFC 6749 §5.1). `expires_in` is mandatory for the Flyte SDKs.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
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
        Err(rejection) => {
            metrics::token_issued("none", "invalid_request");
            return body_rejected(&rejection);
        }
    };
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let mut grant = "none";
    match token_inner(&state, peer, &headers, &body, &mut grant).await {
        Ok(response) => {
            metrics::token_issued(grant, "success");
            response
        }
        Err(e) => {
            let outcome = match &e {
                ApiError::ClientAuthentication { .. } => "invalid_client",
                ApiError::OAuth(o) => o.code.as_str(),
                ApiError::AuditUnavailable(_) => "temporarily_unavailable",
                _ => "server_error",
            };
            metrics::token_issued(grant, outcome);
            e.into_response()
        }
    }
}

async fn token_inner(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
    grant_metric: &mut &'static str,
) -> Result<Response, ApiError> {
    let params = form_params(headers, body)?;
    let request = TokenRequest::parse(&params)?;
    *grant_metric = request.grant_type();
    let client =
        grants::authenticate_client(state, peer, presented_client(headers, &params)?).await?;
    let issued = grants::exchange(state, &client, request, peer).await?;
    let mut response = axum::Json(TokenResponse {
        access_token: &issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: &issued.scope,
        refresh_token: issued.refresh_token.as_deref(),
        id_token: issued.id_token.as_deref(),
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}
