//! Discovery: `GetOAuth2Metadata` and `GetPublicClientConfig` of `flyteidl2.auth.AuthMetadataService`, asked
//! anonymously over Connect, once per process.

use flyteauth_proto::flyteidl2::auth::{
    GetOAuth2MetadataRequest, GetOAuth2MetadataResponse, GetPublicClientConfigRequest,
    GetPublicClientConfigResponse,
};
use http::HeaderMap;

use crate::ClientError;
use crate::connect::ConnectClient;

/// `Service/Method` of the OAuth 2.0 metadata call.
pub const GET_OAUTH2_METADATA: &str = "flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata";
/// `Service/Method` of the public client config call.
pub const GET_PUBLIC_CLIENT_CONFIG: &str =
    "flyteidl2.auth.AuthMetadataService/GetPublicClientConfig";

/// What the control plane says about its authorization server and its public client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMetadata {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint` (PKCE); `None` when empty.
    pub authorization_endpoint: Option<url::Url>,
    /// `token_endpoint`.
    pub token_endpoint: url::Url,
    /// `device_authorization_endpoint`; `None` when the server has no device flow.
    pub device_authorization_endpoint: Option<url::Url>,
    /// The public client of PKCE and device flow (`client_id`).
    pub client_id: String,
    /// The loopback redirect URI of PKCE.
    pub redirect_uri: Option<url::Url>,
    /// The scopes to ask for by default.
    pub scopes: Vec<String>,
    /// The header the token goes in (`flyte-authorization`); `authorization` is always accepted too.
    pub authorization_metadata_key: String,
    /// The audience of the public client config, if any.
    pub audience: Option<String>,
}

/// Asks the two discovery RPCs (concurrently) and checks the answers are usable.
pub async fn discover(connect: &ConnectClient) -> Result<AuthMetadata, ClientError> {
    let anonymous = HeaderMap::new();
    let (oauth, client) = futures_util::future::try_join(
        connect.unary::<_, GetOAuth2MetadataResponse>(
            GET_OAUTH2_METADATA,
            &GetOAuth2MetadataRequest {},
            &anonymous,
        ),
        connect.unary::<_, GetPublicClientConfigResponse>(
            GET_PUBLIC_CLIENT_CONFIG,
            &GetPublicClientConfigRequest {},
            &anonymous,
        ),
    )
    .await?;
    validate(connect.base(), oauth, client)
}

/// Checks the two answers and turns them into [`AuthMetadata`].
pub fn validate(
    base: &url::Url,
    oauth: GetOAuth2MetadataResponse,
    client: GetPublicClientConfigResponse,
) -> Result<AuthMetadata, ClientError> {
    let problem = |method: &str, reason: String| ClientError::Protocol {
        url: format!("{}/{method}", base.as_str().trim_end_matches('/')),
        reason,
    };
    let endpoint =
        |method: &str, field: &str, value: &str| -> Result<Option<url::Url>, ClientError> {
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            let url = url::Url::parse(value)
                .map_err(|e| problem(method, format!("{field} {value:?} is not a URL ({e})")))?;
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                return Err(problem(
                    method,
                    format!("{field} {value:?} is not an http(s) URL"),
                ));
            }
            Ok(Some(url))
        };
    let token_endpoint = endpoint(GET_OAUTH2_METADATA, "token_endpoint", &oauth.token_endpoint)?.ok_or_else(|| {
        problem(
            GET_OAUTH2_METADATA,
            "the token_endpoint is empty: the control plane has no authorization server configured".into(),
        )
    })?;
    let authorization_endpoint = endpoint(
        GET_OAUTH2_METADATA,
        "authorization_endpoint",
        &oauth.authorization_endpoint,
    )?;
    let device_authorization_endpoint = endpoint(
        GET_OAUTH2_METADATA,
        "device_authorization_endpoint",
        &oauth.device_authorization_endpoint,
    )?;
    let redirect_uri = endpoint(
        GET_PUBLIC_CLIENT_CONFIG,
        "redirect_uri",
        &client.redirect_uri,
    )?;
    let key = client.authorization_metadata_key.trim();
    let authorization_metadata_key = if key.is_empty() {
        "authorization".to_owned()
    } else {
        key.to_ascii_lowercase()
    };
    if http::HeaderName::from_bytes(authorization_metadata_key.as_bytes()).is_err() {
        return Err(problem(
            GET_PUBLIC_CLIENT_CONFIG,
            format!(
                "authorization_metadata_key {authorization_metadata_key:?} is not a header name"
            ),
        ));
    }
    Ok(AuthMetadata {
        issuer: oauth.issuer.trim().to_owned(),
        authorization_endpoint,
        token_endpoint,
        device_authorization_endpoint,
        client_id: client.client_id.trim().to_owned(),
        redirect_uri,
        scopes: client
            .scopes
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .collect(),
        authorization_metadata_key,
        audience: Some(client.audience.trim().to_owned()).filter(|a| !a.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::connect::test_server;

    fn oauth() -> GetOAuth2MetadataResponse {
        GetOAuth2MetadataResponse {
            issuer: "https://cp.example".into(),
            authorization_endpoint: "https://cp.example/oauth2/authorize".into(),
            token_endpoint: "https://cp.example/oauth2/token".into(),
            device_authorization_endpoint: "".into(),
            ..Default::default()
        }
    }

    fn client() -> GetPublicClientConfigResponse {
        GetPublicClientConfigResponse {
            client_id: "flytectl".into(),
            redirect_uri: "http://localhost:53593/callback".into(),
            scopes: vec!["offline".into(), "all".into()],
            authorization_metadata_key: "flyte-authorization".into(),
            ..Default::default()
        }
    }

    fn base() -> url::Url {
        url::Url::parse("https://cp.example").unwrap()
    }

    #[test]
    fn maps_the_fields() {
        let m = validate(&base(), oauth(), client()).unwrap();
        assert_eq!(m.token_endpoint.as_str(), "https://cp.example/oauth2/token");
        assert_eq!(
            m.authorization_endpoint.unwrap().as_str(),
            "https://cp.example/oauth2/authorize"
        );
        assert_eq!(m.device_authorization_endpoint, None);
        assert_eq!(m.client_id, "flytectl");
        assert_eq!(
            m.redirect_uri.unwrap().as_str(),
            "http://localhost:53593/callback"
        );
        assert_eq!(m.scopes, ["offline", "all"]);
        assert_eq!(m.authorization_metadata_key, "flyte-authorization");
        assert_eq!(m.audience, None);
        assert_eq!(m.issuer, "https://cp.example");
    }

    #[test]
    fn empty_token_endpoint_is_a_clear_error() {
        let err = validate(
            &base(),
            GetOAuth2MetadataResponse {
                token_endpoint: " ".into(),
                ..oauth()
            },
            client(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("token_endpoint is empty"), "{text}");
        assert!(text.contains("GetOAuth2Metadata"), "{text}");
    }

    #[test]
    fn malformed_urls_are_errors_and_defaults_apply() {
        let bad = GetOAuth2MetadataResponse {
            device_authorization_endpoint: "not a url".into(),
            ..oauth()
        };
        assert!(
            validate(&base(), bad, client())
                .unwrap_err()
                .to_string()
                .contains("device_authorization_endpoint")
        );
        let ftp = GetPublicClientConfigResponse {
            redirect_uri: "ftp://x/cb".into(),
            ..client()
        };
        assert!(
            validate(&base(), oauth(), ftp)
                .unwrap_err()
                .to_string()
                .contains("redirect_uri")
        );
        let no_key = GetPublicClientConfigResponse {
            authorization_metadata_key: String::new(),
            audience: "aud".into(),
            ..client()
        };
        let m = validate(&base(), oauth(), no_key).unwrap();
        assert_eq!(m.authorization_metadata_key, "authorization");
        assert_eq!(m.audience.as_deref(), Some("aud"));
    }

    #[tokio::test]
    async fn discover_asks_both_rpcs_anonymously() {
        let server = test_server::TestServer::start().await;
        server.proto(GET_OAUTH2_METADATA, oauth());
        server.proto(GET_PUBLIC_CLIENT_CONFIG, client());
        let connect = ConnectClient::new(crate::connect::test_server::http(), server.base());
        let m = discover(&connect).await.unwrap();
        assert_eq!(m.client_id, "flytectl");
        let seen = server.requests();
        assert_eq!(seen.len(), 2);
        for request in seen {
            assert_eq!(request.header("authorization"), None);
            assert_eq!(
                request.header("content-type").as_deref(),
                Some("application/proto")
            );
            assert_eq!(
                request.header("connect-protocol-version").as_deref(),
                Some("1")
            );
        }
    }

    #[tokio::test]
    async fn discover_reports_a_server_without_the_service() {
        let server = test_server::TestServer::start().await;
        let connect = ConnectClient::new(crate::connect::test_server::http(), server.base());
        let err = discover(&connect).await.unwrap_err();
        match err {
            ClientError::Rpc(e) => assert_eq!(e.code, crate::connect::RpcCode::Unimplemented),
            other => panic!("{other}"),
        }
    }
}
