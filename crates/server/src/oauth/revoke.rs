//! `POST /oauth2/revoke` (RFC 7009): a client ends a refresh token (and with it the whole login it belongs
//! to) or an access token it holds.

use super::{body_rejected, form_params, invalid_request, presented_client};
use crate::audit::{self, Event};
use crate::error::{ApiError, no_store};
use crate::grants;
use crate::opaque;
use crate::state::AppState;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flyteauth_store::RevocationKind;
use std::net::SocketAddr;

/// `POST /oauth2/revoke`. Answers 200 for tokens it does not know or that belong to another client (RFC 7009
/// §2.2), so the endpoint tells a caller nothing about other clients' tokens.
pub async fn revoke(
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
    match revoke_inner(&state, peer, &headers, &body).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn revoke_inner(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let params = form_params(headers, body)?;
    let client =
        grants::authenticate_client(state, peer, presented_client(headers, &params)?).await?;
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid_request("token is required"))?;
    // `token_type_hint` only saves a lookup (RFC 7009 §2.1); both kinds are tried whatever it says.
    if let Some(refresh) = state
        .store
        .get_refresh_token(&opaque::digest(token))
        .await
        .map_err(ApiError::internal)?
    {
        if refresh.client_id == client.id {
            grants::revoke_family(state, &refresh.family_id, "refresh.revoked").await?;
            crate::metrics::revoked("refresh_family");
            audit::record_or_log(
                state,
                Event {
                    kind: "token.revoked",
                    client_id: &client.id,
                    subject: &refresh.subject,
                    outcome: "success",
                    peer,
                    detail: serde_json::json!({"token_type": "refresh_token", "family_id": refresh.family_id}),
                },
            )
            .await;
        }
        return Ok(());
    }
    if let Ok(identity) = state.validator.validate_uncached(token)
        && identity.client_id == client.id
    {
        grants::revoke(
            state,
            RevocationKind::Token,
            &identity.token_id,
            "access_token.revoked",
        )
        .await?;
        crate::metrics::revoked("access_token");
        audit::record_or_log(
            state,
            Event {
                kind: "token.revoked",
                client_id: &client.id,
                subject: &identity.subject,
                outcome: "success",
                peer,
                detail: serde_json::json!({"token_type": "access_token", "jti": identity.token_id}),
            },
        )
        .await;
    }
    Ok(())
}
