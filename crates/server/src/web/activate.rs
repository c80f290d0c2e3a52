//! `GET`/`POST /activate`: where a person approves a device-flow sign-in (RFC 8628 §3.3).
//!
//! The person signs in first (the login page, then back here), types or follows the code, sees which
//! application asks for what, and approves or denies with a CSRF-protected form. Wrong codes count against the
//! person's session and their address, so the 20^8 code space cannot be walked from one browser.

use crate::audit::{self, Event};
use crate::error::PageError;
use crate::form;
use crate::state::AppState;
use crate::web::cookies::{self, CSRF_COOKIE};
use crate::web::pages::{self, DeviceApproval};
use crate::web::see_other;
use crate::web::session::{self, LoggedIn};
use crate::web::throttle::retry_after_secs;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use flyteauth_core::device::{display_user_code, normalize_user_code};
use flyteauth_core::metadata::{ACTIVATE_PATH, LOGIN_PATH};
use flyteauth_store::{DeviceApproval as Approval, DeviceStatus};
use std::net::SocketAddr;

/// Largest approval form accepted.
pub const MAX_ACTIVATE_FORM_BYTES: usize = 4 * 1024;

const INVALID_CODE: &str =
    "That code is not valid, or it has expired. Check the code in your terminal.";

/// To the login page, and back to `return_to` afterwards.
fn to_login(return_to: &str) -> Response {
    see_other(&format!(
        "{LOGIN_PATH}?return_to={}",
        percent_encoding::utf8_percent_encode(return_to, percent_encoding::NON_ALPHANUMERIC)
    ))
}

/// Refuses a person who has guessed wrong too often, by session or by address.
fn check_attempts(
    state: &AppState,
    who: &LoggedIn,
    peer: Option<SocketAddr>,
) -> Result<(), PageError> {
    let by_session = state
        .device_attempts_by_session
        .blocked_for(&who.session_key);
    let by_address = peer.and_then(|p| state.device_attempts_by_address.blocked_for(&p.ip()));
    match by_session.max(by_address) {
        None => Ok(()),
        Some(wait) => Err(PageError {
            status: StatusCode::TOO_MANY_REQUESTS,
            title: "Too many wrong codes".into(),
            message: "Too many codes that do not exist were entered from this browser or network address.".into(),
            hint: Some(format!("Try again in {} minute(s).", retry_after_secs(wait).div_ceil(60)).into()),
            retry_after: Some(retry_after_secs(wait)),
        }),
    }
}

fn count_wrong_code(state: &AppState, who: &LoggedIn, peer: Option<SocketAddr>) {
    state
        .device_attempts_by_session
        .failed(who.session_key.clone());
    if let Some(p) = peer {
        state.device_attempts_by_address.failed(p.ip());
    }
}

fn enter_page(typed: &str, error: Option<&str>, status: StatusCode) -> Response {
    pages::html_response(status, pages::activate_enter_page(typed, error))
}

/// `GET /activate[?user_code=XXXX-XXXX]`.
pub async fn show(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let query = query.unwrap_or_default();
    let params = form::parse(query.as_bytes()).map_err(|e| {
        PageError::bad_request(
            "Device sign-in refused",
            format!("The address is malformed: {e}."),
        )
    })?;
    let Some(who) = session::current(&state, &headers).await? else {
        let return_to = if query.is_empty() {
            ACTIVATE_PATH.to_owned()
        } else {
            format!("{ACTIVATE_PATH}?{query}")
        };
        return Ok(to_login(&return_to));
    };
    let typed = params
        .get("user_code")
        .map(String::as_str)
        .unwrap_or_default()
        .trim();
    if typed.is_empty() {
        return Ok(enter_page("", None, StatusCode::OK));
    }
    let now = state.clock.unix_now();
    check_attempts(&state, &who, peer)?;
    let shown = audit::printable(typed);
    let Some(code) = normalize_user_code(typed) else {
        count_wrong_code(&state, &who, peer);
        return Ok(enter_page(
            &shown,
            Some(INVALID_CODE),
            StatusCode::BAD_REQUEST,
        ));
    };
    let Some(device) = state
        .store
        .get_device_by_user_code(&code, now)
        .await
        .map_err(PageError::internal)?
    else {
        count_wrong_code(&state, &who, peer);
        return Ok(enter_page(
            &shown,
            Some(INVALID_CODE),
            StatusCode::BAD_REQUEST,
        ));
    };
    if device.status != DeviceStatus::Pending {
        return Ok(pages::html_response(
            StatusCode::OK,
            pages::notice_page(
                "Code already used",
                "This code has already been approved or denied. Start the sign-in again in your terminal if you need a new one.",
            ),
        ));
    }
    let (csrf, set_cookie) = cookies::csrf_for_form(&state.cookies, &headers);
    let html = pages::activate_confirm_page(&DeviceApproval {
        user_code: &display_user_code(&code),
        client: &device.client_id,
        scopes: &device.scopes,
        username: &who.user.username,
        csrf_token: &csrf,
    });
    let mut response = pages::html_response(StatusCode::OK, html);
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /activate`: approve or deny.
pub async fn decide(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PageError> {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let body = body.map_err(|r| PageError::unreadable_form("Device sign-in refused", &r))?;
    let params = form::parse(&body).map_err(|e| {
        PageError::bad_request(
            "Device sign-in refused",
            format!("The form is malformed: {e}."),
        )
    })?;
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let Some(who) = session::current(&state, &headers).await? else {
        return Ok(to_login(ACTIVATE_PATH));
    };
    if !cookies::csrf_matches(
        cookies::read(&headers, CSRF_COOKIE),
        params.get("csrf_token").map(String::as_str),
    ) {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            ..PageError::bad_request(
                "This form has expired",
                "The approval form could not be verified, so nothing was approved.",
            )
            .with_hint("Open the link from your terminal again and approve from the fresh page.")
        });
    }
    let approve = match field("decision") {
        "approve" => true,
        "deny" => false,
        _ => {
            return Err(PageError::bad_request(
                "Device sign-in refused",
                "The form must say whether to approve or deny.",
            ));
        }
    };
    let now = state.clock.unix_now();
    check_attempts(&state, &who, peer)?;
    let Some(code) = normalize_user_code(field("user_code")) else {
        count_wrong_code(&state, &who, peer);
        return Ok(enter_page("", Some(INVALID_CODE), StatusCode::BAD_REQUEST));
    };
    let approval = approve.then(|| Approval {
        subject: who.user.subject.clone(),
        username: who.user.username.clone(),
        family_id: uuid::Uuid::new_v4().to_string(),
        auth_time: who.session.auth_time,
    });
    let Some(decided) = state
        .store
        .decide_device_code(&code, approval, now)
        .await
        .map_err(PageError::internal)?
    else {
        return Err(PageError::bad_request(
            "Code no longer waiting",
            "This code has expired or was already approved or denied; nothing changed.",
        )
        .with_hint("Start the sign-in again in your terminal to get a new code."));
    };
    // The decision is stored already and its token's issuance is audited (fail-closed) when the device polls.
    audit::record_or_log(
        &state,
        Event {
            kind: if approve { "device.approved" } else { "device.denied" },
            client_id: &decided.client_id,
            subject: &who.user.subject,
            outcome: "success",
            peer,
            detail: serde_json::json!({"scope": decided.scopes.join(" "), "family_id": decided.family_id}),
        },
    )
    .await;
    let (title, message) = if approve {
        (
            "Device connected",
            "You approved the sign-in. Return to your terminal: it continues by itself. You can close this window.",
        )
    } else {
        (
            "Request denied",
            "You denied the sign-in; the device was not connected. You can close this window.",
        )
    };
    Ok(pages::html_response(
        StatusCode::OK,
        pages::notice_page(title, message),
    ))
}
