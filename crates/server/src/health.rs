//! Liveness and readiness: the gRPC health service and the HTTP probes.
//!
//! * `grpc.health.v1.Health` (tonic-health) for gRPC-aware probes and load balancers;
//! * `GET /healthz` — 200 whenever the process serves requests (liveness);
//! * `GET /healthcheck` — the same, under the path flyteadmin exposes;
//! * `GET /readyz` — 200 or 503 from a readiness check (the store ping and, in External mode, whether the
//!   external authorization server's metadata and keys were fetched), bounded by a timeout. The body is JSON:
//!   `{"status":"ready"}`, `{"status":"degraded", …}` (200: serving from the last good copy of something that
//!   failed to refresh) or `{"status":"not_ready", …}` (503), with what it is about.

use std::fmt::Display;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
pub use tonic_health::ServingStatus;
pub use tonic_health::pb::health_server::HealthServer;
pub use tonic_health::server::{HealthReporter, HealthService};

/// How long `/readyz` waits for the readiness check before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The gRPC health service and the reporter that flips its statuses.
///
/// The overall status (service name `""`) starts as `SERVING`.
pub fn grpc_service() -> (HealthReporter, HealthServer<HealthService>) {
    let reporter = HealthReporter::new();
    let service = HealthService::from_health_reporter(reporter.clone());
    (reporter, HealthServer::new(service))
}

/// Routes `/healthz`, `/healthcheck` and `/readyz`, to be merged into the application router.
///
/// `ready` is called per `/readyz` request; an `Err` or a check slower than [`READY_TIMEOUT`]
/// answers 503. The error is logged, never sent: probes are often reachable from outside.
pub fn router<S, F, Fut, E>(ready: F) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    router_with_timeout(ready, READY_TIMEOUT)
}

/// [`router`] with another bound on the readiness check.
pub fn router_with_timeout<S, F, Fut, E>(ready: F, timeout: Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let check = move || {
        let outcome = ready();
        async move {
            match outcome.await {
                Ok(()) => Readiness::Ready(json!({})),
                Err(err) => {
                    tracing::warn!(error = %err, "readiness check failed");
                    Readiness::NotReady(json!({}))
                }
            }
        }
    };
    report_router(check, timeout)
}

/// What a readiness check found; the JSON object (may be `{}`) is merged into the `/readyz` body after
/// `status`. Probes are often reachable from outside: it must name what is wrong, never a secret.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// 200 `{"status":"ready"}`.
    Ready(Value),
    /// 200 `{"status":"degraded"}`: serving, from the last good copy of something that failed to refresh.
    Degraded(Value),
    /// 503 `{"status":"not_ready"}`.
    NotReady(Value),
}

/// Routes `/healthz`, `/healthcheck` and `/readyz` where `check` decides the readiness answer.
pub fn report_router<S, F, Fut>(check: F, timeout: Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Readiness> + Send + 'static,
{
    Router::new()
        .route("/healthz", get(alive))
        .route("/healthcheck", get(alive))
        .route("/readyz", get(move || readiness(check.clone(), timeout)))
}

/// The probes of a server: the store answers a ping and, in External mode, the external authorization server's
/// documents were fetched ([`crate::external::ExternalAuthority::readiness`]).
pub fn for_state<S>(state: crate::state::AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let check = move || {
        let state = state.clone();
        async move {
            if let Err(err) = state.store.ping().await {
                tracing::warn!(error = %err, "readiness check failed: the database does not answer");
                return Readiness::NotReady(json!({"database": "not reachable"}));
            }
            match &state.external {
                Some(external) => external.readiness(),
                None => Readiness::Ready(json!({})),
            }
        }
    };
    report_router(check, READY_TIMEOUT)
}

/// Makes the gRPC health service of a server follow its readiness (External mode: `NOT_SERVING` until the
/// external authorization server's documents were fetched).
pub fn follow_readiness(state: &crate::state::AppState, reporter: HealthReporter) {
    if let Some(external) = &state.external {
        external.add_health_reporter(reporter);
    }
}

async fn alive() -> Response {
    plain(StatusCode::OK, "ok\n")
}

async fn readiness<F, Fut>(check: F, timeout: Duration) -> Response
where
    F: Fn() -> Fut,
    Fut: Future<Output = Readiness>,
{
    let (status, label, detail) = match tokio::time::timeout(timeout, check()).await {
        Ok(Readiness::Ready(detail)) => (StatusCode::OK, "ready", detail),
        Ok(Readiness::Degraded(detail)) => (StatusCode::OK, "degraded", detail),
        Ok(Readiness::NotReady(detail)) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail),
        Err(_) => {
            tracing::warn!(?timeout, "readiness check timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                json!({"reason": "the readiness check timed out"}),
            )
        }
    };
    let mut body = serde_json::Map::new();
    body.insert("status".into(), Value::from(label));
    if let Value::Object(detail) = detail {
        body.extend(detail);
    }
    let mut response = (status, axum::Json(Value::Object(body))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::ServiceExt as _;

    async fn get_status(app: &Router, path: &str) -> (StatusCode, String) {
        let req = http::Request::get(path).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn probes_follow_the_readiness_check() {
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        let app: Router = router(move || {
            let flag = Arc::clone(&flag);
            async move {
                if flag.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("database is down: password=hunter2")
                }
            }
        });
        assert_eq!(get_status(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get_status(&app, "/healthcheck").await.0, StatusCode::OK);
        assert_eq!(get_status(&app, "/readyz").await.0, StatusCode::OK);

        up.store(false, Ordering::SeqCst);
        let (status, body) = get_status(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.contains("hunter2"));
        // Liveness does not depend on the store.
        assert_eq!(get_status(&app, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn readiness_reports_are_json_with_their_detail() {
        for (report, status, label) in [
            (Readiness::Ready(json!({})), StatusCode::OK, "ready"),
            (
                Readiness::Degraded(json!({"external": {"last_error": "jwks: HTTP 500"}})),
                StatusCode::OK,
                "degraded",
            ),
            (
                Readiness::NotReady(json!({"external": {"metadata_age_secs": null}})),
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
            ),
        ] {
            let expected = report.clone();
            let app: Router = report_router(
                move || {
                    let report = report.clone();
                    async move { report }
                },
                READY_TIMEOUT,
            );
            let (got, body) = get_status(&app, "/readyz").await;
            assert_eq!(got, status, "{expected:?}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["status"], label);
            if let Readiness::Degraded(detail) | Readiness::NotReady(detail) = expected {
                assert_eq!(body["external"], detail["external"]);
            }
        }
    }

    #[tokio::test]
    async fn slow_readiness_check_is_503() {
        let check = || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), String>(())
        };
        let app: Router = router_with_timeout(check, Duration::from_millis(50));
        assert_eq!(
            get_status(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn grpc_reporter_flips_status() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
        use tonic_health::pb::health_server::Health as _;
        let (reporter, _server) = grpc_service();
        let service = HealthService::from_health_reporter(reporter.clone());
        let check = |name: &str| {
            tonic::Request::new(HealthCheckRequest {
                service: name.into(),
            })
        };
        let resp = service.check(check("")).await.unwrap().into_inner();
        assert_eq!(resp.status, WireStatus::Serving as i32);
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let resp = service.check(check("")).await.unwrap().into_inner();
        assert_eq!(resp.status, WireStatus::NotServing as i32);
    }
}
