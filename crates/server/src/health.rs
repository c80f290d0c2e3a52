//! Liveness and readiness: the gRPC health service and the HTTP probes.
//!
//! * `grpc.health.v1.Health` (tonic-health) for gRPC-aware probes and load balancers;
//! * `GET /healthz` — 200 whenever the process serves requests (liveness);
//! * `GET /healthcheck` — the same, under the path flyteadmin exposes;
//! * `GET /readyz` — 200 or 503 from a readiness check (the store ping and, in External mode, whether the
//!   external authorization server's metadata and keys were fetched), bounded by a timeout. The body is JSON:
//!   `{"status":"ready"}`, `{"status":"degraded", …}` (200: serving from the last good copy of something that
//!   failed to refresh) or `{"status":"not_ready", …}` (503), with what it is about.
//!
//! The gRPC health service answers what `/readyz` would: a background task re-runs the same check every
//! [`FOLLOW_INTERVAL`] ([`follow_readiness`]).

use std::fmt::Display;
use std::sync::Arc;
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
    report_router(move || check_state(state.clone()), READY_TIMEOUT)
}

/// The readiness check of a server, shared by `/readyz` and the gRPC health service.
async fn check_state(state: crate::state::AppState) -> Readiness {
    if let Err(err) = state.store.ping().await {
        tracing::warn!(error = %err, "readiness check failed: the database does not answer");
        return Readiness::NotReady(json!({"database": "not reachable"}));
    }
    match &state.external {
        Some(external) => external.readiness(),
        None => Readiness::Ready(json!({})),
    }
}

/// How often the gRPC health service re-runs the readiness check of `/readyz`.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps a readiness poller ([`follow`]) running; the poller stops once this and every clone are dropped.
#[derive(Debug, Clone)]
pub struct Following {
    // Never sent on: its drop is what the poller waits for.
    _alive: Arc<tokio::sync::oneshot::Sender<()>>,
}

/// Makes the gRPC health service of a server answer what `/readyz` would, for the overall status `""` and each of
/// `services`: `SERVING` while the server is ready (degraded included), `NOT_SERVING` while it is not (the store
/// does not answer, or in External mode the external authorization server's documents were never fetched).
///
/// The poller holds the state weakly and ends when the returned handle is dropped, so it ends with the server
/// whose routes own the handle. Needs a Tokio runtime.
pub fn follow_readiness(
    state: &crate::state::AppState,
    reporter: HealthReporter,
    services: &[&str],
) -> Following {
    let weak = state.downgrade();
    let check = move || {
        let state = weak.upgrade();
        async move {
            match state {
                Some(state) => check_state(state).await,
                None => Readiness::NotReady(json!({})),
            }
        }
    };
    follow(reporter, services, check, FOLLOW_INTERVAL)
}

/// Sets the gRPC health status of `""` and `services` from `check` at once and then every `interval`, until the
/// returned handle is dropped. A check slower than [`READY_TIMEOUT`] counts as not ready, as on `/readyz`.
pub fn follow<F, Fut>(
    reporter: HealthReporter,
    services: &[&str],
    check: F,
    interval: Duration,
) -> Following
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Readiness> + Send + 'static,
{
    let (alive, mut ended) = tokio::sync::oneshot::channel::<()>();
    let names: Vec<String> = std::iter::once(String::new())
        .chain(services.iter().map(|name| (*name).to_owned()))
        .collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = None;
        loop {
            tokio::select! {
                _ = &mut ended => break,
                _ = tick.tick() => {}
            }
            let status = match bounded(check(), READY_TIMEOUT).await {
                Readiness::Ready(_) | Readiness::Degraded(_) => ServingStatus::Serving,
                Readiness::NotReady(_) => ServingStatus::NotServing,
            };
            if reported == Some(status) {
                continue;
            }
            if reported.is_some() {
                tracing::info!(?status, "gRPC health status changed with readiness");
            }
            for name in &names {
                reporter.set_service_status(name, status).await;
            }
            reported = Some(status);
        }
    });
    Following {
        _alive: Arc::new(alive),
    }
}

/// `check`, or not ready once it has taken `timeout`.
async fn bounded(check: impl Future<Output = Readiness>, timeout: Duration) -> Readiness {
    match tokio::time::timeout(timeout, check).await {
        Ok(readiness) => readiness,
        Err(_) => {
            tracing::warn!(?timeout, "readiness check timed out");
            Readiness::NotReady(json!({"reason": "the readiness check timed out"}))
        }
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
    let (status, label, detail) = match bounded(check(), timeout).await {
        Readiness::Ready(detail) => (StatusCode::OK, "ready", detail),
        Readiness::Degraded(detail) => (StatusCode::OK, "degraded", detail),
        Readiness::NotReady(detail) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail),
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
    async fn grpc_health_follows_the_readiness_check_until_the_handle_is_dropped() {
        use std::sync::atomic::AtomicUsize;
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
        use tonic_health::pb::health_server::Health as _;
        let up = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicUsize::new(0));
        let (flag, counter) = (Arc::clone(&up), Arc::clone(&calls));
        let check = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let ready = flag.load(Ordering::SeqCst);
            async move {
                if ready {
                    Readiness::Degraded(json!({}))
                } else {
                    Readiness::NotReady(json!({}))
                }
            }
        };
        let reporter = HealthReporter::new();
        let service = HealthService::from_health_reporter(reporter.clone());
        let handle = follow(
            reporter,
            &["flyteidl.service.IdentityService"],
            check,
            Duration::from_millis(20),
        );
        let status_of = async |name: &str| {
            let request = tonic::Request::new(HealthCheckRequest {
                service: name.into(),
            });
            service.check(request).await.map(|r| r.into_inner().status)
        };
        let wait_for = async |want: WireStatus| {
            for _ in 0..250 {
                let both = (
                    status_of("").await.ok(),
                    status_of("flyteidl.service.IdentityService").await.ok(),
                );
                if both == (Some(want as i32), Some(want as i32)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the health statuses never became {want:?}");
        };
        // Degraded still serves, as /readyz answers 200 for it.
        wait_for(WireStatus::Serving).await;
        up.store(false, Ordering::SeqCst);
        wait_for(WireStatus::NotServing).await;
        up.store(true, Ordering::SeqCst);
        wait_for(WireStatus::Serving).await;
        // Services nobody named stay unknown.
        assert_eq!(
            status_of("no.such.Service").await.unwrap_err().code(),
            tonic::Code::NotFound
        );

        drop(handle);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after_drop = calls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after_drop,
            "the poller outlived its handle"
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
