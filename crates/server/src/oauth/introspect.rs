//! `POST /oauth2/introspect` (RFC 7662), for confidential clients: is this token active, and what does it
//! grant?

use super::{body_rejected, form_params, invalid_request, json_answer, presented_client};
use crate::error::ApiError;
use crate::grants;
use crate::opaque;
use crate::state::AppState;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use flyteauth_core::identity::PrincipalKind;
use serde_json::{Value, json};
use std::net::SocketAddr;

/// `POST /oauth2/introspect`.
pub async fn introspect(
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
    json_answer(introspect_inner(&state, peer, &headers, &body).await)
}

async fn introspect_inner(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let params = form_params(headers, body)?;
    let presented = presented_client(headers, &params)?;
    let basic = presented.as_ref().is_some_and(|p| p.via_basic);
    let client = grants::authenticate_client(state, peer, presented).await?;
    if client.is_public() {
        // RFC 7662 §2.1: the caller must be authorized; a public client proves nothing.
        return Err(ApiError::ClientAuthentication { basic });
    }
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid_request("token is required"))?;
    if let Ok(identity) = state.validator.validate(token) {
        let claims = &identity.user_info.additional_claims;
        return Ok(json!({
            "active": true,
            "token_type": "Bearer",
            "scope": identity.scopes.join(" "),
            "client_id": identity.client_id,
            "username": identity.user_info.preferred_username,
            "sub": identity.subject,
            "aud": identity.audience,
            "iss": state.metadata.issuer,
            "exp": identity.expires_at,
            "iat": claims.get("iat").cloned().unwrap_or(Value::Null),
            "jti": identity.token_id,
            "identity_type": match identity.kind { PrincipalKind::User => "user", PrincipalKind::App => "app" },
        }));
    }
    let now = state.clock.unix_now();
    if let Some(refresh) = state
        .store
        .get_refresh_token(&opaque::digest(token))
        .await
        .map_err(ApiError::internal)?
    {
        let active = refresh.family_revoked_at.is_none()
            && refresh.used_at.is_none()
            && refresh.expires_at > now;
        if active {
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": refresh.scopes.join(" "),
                "client_id": refresh.client_id,
                "username": refresh.username,
                "sub": refresh.subject,
                "exp": refresh.expires_at,
                "iat": refresh.issued_at,
            }));
        }
    }
    Ok(json!({"active": false}))
}
