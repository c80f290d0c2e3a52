//! The Flyte services, each method written once and exposed over every wire form: gRPC
//! (`flyteidl.service.*` and `flyteidl2.auth.*`), Connect (same paths) and the HTTP routes
//! flyteadmin had (`/config/v1/flyte_client`, `/me`).

use crate::auth;
use crate::error::ApiError;
use crate::state::{AppState, MetadataDocument};
use flyteauth_core::identity::{Identity, UserInfo};
use flyteauth_core::metadata::{PublicClientConfig, ServerMetadata};
use flyteauth_proto::flyteidl::service as v1;
use flyteauth_proto::flyteidl2::auth as v2;
use flyteauth_proto::wkt;
use http::HeaderMap;
use std::sync::Arc;

/// AuthMetadataService.GetOAuth2Metadata: anonymous. In External mode the external server's metadata
/// (`UNAVAILABLE` until it was fetched once).
pub fn oauth2_metadata(state: &AppState) -> Result<Arc<MetadataDocument>, tonic::Status> {
    state.served_metadata().ok_or_else(|| {
        tonic::Status::unavailable(
            "the external authorization server's metadata has not been fetched yet",
        )
    })
}

/// AuthMetadataService.GetPublicClientConfig: anonymous.
pub fn public_client_config(state: &AppState) -> &PublicClientConfig {
    &state.public_client
}

/// IdentityService.UserInfo: the caller's identity; needs a valid token with scope `all`.
/// `custom` is the extra header this transport accepts the token from. Awaits only in External mode, for a
/// token signed by a key that has to be fetched first.
pub async fn user_info(
    state: &AppState,
    headers: &HeaderMap,
    custom: &http::HeaderName,
) -> Result<Arc<Identity>, ApiError> {
    auth::authorize_platform_call(state, headers, custom).await
}

/// Converts JSON claims into a `google.protobuf.Struct`.
pub fn to_struct(map: &serde_json::Map<String, serde_json::Value>) -> wkt::Struct {
    wkt::Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
    }
}

fn to_value(value: &serde_json::Value) -> wkt::Value {
    use serde_json::Value as J;
    use wkt::value::Kind;
    let kind = match value {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(wkt::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        J::Object(map) => Kind::StructValue(to_struct(map)),
    };
    wkt::Value { kind: Some(kind) }
}

/// Conversion of a domain value into the message of one wire version. Flyte 1 and Flyte 2 carry
/// the same messages under different names, so each conversion is written once for both.
pub trait IntoWire<M> {
    /// The message.
    fn into_wire(self) -> M;
}

macro_rules! user_info_wire {
    ($ty:ty) => {
        impl IntoWire<$ty> for &UserInfo {
            fn into_wire(self) -> $ty {
                <$ty>::from_parts(self)
            }
        }
        impl FromUserInfo for $ty {
            fn from_parts(info: &UserInfo) -> Self {
                Self {
                    additional_claims: Some(to_struct(&info.additional_claims)),
                    subject: info.subject.clone(),
                    name: info.name.clone(),
                    preferred_username: info.preferred_username.clone(),
                    given_name: info.given_name.clone(),
                    family_name: info.family_name.clone(),
                    email: info.email.clone(),
                    picture: info.picture.clone(),
                }
            }
        }
    };
}

trait FromUserInfo {
    fn from_parts(info: &UserInfo) -> Self;
}

user_info_wire!(v1::UserInfoResponse);
user_info_wire!(v2::UserInfoResponse);

macro_rules! metadata_wire {
    ($ty:ty) => {
        impl IntoWire<$ty> for &ServerMetadata {
            fn into_wire(self) -> $ty {
                <$ty>::from_metadata(self)
            }
        }
        impl FromMetadata for $ty {
            fn from_metadata(m: &ServerMetadata) -> Self {
                Self {
                    issuer: m.issuer.clone(),
                    authorization_endpoint: m.authorization_endpoint.clone(),
                    token_endpoint: m.token_endpoint.clone(),
                    response_types_supported: m.response_types_supported.clone(),
                    scopes_supported: m.scopes_supported.clone(),
                    token_endpoint_auth_methods_supported: m
                        .token_endpoint_auth_methods_supported
                        .clone(),
                    jwks_uri: m.jwks_uri.clone(),
                    code_challenge_methods_supported: m.code_challenge_methods_supported.clone(),
                    grant_types_supported: m.grant_types_supported.clone(),
                    device_authorization_endpoint: m
                        .device_authorization_endpoint
                        .clone()
                        .unwrap_or_default(),
                }
            }
        }
    };
}

trait FromMetadata {
    fn from_metadata(m: &ServerMetadata) -> Self;
}

metadata_wire!(v1::OAuth2MetadataResponse);
metadata_wire!(v2::GetOAuth2MetadataResponse);

impl IntoWire<v1::PublicClientAuthConfigResponse> for &PublicClientConfig {
    fn into_wire(self) -> v1::PublicClientAuthConfigResponse {
        v1::PublicClientAuthConfigResponse {
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scopes: self.scopes.clone(),
            authorization_metadata_key: self.authorization_metadata_key.clone(),
            service_http_endpoint: self.service_http_endpoint.clone(),
            audience: self.audience.clone(),
        }
    }
}

impl IntoWire<v2::GetPublicClientConfigResponse> for &PublicClientConfig {
    fn into_wire(self) -> v2::GetPublicClientConfigResponse {
        let v1: v1::PublicClientAuthConfigResponse = self.into_wire();
        v2::GetPublicClientConfigResponse {
            client_id: v1.client_id,
            redirect_uri: v1.redirect_uri,
            scopes: v1.scopes,
            authorization_metadata_key: v1.authorization_metadata_key,
            service_http_endpoint: v1.service_http_endpoint,
            audience: v1.audience,
            dataplane_domain: String::new(),
        }
    }
}

/// Connect routes: the same methods as the gRPC services, on the same paths.
pub mod connect_routes {
    use super::*;
    use crate::connect;
    use axum::Router;

    /// Every Connect method flyteauth serves, each refusing bodies over `max_body_bytes`.
    pub fn router(max_body_bytes: usize) -> Router<AppState> {
        let options = connect::ConnectOptions { max_body_bytes };
        Router::new()
            .route(
                "/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata",
                connect::unary_with(
                    options,
                    |state: AppState, _h: HeaderMap, _r: v2::GetOAuth2MetadataRequest| async move {
                        oauth2_metadata(&state).map(|doc| -> v2::GetOAuth2MetadataResponse { (&doc.metadata).into_wire() })
                    },
                ),
            )
            .route(
                "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig",
                connect::unary_with(
                    options,
                    |state: AppState, _h: HeaderMap, _r: v2::GetPublicClientConfigRequest| async move {
                        Ok::<v2::GetPublicClientConfigResponse, tonic::Status>(public_client_config(&state).into_wire())
                    },
                ),
            )
            .route(
                "/flyteidl2.auth.IdentityService/UserInfo",
                connect::unary_with(
                    options,
                    |state: AppState, h: HeaderMap, _r: v2::UserInfoRequest| async move {
                        user_info(&state, &h, &state.grpc_header)
                            .await
                            .map(|identity| -> v2::UserInfoResponse { (&identity.user_info).into_wire() })
                            .map_err(tonic::Status::from)
                    },
                ),
            )
            .route(
                "/flyteidl.service.AuthMetadataService/GetOAuth2Metadata",
                connect::unary_with(
                    options,
                    |state: AppState, _h: HeaderMap, _r: v1::OAuth2MetadataRequest| async move {
                        oauth2_metadata(&state).map(|doc| -> v1::OAuth2MetadataResponse { (&doc.metadata).into_wire() })
                    },
                ),
            )
            .route(
                "/flyteidl.service.AuthMetadataService/GetPublicClientConfig",
                connect::unary_with(
                    options,
                    |state: AppState, _h: HeaderMap, _r: v1::PublicClientAuthConfigRequest| async move {
                        Ok::<v1::PublicClientAuthConfigResponse, tonic::Status>(public_client_config(&state).into_wire())
                    },
                ),
            )
            .route(
                "/flyteidl.service.IdentityService/UserInfo",
                connect::unary_with(
                    options,
                    |state: AppState, h: HeaderMap, _r: v1::UserInfoRequest| async move {
                        user_info(&state, &h, &state.grpc_header)
                            .await
                            .map(|identity| -> v1::UserInfoResponse { (&identity.user_info).into_wire() })
                            .map_err(tonic::Status::from)
                    },
                ),
            )
            .merge(crate::apps::connect_routes(options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_convert_to_a_struct() {
        let json = serde_json::json!({"a": 1.5, "b": ["x", true], "c": {"d": null}});
        let s = to_struct(json.as_object().unwrap());
        assert_eq!(s.fields.len(), 3);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back, json);
    }
}
