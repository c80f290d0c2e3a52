//! Server side of the Connect protocol, unary calls only.
//!
//! The flyte 2.x SDK (connectrpc + pyqwest) calls `POST /<package>.<Service>/<Method>` with
//! `content-type: application/proto`, a gzip-compressed body and `connect-protocol-version: 1`.
//! [`unary`] turns a typed async handler into an axum [`MethodRouter`] that speaks that wire
//! format (and its `application/json` sibling), so each RPC is written once against prost
//! messages and returns `Result<Resp, tonic::Status>` — the same error type as the gRPC side.
//!
//! Errors leave as Connect error JSON (`{"code":"…","message":"…"}`) with the HTTP status the
//! Connect spec assigns to the code. Transport-level rejections deliberately avoid the codes
//! `unknown` and `unauthenticated`: both Flyte SDKs treat them as "log in again", which would pop
//! a browser for what is really a malformed request.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Code, Status};

use crate::listener::BodyTimeout;

/// Default cap on a request body, applied both to the bytes on the wire and after decompression.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// `content-type` of binary protobuf Connect messages.
pub const CONTENT_TYPE_PROTO: &str = "application/proto";
/// `content-type` of proto3-JSON Connect messages and of every Connect error body.
pub const CONTENT_TYPE_JSON: &str = "application/json";

const PROTOCOL_VERSION_HEADER: &str = "connect-protocol-version";
const TIMEOUT_HEADER: &str = "connect-timeout-ms";

/// Limits applied by [`unary_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Largest accepted request body in bytes, before and after decompression.
    pub max_body_bytes: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Message encoding of one call, chosen by the request's `content-type`; the response uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Binary protobuf (`application/proto`).
    Proto,
    /// Proto3 JSON (`application/json`).
    Json,
}

impl Codec {
    /// The `content-type` value for this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Proto => CONTENT_TYPE_PROTO,
            Self::Json => CONTENT_TYPE_JSON,
        }
    }

    /// Picks the codec for a request `content-type`, ignoring parameters except a non-UTF-8 charset.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let essence = parts.next().unwrap_or_default().trim();
        let codec = if essence.eq_ignore_ascii_case(CONTENT_TYPE_PROTO) {
            Self::Proto
        } else if essence.eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
            Self::Json
        } else {
            return None;
        };
        for param in parts {
            let Some((name, val)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("charset") {
                let val = val.trim().trim_matches('"');
                if !(val.eq_ignore_ascii_case("utf-8") || val.eq_ignore_ascii_case("utf8")) {
                    return None;
                }
            }
        }
        Some(codec)
    }
}

/// The Connect name of a status code (`"invalid_argument"`, …).
///
/// `Code::Ok` never describes an error; a handler that returns it anyway is a bug, reported as
/// `internal` rather than `unknown` because clients re-authenticate on `unknown`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok | Code::Internal => "internal",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status the Connect spec assigns to a status code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// A Connect error on its way out: HTTP status, code name, message and extra headers.
#[derive(Debug, Clone)]
pub struct ConnectError {
    status: StatusCode,
    code: &'static str,
    message: String,
    // A Vec rather than a HeaderMap keeps `Result<_, ConnectError>` small on the success path.
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

impl ConnectError {
    /// An error with the code's standard HTTP status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: http_status(code),
            code: code_name(code),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Overrides the HTTP status, for protocol-level rejections (405, 415) whose status is not
    /// derived from the code.
    pub fn with_http_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The Connect code name.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status of the response.
    pub fn http_status(&self) -> StatusCode {
        self.status
    }
}

impl From<Status> for ConnectError {
    /// Custom metadata on the status (e.g. `www-authenticate`) becomes response headers.
    fn from(status: Status) -> Self {
        let mut err = Self::new(status.code(), status.message());
        if !status.metadata().is_empty() {
            for (name, value) in status.metadata().clone().into_headers() {
                let Some(name) = name else { continue };
                if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH {
                    continue;
                }
                err.headers.push((name, value));
            }
        }
        err
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: &self.message,
        };
        // Serializing two strings cannot fail; the fallback keeps the wire format valid anyway.
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"code":"internal"}"#.to_vec());
        let mut response = Response::new(Body::from(json));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_JSON),
        );
        response
    }
}

/// The Connect error response for a status (what [`unary`] sends when a handler fails).
pub fn error_response(status: Status) -> Response {
    ConnectError::from(status).into_response()
}

/// Axum fallback for paths that name no procedure: 404 with `{"code":"unimplemented"}`, as a
/// Connect server answers an unknown `/<Service>/<Method>`.
pub async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    let shown = match path.char_indices().nth(200) {
        Some((end, _)) => &path[..end],
        None => path,
    };
    ConnectError::new(Code::Unimplemented, format!("no procedure at {shown}"))
        .with_http_status(StatusCode::NOT_FOUND)
        .into_response()
}

/// A Connect unary endpoint with the default limits; see [`unary_with`].
pub fn unary<S, Req, Resp, F, Fut>(handler: F) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Req: prost::Message + Default + DeserializeOwned + Send + 'static,
    Resp: prost::Message + Serialize + Send + 'static,
    F: Fn(S, HeaderMap, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    unary_with(ConnectOptions::default(), handler)
}

/// A Connect unary endpoint: decodes `Req`, calls `handler(state, request_headers, req)` and
/// encodes its `Resp` (or its `Status`) in the request's codec.
///
/// Accepts any HTTP method so that non-POST calls get a Connect error (405) instead of axum's
/// empty one.
pub fn unary_with<S, Req, Resp, F, Fut>(options: ConnectOptions, handler: F) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Req: prost::Message + Default + DeserializeOwned + Send + 'static,
    Resp: prost::Message + Serialize + Send + 'static,
    F: Fn(S, HeaderMap, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let handler = Arc::new(handler);
    axum::routing::any(move |State(state): State<S>, request: Request| {
        let handler = Arc::clone(&handler);
        async move {
            match call(options, state, request, handler.as_ref()).await {
                Ok(response) => response,
                Err(err) => err.into_response(),
            }
        }
    })
}

async fn call<S, Req, Resp, F, Fut>(
    options: ConnectOptions,
    state: S,
    request: Request,
    handler: &F,
) -> Result<Response, ConnectError>
where
    Req: prost::Message + Default + DeserializeOwned,
    Resp: prost::Message + Serialize,
    F: Fn(S, HeaderMap, Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>>,
{
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err(ConnectError::new(
            Code::Unimplemented,
            format!(
                "HTTP method {} is not supported; Connect unary calls use POST",
                parts.method
            ),
        )
        .with_http_status(StatusCode::METHOD_NOT_ALLOWED)
        .with_header(header::ALLOW, HeaderValue::from_static("POST")));
    }
    let headers = parts.headers;
    check_protocol_version(&headers)?;
    let codec = request_codec(&headers)?;
    let gzip = request_is_gzip(&headers)?;
    let timeout = request_timeout(&headers)?;

    let raw = read_body(body, &headers, options.max_body_bytes).await?;
    // An empty body is the empty message even when labelled gzip (zero bytes are no gzip stream).
    let payload = if gzip && !raw.is_empty() {
        gunzip(&raw, options.max_body_bytes)?
    } else {
        raw
    };
    let message: Req = decode(codec, &payload)?;

    let outcome = match timeout {
        Some(limit) => tokio::time::timeout(limit, handler(state, headers, message))
            .await
            .map_err(|_| ConnectError::new(Code::DeadlineExceeded, "deadline exceeded"))?,
        None => handler(state, headers, message).await,
    };
    let reply = outcome.map_err(ConnectError::from)?;
    encode(codec, &reply)
}

fn check_protocol_version(headers: &HeaderMap) -> Result<(), ConnectError> {
    match headers.get(PROTOCOL_VERSION_HEADER) {
        None => Ok(()),
        Some(v) if v.as_bytes() == b"1" => Ok(()),
        Some(_) => Err(ConnectError::new(
            Code::InvalidArgument,
            "unsupported connect-protocol-version: expected \"1\"",
        )),
    }
}

fn request_codec(headers: &HeaderMap) -> Result<Codec, ConnectError> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Codec::from_content_type)
        .ok_or_else(|| {
            // `unimplemented`, not `unknown`: clients re-authenticate on `unknown`.
            ConnectError::new(
                Code::Unimplemented,
                "unsupported content-type: expected application/proto or application/json",
            )
            .with_http_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .with_header(
                HeaderName::from_static("accept-post"),
                HeaderValue::from_static("application/proto, application/json"),
            )
        })
}

fn request_is_gzip(headers: &HeaderMap) -> Result<bool, ConnectError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value.eq_ignore_ascii_case("gzip") {
        Ok(true)
    } else if value.is_empty() || value.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(ConnectError::new(
            Code::Unimplemented,
            "unsupported content-encoding: supported encodings are gzip and identity",
        )
        .with_header(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, identity"),
        ))
    }
}

fn request_timeout(headers: &HeaderMap) -> Result<Option<Duration>, ConnectError> {
    let Some(value) = headers.get(TIMEOUT_HEADER) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    // The spec caps the header at 10 digits, which also keeps the parse overflow-free.
    if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(ConnectError::new(
            Code::InvalidArgument,
            "invalid connect-timeout-ms: expected up to 10 digits",
        ));
    }
    let millis = bytes
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(Some(Duration::from_millis(millis)))
}

fn too_large(limit: usize) -> ConnectError {
    ConnectError::new(
        Code::ResourceExhausted,
        format!("request message larger than {limit} bytes"),
    )
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ConnectError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(too_large(limit)),
        Err(err) if BodyTimeout::is_cause_of(&*err) => Err(ConnectError::new(
            Code::DeadlineExceeded,
            "the request body did not arrive in time",
        )),
        Err(err) => {
            tracing::debug!(error = %err, "connect: reading request body failed");
            Err(ConnectError::new(
                Code::InvalidArgument,
                "failed to read request body",
            ))
        }
    }
}

/// Decompresses with a hard output cap so a small bomb cannot expand into memory.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, ConnectError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    // Multi-member aware: RFC 1952 allows concatenated members.
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|_| {
        ConnectError::new(Code::InvalidArgument, "request body is not valid gzip data")
    })?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

fn decode<Req>(codec: Codec, payload: &[u8]) -> Result<Req, ConnectError>
where
    Req: prost::Message + Default + DeserializeOwned,
{
    match codec {
        Codec::Proto => Req::decode(payload).map_err(|err| {
            ConnectError::new(
                Code::InvalidArgument,
                format!("invalid protobuf request: {err}"),
            )
        }),
        // An empty body is the empty message in both codecs; curl users omit `{}`.
        Codec::Json if payload.is_empty() => Ok(Req::default()),
        Codec::Json => serde_json::from_slice(payload).map_err(|err| {
            ConnectError::new(
                Code::InvalidArgument,
                format!("invalid JSON request: {err}"),
            )
        }),
    }
}

fn encode<Resp>(codec: Codec, reply: &Resp) -> Result<Response, ConnectError>
where
    Resp: prost::Message + Serialize,
{
    let body = match codec {
        Codec::Proto => reply.encode_to_vec(),
        Codec::Json => serde_json::to_vec(reply).map_err(|err| {
            tracing::error!(error = %err, "connect: encoding JSON response failed");
            ConnectError::new(Code::Internal, "failed to encode response")
        })?,
    };
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type()),
    );
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::Router;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use flyteauth_proto::flyteidl2::auth::{UserInfoRequest, UserInfoResponse};
    use flyteauth_proto::wkt;
    use prost::Message as _;
    use std::io::Write as _;
    use tower::ServiceExt as _;

    const PATH: &str = "/flyteidl2.auth.IdentityService/UserInfo";

    #[derive(Clone)]
    struct AppState {
        name: &'static str,
    }

    async fn user_info(
        state: AppState,
        headers: HeaderMap,
        _req: UserInfoRequest,
    ) -> Result<UserInfoResponse, Status> {
        if let Some(code) = headers.get("x-fail") {
            let code = Code::from_i32(code.to_str().unwrap().parse().unwrap());
            let mut status = Status::new(code, "it failed");
            if code == Code::Unauthenticated {
                status.metadata_mut().insert(
                    "www-authenticate",
                    tonic::metadata::MetadataValue::from_static("Bearer"),
                );
            }
            return Err(status);
        }
        if headers.contains_key("x-empty-message") {
            return Err(Status::new(Code::NotFound, ""));
        }
        if headers.contains_key("x-slow") {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let mut claims = wkt::Struct::default();
        claims.fields.insert(
            "userhandle".to_owned(),
            wkt::Value {
                kind: Some(wkt::value::Kind::StringValue("alice-h".to_owned())),
            },
        );
        Ok(UserInfoResponse {
            subject: "alice".to_owned(),
            name: state.name.to_owned(),
            preferred_username: "alice".to_owned(),
            additional_claims: Some(claims),
            ..Default::default()
        })
    }

    fn app(options: ConnectOptions) -> Router {
        Router::new()
            .route(PATH, unary_with(options, user_info))
            .fallback(not_found)
            .with_state(AppState { name: "Alice" })
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn python_client_request() -> http::request::Builder {
        http::Request::post(PATH)
            .header("content-type", "application/proto")
            .header("content-encoding", "gzip")
            .header("accept-encoding", "gzip,identity")
            .header("connect-protocol-version", "1")
            .header("user-agent", "connectrpc/0.10.1")
    }

    async fn send(app: Router, req: http::Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    async fn expect_error(
        req: http::Request<Body>,
        options: ConnectOptions,
    ) -> (StatusCode, String, HeaderMap) {
        let (status, headers, body) = send(app(options), req).await;
        assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE_JSON);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, json["code"].as_str().unwrap().to_owned(), headers)
    }

    #[tokio::test]
    async fn gzip_proto_round_trip_like_the_python_client() {
        let body = gzip(&UserInfoRequest {}.encode_to_vec());
        let req = python_client_request().body(Body::from(body)).unwrap();
        let (status, headers, body) = send(app(ConnectOptions::default()), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE_PROTO);
        let resp = UserInfoResponse::decode(body).unwrap();
        assert_eq!(resp.subject, "alice");
        assert_eq!(resp.name, "Alice");
        let claims = resp.additional_claims.unwrap();
        assert!(claims.fields.contains_key("userhandle"));
    }

    #[tokio::test]
    async fn identity_proto_with_empty_body() {
        let req = http::Request::post(PATH)
            .header("content-type", "application/proto")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(app(ConnectOptions::default()), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(UserInfoResponse::decode(body).unwrap().subject, "alice");
    }

    #[tokio::test]
    async fn json_round_trip() {
        for body in [&b"{}"[..], b""] {
            let req = http::Request::post(PATH)
                .header("content-type", "application/json; charset=utf-8")
                .header("connect-protocol-version", "1")
                .body(Body::from(body.to_vec()))
                .unwrap();
            let (status, headers, body) = send(app(ConnectOptions::default()), req).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE_JSON);
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["subject"], "alice");
            assert_eq!(json["additional_claims"]["userhandle"], "alice-h");
            let typed: UserInfoResponse = serde_json::from_slice(&body).unwrap();
            assert_eq!(typed.preferred_username, "alice");
        }
    }

    #[tokio::test]
    async fn empty_gzip_body_and_multi_member_gzip() {
        let empty = python_client_request().body(Body::empty()).unwrap();
        let (status, _, _) = send(app(ConnectOptions::default()), empty).await;
        assert_eq!(status, StatusCode::OK);

        let mut two_members = gzip(b"{");
        two_members.extend(gzip(b"}"));
        let req = http::Request::post(PATH)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(Body::from(two_members))
            .unwrap();
        let (status, _, _) = send(app(ConnectOptions::default()), req).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn gzip_json_round_trip() {
        let body = gzip(b"{}");
        let req = http::Request::post(PATH)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(Body::from(body))
            .unwrap();
        let (status, _, _) = send(app(ConnectOptions::default()), req).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn handler_status_maps_to_connect_error() {
        let cases = [
            (Code::Cancelled, 499, "canceled"),
            (Code::Unknown, 500, "unknown"),
            (Code::InvalidArgument, 400, "invalid_argument"),
            (Code::DeadlineExceeded, 504, "deadline_exceeded"),
            (Code::NotFound, 404, "not_found"),
            (Code::AlreadyExists, 409, "already_exists"),
            (Code::PermissionDenied, 403, "permission_denied"),
            (Code::ResourceExhausted, 429, "resource_exhausted"),
            (Code::FailedPrecondition, 400, "failed_precondition"),
            (Code::Aborted, 409, "aborted"),
            (Code::OutOfRange, 400, "out_of_range"),
            (Code::Unimplemented, 501, "unimplemented"),
            (Code::Internal, 500, "internal"),
            (Code::Unavailable, 503, "unavailable"),
            (Code::DataLoss, 500, "data_loss"),
            (Code::Unauthenticated, 401, "unauthenticated"),
        ];
        for (code, http, name) in cases {
            let body = gzip(&[]);
            let req = python_client_request()
                .header("x-fail", (code as i32).to_string())
                .body(Body::from(body))
                .unwrap();
            let (status, headers, body) = send(app(ConnectOptions::default()), req).await;
            assert_eq!(status.as_u16(), http, "{code:?}");
            assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE_JSON);
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                json,
                serde_json::json!({"code": name, "message": "it failed"})
            );
            if code == Code::Unauthenticated {
                assert_eq!(headers["www-authenticate"], "Bearer");
            }
        }
    }

    #[tokio::test]
    async fn empty_message_is_omitted() {
        let req = http::Request::post(PATH)
            .header("content-type", "application/proto")
            .header("x-empty-message", "1")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(app(ConnectOptions::default()), req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(&body[..], br#"{"code":"not_found"}"#);
    }

    #[tokio::test]
    async fn wrong_method_is_405() {
        let req = http::Request::get(PATH).body(Body::empty()).unwrap();
        let (status, code, headers) = expect_error(req, ConnectOptions::default()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(code, "unimplemented");
        assert_eq!(headers[header::ALLOW], "POST");
    }

    #[tokio::test]
    async fn unsupported_content_type_is_415() {
        for ct in [
            Some("text/html"),
            Some("application/grpc+proto"),
            Some("application/json; charset=latin1"),
            None,
        ] {
            let mut req = http::Request::post(PATH);
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let req = req.body(Body::from("{}")).unwrap();
            let (status, code, headers) = expect_error(req, ConnectOptions::default()).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
            assert_eq!(code, "unimplemented");
            assert!(headers.contains_key("accept-post"));
        }
    }

    #[tokio::test]
    async fn unsupported_content_encoding_is_unimplemented() {
        let req = http::Request::post(PATH)
            .header("content-type", "application/proto")
            .header("content-encoding", "br")
            .body(Body::empty())
            .unwrap();
        let (status, code, _) = expect_error(req, ConnectOptions::default()).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(code, "unimplemented");
    }

    #[tokio::test]
    async fn wrong_protocol_version_is_invalid_argument() {
        let req = http::Request::post(PATH)
            .header("content-type", "application/proto")
            .header("connect-protocol-version", "2")
            .body(Body::empty())
            .unwrap();
        let (status, code, _) = expect_error(req, ConnectOptions::default()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(code, "invalid_argument");
    }

    #[tokio::test]
    async fn malformed_bodies_are_invalid_argument() {
        let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
            ("application/proto", None, vec![0xff, 0xff, 0xff]),
            (
                "application/proto",
                Some("gzip"),
                b"not gzip at all".to_vec(),
            ),
            ("application/json", None, b"{not json".to_vec()),
            (
                "application/json",
                None,
                vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
            ),
            ("application/json", None, b"[1, 2]".to_vec()),
            ("application/json", Some("gzip"), gzip(&[0xc3, 0x28])),
        ];
        for (ct, enc, body) in cases {
            let mut req = http::Request::post(PATH).header("content-type", ct);
            if let Some(enc) = enc {
                req = req.header("content-encoding", enc);
            }
            let req = req.body(Body::from(body)).unwrap();
            let (status, code, _) = expect_error(req, ConnectOptions::default()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{ct} {enc:?}");
            assert_eq!(code, "invalid_argument");
        }
    }

    #[tokio::test]
    async fn unknown_json_fields_are_ignored_as_proto3_json_allows() {
        // A client built from a newer schema may send fields this server does not know.
        let req = http::Request::post(PATH)
            .header("content-type", "application/json")
            .body(Body::from(br#"{"unexpected":1}"#.to_vec()))
            .unwrap();
        let (status, _, _) = send(app(ConnectOptions::default()), req).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn oversized_body_is_resource_exhausted() {
        let options = ConnectOptions {
            max_body_bytes: 1024,
        };
        // With and without a declared length: streaming bodies have none.
        let big = vec![b' '; 4096];
        let declared = http::Request::post(PATH)
            .header("content-type", "application/json")
            .header("content-length", big.len())
            .body(Body::from(big.clone()))
            .unwrap();
        let (status, code, _) = expect_error(declared, options).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(code, "resource_exhausted");

        let stream = futures_util::stream::iter(
            big.chunks(100)
                .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let streamed = http::Request::post(PATH)
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
        let (_, code, _) = expect_error(streamed, options).await;
        assert_eq!(code, "resource_exhausted");
    }

    #[tokio::test]
    async fn gzip_bomb_is_resource_exhausted() {
        // 64 MiB of zeros compresses to ~64 KiB: under the wire limit, far over the decoded one.
        let options = ConnectOptions {
            max_body_bytes: 128 * 1024,
        };
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < options.max_body_bytes);
        let req = python_client_request().body(Body::from(bomb)).unwrap();
        let (status, code, _) = expect_error(req, options).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(code, "resource_exhausted");
    }

    #[tokio::test]
    async fn timeout_header_is_enforced() {
        let req = http::Request::post(PATH)
            .header("content-type", "application/proto")
            .header("connect-timeout-ms", "20")
            .header("x-slow", "1")
            .body(Body::empty())
            .unwrap();
        let (status, code, _) = expect_error(req, ConnectOptions::default()).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(code, "deadline_exceeded");

        let bad = http::Request::post(PATH)
            .header("content-type", "application/proto")
            .header("connect-timeout-ms", "-5")
            .body(Body::empty())
            .unwrap();
        let (_, code, _) = expect_error(bad, ConnectOptions::default()).await;
        assert_eq!(code, "invalid_argument");
    }

    #[tokio::test]
    async fn unknown_procedure_is_404_unimplemented() {
        let req = http::Request::post("/flyteidl2.auth.IdentityService/Nope")
            .header("content-type", "application/proto")
            .body(Body::empty())
            .unwrap();
        let (status, code, _) = expect_error(req, ConnectOptions::default()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(code, "unimplemented");
    }

    #[test]
    fn content_type_parsing() {
        assert_eq!(
            Codec::from_content_type("application/proto"),
            Some(Codec::Proto)
        );
        assert_eq!(
            Codec::from_content_type("Application/JSON;charset=\"UTF-8\""),
            Some(Codec::Json)
        );
        assert_eq!(Codec::from_content_type("application/protobuf"), None);
        assert_eq!(Codec::from_content_type(""), None);
    }
}
