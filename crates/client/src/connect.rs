//! Unary Connect calls (binary protobuf over HTTP), the protocol of the `flyte` 2.x SDK, and the status codes
//! shared with gRPC.

use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};

use crate::ClientError;

/// The status codes of Connect and gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcCode {
    /// `canceled` (1).
    Canceled,
    /// `unknown` (2).
    Unknown,
    /// `invalid_argument` (3).
    InvalidArgument,
    /// `deadline_exceeded` (4).
    DeadlineExceeded,
    /// `not_found` (5).
    NotFound,
    /// `already_exists` (6).
    AlreadyExists,
    /// `permission_denied` (7).
    PermissionDenied,
    /// `resource_exhausted` (8).
    ResourceExhausted,
    /// `failed_precondition` (9).
    FailedPrecondition,
    /// `aborted` (10).
    Aborted,
    /// `out_of_range` (11).
    OutOfRange,
    /// `unimplemented` (12).
    Unimplemented,
    /// `internal` (13).
    Internal,
    /// `unavailable` (14).
    Unavailable,
    /// `data_loss` (15).
    DataLoss,
    /// `unauthenticated` (16).
    Unauthenticated,
}

/// A failed RPC.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method}: {}{}", code_name(*code), if message.is_empty() { String::new() } else { format!(": {message}") })]
pub struct RpcError {
    /// `Service/Method`.
    pub method: String,
    /// The status code.
    pub code: RpcCode,
    /// The server's message.
    pub message: String,
}

impl RpcError {
    /// Whether the server said the credentials are missing, invalid or expired.
    pub fn is_unauthenticated(&self) -> bool {
        self.code == RpcCode::Unauthenticated
    }
}

/// The Connect name of `code` (`unauthenticated`, `not_found`, …).
pub fn code_name(code: RpcCode) -> &'static str {
    match code {
        RpcCode::Canceled => "canceled",
        RpcCode::Unknown => "unknown",
        RpcCode::InvalidArgument => "invalid_argument",
        RpcCode::DeadlineExceeded => "deadline_exceeded",
        RpcCode::NotFound => "not_found",
        RpcCode::AlreadyExists => "already_exists",
        RpcCode::PermissionDenied => "permission_denied",
        RpcCode::ResourceExhausted => "resource_exhausted",
        RpcCode::FailedPrecondition => "failed_precondition",
        RpcCode::Aborted => "aborted",
        RpcCode::OutOfRange => "out_of_range",
        RpcCode::Unimplemented => "unimplemented",
        RpcCode::Internal => "internal",
        RpcCode::Unavailable => "unavailable",
        RpcCode::DataLoss => "data_loss",
        RpcCode::Unauthenticated => "unauthenticated",
    }
}

const ALL_CODES: [RpcCode; 16] = [
    RpcCode::Canceled,
    RpcCode::Unknown,
    RpcCode::InvalidArgument,
    RpcCode::DeadlineExceeded,
    RpcCode::NotFound,
    RpcCode::AlreadyExists,
    RpcCode::PermissionDenied,
    RpcCode::ResourceExhausted,
    RpcCode::FailedPrecondition,
    RpcCode::Aborted,
    RpcCode::OutOfRange,
    RpcCode::Unimplemented,
    RpcCode::Internal,
    RpcCode::Unavailable,
    RpcCode::DataLoss,
    RpcCode::Unauthenticated,
];

/// The code of a Connect name (`"not_found"`); `None` for anything else (the names are lower case only).
pub fn code_from_name(name: &str) -> Option<RpcCode> {
    ALL_CODES.into_iter().find(|code| code_name(*code) == name)
}

/// The code a Connect client assumes for an HTTP error status without a Connect error body (the table of
/// connect-go and connect-python).
pub fn code_from_http_status(status: u16) -> RpcCode {
    match status {
        400 => RpcCode::Internal,
        401 => RpcCode::Unauthenticated,
        403 => RpcCode::PermissionDenied,
        404 => RpcCode::Unimplemented,
        429 | 502 | 503 | 504 => RpcCode::Unavailable,
        _ => RpcCode::Unknown,
    }
}

impl From<RpcCode> for tonic::Code {
    fn from(code: RpcCode) -> Self {
        match code {
            RpcCode::Canceled => Self::Cancelled,
            RpcCode::Unknown => Self::Unknown,
            RpcCode::InvalidArgument => Self::InvalidArgument,
            RpcCode::DeadlineExceeded => Self::DeadlineExceeded,
            RpcCode::NotFound => Self::NotFound,
            RpcCode::AlreadyExists => Self::AlreadyExists,
            RpcCode::PermissionDenied => Self::PermissionDenied,
            RpcCode::ResourceExhausted => Self::ResourceExhausted,
            RpcCode::FailedPrecondition => Self::FailedPrecondition,
            RpcCode::Aborted => Self::Aborted,
            RpcCode::OutOfRange => Self::OutOfRange,
            RpcCode::Unimplemented => Self::Unimplemented,
            RpcCode::Internal => Self::Internal,
            RpcCode::Unavailable => Self::Unavailable,
            RpcCode::DataLoss => Self::DataLoss,
            RpcCode::Unauthenticated => Self::Unauthenticated,
        }
    }
}

/// The error of a failed call: the Connect error JSON (`{"code": "...", "message": "..."}`) when the body is one
/// with a known code, else the code of the HTTP status.
pub fn error_from_response(
    method: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> RpcError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if is_json
        && let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
        && let Some(code) = parsed.code.as_deref().and_then(code_from_name)
    {
        return RpcError {
            method: method.to_owned(),
            code,
            message: parsed.message.unwrap_or_default(),
        };
    }
    RpcError {
        method: method.to_owned(),
        code: code_from_http_status(status),
        message: format!("HTTP {status}"),
    }
}

const CONTENT_TYPE_PROTO: &str = "application/proto";
const PROTOCOL_VERSION_HEADER: &str = "connect-protocol-version";

/// A Connect client for one control plane.
#[derive(Debug, Clone)]
pub struct ConnectClient {
    http: reqwest::Client,
    base: url::Url,
}

impl ConnectClient {
    /// Calls go to `base` + `/Service/Method`.
    pub fn new(http: reqwest::Client, base: url::Url) -> Self {
        Self { http, base }
    }

    /// The base URL.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One unary call of `method` (`flyteidl2.auth.IdentityService/UserInfo`) with extra `headers` (the
    /// credentials). Transport failures are [`ClientError::Unreachable`], Connect errors [`ClientError::Rpc`].
    pub async fn unary<Req, Resp>(
        &self,
        method: &str,
        request: &Req,
        headers: &HeaderMap,
    ) -> Result<Resp, ClientError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let url = self.method_url(method)?;
        let response = self
            .http
            .post(url.clone())
            .headers(headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_PROTO))
            .header(PROTOCOL_VERSION_HEADER, HeaderValue::from_static("1"))
            .body(request.encode_to_vec())
            .send()
            .await
            .map_err(|e| crate::http::unreachable(&url, &e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| crate::http::unreachable(&url, &e))?;
        tracing::debug!(%url, status = status.as_u16(), "connect call");
        if status != http::StatusCode::OK {
            return Err(error_from_response(
                method,
                status.as_u16(),
                content_type.as_deref(),
                &body,
            )
            .into());
        }
        let is_proto = content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(CONTENT_TYPE_PROTO));
        if !is_proto {
            return Err(ClientError::Protocol {
                url: url.to_string(),
                reason: format!(
                    "expected content-type {CONTENT_TYPE_PROTO}, got {} (is this a Flyte control plane?)",
                    content_type.as_deref().unwrap_or("none")
                ),
            });
        }
        Resp::decode(body).map_err(|e| ClientError::Protocol {
            url: url.to_string(),
            reason: format!("the answer of {method} is not a valid message ({e})"),
        })
    }

    fn method_url(&self, method: &str) -> Result<url::Url, ClientError> {
        let joined = format!(
            "{}/{}",
            self.base.as_str().trim_end_matches('/'),
            method.trim_start_matches('/')
        );
        url::Url::parse(&joined).map_err(|e| {
            ClientError::Unsupported(format!("cannot call {method} at {}: {e}", self.base))
        })
    }
}

#[cfg(test)]
pub(crate) mod test_server;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use flyteauth_proto::flyteidl2::auth::{UserInfoRequest, UserInfoResponse};

    use super::test_server::{Canned, TestServer};
    use super::*;

    const USER_INFO: &str = "flyteidl2.auth.IdentityService/UserInfo";

    #[test]
    fn names_round_trip() {
        for code in ALL_CODES {
            assert_eq!(code_from_name(code_name(code)), Some(code));
        }
        assert_eq!(code_from_name("UNAUTHENTICATED"), None);
        assert_eq!(code_from_name("ok"), None);
    }

    #[test]
    fn error_json_wins_over_the_status() {
        let body = br#"{"code":"permission_denied","message":"no"}"#;
        let e = error_from_response("S/M", 500, Some("application/json"), body);
        assert_eq!(
            (e.code, e.message.as_str()),
            (RpcCode::PermissionDenied, "no")
        );
        assert_eq!(e.to_string(), "S/M: permission_denied: no");
        // The server leaves an empty message out.
        let e = error_from_response(
            "S/M",
            404,
            Some("application/json; charset=utf-8"),
            br#"{"code":"not_found"}"#,
        );
        assert_eq!((e.code, e.message.as_str()), (RpcCode::NotFound, ""));
        assert_eq!(e.to_string(), "S/M: not_found");
    }

    #[test]
    fn without_error_json_the_status_decides() {
        for (status, code) in [
            (400, RpcCode::Internal),
            (401, RpcCode::Unauthenticated),
            (403, RpcCode::PermissionDenied),
            (404, RpcCode::Unimplemented),
            (429, RpcCode::Unavailable),
            (502, RpcCode::Unavailable),
            (503, RpcCode::Unavailable),
            (504, RpcCode::Unavailable),
            (500, RpcCode::Unknown),
            (418, RpcCode::Unknown),
        ] {
            let e = error_from_response("S/M", status, Some("text/html"), b"<html>");
            assert_eq!(e.code, code, "{status}");
            assert_eq!(e.message, format!("HTTP {status}"));
        }
        // JSON with an unknown code, or not JSON at all despite the type.
        let e = error_from_response(
            "S/M",
            401,
            Some("application/json"),
            br#"{"code":"UNAUTHENTICATED"}"#,
        );
        assert_eq!(e.code, RpcCode::Unauthenticated);
        let e = error_from_response("S/M", 503, Some("application/json"), b"oops");
        assert_eq!(e.code, RpcCode::Unavailable);
    }

    #[tokio::test]
    async fn unary_round_trip_with_headers() {
        let server = TestServer::start().await;
        server.proto(
            USER_INFO,
            UserInfoResponse {
                subject: "alice".into(),
                ..Default::default()
            },
        );
        let mut base = server.base();
        base.set_path("/prefix/");
        server.proto(
            &format!("prefix/{USER_INFO}"),
            UserInfoResponse {
                subject: "prefixed".into(),
                ..Default::default()
            },
        );
        let client = ConnectClient::new(crate::connect::test_server::http(), server.base());
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        let reply: UserInfoResponse = client
            .unary(USER_INFO, &UserInfoRequest {}, &headers)
            .await
            .unwrap();
        assert_eq!(reply.subject, "alice");
        let seen = &server.requests()[0];
        assert_eq!(seen.header("authorization").as_deref(), Some("Bearer t"));
        assert_eq!(
            seen.header("content-type").as_deref(),
            Some("application/proto")
        );
        assert_eq!(
            seen.header("connect-protocol-version").as_deref(),
            Some("1")
        );
        assert_eq!(seen.header("content-encoding"), None);
        let prefixed = ConnectClient::new(crate::connect::test_server::http(), base);
        let reply: UserInfoResponse = prefixed
            .unary(USER_INFO, &UserInfoRequest {}, &HeaderMap::new())
            .await
            .unwrap();
        assert_eq!(reply.subject, "prefixed");
    }

    #[tokio::test]
    async fn unary_errors() {
        let server = TestServer::start().await;
        server.route(USER_INFO, |_| {
            Canned::json(
                401,
                serde_json::json!({"code": "unauthenticated", "message": "expired"}),
            )
        });
        server.route("html/M", |_| Canned::text(200, "<html>"));
        let client = ConnectClient::new(crate::connect::test_server::http(), server.base());
        let err = client
            .unary::<_, UserInfoResponse>(USER_INFO, &UserInfoRequest {}, &HeaderMap::new())
            .await
            .unwrap_err();
        assert!(err.is_authentication(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{USER_INFO}: unauthenticated: expired")
        );
        let err = client
            .unary::<_, UserInfoResponse>("html/M", &UserInfoRequest {}, &HeaderMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Protocol { .. }), "{err}");
        // Nobody listening: unreachable.
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let client = ConnectClient::new(
            crate::connect::test_server::http(),
            url::Url::parse(&format!("http://{dead}")).unwrap(),
        );
        let err = client
            .unary::<_, UserInfoResponse>(USER_INFO, &UserInfoRequest {}, &HeaderMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    }
}
