use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

fn load(yaml: &str) -> LoadedConfig {
    match Config::from_yaml_str(yaml) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

fn invalid_key(yaml: &str) -> (String, String) {
    match Config::from_yaml_str(yaml) {
        Err(ConfigError::Invalid { key, expected }) => (key, expected),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

fn parse_message(yaml: &str) -> String {
    match Config::from_yaml_str(yaml) {
        Err(ConfigError::Parse { message }) => message,
        other => panic!("expected a Parse error, got {other:?}"),
    }
}

fn wrapped_hash(secret: &str) -> String {
    STANDARD.encode(bcrypt::hash(secret, 4).unwrap())
}

#[test]
fn defaults_are_flyteadmins() {
    let c = Config::default();
    assert_eq!(c.server.http_port, 8088);
    assert_eq!(c.server.grpc.port, 8089);
    assert!(c.server.grpc.server_reflection);
    assert_eq!(c.server.grpc.max_message_size_bytes, 0);
    assert_eq!(c.server.read_header_timeout_seconds, 32);
    assert!(
        !c.server.security.secure
            && !c.server.security.use_auth
            && !c.server.security.insecure_cookie_header
    );
    assert!(c.server.security.allow_cors);
    assert_eq!(c.server.security.allowed_origins, ["*"]);
    assert_eq!(
        c.server.security.allowed_headers,
        ["Content-Type", "flyte-authorization"]
    );
    assert_eq!(c.server.security.ssl, SslConfig::default());

    assert_eq!(c.auth.http_authorization_header, "flyte-authorization");
    assert_eq!(c.auth.grpc_authorization_header, "flyte-authorization");
    assert!(!c.auth.disable_for_http && !c.auth.disable_for_grpc);
    assert!(c.auth.authorized_uris.is_empty());
    assert_eq!(c.auth.http_proxy_url, None);
    let ua = &c.auth.user_auth;
    assert_eq!(ua.redirect_url, "/console");
    assert_eq!(ua.cookie_hash_key_secret_name, "cookie_hash_key");
    assert_eq!(ua.cookie_block_key_secret_name, "cookie_block_key");
    assert_eq!(
        ua.cookie_setting.same_site_policy,
        SameSitePolicy::DefaultMode
    );
    assert_eq!(ua.open_id.client_secret_name, "oidc_client_secret");
    assert_eq!(ua.open_id.scopes, ["openid", "profile"]);

    let aa = &c.auth.app_auth;
    assert_eq!(aa.auth_server_type, AuthServerType::SelfServer);
    let sas = &aa.self_auth_server;
    assert_eq!(sas.issuer, "");
    assert_eq!(sas.access_token_lifespan, Duration::from_secs(1800));
    assert_eq!(sas.refresh_token_lifespan, Duration::from_secs(3600));
    assert_eq!(sas.authorization_code_lifespan, Duration::from_secs(300));
    assert_eq!(
        sas.claim_symmetric_encryption_key_secret_name,
        "claim_symmetric_key"
    );
    assert_eq!(sas.token_signing_rsa_key_secret_name, "token_rsa_key.pem");
    assert_eq!(
        sas.old_token_signing_rsa_key_secret_name,
        "token_rsa_key_old.pem"
    );
    assert_eq!(
        sas.static_clients.keys().collect::<Vec<_>>(),
        ["flyte-cli", "flytectl"]
    );
    for client in sas.static_clients.values() {
        assert!(client.public);
        assert_eq!(client.client_secret, None);
        assert_eq!(client.grant_types, ["refresh_token", "authorization_code"]);
        assert_eq!(client.response_types, ["code", "token"]);
        assert_eq!(client.scopes, ["all", "offline", "access_token"]);
        assert_eq!(
            client.redirect_uris,
            [
                "http://localhost:53593/callback",
                "http://localhost:12345/callback"
            ]
        );
    }
    let ext = &aa.external_auth_server;
    assert_eq!(ext.retry_attempts, 5);
    assert_eq!(ext.retry_delay, Duration::from_secs(1));
    let fc = &aa.third_party_config.flyte_client;
    assert_eq!(fc.client_id, "flytectl");
    assert_eq!(fc.redirect_uri, "http://localhost:53593/callback");
    assert_eq!(fc.scopes, ["all", "offline"]);
    assert_eq!(fc.audience, "");

    assert_eq!(c.database.conn_max_life_time, Duration::from_secs(3600));
    assert_eq!(c.database.max_idle_connections, 10);
    assert_eq!(c.database.max_open_connections, 100);
    assert_eq!(c.database.postgres, None);
    assert_eq!(c.database.sqlite, None);
    assert_eq!(c.secrets.secrets_prefix, PathBuf::from("/etc/secrets"));
    assert_eq!(c.secrets.env_prefix, "FLYTE_SECRET_");
    assert_eq!(c.flyteauth.token_leeway, Duration::from_secs(30));
    assert_eq!(c.flyteauth.log_format, LogFormat::Plain);
    assert_eq!(c.flyteauth.max_request_bytes, 1 << 20);
    assert_eq!(c.flyteauth.listen_address, None);
    assert_eq!(
        c.flyteauth.refresh_token_reuse_grace,
        Duration::from_secs(5)
    );
    let login = &c.flyteauth.login;
    assert_eq!(login.max_failures, 5);
    assert_eq!(login.lockout_duration, Duration::from_secs(15 * 60));
    assert_eq!(login.address_max_failures, 50);
    assert_eq!(login.address_window, Duration::from_secs(15 * 60));
    assert_eq!(c.flyteauth.session.lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(c.flyteauth.session.idle_timeout, Duration::from_secs(3600));
    assert_eq!(c.flyteauth.first_admin.username, "admin");
    assert_eq!(c.flyteauth.first_admin.password_file, None);
    let device = &c.flyteauth.device;
    assert_eq!(device.code_lifetime, Duration::from_secs(600));
    assert_eq!(device.interval, Duration::from_secs(5));
    assert_eq!(device.max_code_attempts, 10);
    assert_eq!(device.attempt_window, Duration::from_secs(15 * 60));
    assert!(c.validate().is_ok());
}

#[test]
fn empty_and_comment_only_files_give_the_defaults() {
    for yaml in ["", "\n\n", "# nothing here\n", "---\n", "{}"] {
        let loaded = load(yaml);
        assert_eq!(loaded.config, Config::default(), "{yaml:?}");
        assert!(loaded.warnings.is_empty());
    }
}

#[test]
fn a_flyteadmin_values_file_loads_unchanged() {
    let hash = wrapped_hash("propeller-secret");
    let yaml = format!(
        r#"
logger:
  show-source: true
  level: 5
flyteadmin:
  roleNameKey: "iam.amazonaws.com/role"
scheduler:
  profilerPort: 10254
server:
  httpPort: 8088
  grpc:
    port: 8089
    serverReflection: false
  security:
    secure: false
    useAuth: true
    allowCors: true
    allowedOrigins:
      - "*"
    allowedHeaders:
      - "Content-Type"
      - "flyte-authorization"
auth:
  grpcAuthorizationHeader: flyte-authorization
  authorizedUris:
    - https://flyte.example.com
    - http://flyteadmin:80
    - http://flyteadmin.flyte.svc.cluster.local:80
  userAuth:
    openId:
      baseUrl: https://accounts.google.com
      scopes:
        - profile
        - openid
      clientId: 0000-abc.apps.googleusercontent.com
  appAuth:
    authServerType: Self
    selfAuthServer:
      accessTokenLifespan: 1h30m
      refreshTokenLifespan: 24h
      staticClients:
        flytepropeller:
          id: flytepropeller
          client_secret: {hash}
          redirect_uris:
            - http://localhost:3846/callback
          grant_types:
            - refresh_token
            - client_credentials
          response_types:
            - token
          scopes:
            - all
            - offline
            - access_token
          public: false
    thirdPartyConfig:
      flyteClient:
        clientId: flytectl
        redirectUri: http://localhost:53593/callback
        scopes:
          - offline
          - all
database:
  postgres:
    port: 5432
    username: flyteadmin
    host: postgres.flyte.svc
    dbname: flyteadmin
    options: "sslmode=disable"
    passwordPath: /etc/db/pass.txt
secrets:
  secrets-prefix: /etc/flyte/secrets
  env-prefix: FLYTE_SECRET_
"#
    );
    let loaded = load(&yaml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert!(c.server.security.use_auth);
    assert!(!c.server.grpc.server_reflection);
    assert_eq!(c.auth.authorized_uris.len(), 3);
    let sas = &c.auth.app_auth.self_auth_server;
    assert_eq!(sas.access_token_lifespan, Duration::from_secs(5400));
    assert_eq!(sas.refresh_token_lifespan, Duration::from_secs(86400));
    // Merged over the public defaults, as flyteadmin merges them.
    assert_eq!(
        sas.static_clients.keys().collect::<Vec<_>>(),
        ["flyte-cli", "flytectl", "flytepropeller"]
    );
    let propeller = &sas.static_clients["flytepropeller"];
    assert_eq!(propeller.client_secret.as_deref(), Some(hash.as_str()));
    assert_eq!(
        propeller.grant_types,
        ["refresh_token", "client_credentials"]
    );
    assert!(!propeller.public);
    assert_eq!(
        c.auth.user_auth.open_id.client_id,
        "0000-abc.apps.googleusercontent.com"
    );
    assert_eq!(
        c.auth.app_auth.third_party_config.flyte_client.scopes,
        ["offline", "all"]
    );
    let pg = c.database.postgres.as_ref().unwrap();
    assert_eq!(
        (pg.host.as_str(), pg.port, pg.dbname.as_str()),
        ("postgres.flyte.svc", 5432, "flyteadmin")
    );
    assert_eq!(
        pg.password_path.as_deref(),
        Some(Path::new("/etc/db/pass.txt"))
    );
    assert_eq!(
        c.secrets.secrets_prefix,
        PathBuf::from("/etc/flyte/secrets")
    );
}

#[test]
fn unknown_keys_inside_our_sections_are_warnings_with_the_key_path() {
    let loaded = load(
        r#"
cluster_resources: {refreshInterval: 5m}
server:
  httpPort: 9000
  colour: blue
  kube-config: /root/.kube/config
  security:
    sslz: {}
auth:
  appAuth:
    selfAuthServer:
      staticClients:
        ci:
          public: true
          scope: [all]
flyteauth:
  tokenLeway: 10s
"#,
    );
    assert_eq!(loaded.config.server.http_port, 9000);
    let w = loaded.warnings.join("\n");
    assert!(w.contains("`server.colour`"), "{w}");
    assert!(w.contains("`server.security.sslz`"), "{w}");
    assert!(
        w.contains("`auth.appAuth.selfAuthServer.staticClients.ci.scope`"),
        "{w}"
    );
    assert!(w.contains("`flyteauth.tokenLeway`"), "{w}");
    assert!(
        w.contains("`server.kube-config` is a flyteadmin setting"),
        "{w}"
    );
    assert!(!w.contains("cluster_resources"), "{w}");
    assert_eq!(loaded.warnings.len(), 5, "{w}");
}

#[test]
fn bad_durations_name_the_key_the_expectation_and_the_position() {
    let msg =
        parse_message("auth:\n  appAuth:\n    selfAuthServer:\n      accessTokenLifespan: 30x\n");
    assert!(
        msg.contains("auth.appAuth.selfAuthServer.accessTokenLifespan"),
        "{msg}"
    );
    assert!(msg.contains("Go duration"), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
    assert_eq!(msg.matches("line 4").count(), 1, "{msg}");

    let msg = parse_message("flyteauth:\n  tokenLeeway: 30\n");
    assert!(
        msg.contains("flyteauth.tokenLeeway") && msg.contains("no unit"),
        "{msg}"
    );
    let msg = parse_message("database:\n  connMaxLifeTime: -1h\n");
    assert!(
        msg.contains("database.connMaxLifeTime") && msg.contains("negative"),
        "{msg}"
    );
}

#[test]
fn type_errors_name_the_key_and_what_was_expected() {
    let msg = parse_message("server:\n  httpPort: 70000\n");
    assert!(
        msg.contains("server.httpPort") && msg.contains("0 to 65535") && msg.contains("line 2"),
        "{msg}"
    );
    let msg = parse_message("server:\n  security:\n    useAuth: maybe\n");
    assert!(msg.contains("server.security.useAuth"), "{msg}");
    let msg = parse_message("auth:\n  appAuth:\n    authServerType: self\n");
    assert!(
        msg.contains("auth.appAuth.authServerType") && msg.contains("Self"),
        "{msg}"
    );
    let msg = parse_message("auth:\n  authorizedUris: [\"::nope\"]\n");
    assert!(
        msg.contains("auth.authorizedUris") && msg.contains("absolute http(s) URL"),
        "{msg}"
    );
    let msg = parse_message("auth: [1, 2\n");
    assert!(msg.contains("line 1"), "{msg}");
    let msg = parse_message("server:\n  httpPort: 1\n  httpPort: 2\n");
    assert!(msg.contains("duplicate"), "{msg}");
}

#[test]
fn static_clients_accept_the_list_of_single_key_maps_form() {
    let hash = wrapped_hash("s");
    let loaded = load(&format!(
        r#"
auth:
  appAuth:
    selfAuthServer:
      staticClients:
        - MyClient:
            client_secret: {hash}
            grant_types: [client_credentials]
            scopes: [all]
        - other:
            public: true
"#
    ));
    let clients = &loaded.config.auth.app_auth.self_auth_server.static_clients;
    assert_eq!(
        clients.keys().collect::<Vec<_>>(),
        ["MyClient", "flyte-cli", "flytectl", "other"]
    );
    assert_eq!(
        clients["MyClient"].id, "MyClient",
        "the id defaults to the key"
    );
    assert_eq!(clients["MyClient"].scopes, ["all"]);

    let msg = parse_message(
        "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n        - a: {public: true}\n        - a: {public: true}\n",
    );
    assert!(msg.contains("duplicate"), "{msg}");
    let msg = parse_message("auth:\n  appAuth:\n    selfAuthServer:\n      staticClients: 3\n");
    assert!(msg.contains("staticClients"), "{msg}");
}

#[test]
fn configured_static_clients_merge_over_the_defaults() {
    // An empty map keeps the public defaults; a configured client of the same id replaces its default.
    let loaded = load("auth:\n  appAuth:\n    selfAuthServer:\n      staticClients: {}\n");
    let clients = &loaded.config.auth.app_auth.self_auth_server.static_clients;
    assert_eq!(
        clients.keys().collect::<Vec<_>>(),
        ["flyte-cli", "flytectl"]
    );
    let loaded = load(
        "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n        flytectl: {public: true, scopes: [all]}\n",
    );
    let clients = &loaded.config.auth.app_auth.self_auth_server.static_clients;
    assert_eq!(clients["flytectl"].scopes, ["all"]);
    assert!(!clients.contains_key("flytepropeller"));
}

#[test]
fn the_placeholder_secret_is_refused() {
    for secret in [PLACEHOLDER_SECRET_HASH_B64, PLACEHOLDER_SECRET_HASH] {
        let (key, expected) = invalid_key(&format!(
            "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n        flytepropeller:\n          client_secret: \"{secret}\"\n          grant_types: [client_credentials]\n"
        ));
        assert_eq!(
            key,
            "auth.appAuth.selfAuthServer.staticClients.flytepropeller.client_secret"
        );
        assert!(expected.contains("placeholder"), "{expected}");
    }
    assert_eq!(
        STANDARD.decode(PLACEHOLDER_SECRET_HASH_B64).unwrap(),
        PLACEHOLDER_SECRET_HASH.as_bytes()
    );
}

#[test]
fn static_client_checks() {
    let base = "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n";
    let (key, _) = invalid_key(&format!(
        "{base}        ci:\n          grant_types: [client_credentials]\n"
    ));
    assert_eq!(
        key,
        "auth.appAuth.selfAuthServer.staticClients.ci.client_secret"
    );
    let (key, expected) = invalid_key(&format!(
        "{base}        ci:\n          client_secret: not-base64!\n"
    ));
    assert_eq!(
        key,
        "auth.appAuth.selfAuthServer.staticClients.ci.client_secret"
    );
    assert!(expected.contains("base64"), "{expected}");
    let (key, expected) = invalid_key(&format!(
        "{base}        ci:\n          client_secret: aGVsbG8=\n"
    ));
    assert_eq!(
        key,
        "auth.appAuth.selfAuthServer.staticClients.ci.client_secret"
    );
    assert!(expected.contains("bcrypt"), "{expected}");
    let (key, _) = invalid_key(&format!(
        "{base}        ci:\n          id: other\n          public: true\n"
    ));
    assert_eq!(key, "auth.appAuth.selfAuthServer.staticClients.ci.id");
    let (key, _) = invalid_key(&format!("{base}        \"\":\n          public: true\n"));
    assert_eq!(key, "auth.appAuth.selfAuthServer.staticClients..id");

    let loaded = load(&format!(
        "{base}        web:\n          public: true\n          client_secret: {}\n",
        wrapped_hash("x")
    ));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("staticClients.web.client_secret")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn allowed_audience_accepts_list_scalar_and_comma_string() {
    let get = |v: &str| {
        load(&format!(
            "auth:\n  appAuth:\n    externalAuthServer:\n      allowedAudience: {v}\n"
        ))
        .config
        .auth
        .app_auth
        .external_auth_server
        .allowed_audience
    };
    assert_eq!(get("[a, b]"), ["a", "b"]);
    assert_eq!(get("https://x.example.com"), ["https://x.example.com"]);
    assert_eq!(get("\"a, b,c\""), ["a", "b", "c"]);
    assert_eq!(get("\"\""), Vec::<String>::new());
}

#[test]
fn external_mode_is_accepted_by_the_parser() {
    let c = load("auth:\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: https://idp.example.com/oauth2/default\n      retryDelay: 500ms\n").config;
    assert_eq!(c.auth.app_auth.auth_server_type, AuthServerType::External);
    assert_eq!(
        c.auth.app_auth.external_auth_server.retry_delay,
        Duration::from_millis(500)
    );
}

#[test]
fn external_mode_needs_a_base_url_from_either_key() {
    let err =
        Config::from_yaml_str("auth:\n  appAuth:\n    authServerType: External\n").unwrap_err();
    let (key, expected) = invalid_key("auth:\n  appAuth:\n    authServerType: External\n");
    assert_eq!(key, "auth.appAuth.externalAuthServer.baseUrl");
    assert!(
        expected.contains("auth.userAuth.openId.baseUrl"),
        "{expected}"
    );
    let message = err.to_string();
    assert!(
        message.contains("auth.appAuth.externalAuthServer.baseUrl")
            && message.contains("auth.userAuth.openId.baseUrl"),
        "{message}"
    );
    // Blank is as good as absent.
    let (key, _) = invalid_key(
        "auth:\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: \"  \"\n",
    );
    assert_eq!(key, "auth.appAuth.externalAuthServer.baseUrl");

    // The openId base URL stands in for it.
    let c = load(
        "auth:\n  userAuth:\n    openId:\n      baseUrl: https://idp.example.com/realms/flyte/\n      clientId: flyte\n  appAuth:\n    authServerType: External\n",
    )
    .config;
    assert_eq!(
        c.external_base_url().as_deref(),
        Some("https://idp.example.com/realms/flyte")
    );
    // Self mode does not need one.
    assert_eq!(Config::default().external_base_url(), None);
    assert_eq!(Config::default().external_metadata_url(), None);
}

#[test]
fn external_base_url_prefers_the_external_server_and_is_trimmed() {
    let c = load(
        "auth:\n  userAuth:\n    openId:\n      baseUrl: https://login.example.com\n      clientId: flyte\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: \" https://idp.example.com/oauth2/default/ \"\n",
    );
    assert_eq!(
        c.config.external_base_url().as_deref(),
        Some("https://idp.example.com/oauth2/default")
    );
    assert_eq!(
        c.config.external_metadata_url().as_deref(),
        Some("https://idp.example.com/oauth2/default/.well-known/oauth-authorization-server")
    );
}

#[test]
fn external_metadata_url_resolves_metadata_url_against_the_base() {
    let mut c = Config::default();
    c.auth.app_auth.external_auth_server.base_url = "https://idp.example.com".into();
    assert_eq!(
        c.external_metadata_url().as_deref(),
        Some("https://idp.example.com/.well-known/oauth-authorization-server")
    );
    for (metadata_url, expected) in [
        (
            ".well-known/openid-configuration",
            "https://idp.example.com/.well-known/openid-configuration",
        ),
        (
            "https://meta.example.com/oauth/metadata",
            "https://meta.example.com/oauth/metadata",
        ),
    ] {
        c.auth.app_auth.external_auth_server.metadata_url = metadata_url.into();
        assert_eq!(c.external_metadata_url().as_deref(), Some(expected));
    }
    c.auth.app_auth.external_auth_server.base_url = "https://idp.example.com/oauth2/aus1/".into();
    c.auth.app_auth.external_auth_server.metadata_url = " .well-known/openid-configuration ".into();
    assert_eq!(
        c.external_metadata_url().as_deref(),
        Some("https://idp.example.com/oauth2/aus1/.well-known/openid-configuration")
    );
}

#[test]
fn external_retry_attempts_may_be_zero() {
    let c = load(
        "auth:\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: https://idp.example.com\n      retryAttempts: 0\n      retryDelay: 0s\n",
    )
    .config;
    assert_eq!(c.auth.app_auth.external_auth_server.retry_attempts, 0);
    assert_eq!(
        c.auth.app_auth.external_auth_server.retry_delay,
        Duration::ZERO
    );
}

#[test]
fn external_issuer_check_defaults_on() {
    assert!(Config::default().flyteauth.external_issuer_check);
    assert!(
        load("flyteauth:\n  tokenLeeway: 10s\n")
            .config
            .flyteauth
            .external_issuer_check
    );
    let loaded = load("flyteauth:\n  externalIssuerCheck: false\n");
    assert!(!loaded.config.flyteauth.external_issuer_check);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn external_audiences_are_the_allowed_ones_the_public_url_and_the_client_audience() {
    let c = load(
        "auth:\n  authorizedUris: [\"https://flyte.example.com\"]\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: https://idp.example.com\n      allowedAudience: [\"api://flyte\", \"https://flyte.example.com/\"]\n    thirdPartyConfig:\n      flyteClient:\n        audience: \"api://flyte-cli/\"\n",
    )
    .config;
    assert_eq!(
        c.external_audiences(),
        [
            "api://flyte",
            "https://flyte.example.com",
            "api://flyte-cli"
        ]
    );
    assert_eq!(
        Config::default().external_audiences(),
        ["http://localhost:8088"]
    );
}

#[test]
fn authorized_uris_must_be_http() {
    let (key, _) = invalid_key(
        "auth:\n  authorizedUris: [\"https://ok.example.com\", \"ftp://files.example.com\"]\n",
    );
    assert_eq!(key, "auth.authorizedUris[1]");
    // Without a scheme, "localhost:8088" parses with the scheme "localhost".
    let (key, expected) = invalid_key("auth:\n  authorizedUris: [\"localhost:8088\"]\n");
    assert_eq!(key, "auth.authorizedUris[0]");
    assert!(expected.contains("http(s)"), "{expected}");
}

#[test]
fn secure_needs_certificate_and_key() {
    let (key, _) = invalid_key("server:\n  security:\n    secure: true\n");
    assert_eq!(key, "server.security.ssl.certificateFile");
    let (key, _) = invalid_key(
        "server:\n  security:\n    secure: true\n    ssl:\n      certificateFile: /tls/cert.pem\n      keyFile: \"\"\n",
    );
    assert_eq!(key, "server.security.ssl.keyFile");
    let c = load("server:\n  security:\n    secure: true\n    ssl:\n      certificateFile: /tls/cert.pem\n      keyFile: /tls/key.pem\n").config;
    assert_eq!(
        c.server.security.ssl.key_file.as_deref(),
        Some(Path::new("/tls/key.pem"))
    );
}

#[test]
fn lifespans_must_be_positive() {
    for key in [
        "accessTokenLifespan",
        "refreshTokenLifespan",
        "authorizationCodeLifespan",
    ] {
        let (got, _) = invalid_key(&format!(
            "auth:\n  appAuth:\n    selfAuthServer:\n      {key}: 0s\n"
        ));
        assert_eq!(got, format!("auth.appAuth.selfAuthServer.{key}"));
    }
}

#[test]
fn other_validation_rules() {
    let (key, _) = invalid_key("auth:\n  grpcAuthorizationHeader: \"bad header\"\n");
    assert_eq!(key, "auth.grpcAuthorizationHeader");
    let (key, _) =
        invalid_key("auth:\n  userAuth:\n    openId:\n      baseUrl: accounts.google.com\n");
    assert_eq!(key, "auth.userAuth.openId.baseUrl");
    let (key, _) = invalid_key("flyteauth:\n  maxRequestBytes: 0\n");
    assert_eq!(key, "flyteauth.maxRequestBytes");
    let (key, _) = invalid_key("database:\n  postgres:\n    host: \"\"\n");
    assert_eq!(key, "database.postgres.host");
}

#[test]
fn extension_settings() {
    let c = load("flyteauth:\n  dataDir: /var/lib/flyteauth\n  listenAddress: \"::1\"\n  tokenLeeway: 5s\n  logFormat: json\n  maxRequestBytes: 2048\n").config;
    assert_eq!(
        c.flyteauth.data_dir.as_deref(),
        Some(Path::new("/var/lib/flyteauth"))
    );
    assert_eq!(c.flyteauth.listen_address, Some("::1".parse().unwrap()));
    assert_eq!(c.flyteauth.token_leeway, Duration::from_secs(5));
    assert_eq!(c.flyteauth.log_format, LogFormat::Json);
    assert_eq!(c.flyteauth.max_request_bytes, 2048);
    assert_eq!(c.listen_addr(true), "[::1]:8088".parse().unwrap());
    let msg = parse_message("flyteauth:\n  listenAddress: localhost\n");
    assert!(msg.contains("flyteauth.listenAddress"), "{msg}");
}

#[test]
fn listen_address_depends_on_how_we_were_started() {
    let c = Config::default();
    assert_eq!(c.listen_addr(false), "127.0.0.1:8088".parse().unwrap());
    assert_eq!(c.listen_addr(true), "0.0.0.0:8088".parse().unwrap());
}

#[test]
fn public_url_issuer_and_audiences() {
    let c = Config::default();
    assert_eq!(c.public_url().as_str(), "http://localhost:8088/");
    assert_eq!(c.issuer(), "http://localhost:8088");
    assert_eq!(
        c.accepted_audiences(),
        ["http://localhost:8088/", "http://localhost:8088"]
    );

    let c = load(
        "auth:\n  authorizedUris: [\"https://flyte.example.com\", \"http://flyteadmin:80\"]\n  appAuth:\n    thirdPartyConfig:\n      flyteClient:\n        audience: api://flyte\n",
    )
    .config;
    assert_eq!(c.public_url().as_str(), "https://flyte.example.com/");
    assert_eq!(c.issuer(), "https://flyte.example.com");
    let aud = c.accepted_audiences();
    for want in [
        "https://flyte.example.com",
        "https://flyte.example.com/",
        "https://flyte.example.com:443",
        "http://flyteadmin",
        "http://flyteadmin/",
        "http://flyteadmin:80",
        "api://flyte",
    ] {
        assert!(aud.iter().any(|a| a == want), "{want} missing from {aud:?}");
    }
    let mut dedup = aud.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), aud.len(), "no duplicates in {aud:?}");

    let c =
        load("auth:\n  appAuth:\n    selfAuthServer:\n      issuer: https://issuer.example.com/\n")
            .config;
    assert_eq!(c.issuer(), "https://issuer.example.com/");
    assert!(
        c.accepted_audiences()
            .contains(&"https://issuer.example.com/".to_owned())
    );
}

#[test]
fn embedded_default() {
    let dir = Path::new("/tmp/flyteauth-data");
    let c = Config::embedded_default(dir);
    assert!(c.validate().is_ok());
    assert_eq!(c.public_url().as_str(), "http://localhost:8088/");
    assert_eq!(
        c.auth
            .authorized_uris
            .iter()
            .map(Url::as_str)
            .collect::<Vec<_>>(),
        ["http://localhost:8088/", "http://127.0.0.1:8088/"]
    );
    assert_eq!(c.secrets.secrets_prefix, dir.join("secrets"));
    assert_eq!(c.flyteauth.data_dir.as_deref(), Some(dir));
    assert_eq!(c.listen_addr(false), "127.0.0.1:8088".parse().unwrap());
    assert_eq!(
        c.database.url(Path::new("/elsewhere")).unwrap(),
        "sqlite:///tmp/flyteauth-data/flyteauth.db?mode=rwc"
    );
}

#[test]
fn database_urls() {
    let none = DatabaseConfig::default();
    assert_eq!(
        none.url(Path::new("/data")).unwrap(),
        "sqlite:///data/flyteauth.db?mode=rwc"
    );

    let c = load("database:\n  sqlite:\n    file: \"db/odd?name#1%.db\"\n").config;
    assert_eq!(
        c.database.url(Path::new("/data")).unwrap(),
        "sqlite://db/odd%3Fname%231%25.db?mode=rwc"
    );

    let c = load("database:\n  sqlite:\n    file: \"\"\n").config;
    assert_eq!(c.database.sqlite, None);

    let c = load(
        "database:\n  postgres:\n    host: db.example.com\n    port: 6543\n    dbname: flyte admin\n    username: fly@te\n    password: \"p@ss:w/rd %\"\n    options: \"sslmode=require connect_timeout=5\"\n",
    )
    .config;
    assert_eq!(
        c.database.url(Path::new("/data")).unwrap(),
        "postgres://fly%40te:p%40ss%3Aw%2Frd%20%25@db.example.com:6543/flyte%20admin?sslmode=require&connect_timeout=5"
    );

    let dir = std::env::temp_dir().join(format!("flyteauth-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pass = dir.join("pass");
    std::fs::write(&pass, "from-file\n").unwrap();
    let mut db = c.database.clone();
    db.postgres.as_mut().unwrap().password_path = Some(pass.clone());
    assert!(
        db.url(Path::new("/data"))
            .unwrap()
            .starts_with("postgres://fly%40te:from-file@")
    );
    db.postgres.as_mut().unwrap().password_path = Some(dir.join("missing"));
    assert!(matches!(
        db.url(Path::new("/data")),
        Err(ConfigError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();

    let both = load("database:\n  sqlite: {file: a.db}\n  postgres: {host: db}\n");
    assert!(
        both.config
            .database
            .url(Path::new("/d"))
            .unwrap()
            .starts_with("sqlite://a.db")
    );
    assert!(both.warnings.iter().any(|w| w.contains("using SQLite")));
}

#[test]
fn redacted_yaml_hides_secrets_and_shows_every_default() {
    let hash = wrapped_hash("s3cret");
    let yaml = format!(
        "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n        ci:\n          client_secret: {hash}\n          grant_types: [client_credentials]\ndatabase:\n  postgres:\n    host: db\n    password: hunter2\n"
    );
    let c = load(&yaml).config;
    let out = c.redacted_yaml();
    assert!(!out.contains(&hash), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains(REDACTED), "{out}");
    for key in [
        "httpPort: 8088",
        "accessTokenLifespan: 30m",
        "refreshTokenLifespan: 1h",
        "tokenSigningRSAKeySecretName: token_rsa_key.pem",
        "secrets-prefix: /etc/secrets",
        "tokenLeeway: 30s",
        "grpcAuthorizationHeader: flyte-authorization",
        "authServerType: Self",
    ] {
        assert!(out.contains(key), "{key} missing from\n{out}");
    }
    // The output is itself a loadable configuration, equal to the input apart from the redactions.
    let mut reparsed = match parse(&out) {
        Ok((c, w)) => {
            assert!(w.is_empty(), "{w:?}");
            c
        }
        Err(e) => panic!("{e}\n{out}"),
    };
    let mut expected = c.clone();
    expected
        .auth
        .app_auth
        .self_auth_server
        .static_clients
        .get_mut("ci")
        .unwrap()
        .client_secret = Some(REDACTED.into());
    expected.database.postgres.as_mut().unwrap().password = REDACTED.into();
    reparsed.database.postgres.as_mut().unwrap().password = REDACTED.into();
    assert_eq!(reparsed, expected);

    let defaults = Config::default().redacted_yaml();
    assert_eq!(parse(&defaults).unwrap().0, Config::default(), "{defaults}");
}

#[test]
fn debug_output_never_shows_secrets() {
    let hash = wrapped_hash("s3cret");
    let c = load(&format!(
        "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n        ci:\n          client_secret: {hash}\ndatabase:\n  postgres:\n    password: hunter2\n"
    ))
    .config;
    let debug = format!("{c:?}");
    assert!(
        !debug.contains(&hash) && !debug.contains("hunter2"),
        "{debug}"
    );
    assert!(debug.contains("<redacted>"));
}

#[test]
fn from_file_reads_and_reports_io_errors() {
    let dir = std::env::temp_dir().join(format!("flyteauth-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(&file, "server:\n  httpPort: 9999\n").unwrap();
    assert_eq!(
        Config::from_file(&file).unwrap().config.server.http_port,
        9999
    );
    let missing = dir.join("nope.yaml");
    match Config::from_file(&missing) {
        Err(e @ ConfigError::Io { .. }) => assert!(e.to_string().contains("nope.yaml")),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn error_messages_read_well() {
    let e = ConfigError::Invalid {
        key: "server.httpPort".into(),
        expected: "a port".into(),
    };
    assert_eq!(
        e.to_string(),
        "invalid configuration at `server.httpPort`: expected a port"
    );
}

#[test]
fn empty_sections_mean_the_defaults() {
    for yaml in [
        "server:\n",
        "auth:\n  appAuth:\n    selfAuthServer:\n",
        "auth:\n  userAuth:\n    openId:\n",
        "auth:\n  authorizedUris:\n",
        "database:\n  postgres:\n",
        "secrets:\nflyteauth:\n",
    ] {
        let loaded = load(yaml);
        assert_eq!(loaded.config, Config::default(), "{yaml:?}");
        assert!(loaded.warnings.is_empty(), "{yaml:?}");
    }
    let c = load("server:\n  security:\n    allowedOrigins:\n").config;
    assert!(
        c.server.security.allowed_origins.is_empty(),
        "an empty list stays empty"
    );
}

#[test]
fn settings_that_would_turn_authentication_off_are_warned_about() {
    let loaded = load(
        "server:\n  security:\n    useAuth: false\nauth:\n  disableForHttp: true\n  disableForGrpc: true\n",
    );
    let all = loaded.warnings.join("\n");
    for key in [
        "server.security.useAuth",
        "auth.disableForHttp",
        "auth.disableForGrpc",
    ] {
        assert!(all.contains(key), "{key} missing from: {all}");
    }
    // Leaving useAuth at its default says nothing.
    let quiet = load("server:\n  httpPort: 9000\n");
    assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
}

#[test]
fn login_session_and_first_admin_settings() {
    let loaded = load(
        "flyteauth:\n  refreshTokenReuseGrace: 10s\n  login:\n    maxFailures: 3\n    lockoutDuration: 1h\n    addressMaxFailures: 20\n    addressWindow: 5m\n    maxFailure: 1\n  session:\n    lifetime: 8h\n    idleTimeout: 30m\n  firstAdmin:\n    username: Root\n    passwordFile: /etc/flyteauth/admin-password\n",
    );
    let ext = &loaded.config.flyteauth;
    assert_eq!(ext.refresh_token_reuse_grace, Duration::from_secs(10));
    assert_eq!(ext.login.max_failures, 3);
    assert_eq!(ext.login.lockout_duration, Duration::from_secs(3600));
    assert_eq!(ext.login.address_max_failures, 20);
    assert_eq!(ext.login.address_window, Duration::from_secs(300));
    assert_eq!(ext.session.lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(ext.session.idle_timeout, Duration::from_secs(1800));
    assert_eq!(ext.first_admin.username, "Root");
    assert_eq!(
        ext.first_admin.password_file.as_deref(),
        Some(Path::new("/etc/flyteauth/admin-password"))
    );
    let w = loaded.warnings.join("\n");
    assert!(w.contains("`flyteauth.login.maxFailure`"), "{w}");
    assert_eq!(loaded.warnings.len(), 1, "{w}");

    // Partial sections keep the other defaults; an empty passwordFile is none; null sections are defaults.
    let c = load("flyteauth:\n  login:\n    maxFailures: 9\n  session:\n  firstAdmin:\n    passwordFile: \"\"\n").config;
    assert_eq!(c.flyteauth.login.max_failures, 9);
    assert_eq!(c.flyteauth.login.address_max_failures, 50);
    assert_eq!(c.flyteauth.session, SessionConfig::default());
    assert_eq!(c.flyteauth.first_admin.password_file, None);
    assert_eq!(c.flyteauth.first_admin.username, "admin");

    let msg = parse_message("flyteauth:\n  session:\n    lifetime: 12\n");
    assert!(msg.contains("flyteauth.session.lifetime"), "{msg}");
    for (yaml, key) in [
        (
            "flyteauth:\n  login:\n    maxFailures: 0\n",
            "flyteauth.login.maxFailures",
        ),
        (
            "flyteauth:\n  login:\n    addressWindow: 0s\n",
            "flyteauth.login.addressWindow",
        ),
        (
            "flyteauth:\n  session:\n    idleTimeout: 0s\n",
            "flyteauth.session.idleTimeout",
        ),
        (
            "flyteauth:\n  firstAdmin:\n    username: \"a b\"\n",
            "flyteauth.firstAdmin.username",
        ),
    ] {
        assert_eq!(invalid_key(yaml).0, key, "{yaml}");
    }
}

#[test]
fn device_settings() {
    let loaded = load(
        "flyteauth:\n  device:\n    codeLifetime: 15m\n    interval: 10s\n    maxCodeAttempts: 3\n    attemptWindow: 1h\n    intervall: 1s\n",
    );
    let d = &loaded.config.flyteauth.device;
    assert_eq!(d.code_lifetime, Duration::from_secs(900));
    assert_eq!(d.interval, Duration::from_secs(10));
    assert_eq!(d.max_code_attempts, 3);
    assert_eq!(d.attempt_window, Duration::from_secs(3600));
    let w = loaded.warnings.join("\n");
    assert!(w.contains("`flyteauth.device.intervall`"), "{w}");
    assert_eq!(loaded.warnings.len(), 1, "{w}");

    // Partial and null sections keep the defaults.
    let c = load("flyteauth:\n  device:\n    interval: 2s\n").config;
    assert_eq!(c.flyteauth.device.interval, Duration::from_secs(2));
    assert_eq!(c.flyteauth.device.code_lifetime, Duration::from_secs(600));
    let c = load("flyteauth:\n  device:\n").config;
    assert_eq!(c.flyteauth.device, DeviceConfig::default());

    // The defaults show in the effective configuration.
    let out = Config::default().redacted_yaml();
    for key in [
        "codeLifetime: 10m",
        "interval: 5s",
        "maxCodeAttempts: 10",
        "attemptWindow: 15m",
    ] {
        assert!(out.contains(key), "{key} missing from\n{out}");
    }

    let msg = parse_message("flyteauth:\n  device:\n    interval: 5\n");
    assert!(msg.contains("flyteauth.device.interval"), "{msg}");
    for (yaml, key) in [
        (
            "flyteauth:\n  device:\n    codeLifetime: 0s\n",
            "flyteauth.device.codeLifetime",
        ),
        (
            "flyteauth:\n  device:\n    interval: 0s\n",
            "flyteauth.device.interval",
        ),
        (
            "flyteauth:\n  device:\n    maxCodeAttempts: 0\n",
            "flyteauth.device.maxCodeAttempts",
        ),
        (
            "flyteauth:\n  device:\n    attemptWindow: 0s\n",
            "flyteauth.device.attemptWindow",
        ),
    ] {
        assert_eq!(invalid_key(yaml).0, key, "{yaml}");
    }
}

#[test]
fn admins_and_audit_retention() {
    // Defaults: nobody listed, 90 days.
    let c = Config::default();
    assert!(c.flyteauth.admins.is_empty());
    assert_eq!(
        c.flyteauth.audit.retention,
        Duration::from_secs(2160 * 3600)
    );
    assert_eq!(
        c.flyteauth.audit.retention_period(),
        Some(Duration::from_secs(90 * 24 * 3600))
    );
    let out = c.redacted_yaml();
    for key in ["admins: []", "retention: 2160h"] {
        assert!(out.contains(key), "{key} missing from\n{out}");
    }

    let loaded = load(
        "flyteauth:\n  admins:\n    - \" alice \"\n    - 00u1abcd\n    - ci-admin\n    - 1234567890\n  audit:\n    retention: 720h\n    retentoin: 1h\n",
    );
    let ext = &loaded.config.flyteauth;
    assert_eq!(ext.admins, ["alice", "00u1abcd", "ci-admin", "1234567890"]);
    assert_eq!(ext.audit.retention, Duration::from_secs(720 * 3600));
    let w = loaded.warnings.join("\n");
    assert!(w.contains("`flyteauth.audit.retentoin`"), "{w}");
    assert_eq!(loaded.warnings.len(), 1, "{w}");

    // One comma-separated string works too (as viper reads lists); null means the defaults.
    let c = load("flyteauth:\n  admins: \"alice, bob\"\n  audit:\n").config;
    assert_eq!(c.flyteauth.admins, ["alice", "bob"]);
    assert_eq!(c.flyteauth.audit, AuditConfig::default());
    let c = load("flyteauth:\n  admins:\n").config;
    assert!(c.flyteauth.admins.is_empty());

    // 0s keeps events forever.
    let c = load("flyteauth:\n  audit:\n    retention: 0s\n").config;
    assert_eq!(c.flyteauth.audit.retention, Duration::ZERO);
    assert_eq!(c.flyteauth.audit.retention_period(), None);

    let msg = parse_message("flyteauth:\n  audit:\n    retention: 90d\n");
    assert!(msg.contains("flyteauth.audit.retention"), "{msg}");
    let msg = parse_message("flyteauth:\n  admins:\n    nested: map\n");
    assert!(msg.contains("flyteauth.admins"), "{msg}");
    for yaml in [
        "flyteauth:\n  admins: [alice, \"\"]\n",
        "flyteauth:\n  admins:\n    - alice\n    - \"   \"\n",
    ] {
        let (key, expected) = invalid_key(yaml);
        assert_eq!(key, "flyteauth.admins[1]", "{yaml}");
        assert!(expected.contains("not an empty string"), "{expected}");
    }
}

#[test]
fn yaml_syntax_errors_are_reported_as_syntax_errors_not_as_type_errors_of_a_key() {
    // Over-indented key on line 8: the parser's line and column, and no key path.
    let msg = parse_message(
        "server:\n  httpPort: 9000\nauth:\n  authorizedUris:\n    - https://flyte.example.com\n  appAuth:\n    \
         authServerType: Self\n   userAuth: {}\n",
    );
    assert!(
        msg.starts_with("YAML syntax error at line 8, column 4: "),
        "{msg}"
    );
    assert!(!msg.contains('`'), "no key path: {msg}");

    // An unclosed flow sequence.
    let msg = parse_message("auth:\n  authorizedUris: [https://a.example.com\nserver: {}\n");
    assert!(msg.starts_with("YAML syntax error at line 3"), "{msg}");
}

#[test]
fn an_unclosed_quote_is_reported_at_the_line_that_opens_it() {
    let msg = parse_message(
        "server:\n  httpPort: 9000\nauth:\n  authorizedUris:\n    - https://flyte.example.com\n  appAuth:\n    \
         authServerType: \"Self\n  userAuth:\n    openId: {}\n",
    );
    assert!(
        msg.starts_with("YAML syntax error at line 7, column 21: this quote is never closed"),
        "{msg}"
    );
    assert!(msg.contains("line 8"), "where the parser stopped: {msg}");

    // Quotes that close, escaped quotes and apostrophes inside plain scalars are not taken for the opener.
    let msg = parse_message(
        "auth:\n  userAuth:\n    idpQueryParameter: it's\n    openId:\n      clientId: 'it''s'\n      \
         baseUrl: \"a \\\" b\"\n  appAuth:\n    authServerType: 'Self\n  other: 1\n",
    );
    assert!(
        msg.starts_with("YAML syntax error at line 8, column 21: this quote is never closed"),
        "{msg}"
    );
}

#[test]
fn signing_algorithm_defaults_to_rs256_and_reads_the_jws_names() {
    assert_eq!(
        Config::default().flyteauth.signing_algorithm,
        SigningAlgorithm::Rs256
    );
    for (name, alg) in [
        ("RS256", SigningAlgorithm::Rs256),
        ("ES256", SigningAlgorithm::Es256),
        ("EdDSA", SigningAlgorithm::EdDsa),
    ] {
        let c = load(&format!("flyteauth:\n  signingAlgorithm: {name}\n")).config;
        assert_eq!(c.flyteauth.signing_algorithm, alg);
        assert!(
            c.redacted_yaml()
                .contains(&format!("signingAlgorithm: {name}")),
            "the effective configuration shows it"
        );
    }
    let msg = parse_message("flyteauth:\n  signingAlgorithm: HS256\n");
    assert!(
        msg.contains("flyteauth.signingAlgorithm") && msg.contains("RS256"),
        "{msg}"
    );
}
