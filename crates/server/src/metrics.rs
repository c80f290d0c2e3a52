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
//! * `flyteauth_external_fetches_total{document,outcome}` from [`external_fetch`];
//! * `flyteauth_credential_events_total{kind,outcome}` from [`credential_event`] (every audit event);
//! * `flyteauth_audit_queue_depth` (gauge), `flyteauth_audit_batch_size` (histogram) and
//!   `flyteauth_audit_write_failures_total` from the audit writer.
//!
//! The per-request metrics ([`track`], [`track_grpc`], [`token_issued`], [`credential_event`]) resolve their
//! handles once per label set and keep them: the `metrics` macros build (and allocate) a label list on every call
//! whose label values are not literals, which is measurable on paths that answer in microseconds.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode};
use metrics::{Counter, Histogram};
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

/// Counter: audit events, by `kind` (`token.issued`, `login.failed`, …) and `outcome`; counted as they are
/// handed to the writer.
pub const CREDENTIAL_EVENTS: &str = "flyteauth_credential_events_total";
/// Gauge: audit events waiting for the writer.
pub const AUDIT_QUEUE_DEPTH: &str = "flyteauth_audit_queue_depth";
/// Histogram: audit events per transaction of the writer.
pub const AUDIT_BATCH_SIZE: &str = "flyteauth_audit_batch_size";
/// Counter: failed transactions of the audit writer (each is retried).
pub const AUDIT_WRITE_FAILURES: &str = "flyteauth_audit_write_failures_total";

/// `route` label of requests that matched no route, so unknown paths cannot add label values.
pub const UNMATCHED_ROUTE: &str = "unmatched";

// Auth endpoints answer in micro- to milliseconds; the upper buckets catch store stalls.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

// Events per audit transaction: one at idle, up to the writer's batch limit (512) under load.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

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
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(AUDIT_BATCH_SIZE.to_owned()), BATCH_BUCKETS)
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
    metrics::describe_counter!(
        CREDENTIAL_EVENTS,
        "Audit events (credential events) by kind and outcome"
    );
    metrics::describe_gauge!(
        AUDIT_QUEUE_DEPTH,
        "Audit events waiting to be written, after the writer's last take"
    );
    metrics::describe_histogram!(AUDIT_BATCH_SIZE, "Audit events per database transaction");
    metrics::describe_counter!(
        AUDIT_WRITE_FAILURES,
        "Failed audit transactions (each is retried with back-off)"
    );
}

/// Whether our recorder is the global one: only then are handles worth keeping (a handle resolved before it was
/// installed counts into nothing, forever).
fn recorder_installed() -> bool {
    INSTALLED.get().is_some_and(|i| i.global)
}

/// Handles kept per key at most, per cache; label values come from fixed sets (route templates, methods,
/// status codes, grant names), so this is only a backstop.
const MAX_CACHED_HANDLES: usize = 4_096;

/// Metric handles resolved once per key and then reused.
struct Handles<K, H> {
    map: RwLock<HashMap<K, H>>,
}

impl<K: Eq + Hash, H: Clone> Handles<K, H> {
    fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The handle of `key`, made by `make` (and kept) the first time.
    fn get(&self, key: K, make: impl FnOnce() -> H) -> H {
        if let Some(handle) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return handle.clone();
        }
        let handle = make();
        if recorder_installed() {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            if map.len() < MAX_CACHED_HANDLES {
                map.entry(key).or_insert_with(|| handle.clone());
            }
        }
        handle
    }
}

/// Route templates and gRPC method paths seen so far, each kept once for the life of the process, so a label
/// is a `&'static str` that costs nothing per request. Only registered routes and methods that exist get in
/// (see [`track`] and [`track_grpc`]), a fixed set; [`MAX_INTERNED`] is a backstop.
static INTERNED: LazyLock<RwLock<HashSet<&'static str>>> =
    LazyLock::new(|| RwLock::new(HashSet::new()));

/// Route and method labels kept at most; past it new ones are counted as [`UNMATCHED_ROUTE`].
const MAX_INTERNED: usize = 1_024;

fn interned(path: &str) -> Option<&'static str> {
    INTERNED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
        .copied()
}

fn intern(path: &str) -> &'static str {
    if let Some(known) = interned(path) {
        return known;
    }
    let mut set = INTERNED.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = set.get(path) {
        return known;
    }
    if set.len() >= MAX_INTERNED {
        return UNMATCHED_ROUTE;
    }
    // Leaked on purpose: one small string per route of the process, alive as long as the metrics are.
    let kept: &'static str = Box::leak(path.to_owned().into_boxed_str());
    set.insert(kept);
    kept
}

/// A latency histogram and a counter of one label set.
type Timed = (Histogram, Counter);

/// The handles of [`track`] by (route, method, status).
static HTTP_HANDLES: LazyLock<Handles<(&'static str, &'static str, u16), Timed>> =
    LazyLock::new(Handles::new);

/// The handles of [`track_grpc`] by (method, code).
static GRPC_HANDLES: LazyLock<Handles<(&'static str, &'static str), Timed>> =
    LazyLock::new(Handles::new);

/// Counters with one or two labels by (name, first value, second value or ""); the label names follow from the
/// name.
static COUNTERS: LazyLock<Handles<(&'static str, &'static str, &'static str), Counter>> =
    LazyLock::new(Handles::new);

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
    // A matched path is a route template, one of a fixed set: safe to keep.
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => intern(path.as_str()),
        None => UNMATCHED_ROUTE,
    };
    let method = method_label(request.method());
    let response = next.run(request).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = response.status();
    let (duration, requests) = HTTP_HANDLES.get((route, method, status.as_u16()), || {
        (
            metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method),
            metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status_label(status)),
        )
    });
    duration.record(elapsed);
    requests.increment(1);
    response
}

/// Counts one token request (`grant`: e.g. `"client_credentials"`; `outcome`: e.g. `"issued"`,
/// `"invalid_client"`).
pub fn token_issued(grant: &'static str, outcome: &'static str) {
    COUNTERS
        .get(
            (TOKENS_ISSUED, grant, outcome),
            || metrics::counter!(TOKENS_ISSUED, "grant" => grant, "outcome" => outcome),
        )
        .increment(1);
}

/// Counts one audit event (`kind`: e.g. `"token.issued"`; `outcome`: `"success"`, `"failure"`).
pub fn credential_event(kind: &'static str, outcome: &'static str) {
    COUNTERS
        .get(
            (CREDENTIAL_EVENTS, kind, outcome),
            || metrics::counter!(CREDENTIAL_EVENTS, "kind" => kind, "outcome" => outcome),
        )
        .increment(1);
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
    // A flood of bad tokens is a hot path too.
    COUNTERS
        .get(
            (VALIDATION_FAILURES, reason, ""),
            || metrics::counter!(VALIDATION_FAILURES, "reason" => reason),
        )
        .increment(1);
}

/// Axum middleware for the gRPC routes: counts each call by method and gRPC status code, and times it.
///
/// The status is in the response headers of a trailers-only answer (tonic's errors), else in the trailers
/// after the message, so the body is watched until they pass. A call whose answer is dropped before its
/// status counts as `CANCELLED`. Unknown services and methods are counted under [`UNMATCHED_ROUTE`], so
/// client-chosen paths cannot add label values.
pub async fn track_grpc(request: Request, next: Next) -> Response {
    let method = if request.extensions().get::<MatchedPath>().is_some() {
        let path = request.uri().path();
        // Copied only the first time a method is called; after that its label is kept.
        interned(path).map_or_else(|| GrpcMethod::New(path.to_owned()), GrpcMethod::Known)
    } else {
        GrpcMethod::Unmatched
    };
    let call = GrpcCall {
        start: Instant::now(),
        method,
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

/// The `method` label of a gRPC call, as far as it is known when the call starts.
enum GrpcMethod {
    /// No service matched the path.
    Unmatched,
    /// A method whose label is kept already.
    Known(&'static str),
    /// A path under a known service seen for the first time: kept only if the service has such a method (its
    /// answer is not `UNIMPLEMENTED`), so made-up method names add no label values.
    New(String),
}

struct GrpcCall {
    start: Instant,
    method: GrpcMethod,
}

impl GrpcCall {
    fn record(self, code: &'static str) {
        let method = match self.method {
            _ if code == "UNIMPLEMENTED" => UNMATCHED_ROUTE,
            GrpcMethod::Unmatched => UNMATCHED_ROUTE,
            GrpcMethod::Known(method) => method,
            GrpcMethod::New(path) => intern(&path),
        };
        let (duration, calls) = GRPC_HANDLES.get((method, code), || {
            (
                metrics::histogram!(GRPC_DURATION, "method" => method),
                metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => code),
            )
        });
        duration.record(self.start.elapsed().as_secs_f64());
        calls.increment(1);
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
