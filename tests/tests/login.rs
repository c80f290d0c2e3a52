//! Human login on the built-in server, met as a person and an SDK meet it: the authorize endpoint, the
//! login page, the code exchange with PKCE, refresh rotation, revocation and introspection, and the attacks
//! each of them must withstand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_tests::browser::{Browser, pkce_pair, sdk_authorize_path, url_encode};
use flyteauth_tests::{
    APP_ID, APP_SECRET, TestServer, WEB_APP_ID, WEB_APP_REDIRECT, WEB_APP_SECRET, sdk_basic,
};
use serde_json::Value;

const REDIRECT: &str = "http://localhost:53593/callback";
const PASSWORD: &str = "correct horse battery staple";

/// What an SDK holds after a login.
struct Login {
    code: String,
    state: String,
    verifier: String,
}

async fn login(server: &TestServer, browser: &mut Browser, state: &str) -> Login {
    let (verifier, challenge) = pkce_pair();
    let path = sdk_authorize_path("flytectl", REDIRECT, "offline all", state, &challenge);
    let done = browser.authorize(&path, "alice", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let location = done.location.clone().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = done.location_query();
    assert_eq!(q["iss"], server.state.metadata.issuer);
    Login {
        code: q["code"].clone(),
        state: q["state"].clone(),
        verifier,
    }
}

/// The token request of the SDKs' PKCE flow: every authorize parameter is sent again.
async fn exchange(
    server: &TestServer,
    client_id: &str,
    code: &str,
    verifier: &str,
    redirect: &str,
) -> reqwest::Response {
    let body = format!(
        "code={}&grant_type=authorization_code&code_verifier={}&client_id={client_id}&response_type=code&scope=offline+all&redirect_uri={}&state=x&code_challenge=ignored&code_challenge_method=S256",
        url_encode(code),
        url_encode(verifier),
        url_encode(redirect)
    );
    post_token(server, &body).await
}

async fn post_token(server: &TestServer, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn refresh(server: &TestServer, token: &str) -> reqwest::Response {
    post_token(
        server,
        &format!(
            "refresh_token={}&grant_type=refresh_token&client_id=flytectl",
            url_encode(token)
        ),
    )
    .await
}

async fn me(server: &TestServer, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url("/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let ct = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned())
}

async fn server_with_alice() -> TestServer {
    let server = TestServer::start().await;
    server.add_user("alice", PASSWORD).await;
    server
}

#[tokio::test]
async fn pkce_login_issues_tokens_for_the_person() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let state = "st-4t3_.,~ with space";
    let got = login(&server, &mut browser, state).await;
    assert_eq!(got.state, state, "state comes back unchanged");

    let response = exchange(&server, "flytectl", &got.code, &got.verifier, REDIRECT).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(body["refresh_token"].is_string(), "offline was granted");
    assert!(body["id_token"].is_null(), "openid was not asked for");
    let access = body["access_token"].as_str().unwrap();

    let response = me(&server, access).await;
    assert_eq!(response.status(), 200);
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["name"], "Alice Example");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["additional_claims"]["identity_type"], "user");
    assert_ne!(info["subject"], "flytectl");

    let userinfo: Value = reqwest::Client::new()
        .get(server.url("/oauth2/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], info["subject"]);
    assert_eq!(userinfo["email"], "alice@example.com");
    server.stop().await;
}

#[tokio::test]
async fn openid_scope_gives_an_id_token_with_the_nonce() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let (verifier, challenge) = pkce_pair();
    let path = format!(
        "{}&nonce=n-0S6_WzA2Mj",
        sdk_authorize_path(
            "flytectl",
            REDIRECT,
            "openid profile email all",
            "s",
            &challenge
        )
    );
    let done = browser.authorize(&path, "alice", PASSWORD).await;
    let code = done.location_query()["code"].clone();
    let body: Value = exchange(&server, "flytectl", &code, &verifier, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let id_token = body["id_token"].as_str().expect("an id token");
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["aud"], serde_json::json!(["flytectl"]));
    assert_eq!(claims["email"], "alice@example.com");
    assert!(body["refresh_token"].is_null(), "offline was not asked for");
    server.stop().await;
}

#[tokio::test]
async fn discovery_advertises_the_login_endpoints() {
    let server = TestServer::start().await;
    let doc: Value = reqwest::get(server.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base = &server.state.metadata.issuer;
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/oauth2/authorize")
    );
    assert_eq!(doc["revocation_endpoint"], format!("{base}/oauth2/revoke"));
    assert_eq!(
        doc["introspection_endpoint"],
        format!("{base}/oauth2/introspect")
    );
    assert_eq!(doc["userinfo_endpoint"], format!("{base}/oauth2/userinfo"));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(
            doc["grant_types_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == grant),
            "{grant}"
        );
    }
    for field in [
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "jwks_uri",
    ] {
        assert!(!doc[field].is_null(), "{field}");
    }
    server.stop().await;
}

#[tokio::test]
async fn replayed_code_is_refused_and_revokes_what_it_issued() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let got = login(&server, &mut browser, "s").await;
    let first: Value = exchange(&server, "flytectl", &got.code, &got.verifier, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let access = first["access_token"].as_str().unwrap();
    let refresh_token = first["refresh_token"].as_str().unwrap();
    assert_eq!(me(&server, access).await.status(), 200);

    let (status, error) =
        error_of(exchange(&server, "flytectl", &got.code, &got.verifier, REDIRECT).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_grant"));
    assert_eq!(
        me(&server, access).await.status(),
        401,
        "the first access token is revoked"
    );
    let (_, error) = error_of(refresh(&server, refresh_token).await).await;
    assert_eq!(error, "invalid_grant", "the first refresh token is revoked");
    server.stop().await;
}

#[tokio::test]
async fn code_is_bound_to_client_redirect_uri_and_verifier() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);

    let got = login(&server, &mut browser, "s").await;
    let (_, e) =
        error_of(exchange(&server, "flyte-cli", &got.code, &got.verifier, REDIRECT).await).await;
    assert_eq!(e, "invalid_grant", "another client");

    let got = login(&server, &mut browser, "s").await;
    let (_, e) = error_of(
        exchange(
            &server,
            "flytectl",
            &got.code,
            &got.verifier,
            "http://localhost:12345/callback",
        )
        .await,
    )
    .await;
    assert_eq!(e, "invalid_grant", "another redirect URI");

    let got = login(&server, &mut browser, "s").await;
    let (_, e) = error_of(
        exchange(
            &server,
            "flytectl",
            &got.code,
            "wrong-verifier-wrong-verifier-wrong-verifier-1234",
            REDIRECT,
        )
        .await,
    )
    .await;
    assert_eq!(e, "invalid_grant", "wrong verifier");

    let got = login(&server, &mut browser, "s").await;
    let body = format!(
        "code={}&grant_type=authorization_code&client_id=flytectl&redirect_uri={}",
        url_encode(&got.code),
        url_encode(REDIRECT)
    );
    let (_, e) = error_of(post_token(&server, &body).await).await;
    assert!(
        e == "invalid_grant" || e == "invalid_request",
        "missing verifier: {e}"
    );

    let (_, e) =
        error_of(exchange(&server, "flytectl", "made-up-code", &got.verifier, REDIRECT).await)
            .await;
    assert_eq!(e, "invalid_grant", "unknown code");
    server.stop().await;
}

#[tokio::test]
async fn loopback_redirect_uris_match_on_any_port() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let (verifier, challenge) = pkce_pair();
    let redirect = "http://localhost:61111/callback";
    let path = sdk_authorize_path("flytectl", redirect, "all", "s", &challenge);
    let done = browser.authorize(&path, "alice", PASSWORD).await;
    assert!(done.location.as_deref().unwrap().starts_with(redirect));
    let code = done.location_query()["code"].clone();
    assert_eq!(
        exchange(&server, "flytectl", &code, &verifier, redirect)
            .await
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn unregistered_redirect_uris_get_a_page_and_are_never_redirected_to() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let (_, challenge) = pkce_pair();
    for redirect in [
        "http://localhost:53593/callback/extra",
        "http://localhost:53593/Callback",
        "http://localhost:53593/callbac",
        "http://evil.example.com/callback",
        "http://localhost:53593@evil.example.com/callback",
        "http://evil.example.com@localhost:53593/callback",
        "http://localhost:53593/%63allback",
        "https://localhost:53593/callback",
        "http://localhost:53593/callback#frag",
        "",
    ] {
        let path = sdk_authorize_path("flytectl", redirect, "all", "s", &challenge);
        let page = browser.get(&path).await;
        assert_eq!(page.status, 400, "{redirect}");
        assert!(page.location.is_none(), "{redirect}");
        assert!(page.content_type.starts_with("text/html"), "{redirect}");
        assert!(page.body.contains("<h1>"), "{redirect}");
    }
    let page = browser
        .get(&sdk_authorize_path(
            "nobody", REDIRECT, "all", "s", &challenge,
        ))
        .await;
    assert_eq!(
        (page.status, page.location.is_none()),
        (400, true),
        "unknown client"
    );
    server.stop().await;
}

#[tokio::test]
async fn pkce_is_required_and_plain_refused() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let (_, challenge) = pkce_pair();
    let no_pkce = format!(
        "/oauth2/authorize?client_id=flytectl&response_type=code&scope=all&redirect_uri={}&state=s1",
        url_encode(REDIRECT)
    );
    let plain = format!("{no_pkce}&code_challenge={challenge}&code_challenge_method=plain");
    let bad_type = sdk_authorize_path("flytectl", REDIRECT, "all", "s1", &challenge)
        .replace("response_type=code", "response_type=token");
    for path in [no_pkce.clone(), plain, bad_type] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 303, "{path}");
        let q = page.location_query();
        assert!(page.location.as_deref().unwrap().starts_with(REDIRECT));
        assert!(q.contains_key("error"), "{path}");
        assert!(!q.contains_key("code"), "{path}");
        assert_eq!(q["state"], "s1");
    }
    server.stop().await;
}

#[tokio::test]
async fn login_form_needs_its_csrf_token() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let page = browser.get("/login?return_to=%2Fme").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<label for=\"password\">"));
    let answer = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", "forged"),
                ("return_to", "/me"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(answer.status, 403);
    assert!(answer.content_type.starts_with("text/html"));
    assert!(!browser.cookies.contains_key("flyteauth_session"));

    let mut stranger = Browser::new(&server);
    let answer = stranger
        .post_form("/login", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(answer.status, 403, "no CSRF cookie at all");
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_and_lockout_engages() {
    let server =
        TestServer::start_with("  login:\n    maxFailures: 3\n    lockoutDuration: 10m\n").await;
    server.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&server);
    let page = browser.get("/login").await;
    for _ in 0..3 {
        let answer = browser
            .submit_login(&page, "alice", "not the password")
            .await;
        assert_eq!(answer.status, 401);
        assert!(answer.body.contains("Wrong user name or password."));
        assert!(answer.content_type.starts_with("text/html"));
    }
    let answer = browser.submit_login(&page, "alice", PASSWORD).await;
    assert_eq!(
        answer.status, 429,
        "locked: even the right password is refused"
    );
    assert!(!browser.cookies.contains_key("flyteauth_session"));
    assert!(answer.body.contains("locked"));
    server.stop().await;
}

#[tokio::test]
async fn hostile_user_names_get_the_ordinary_answer() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let page = browser.get("/login").await;
    for name in [
        "alice' OR '1'='1",
        "alice\u{0}",
        "ali\nce",
        "\u{202e}alice",
        "%00",
        &"a".repeat(5000),
        "",
    ] {
        let answer = browser.submit_login(&page, name, PASSWORD).await;
        assert_eq!(answer.status, 401, "{name:?}");
        assert!(answer.body.contains("Wrong user name or password."));
    }
    server.stop().await;
}

#[tokio::test]
async fn tampered_session_cookie_means_logging_in_again() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    login(&server, &mut browser, "s").await;
    let cookie = browser.cookies.get_mut("flyteauth_session").unwrap();
    let last = cookie.pop().unwrap();
    cookie.push(if last == 'A' { 'B' } else { 'A' });
    let (_, challenge) = pkce_pair();
    let page = browser
        .get(&sdk_authorize_path(
            "flytectl", REDIRECT, "all", "s", &challenge,
        ))
        .await;
    assert_eq!(page.status, 303);
    assert!(
        page.location
            .as_deref()
            .unwrap()
            .starts_with("/login?return_to=")
    );
    server.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_after_the_grace_window_kills_the_family() {
    let server = TestServer::start_with("  refreshTokenReuseGrace: 0s\n").await;
    server.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&server);
    let got = login(&server, &mut browser, "s").await;
    let body: Value = exchange(&server, "flytectl", &got.code, &got.verifier, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let r1 = body["refresh_token"].as_str().unwrap().to_owned();

    let response = refresh(&server, &r1).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let r2 = body["refresh_token"].as_str().unwrap().to_owned();
    let a2 = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "every use rotates");
    assert_eq!(me(&server, &a2).await.status(), 200);

    let (_, e) = error_of(refresh(&server, &r1).await).await;
    assert_eq!(e, "invalid_grant", "the old token is refused");
    let (_, e) = error_of(refresh(&server, &r2).await).await;
    assert_eq!(e, "invalid_grant", "and the whole family with it");
    assert_eq!(
        me(&server, &a2).await.status(),
        401,
        "its access tokens too"
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_keep_the_login() {
    let server = TestServer::start_with("  refreshTokenReuseGrace: 30s\n").await;
    server.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&server);
    let got = login(&server, &mut browser, "s").await;
    let body: Value = exchange(&server, "flytectl", &got.code, &got.verifier, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let r1 = body["refresh_token"].as_str().unwrap().to_owned();

    let (a, b) = tokio::join!(refresh(&server, &r1), refresh(&server, &r1));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    for answer in [&a, &b] {
        let token = answer["refresh_token"].as_str().unwrap();
        assert_eq!(
            refresh(&server, token).await.status(),
            200,
            "both successors stay usable"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn revocation_ends_refresh_families_and_access_tokens_at_once() {
    let server = server_with_alice().await;
    let mut browser = Browser::new(&server);
    let got = login(&server, &mut browser, "s").await;
    let body: Value = exchange(&server, "flytectl", &got.code, &got.verifier, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();

    let revoke = |token: String| {
        let url = server.url("/oauth2/revoke");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={}&client_id=flytectl", url_encode(&token)))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(revoke(access.clone()).await.status(), 200);
    assert_eq!(
        me(&server, &access).await.status(),
        401,
        "revoked access token fails at once"
    );
    assert_eq!(
        revoke("not-a-token".into()).await.status(),
        200,
        "unknown tokens: 200 (RFC 7009)"
    );
    assert_eq!(
        refresh(&server, &refresh_token).await.status(),
        200,
        "revoking the access token leaves the login"
    );

    let got = login(&server, &mut browser, "s").await;
    let body: Value = exchange(&server, "flytectl", &got.code, &got.verifier, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(revoke(refresh_token.clone()).await.status(), 200);
    let (_, e) = error_of(refresh(&server, &refresh_token).await).await;
    assert_eq!(e, "invalid_grant");
    assert_eq!(
        me(&server, &access).await.status(),
        401,
        "the family's access tokens end with it"
    );
    server.stop().await;
}

#[tokio::test]
async fn introspection_is_for_confidential_clients_and_sees_revocations() {
    let server = server_with_alice().await;
    let app_token = server.app_token().await;
    let introspect = |token: String, auth: Option<String>| {
        let url = server.url("/oauth2/introspect");
        async move {
            let mut request = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded");
            let mut body = format!("token={}", url_encode(&token));
            match auth {
                Some(auth) => request = request.header("authorization", auth),
                None => body.push_str("&client_id=flytectl"),
            }
            request.body(body).send().await.unwrap()
        }
    };
    let basic = sdk_basic(WEB_APP_ID, WEB_APP_SECRET);
    let answer: Value = introspect(app_token.clone(), Some(basic.clone()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], APP_ID);
    assert_eq!(answer["identity_type"], "app");
    let answer: Value = introspect("garbage".into(), Some(basic.clone()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!({"active": false}));

    let (status, e) = error_of(introspect(app_token.clone(), None).await).await;
    assert_eq!(
        (status, e.as_str()),
        (401, "invalid_client"),
        "public clients may not introspect"
    );

    let revoked = reqwest::Client::new()
        .post(server.url("/oauth2/revoke"))
        .header("authorization", sdk_basic(APP_ID, APP_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", url_encode(&app_token)))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let answer: Value = introspect(app_token, Some(basic))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], false);
    let _ = WEB_APP_REDIRECT;
    server.stop().await;
}

#[tokio::test]
async fn a_revocation_reaches_another_replica_within_five_seconds() {
    let server = server_with_alice().await;
    let token = server.app_token().await;
    assert_eq!(me(&server, &token).await.status(), 200);
    // Another replica on the same database records the revocation; this one must pick it up by polling.
    let store = flyteauth_store::connect(&format!(
        "sqlite://{}/flyteauth.db",
        server.dir.path().display()
    ))
    .await
    .unwrap();
    let identity = server.state.validator.validate_uncached(&token).unwrap();
    let now = flyteauth_core::clock::Clock::unix_now(server.state.clock.as_ref());
    store
        .revoke(&flyteauth_store::Revocation {
            kind: flyteauth_store::RevocationKind::Token,
            token_id: identity.token_id.clone(),
            expires_at: now + 3600,
            reason: "test".into(),
            revoked_at: now,
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while me(&server, &token).await.status() == 200 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "still accepted after 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_input_never_gets_a_500_and_always_its_family_error_form() {
    let server = server_with_alice().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let long = "a".repeat(70_000);
    let queries = [
        "",
        "client_id=flytectl&client_id=flyte-cli",
        "client_id=%ff%fe",
        "client_id=flytectl&redirect_uri=%zz",
        "client_id=\u{0}",
        &format!("client_id=flytectl&state={}", &long[..9000]),
        "response_type=code",
        "client_id=flytectl&redirect_uri=javascript:alert(1)",
    ];
    for q in queries {
        let response = http
            .get(server.url(&format!("/oauth2/authorize?{q}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "authorize {q:.60}: {status}");
        let ct = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/html"), "authorize {q:.60}: {ct}");
    }
    let bodies: [&[u8]; 6] = [
        b"",
        b"\xff\xfe",
        b"username=a&username=b",
        b"csrf_token=&return_to=//evil.example.com",
        b"%",
        b"password=x",
    ];
    for body in bodies {
        for path in [
            "/login",
            "/oauth2/token",
            "/oauth2/revoke",
            "/oauth2/introspect",
        ] {
            let response = http
                .post(server.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!((400..500).contains(&status), "{path} {body:?}: {status}");
            let ct = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let want = if path == "/login" {
                "text/html"
            } else {
                "application/json"
            };
            assert!(ct.starts_with(want), "{path} {body:?}: {ct}");
        }
    }
    let response = http
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id=flytectl&code={long}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413, "oversized token request");
    for token in ["", "a.b.c", &long[..5000]] {
        let response = http
            .get(server.url("/oauth2/userinfo"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "userinfo {token:.20}");
    }
    server.stop().await;
}
