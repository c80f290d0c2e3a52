//! Native gRPC bindings of the methods in [`crate::rpc`] (flytekit, flytectl, Flyte 1 services), plus the apps
//! service, whose binding lives with it in [`crate::apps::transport`].

use crate::rpc::{self, IntoWire};
use crate::state::AppState;
use flyteauth_proto::flyteidl::service as v1;
use flyteauth_proto::flyteidl2::auth as v2;
use tonic::{Request, Response, Status};

/// Implements the Flyte 1 and Flyte 2 auth services over gRPC.
#[derive(Clone, Debug)]
pub struct Services {
    state: AppState,
}

impl Services {
    /// Wraps the shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    async fn user_info(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<std::sync::Arc<flyteauth_core::identity::Identity>, Status> {
        // The header map view of the metadata borrows; no copy on the hot path.
        rpc::user_info(
            &self.state,
            metadata_headers(metadata),
            &self.state.grpc_header,
        )
        .await
        .map_err(Status::from)
    }

    /// The gRPC names of the services in [`Self::routes`], whose health the health service reports.
    pub fn names() -> [&'static str; 5] {
        use tonic::server::NamedService as _;
        [
            <v1::auth_metadata_service_server::AuthMetadataServiceServer<Self>>::NAME,
            <v1::identity_service_server::IdentityServiceServer<Self>>::NAME,
            <v2::auth_metadata_service_server::AuthMetadataServiceServer<Self>>::NAME,
            <v2::identity_service_server::IdentityServiceServer<Self>>::NAME,
            <flyteauth_proto::cloudidl::identity::apps_service_server::AppsServiceServer<
                crate::apps::AppsGrpc,
            >>::NAME,
        ]
    }

    /// All services, ready to be added to a tonic router.
    /// Each refuses request messages over `flyteauth.maxRequestBytes` (tonic answers `OUT_OF_RANGE`).
    pub fn routes(state: AppState) -> tonic::service::Routes {
        let limit = state.config.flyteauth.max_request_bytes;
        let services = Self::new(state);
        tonic::service::Routes::new(
            v1::auth_metadata_service_server::AuthMetadataServiceServer::new(services.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            v1::identity_service_server::IdentityServiceServer::new(services.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            v2::auth_metadata_service_server::AuthMetadataServiceServer::new(services.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            v2::identity_service_server::IdentityServiceServer::new(services.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(crate::apps::AppsGrpc::server(services.state).max_decoding_message_size(limit))
    }
}

fn metadata_headers(metadata: &tonic::metadata::MetadataMap) -> &http::HeaderMap {
    metadata.as_ref()
}

#[tonic::async_trait]
impl v1::auth_metadata_service_server::AuthMetadataService for Services {
    async fn get_o_auth2_metadata(
        &self,
        _request: Request<v1::OAuth2MetadataRequest>,
    ) -> Result<Response<v1::OAuth2MetadataResponse>, Status> {
        let document = rpc::oauth2_metadata(&self.state)?;
        Ok(Response::new((&document.metadata).into_wire()))
    }

    async fn get_public_client_config(
        &self,
        _request: Request<v1::PublicClientAuthConfigRequest>,
    ) -> Result<Response<v1::PublicClientAuthConfigResponse>, Status> {
        Ok(Response::new(
            rpc::public_client_config(&self.state).into_wire(),
        ))
    }
}

#[tonic::async_trait]
impl v1::identity_service_server::IdentityService for Services {
    async fn user_info(
        &self,
        request: Request<v1::UserInfoRequest>,
    ) -> Result<Response<v1::UserInfoResponse>, Status> {
        let identity = Services::user_info(self, request.metadata()).await?;
        Ok(Response::new((&identity.user_info).into_wire()))
    }
}

#[tonic::async_trait]
impl v2::auth_metadata_service_server::AuthMetadataService for Services {
    async fn get_o_auth2_metadata(
        &self,
        _request: Request<v2::GetOAuth2MetadataRequest>,
    ) -> Result<Response<v2::GetOAuth2MetadataResponse>, Status> {
        let document = rpc::oauth2_metadata(&self.state)?;
        Ok(Response::new((&document.metadata).into_wire()))
    }

    async fn get_public_client_config(
        &self,
        _request: Request<v2::GetPublicClientConfigRequest>,
    ) -> Result<Response<v2::GetPublicClientConfigResponse>, Status> {
        Ok(Response::new(
            rpc::public_client_config(&self.state).into_wire(),
        ))
    }
}

#[tonic::async_trait]
impl v2::identity_service_server::IdentityService for Services {
    async fn user_info(
        &self,
        request: Request<v2::UserInfoRequest>,
    ) -> Result<Response<v2::UserInfoResponse>, Status> {
        let identity = Services::user_info(self, request.metadata()).await?;
        Ok(Response::new((&identity.user_info).into_wire()))
    }
}
