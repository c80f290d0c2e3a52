//! The browser side of the server: the login page and its session cookie.
//!
//! - [`pages`]: the HTML a person sees;
//! - [`cookies`]: cookie names, attributes and parsing;
//! - [`session`]: login sessions (cookie ↔ store);
//! - [`login`]: `GET`/`POST /login`, `GET /logout`; [`federated`]: signing in through the identity provider
//!   (`/login/federated`, `/callback`); [`activate`]: approving a device sign-in;
//! - [`throttle`]: the per-address slow-down of password guessing.

pub mod activate;
pub mod cookies;
pub mod federated;
pub mod login;
pub mod pages;
pub mod session;
pub mod throttle;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `303 See Other` to `location` (a path on this server or an already verified redirect URI), never cached.
pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, value);
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => {
            crate::error::PageError::internal("a redirect location is not a valid header value")
                .into_response()
        }
    }
}
