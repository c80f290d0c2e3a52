use serde_json::json;

use super::*;

fn load(yaml: &str) -> Config {
    Config::from_yaml_str(yaml).unwrap().config
}

#[test]
fn metadata_advertises_only_what_is_implemented() {
    let m = server_metadata(&Config::default());
    assert_eq!(m.issuer, "http://localhost:8088");
    assert_eq!(m.token_endpoint, "http://localhost:8088/oauth2/token");
    assert_eq!(m.jwks_uri, "http://localhost:8088/oauth2/jwks");
    assert_eq!(m.grant_types_supported, ["client_credentials"]);
    assert_eq!(
        m.token_endpoint_auth_methods_supported,
        ["client_secret_basic", "client_secret_post"]
    );
    assert!(m.response_types_supported.is_empty());
    assert!(m.code_challenge_methods_supported.is_empty());
    assert_eq!(m.scopes_supported, ["access_token", "all", "offline"]);

    let v = serde_json::to_value(&m).unwrap();
    let obj = v.as_object().unwrap();
    assert!(!obj.contains_key("authorization_endpoint"));
    assert!(!obj.contains_key("device_authorization_endpoint"));
    assert_eq!(obj["response_types_supported"], json!([]));
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

    let c = load(
        "auth:\n  authorizedUris: [\"https://flyte.example.com\"]\n  appAuth:\n    selfAuthServer:\n      issuer: https://id.example.com\n      staticClients:\n        a: {public: true, scopes: [zeta, all]}\n        b: {public: true, scopes: [all, beta]}\n",
    );
    let m = server_metadata(&c);
    assert_eq!(m.issuer, "https://id.example.com");
    assert_eq!(m.token_endpoint, "https://flyte.example.com/oauth2/token");
    // The configured clients' scopes and those of the default public clients.
    assert_eq!(
        m.scopes_supported,
        ["access_token", "all", "beta", "offline", "zeta"]
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
