//! Prometheus metrics: one process-wide recorder, rendered by the `/metrics` handler.
//!
//! The recorder is installed once per process ([`install`] is idempotent), which lets tests
//! build many apps in one binary. No exporter listener is started; the app serves [`render`].
//!
//! Metric names:
//! * `flyteauth_http_requests_total{route,method,status}` and
//!   `flyteauth_http_request_duration_seconds{route,method}` (histogram) from [`track`];
//! * `flyteauth_tokens_issued_total{grant,outcome}` from [`token_issued`];
//! * `flyteauth_token_validation_failures_total{reason}` from [`validation_failed`];
//! * `flyteauth_external_fetches_total{document,outcome}` from [`external_fetch`].

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request counter name.
pub const HTTP_REQUESTS: &str = "flyteauth_http_requests_total";
/// Request latency histogram name (seconds).
pub const HTTP_DURATION: &str = "flyteauth_http_request_duration_seconds";
/// Issued-token counter name.
pub const TOKENS_ISSUED: &str = "flyteauth_tokens_issued_total";
/// Failed-validation counter name.
pub const VALIDATION_FAILURES: &str = "flyteauth_token_validation_failures_total";
/// Counter: sign-in attempts on the login page, by outcome.
pub const LOGINS: &str = "flyteauth_logins_total";
/// Counter: fetches from the upstream identity provider, by document (`discovery`, `jwks`).
pub const FEDERATION_FETCHES: &str = "flyteauth_federation_fetches_total";
/// Counter: failed requests to the upstream identity provider.
pub const FEDERATION_FAILURES: &str = "flyteauth_federation_failures_total";
/// Counter: revocations, by what was revoked.
pub const REVOCATIONS: &str = "flyteauth_revocations_total";
/// Counter: fetches from the external authorization server, by document (`metadata`, `jwks`) and outcome
/// (`ok`, `error`).
pub const EXTERNAL_FETCHES: &str = "flyteauth_external_fetches_total";
/// Counter of attempts refused by a rate limit, by kind (`client_auth`, `login`) and reason (`address`,
/// `client_and_address`).
pub const RATE_LIMITED: &str = "flyteauth_rate_limited_total";
/// Counter of secret checks refused because the hashing queue was full.
pub const HASHING_REFUSED: &str = "flyteauth_hashing_refused_total";
/// Counter: gRPC calls by `method` (`/package.Service/Method`) and `code` (`OK`, `UNAUTHENTICATED`, …).
pub const GRPC_REQUESTS: &str = "flyteauth_grpc_requests_total";
/// Histogram: gRPC call latency by `method` (seconds, until the status is known).
pub const GRPC_DURATION: &str = "flyteauth_grpc_request_duration_seconds";

/// `route` label of requests that matched no route, so unknown paths cannot add label values.
pub const UNMATCHED_ROUTE: &str = "unmatched";

// Auth endpoints answer in micro- to milliseconds; the upper buckets catch store stalls.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

// Histogram samples pile up in the recorder until drained, so drain them even if nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Errors of the metrics setup.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A different global `metrics` recorder was installed first; ours only sees nothing.
    #[error("another global metrics recorder is already installed")]
    ForeignRecorder,
}

struct Installed {
    handle: PrometheusHandle,
    global: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

fn installed() -> &'static Installed {
    INSTALLED.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let recorder = match builder
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(GRPC_DURATION.to_owned()), LATENCY_BUCKETS)
            }) {
            Ok(builder) => builder.build_recorder(),
            // Only an empty bucket list is rejected; fall back to the default summary.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        let global = metrics::set_global_recorder(recorder).is_ok();
        if global {
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "metrics upkeep thread not started");
            }
            describe();
        }
        Installed { handle, global }
    })
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency by route and method"
    );
    metrics::describe_counter!(GRPC_REQUESTS, "gRPC calls by method and status code");
    metrics::describe_histogram!(
        GRPC_DURATION,
        metrics::Unit::Seconds,
        "gRPC call latency by method"
    );
    metrics::describe_counter!(TOKENS_ISSUED, "Token requests by grant type and outcome");
    metrics::describe_counter!(VALIDATION_FAILURES, "Rejected access tokens by reason");
    metrics::describe_counter!(
        FEDERATION_FETCHES,
        "Documents fetched from the upstream identity provider"
    );
    metrics::describe_counter!(
        FEDERATION_FAILURES,
        "Failed requests to the upstream identity provider"
    );
    metrics::describe_counter!(LOGINS, "Sign-in attempts on the login page by outcome");
    metrics::describe_counter!(REVOCATIONS, "Revocations by what was revoked");
    metrics::describe_counter!(
        EXTERNAL_FETCHES,
        "Documents fetched from the external authorization server by document and outcome"
    );
    metrics::describe_counter!(
        RATE_LIMITED,
        "Attempts refused by a rate limit on failed authentications, by kind and reason"
    );
    metrics::describe_counter!(
        HASHING_REFUSED,
        "Secret checks refused because the hashing queue was full"
    );
}

/// Installs the process-wide Prometheus recorder; later calls are no-ops.
///
/// Fails if some other recorder won the global slot, in which case [`render`] stays empty.
pub fn install() -> Result<(), MetricsError> {
    if installed().global {
        Ok(())
    } else {
        Err(MetricsError::ForeignRecorder)
    }
}

/// The current metrics in the Prometheus text format (installs the recorder if needed).
pub fn render() -> String {
    installed().handle.render()
}

/// Axum handler for `GET /metrics`.
pub async fn handler() -> Response {
    let mut response = Response::new(axum::body::Body::from(render()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Axum middleware counting requests and timing them, labelled by the matched route template.
///
/// Install with `router.layer(axum::middleware::from_fn(metrics::track))` so it runs after
/// routing and sees [`MatchedPath`]; the raw path is never used as a label.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route: Cow<'static, str> = match request.extensions().get::<MatchedPath>() {
        Some(path) => Cow::Owned(path.as_str().to_owned()),
        None => Cow::Borrowed(UNMATCHED_ROUTE),
    };
    let method = method_label(request.method());
    let response = next.run(request).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = status_label(response.status());
    metrics::histogram!(HTTP_DURATION, "route" => route.clone(), "method" => method)
        .record(elapsed);
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// Counts one token request (`grant`: e.g. `"client_credentials"`; `outcome`: e.g. `"issued"`,
/// `"invalid_client"`).
pub fn token_issued(grant: &'static str, outcome: &'static str) {
    metrics::counter!(TOKENS_ISSUED, "grant" => grant, "outcome" => outcome).increment(1);
}

/// Counts one sign-in attempt on the login page (`outcome`: `success`, `wrong_password`, `unknown_user`,
/// `disabled`).
pub fn login(outcome: &'static str) {
    metrics::counter!(LOGINS, "outcome" => outcome).increment(1);
}

/// Counts one fetch of `what` (`discovery`, `jwks`) from the upstream identity provider.
pub fn federation_fetch(what: &'static str) {
    metrics::counter!(FEDERATION_FETCHES, "what" => what).increment(1);
}

/// Counts one failed request to the upstream identity provider.
pub fn federation_failure() {
    metrics::counter!(FEDERATION_FAILURES).increment(1);
}

/// Counts one revocation (`what`: `access_token`, `refresh_family`, `reuse_detected`, `code_replay`).
pub fn revoked(what: &'static str) {
    metrics::counter!(REVOCATIONS, "what" => what).increment(1);
}

/// Counts one fetch of `document` (`metadata`, `jwks`) from the external authorization server (`outcome`: `ok`,
/// `error`).
pub fn external_fetch(document: &'static str, outcome: &'static str) {
    metrics::counter!(EXTERNAL_FETCHES, "document" => document, "outcome" => outcome).increment(1);
}

/// Counts one attempt refused by a rate limit (`kind`: `client_auth`, `login`; `reason`: `address`,
/// `client_and_address`).
pub fn rate_limited(kind: &'static str, reason: &'static str) {
    metrics::counter!(RATE_LIMITED, "kind" => kind, "reason" => reason).increment(1);
}

/// Counts one secret check refused because the hashing queue was full.
pub fn hashing_refused() {
    metrics::counter!(HASHING_REFUSED).increment(1);
}

/// Counts one rejected access token (`reason`: a snake_case validation error).
pub fn validation_failed(reason: &'static str) {
    metrics::counter!(VALIDATION_FAILURES, "reason" => reason).increment(1);
}

/// Axum middleware for the gRPC routes: counts each call by method and gRPC status code, and times it.
///
/// The status is in the response headers of a trailers-only answer (tonic's errors), else in the trailers
/// after the message, so the body is watched until they pass. A call whose answer is dropped before its
/// status counts as `CANCELLED`. Unknown services and methods are counted under [`UNMATCHED_ROUTE`], so
/// client-chosen paths cannot add label values.
pub async fn track_grpc(request: Request, next: Next) -> Response {
    let call = GrpcCall {
        start: Instant::now(),
        matched: request.extensions().get::<MatchedPath>().is_some(),
        path: request.uri().path().to_owned(),
    };
    let response = next.run(request).await;
    if let Some(code) = response.headers().get(GRPC_STATUS) {
        let code = grpc_code_name(code.as_bytes());
        call.record(code);
        return response;
    }
    let (parts, body) = response.into_parts();
    let watched = GrpcStatusBody {
        inner: body,
        call: Some(call),
    };
    Response::from_parts(parts, axum::body::Body::new(watched))
}

const GRPC_STATUS: &str = "grpc-status";

struct GrpcCall {
    start: Instant,
    matched: bool,
    path: String,
}

impl GrpcCall {
    fn record(self, code: &'static str) {
        let method: Cow<'static, str> = if self.matched && code != "UNIMPLEMENTED" {
            Cow::Owned(self.path)
        } else {
            Cow::Borrowed(UNMATCHED_ROUTE)
        };
        metrics::histogram!(GRPC_DURATION, "method" => method.clone())
            .record(self.start.elapsed().as_secs_f64());
        metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => code).increment(1);
    }
}

/// A gRPC response body that records its call once the `grpc-status` trailer passes (or the body ends or is
/// dropped without one).
struct GrpcStatusBody {
    inner: axum::body::Body,
    call: Option<GrpcCall>,
}

impl http_body::Body for GrpcStatusBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = this.call.take()
                {
                    let code = trailers
                        .get(GRPC_STATUS)
                        .map_or("UNKNOWN", |c| grpc_code_name(c.as_bytes()));
                    call.record(code);
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.record("UNKNOWN");
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.record("INTERNAL");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GrpcStatusBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.record("CANCELLED");
        }
    }
}

/// The canonical name of a `grpc-status` value; anything unrecognised is `UNKNOWN`.
fn grpc_code_name(value: &[u8]) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("UNKNOWN")
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        // Extension methods are client-chosen strings: fold them into one label value.
        _ => "other",
    }
}

fn status_label(status: StatusCode) -> Cow<'static, str> {
    let label = match status.as_u16() {
        200 => "200",
        204 => "204",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        415 => "415",
        429 => "429",
        500 => "500",
        501 => "501",
        503 => "503",
        other => return Cow::Owned(other.to_string()),
    };
    Cow::Borrowed(label)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    fn app() -> Router {
        Router::new()
            .route("/users/{id}", get(|| async { "hi" }))
            .route("/metrics", get(handler))
            .layer(axum::middleware::from_fn(track))
    }

    async fn hit(app: Router, path: &str) -> Response {
        app.oneshot(http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn requests_are_labelled_by_route_template() {
        install().unwrap();
        // Two independently built apps share the one recorder.
        hit(app(), "/users/alice").await;
        hit(app(), "/users/bob").await;
        hit(app(), "/does-not-exist-7f3a").await;
        token_issued("client_credentials", "issued");
        validation_failed("expired");

        let resp = hit(app(), "/metrics").await;
        assert!(
            resp.headers()[http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = render();
        assert!(
            text.contains(
                r#"flyteauth_http_requests_total{route="/users/{id}",method="GET",status="200"}"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"route="unmatched""#), "{text}");
        assert!(!text.contains("alice"));
        assert!(!text.contains("7f3a"));
        assert!(text.contains("flyteauth_http_request_duration_seconds_bucket"));
        assert!(text.contains(
            r#"flyteauth_tokens_issued_total{grant="client_credentials",outcome="issued"}"#
        ));
        assert!(text.contains(r#"flyteauth_token_validation_failures_total{reason="expired"}"#));
    }

    #[test]
    fn grpc_codes_have_their_canonical_names() {
        assert_eq!(grpc_code_name(b"0"), "OK");
        assert_eq!(grpc_code_name(b"16"), "UNAUTHENTICATED");
        assert_eq!(grpc_code_name(b"17"), "UNKNOWN");
        assert_eq!(grpc_code_name(b"x"), "UNKNOWN");
    }

    #[test]
    fn labels_are_bounded() {
        let ext = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&ext), "other");
        assert_eq!(status_label(StatusCode::OK), "200");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "418");
    }
}
