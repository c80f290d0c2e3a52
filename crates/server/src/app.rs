//! The routes: one table of every endpoint, grouped so later capabilities (login pages, ingress
//! endpoints, API keys) slot in as new groups.

use crate::dispatch::Dispatch;
use crate::state::AppState;
use crate::{connect, grpc, health, http_api, metrics, oauth, rpc, web};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The OAuth 2.0 authorization server endpoints and discovery documents; bodies over `max_body_bytes` (or
/// [`oauth::MAX_TOKEN_REQUEST_BYTES`], whichever is smaller) get 413.
fn oauth_routes(max_body_bytes: usize) -> Router<AppState> {
    let limit = DefaultBodyLimit::max(oauth::MAX_TOKEN_REQUEST_BYTES.min(max_body_bytes));
    Router::new()
        .route(
            "/oauth2/token",
            post(oauth::token::token)
                .fallback(oauth::post_only)
                .layer(limit),
        )
        .route("/oauth2/authorize", get(oauth::authorize::authorize))
        .route(
            "/oauth2/device/code",
            post(oauth::device::device_authorization)
                .fallback(oauth::post_only)
                .layer(limit),
        )
        .route(
            "/oauth2/revoke",
            post(oauth::revoke::revoke)
                .fallback(oauth::post_only)
                .layer(limit),
        )
        .route(
            "/oauth2/introspect",
            post(oauth::introspect::introspect)
                .fallback(oauth::post_only)
                .layer(limit),
        )
        .route(
            "/oauth2/userinfo",
            get(oauth::userinfo::userinfo).post(oauth::userinfo::userinfo),
        )
        .route("/oauth2/jwks", get(oauth::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::server_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(oauth::server_metadata),
        )
}

/// Runs the rest of the request on a task of its own, so a client that disconnects cannot cancel it half-way.
///
/// The OAuth and browser routes write to the store (redeeming a code, rotating a refresh token, starting a
/// session). Dropping such a request in the middle of a database transaction would leave the work half done,
/// and with SQLite it can leave the pooled connection unusable (sqlx cannot clean up a transaction whose
/// `BEGIN` was interrupted). Read-only routes (`/me`, the RPCs) do not pay for the extra task.
async fn run_to_completion(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a request task failed");
            crate::error::oauth_error_response(
                flyteauth_core::oauth::ErrorCode::ServerError,
                "the server could not complete the request",
            )
        }
    }
}

/// The browser routes of the embedded identity provider.
fn web_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/login",
            get(web::login::show)
                .post(web::login::submit)
                .layer(DefaultBodyLimit::max(web::login::MAX_LOGIN_FORM_BYTES)),
        )
        .route("/logout", get(web::login::logout))
        .route("/login/federated", get(web::federated::start))
        .route(
            "/callback",
            get(web::federated::callback)
                .post(web::federated::callback)
                .layer(DefaultBodyLimit::max(
                    web::federated::MAX_CALLBACK_FORM_BYTES,
                )),
        )
        .route(
            "/activate",
            get(web::activate::show)
                .post(web::activate::decide)
                .layer(DefaultBodyLimit::max(
                    web::activate::MAX_ACTIVATE_FORM_BYTES,
                )),
        )
        .route("/", get(web::login::home))
}

/// flyteadmin's HTTP forms of the Flyte services.
fn flyte_http_routes() -> Router<AppState> {
    Router::new()
        .route("/config/v1/flyte_client", get(http_api::flyte_client))
        .route("/me", get(http_api::me))
}

/// Unknown paths: a Connect-shaped 404 for `/<package>.<Service>/<Method>`, a JSON 404 otherwise.
async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    let looks_like_rpc = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, method)| service.contains('.') && !method.contains('/'));
    if looks_like_rpc {
        return connect::not_found(uri).await;
    }
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            serde_json::json!({"error": "not_found", "error_description": "no such endpoint"}),
        ),
    )
        .into_response()
}

/// CORS as `server.security` configures it. Credentials are never allowed with the `*` origin
/// (browsers refuse that combination anyway); with an explicit origin list they are.
fn cors(security: &flyteauth_core::config::SecurityConfig) -> Option<CorsLayer> {
    if !security.allow_cors {
        return None;
    }
    let mut headers = vec![http::header::CONTENT_TYPE, http::header::AUTHORIZATION];
    headers.extend(security.allowed_headers.iter().filter_map(|h| {
        http::HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes()).ok()
    }));
    let methods = [
        http::Method::GET,
        http::Method::POST,
        http::Method::DELETE,
        http::Method::HEAD,
        http::Method::PUT,
        http::Method::PATCH,
    ];
    let layer = CorsLayer::new()
        .allow_methods(methods)
        .allow_headers(headers);
    if security.allowed_origins.iter().any(|o| o == "*") {
        Some(layer.allow_origin(AllowOrigin::any()))
    } else {
        let origins: Vec<http::HeaderValue> = security
            .allowed_origins
            .iter()
            .filter_map(|o| http::HeaderValue::from_str(o.trim()).ok())
            .collect();
        Some(layer.allow_origin(origins).allow_credentials(true))
    }
}

/// Behind a trusted proxy, replaces the TCP peer in the request's `ConnectInfo` with the client address the proxy
/// forwards, so rate limits, audit rows and logs all see the same caller. Only installed when
/// `flyteauth.trustedProxies` is set.
async fn forwarded_client_address(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    if let Some(client) = state.client_address.resolve(peer, request.headers()) {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(client));
    }
    next.run(request).await
}

/// The HTTP side: OAuth endpoints, Flyte HTTP routes, Connect methods, probes, metrics and `extra`,
/// all behind the same middleware (metrics, CORS).
fn http_router(state: AppState, extra: Router) -> Router {
    let cors = cors(&state.config.server.security);
    let max_body_bytes = state.config.flyteauth.max_request_bytes;
    let probes = health::for_state(state.clone());
    // A separate operations listener takes `/metrics` off the public port.
    let public_metrics = match state.config.flyteauth.metrics_listen_address {
        None => Router::new().route("/metrics", get(metrics::handler)),
        Some(_) => Router::new(),
    };
    let forwarded = !state.config.flyteauth.trusted_proxies.is_empty();
    let state_for_address = state.clone();
    let router = Router::new()
        .merge(
            oauth_routes(max_body_bytes)
                .merge(web_routes())
                .layer(axum::middleware::from_fn(run_to_completion)),
        )
        .merge(flyte_http_routes())
        .merge(rpc::connect_routes::router(max_body_bytes))
        .with_state(state)
        .merge(probes)
        .merge(extra)
        .merge(public_metrics)
        .fallback(not_found)
        .layer(tower::util::option_layer(cors));
    with_client_address(router, forwarded.then_some(state_for_address))
        .layer(axum::middleware::from_fn(metrics::track))
}

/// `router` behind [`forwarded_client_address`] when there are trusted proxies (`state`), as it is otherwise.
fn with_client_address(router: Router, state: Option<AppState>) -> Router {
    match state {
        Some(state) => router.layer(axum::middleware::from_fn_with_state(
            state,
            forwarded_client_address,
        )),
        None => router,
    }
}

/// The single service behind the listener: gRPC to tonic, the rest to [`http_router`].
pub fn service(state: AppState) -> Dispatch {
    service_with(state, Router::new())
}

/// [`service`] with `extra` HTTP routes behind the same middleware as every other route: for
/// embedding, and for benchmarks whose baseline must share the production stack.
pub fn service_with(state: AppState, extra: Router) -> Dispatch {
    let (reporter, health_service) = health::grpc_service();
    let following = health::follow_readiness(&state, reporter, &grpc::Services::names());
    let health_service =
        health_service.max_decoding_message_size(state.config.flyteauth.max_request_bytes);
    let forwarded = !state.config.flyteauth.trusted_proxies.is_empty();
    let grpc_routes = with_client_address(
        grpc::Services::routes(state.clone())
            .add_service(health_service)
            .into_axum_router(),
        forwarded.then(|| state.clone()),
    )
    // The routes own the poller's handle, so it polls exactly as long as the service exists.
    .layer(axum::Extension(following))
    .layer(axum::middleware::from_fn(metrics::track_grpc));
    Dispatch::from_routers(grpc_routes, http_router(state, extra))
}

/// The operations listener (`flyteauth.metricsListenAddress`): `/metrics` and the probes, nothing else.
pub fn operations_service(state: AppState) -> Router {
    health::for_state(state)
        .route("/metrics", get(metrics::handler))
        .fallback(not_found)
}
