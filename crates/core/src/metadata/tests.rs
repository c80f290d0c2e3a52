use serde_json::json;

use super::*;

fn load(yaml: &str) -> Config {
    Config::from_yaml_str(yaml).unwrap().config
}

#[test]
fn metadata_advertises_the_login_flow_and_oidc_discovery() {
    let m = server_metadata(&Config::default());
    assert_eq!(m.issuer, "http://localhost:8088");
    assert_eq!(
        m.authorization_endpoint,
        "http://localhost:8088/oauth2/authorize"
    );
    assert_eq!(m.token_endpoint, "http://localhost:8088/oauth2/token");
    assert_eq!(m.jwks_uri, "http://localhost:8088/oauth2/jwks");
    assert_eq!(m.userinfo_endpoint, "http://localhost:8088/oauth2/userinfo");
    assert_eq!(m.revocation_endpoint, "http://localhost:8088/oauth2/revoke");
    assert_eq!(
        m.introspection_endpoint,
        "http://localhost:8088/oauth2/introspect"
    );
    assert_eq!(
        m.grant_types_supported,
        [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"
        ]
    );
    assert_eq!(
        m.device_authorization_endpoint.as_deref(),
        Some("http://localhost:8088/oauth2/device/code")
    );
    assert_eq!(
        m.token_endpoint_auth_methods_supported,
        ["client_secret_basic", "client_secret_post", "none"]
    );
    assert_eq!(
        m.revocation_endpoint_auth_methods_supported,
        m.token_endpoint_auth_methods_supported
    );
    assert_eq!(
        m.introspection_endpoint_auth_methods_supported,
        ["client_secret_basic", "client_secret_post"]
    );
    assert_eq!(m.response_types_supported, ["code"]);
    assert_eq!(m.response_modes_supported, ["query"]);
    assert_eq!(m.code_challenge_methods_supported, ["S256"]);
    assert_eq!(m.subject_types_supported, ["public"]);
    assert_eq!(m.id_token_signing_alg_values_supported, ["RS256"]);
    let mut ed = Config::default();
    ed.flyteauth.signing_algorithm = crate::keys::SigningAlgorithm::EdDsa;
    assert_eq!(
        server_metadata(&ed).id_token_signing_alg_values_supported,
        ["EdDSA"]
    );
    assert_eq!(
        m.scopes_supported,
        [
            "access_token",
            "all",
            "email",
            "offline",
            "offline_access",
            "openid",
            "profile"
        ]
    );
    for claim in [
        "sub",
        "iss",
        "auth_time",
        "nonce",
        "email",
        "preferred_username",
    ] {
        assert!(m.claims_supported.iter().any(|c| c == claim), "{claim}");
    }

    let v = serde_json::to_value(&m).unwrap();
    let obj = v.as_object().unwrap();
    // What OpenID Connect Discovery 1.0 §3 requires.
    for key in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ] {
        assert!(obj.contains_key(key), "{key}");
    }
    assert_eq!(
        obj["device_authorization_endpoint"],
        json!("http://localhost:8088/oauth2/device/code")
    );
    assert_eq!(obj["code_challenge_methods_supported"], json!(["S256"]));
}

#[test]
fn paths() {
    assert_eq!(AUTHORIZE_PATH, "/oauth2/authorize");
    assert_eq!(REVOKE_PATH, "/oauth2/revoke");
    assert_eq!(INTROSPECT_PATH, "/oauth2/introspect");
    assert_eq!(USERINFO_PATH, "/oauth2/userinfo");
    assert_eq!(LOGIN_PATH, "/login");
    assert_eq!(DEVICE_AUTHORIZATION_PATH, "/oauth2/device/code");
    assert_eq!(ACTIVATE_PATH, "/activate");
}

#[test]
fn endpoints_follow_the_public_url_and_issuer() {
    let c = load(
        "auth:\n  authorizedUris: [\"https://flyte.example.com/prefix/\", \"http://flyteadmin:80\"]\n",
    );
    let m = server_metadata(&c);
    assert_eq!(m.issuer, "https://flyte.example.com/prefix");
    assert_eq!(
        m.token_endpoint,
        "https://flyte.example.com/prefix/oauth2/token"
    );
    assert_eq!(m.jwks_uri, "https://flyte.example.com/prefix/oauth2/jwks");
    assert_eq!(
        m.device_authorization_endpoint.as_deref(),
        Some("https://flyte.example.com/prefix/oauth2/device/code")
    );

    let c = load(
        "auth:\n  authorizedUris: [\"https://flyte.example.com\"]\n  appAuth:\n    selfAuthServer:\n      issuer: https://id.example.com\n      staticClients:\n        a: {public: true, scopes: [zeta, all]}\n        b: {public: true, scopes: [all, beta]}\n",
    );
    let m = server_metadata(&c);
    assert_eq!(m.issuer, "https://id.example.com");
    assert_eq!(m.token_endpoint, "https://flyte.example.com/oauth2/token");
    assert_eq!(
        m.authorization_endpoint,
        "https://flyte.example.com/oauth2/authorize"
    );
    // The configured clients' scopes and those of the default public clients.
    assert_eq!(
        m.scopes_supported,
        [
            "access_token",
            "all",
            "beta",
            "email",
            "offline",
            "offline_access",
            "openid",
            "profile",
            "zeta"
        ]
    );
}

#[test]
fn public_client_config_defaults() {
    let p = public_client_config(&Config::default());
    assert_eq!(p.client_id, "flytectl");
    assert_eq!(p.redirect_uri, "http://localhost:53593/callback");
    assert_eq!(p.scopes, ["all", "offline"]);
    assert_eq!(p.authorization_metadata_key, "flyte-authorization");
    assert_eq!(p.service_http_endpoint, "http://localhost:8088");
    assert_eq!(p.audience, "");
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 6);
}

#[test]
fn public_client_config_from_configuration() {
    let c = load(
        "auth:\n  grpcAuthorizationHeader: \"\"\n  authorizedUris: [\"https://flyte.example.com\"]\n  appAuth:\n    thirdPartyConfig:\n      flyteClient:\n        clientId: my-cli\n        redirectUri: http://localhost:9999/cb\n        scopes: [all]\n        audience: api://flyte\n",
    );
    let p = public_client_config(&c);
    assert_eq!(p.client_id, "my-cli");
    assert_eq!(p.redirect_uri, "http://localhost:9999/cb");
    assert_eq!(p.scopes, ["all"]);
    assert_eq!(p.audience, "api://flyte");
    assert_eq!(
        p.authorization_metadata_key, "flyte-authorization",
        "never empty"
    );
    assert_eq!(p.service_http_endpoint, "https://flyte.example.com");

    let c = load("auth:\n  grpcAuthorizationHeader: authorization\n");
    assert_eq!(
        public_client_config(&c).authorization_metadata_key,
        "authorization"
    );
}
