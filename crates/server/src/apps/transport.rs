//! The apps service on the wire: the tonic service (gRPC) and the Connect routes, both generated from one list
//! of the methods in [`super`].
//!
//! Each call runs on a task of its own: Create, Update and Delete write to the store and Delete then revokes,
//! and a client hanging up half-way must not leave an app deleted with its tokens still valid.

use super::{create, delete, get, list, update};
use crate::connect::{self, ConnectOptions};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::MethodRouter;
use flyteauth_proto::cloudidl::identity as pb;
use http::HeaderMap;
use pb::apps_service_server::{AppsService, AppsServiceServer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use tonic::Status;
use tower::ServiceExt as _;

/// The gRPC side of the apps service.
#[derive(Clone, Debug)]
pub struct AppsGrpc {
    state: AppState,
}

impl AppsGrpc {
    /// The tonic service over the shared state.
    pub fn server(state: AppState) -> AppsServiceServer<Self> {
        AppsServiceServer::new(Self { state })
    }
}

/// What a Connect call hands a method besides the headers and the message.
#[derive(Clone, Debug)]
struct Call {
    state: AppState,
    peer: Option<SocketAddr>,
}

/// Runs a method to completion on its own task, whatever happens to the connection.
async fn detached<T, F>(method: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    tokio::spawn(method).await.map_err(ApiError::internal)?
}

/// The peer address: the listener puts it on every request as axum's `ConnectInfo`.
fn grpc_peer<T>(request: &tonic::Request<T>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
        .or_else(|| request.remote_addr())
}

/// A Connect route for `method`, which also learns the peer address (the Connect layer passes only headers).
fn connect_route<Req, Resp, F, Fut>(options: ConnectOptions, method: F) -> MethodRouter<AppState>
where
    Req: prost::Message + Default + DeserializeOwned + Send + 'static,
    Resp: prost::Message + Serialize + Send + 'static,
    F: Fn(Call, HeaderMap, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    let inner: MethodRouter<Call> = connect::unary_with(
        options,
        move |call: Call, headers: HeaderMap, message: Req| {
            let reply = method(call, headers, message);
            async move { reply.await.map_err(Status::from) }
        },
    );
    axum::routing::any(move |State(state): State<AppState>, request: Request| {
        let inner = inner.clone();
        async move {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr);
            let response: Result<Response, std::convert::Infallible> = inner
                .with_state(Call { state, peer })
                .oneshot(request)
                .await;
            match response {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
}

/// Generates the tonic trait implementation and the Connect router from one list of
/// `method(Request) -> Response = "ProcedureName";` lines.
macro_rules! apps_service {
    ($($method:ident($req:ty) -> $resp:ty = $procedure:literal;)+) => {
        #[tonic::async_trait]
        impl AppsService for AppsGrpc {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, Status> {
                    let peer = grpc_peer(&request);
                    let (metadata, _, message) = request.into_parts();
                    let (state, headers) = (self.state.clone(), metadata.into_headers());
                    detached(async move { $method(&state, &headers, peer, message).await })
                        .await
                        .map(tonic::Response::new)
                        .map_err(Status::from)
                }
            )+
        }

        /// The Connect routes of the apps service (`/cloudidl.identity.AppsService/<Method>`).
        pub fn connect_routes(options: ConnectOptions) -> Router<AppState> {
            Router::new()
            $(
                .route(
                    concat!("/cloudidl.identity.AppsService/", $procedure),
                    connect_route(options, |call: Call, headers: HeaderMap, message: $req| {
                        detached(async move {
                            $method(&call.state, &headers, call.peer, message).await
                        })
                    }),
                )
            )+
        }
    };
}

apps_service! {
    create(pb::CreateAppRequest) -> pb::CreateAppResponse = "Create";
    get(pb::GetAppRequest) -> pb::GetAppResponse = "Get";
    update(pb::UpdateAppRequest) -> pb::UpdateAppResponse = "Update";
    delete(pb::DeleteAppRequest) -> pb::DeleteAppResponse = "Delete";
    list(pb::ListAppsRequest) -> pb::ListAppsResponse = "List";
}
