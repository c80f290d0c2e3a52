//! `POST /oauth2/device/code`: the device authorization endpoint (RFC 8628 §3.1–3.2).

use super::{body_rejected, form_params, json_answer, presented_client};
use crate::error::ApiError;
use crate::grants;
use crate::opaque;
use crate::state::AppState;
use crate::web::session::duration_secs;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use flyteauth_core::device::{DeviceAuthorizationRequest, display_user_code, new_user_code};
use flyteauth_core::metadata::ACTIVATE_PATH;
use flyteauth_store::{NewDeviceCode, StoreError};
use serde::Serialize;
use std::net::SocketAddr;

/// A fresh user code collides with a live one with a chance of (live codes) / 20^8; a few tries always suffice.
const USER_CODE_TRIES: usize = 4;

/// The device authorization response (RFC 8628 §3.2).
#[derive(Serialize)]
struct DeviceAuthorizationResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: i64,
    interval: i64,
}

/// `POST /oauth2/device/code`.
pub async fn device_authorization(
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
    json_answer(device_inner(&state, peer, &headers, &body).await)
}

async fn device_inner(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeviceAuthorizationResponse, ApiError> {
    let params = form_params(headers, body)?;
    let client =
        grants::authenticate_client(state, peer, presented_client(headers, &params)?).await?;
    let granted = DeviceAuthorizationRequest::parse(
        &params,
        &client,
        &state.accepted_audiences,
        &state.default_audience,
    )?;
    let device = &state.config.flyteauth.device;
    let lifetime = duration_secs(device.code_lifetime);
    let interval = duration_secs(device.interval).max(1);
    let now = state.clock.unix_now();
    let device_code = opaque::new_token();
    let mut tries = 0;
    let user_code = loop {
        let user_code = new_user_code();
        let created = state
            .store
            .create_device_code(&NewDeviceCode {
                device_code_hash: opaque::digest(&device_code),
                user_code: user_code.clone(),
                client_id: client.id.clone(),
                scopes: granted.scopes.clone(),
                audience: granted.audience.clone(),
                interval_secs: interval,
                created_at: now,
                expires_at: now.saturating_add(lifetime),
            })
            .await;
        match created {
            Ok(_) => break user_code,
            Err(StoreError::AlreadyExists { .. }) if tries + 1 < USER_CODE_TRIES => tries += 1,
            Err(e) => return Err(ApiError::internal(e)),
        }
    };
    let shown = display_user_code(&user_code);
    let verification_uri = format!(
        "{}{ACTIVATE_PATH}",
        state.public_client.service_http_endpoint
    );
    let complete = format!("{verification_uri}?user_code={shown}");
    Ok(DeviceAuthorizationResponse {
        device_code,
        user_code: shown,
        verification_uri,
        verification_uri_complete: complete,
        expires_in: lifetime,
        interval,
    })
}
