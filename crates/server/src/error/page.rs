//! Errors of the browser routes (login, authorize): a readable HTML page, never JSON and never a redirect to
//! an address that was not verified.

use crate::listener::BodyTimeout;
use crate::web::pages;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

/// An error shown to a person in a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The page title, e.g. "Sign-in request refused".
    pub title: Cow<'static, str>,
    /// What went wrong, in a sentence; never a secret.
    pub message: Cow<'static, str>,
    /// What the person can do about it.
    pub hint: Option<Cow<'static, str>>,
    /// Seconds after which trying again may work (429 / 503).
    pub retry_after: Option<u64>,
}

impl PageError {
    /// A 400 page for a request that cannot be served as sent.
    pub fn bad_request(
        title: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: title.into(),
            message: message.into(),
            hint: None,
            retry_after: None,
        }
    }

    /// The page for a form whose body could not be read: 408 if it did not arrive within the body timeout,
    /// otherwise the rejection's status (413 too large, 400 broken).
    pub fn unreadable_form(
        title: impl Into<Cow<'static, str>>,
        rejection: &BytesRejection,
    ) -> Self {
        if BodyTimeout::is_cause_of(rejection) {
            return Self {
                status: StatusCode::REQUEST_TIMEOUT,
                ..Self::bad_request(title, "The form did not arrive in time.")
            }
            .with_hint("Check your connection, then send the form again.");
        }
        Self {
            status: rejection.status(),
            ..Self::bad_request(title, "The form could not be read or is too large.")
        }
    }

    /// The page for a failure on our side; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "browser request failed with an internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Something went wrong".into(),
            message: "The server could not complete the request.".into(),
            hint: Some("Try again in a moment. If it keeps happening, tell the operators.".into()),
            retry_after: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<Cow<'static, str>>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<super::ApiError> for PageError {
    fn from(e: super::ApiError) -> Self {
        match e {
            super::ApiError::Internal(detail) => Self::internal(detail),
            super::ApiError::RateLimited { retry_after } => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                title: "Too many sign-in attempts".into(),
                message: "Too many failed sign-in attempts came from your network address.".into(),
                hint: Some(format!("Try again in {} minute(s).", retry_after.div_ceil(60)).into()),
                retry_after: Some(retry_after),
            },
            super::ApiError::Busy { retry_after } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                title: "The server is busy".into(),
                message: "Too many sign-ins are being checked at the moment.".into(),
                hint: Some("Wait a moment, then send the form again.".into()),
                retry_after: Some(retry_after),
            },
            super::ApiError::AuditUnavailable(_) => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                title: "Sign-in not completed".into(),
                message: "The server cannot keep its record of sign-ins at the moment, so it did not sign you in."
                    .into(),
                hint: Some("Wait a moment, then try again.".into()),
                retry_after: Some(super::AUDIT_RETRY_AFTER_SECS),
            },
            other => Self::bad_request("Request refused", other.to_string()),
        }
    }
}

impl From<crate::audit::AuditError> for PageError {
    fn from(e: crate::audit::AuditError) -> Self {
        super::ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let html = pages::error_page(&self.title, &self.message, self.hint.as_deref());
        let mut response = pages::html_response(self.status, html);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}
