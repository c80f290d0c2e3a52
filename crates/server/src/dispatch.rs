//! One service for the one listener: gRPC to tonic, everything else to axum.
//!
//! gRPC (flytekit 1.x), Connect (flyte 2.x) and plain HTTP share paths such as
//! `/flyteidl.service.AuthMetadataService/GetOAuth2Metadata`, so routing by path alone cannot
//! tell them apart; the `content-type` can. Every gRPC flavour (`application/grpc`,
//! `application/grpc+proto`, …) goes to the tonic routes, where an unknown method gets the gRPC
//! status `UNIMPLEMENTED`; the rest goes to the axum router (HTTP endpoints and Connect).

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, header};
use tower::Service;

/// Routes each request to the gRPC or the HTTP side by its `content-type`.
///
/// Cloning is cheap (both sides are reference-counted routers), so the listener clones one
/// `Dispatch` per connection.
#[derive(Clone, Debug)]
pub struct Dispatch {
    grpc: axum::Router,
    http: axum::Router,
}

impl Dispatch {
    /// Combines the tonic services with the axum router of HTTP and Connect endpoints.
    pub fn new(grpc: tonic::service::Routes, http: axum::Router) -> Self {
        // Converting keeps both sides on axum's future type, so dispatch needs no boxing.
        Self::from_routers(grpc.into_axum_router(), http)
    }

    /// Combines an already converted (and possibly layered) gRPC router with the HTTP router.
    pub fn from_routers(grpc: axum::Router, http: axum::Router) -> Self {
        Self { grpc, http }
    }
}

/// Whether a request carries a gRPC `content-type` (`application/grpc` with any suffix).
pub fn is_grpc<B>(request: &Request<B>) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| {
            let ct = ct.as_bytes();
            ct.len() >= PREFIX.len() && ct[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        })
}

impl<B> Service<Request<B>> for Dispatch
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Axum routers are always ready; each call goes to whichever side it picks.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_grpc(&request) {
            self.grpc.call(request)
        } else {
            self.http.call(request)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::routing::post;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    fn dispatch() -> Dispatch {
        let (_reporter, health) = crate::health::grpc_service();
        let grpc = tonic::service::Routes::new(health);
        let http = axum::Router::new().route(
            "/grpc.health.v1.Health/Check",
            post(|| async { "from axum" }),
        );
        Dispatch::new(grpc, http)
    }

    #[test]
    fn grpc_detection() {
        for (ct, grpc) in [
            (Some("application/grpc"), true),
            (Some("application/grpc+proto"), true),
            (Some("Application/GRPC"), true),
            (Some("application/proto"), false),
            (Some("application/json"), false),
            (Some("application/grp"), false),
            (None, false),
        ] {
            let mut req = Request::post("/x");
            if let Some(ct) = ct {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            assert_eq!(is_grpc(&req.body(()).unwrap()), grpc, "{ct:?}");
        }
    }

    #[tokio::test]
    async fn same_path_goes_to_the_side_named_by_content_type() {
        let connect = Request::post("/grpc.health.v1.Health/Check")
            .header(header::CONTENT_TYPE, "application/proto")
            .body(Body::empty())
            .unwrap();
        let resp = dispatch().oneshot(connect).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"from axum");

        let grpc = Request::post("/grpc.health.v1.Health/Check")
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(Body::from(vec![0u8, 0, 0, 0, 0]))
            .unwrap();
        let resp = dispatch().oneshot(grpc).await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/grpc");
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        assert_eq!(trailers["grpc-status"], "0");
    }

    #[tokio::test]
    async fn unknown_grpc_method_is_unimplemented() {
        for path in ["/grpc.health.v1.Health/Nope", "/no.such.Service/Method"] {
            let req = Request::post(path)
                .header(header::CONTENT_TYPE, "application/grpc")
                .body(Body::empty())
                .unwrap();
            let resp = dispatch().oneshot(req).await.unwrap();
            // tonic reports UNIMPLEMENTED (12) as a trailers-only response: status in the headers.
            assert_eq!(resp.headers()["grpc-status"], "12", "{path}");
        }
    }
}
