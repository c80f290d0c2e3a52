//! Sign-in through an external OpenID provider (`auth.userAuth.openId`), against a fake provider whose answers
//! each test bends: the happy path with PKCE, `state` and `nonce`; the provider's own query parameter; logout at
//! the provider; local accounts beside federation; and every attack of the issue — wrong state, a missing or
//! foreign login cookie, a replayed callback, ID tokens with a wrong nonce, audience, issuer, algorithm or key,
//! expired ones, a failing or unreachable provider — each answered with a clear page, never a 500 and never a
//! session; and an oversized ID token that still leaves every cookie under 4 KB.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_tests::TestServer;
use flyteauth_tests::browser::{Browser, Page, pkce_pair, sdk_authorize_path, url_encode};
use flyteauth_tests::fake_idp::{
    self, AuthorizeAnswer, CLIENT_ID, ClientAuth, FakeIdp, IdTokenAnswer, TokenAnswer,
};
use serde_json::Value;
use std::collections::HashMap;

const SESSION: &str = "flyteauth_session";
const LOGIN_COOKIE_PREFIX: &str = "flyteauth_login_";
const PASSWORD: &str = "correct horse battery staple";

async fn federated(flyteauth_extra: &str, user_auth_extra: &str) -> (FakeIdp, TestServer) {
    let idp = FakeIdp::start().await;
    let server = idp.start_server(flyteauth_extra, user_auth_extra).await;
    (idp, server)
}

fn query_of(url: &str) -> HashMap<String, String> {
    let parsed = url::Url::parse(url)
        .or_else(|_| {
            url::Url::parse("http://relative.invalid")
                .unwrap()
                .join(url)
        })
        .unwrap();
    parsed.query_pairs().into_owned().collect()
}

fn set_cookies(page: &Page) -> Vec<String> {
    page.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Asserts every cookie `page` sets is a small, HttpOnly, `Path=/` cookie.
fn assert_cookies_small(page: &Page, context: &str) {
    for cookie in set_cookies(page) {
        let value = cookie.split(';').next().unwrap();
        assert!(
            value.len() < 4096,
            "{context}: a {}-byte cookie: {}…",
            value.len(),
            &cookie[..80.min(cookie.len())]
        );
        let attrs = cookie.to_ascii_lowercase();
        assert!(attrs.contains("httponly"), "{context}: {cookie}");
        assert!(attrs.contains("path=/"), "{context}: {cookie}");
    }
}

/// Whether `page` gives the browser a session cookie.
fn sets_session(page: &Page) -> bool {
    set_cookies(page).iter().any(|c| {
        c.starts_with(&format!("{SESSION}="))
            && !c.starts_with(&format!("{SESSION}=;"))
            && !c.contains("Max-Age=0")
    })
}

/// GETs `path` on the server and follows its own redirects until one leads to the provider's authorize
/// endpoint; returns that answer.
async fn to_idp(idp: &FakeIdp, browser: &mut Browser, path: &str) -> Page {
    let mut page = browser.get(path).await;
    for _ in 0..3 {
        assert_eq!(page.status, 303, "{path}: {}", page.body);
        let location = page.location.clone().unwrap();
        if location.starts_with(&format!("{}/authorize?", idp.base)) {
            assert_cookies_small(&page, path);
            return page;
        }
        assert!(
            location.starts_with('/'),
            "{path}: redirected to {location} instead of the provider"
        );
        page = browser.get(&location).await;
    }
    panic!("{path}: never redirected to the provider");
}

/// The provider's answer to the authorize redirect in `page`.
async fn at_idp(browser: &mut Browser, page: &Page) -> Page {
    let answer = browser.get(page.location.as_deref().unwrap()).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    answer
}

/// A whole federated sign-in starting at `path`; returns the server's answer to the callback.
async fn federated_login(idp: &FakeIdp, browser: &mut Browser, path: &str) -> Page {
    let to = to_idp(idp, browser, path).await;
    let back = at_idp(browser, &to).await;
    browser.get(back.location.as_deref().unwrap()).await
}

/// Asserts a refused sign-in: an HTML page with `status`, and no session.
async fn assert_refused(
    server: &TestServer,
    browser: &mut Browser,
    page: &Page,
    status: u16,
    context: &str,
) {
    assert_eq!(page.status, status, "{context}: {}", page.body);
    assert!(
        page.content_type.starts_with("text/html"),
        "{context}: {}",
        page.content_type
    );
    assert!(
        !sets_session(page),
        "{context}: a session cookie was set: {:?}",
        set_cookies(page)
    );
    assert!(!browser.cookies.contains_key(SESSION), "{context}");
    assert_cookies_small(page, context);
    let me = client()
        .get(server.url("/me"))
        .header(
            "cookie",
            browser
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "{context}: /me after the refusal");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
        .to_str()
        .unwrap()
}

async fn me(server: &TestServer, browser: &Browser) -> reqwest::Response {
    client()
        .get(server.url("/me"))
        .header("cookie", format!("{SESSION}={}", browser.cookies[SESSION]))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn federated_login_with_pkce_lands_on_the_target() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let target = "/console/projects?domain=development";

    let to = to_idp(
        &idp,
        &mut browser,
        &format!("/login?redirect_url={}", url_encode(target)),
    )
    .await;
    let q = to.location_query();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], server.url("/callback"));
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    for scope in ["openid", "profile", "email"] {
        assert!(scopes.contains(&scope), "{scopes:?}");
    }
    let state = q["state"].clone();
    assert!(state.len() >= 16, "a guessable state: {state:?}");
    assert!(
        q["nonce"].len() >= 16,
        "a guessable nonce: {:?}",
        q["nonce"]
    );
    assert_ne!(q["nonce"], state);
    assert!(q["code_challenge"].len() >= 43, "{:?}", q["code_challenge"]);
    assert_eq!(q["code_challenge_method"], "S256");
    let login_cookie = format!("{LOGIN_COOKIE_PREFIX}{}", &state[..8]);
    assert!(
        browser.cookies.contains_key(&login_cookie),
        "no {login_cookie} among {:?}",
        browser.cookies.keys()
    );
    assert!(!browser.cookies.contains_key(SESSION));

    let back = at_idp(&mut browser, &to).await;
    let callback = back.location.clone().unwrap();
    assert!(
        callback.starts_with(&server.url("/callback?")),
        "{callback}"
    );
    let done = browser.get(&callback).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let base = url::Url::parse(&server.base).unwrap();
    assert_eq!(
        base.join(done.location.as_deref().unwrap()).unwrap(),
        base.join(target).unwrap()
    );
    assert!(sets_session(&done), "{:?}", set_cookies(&done));
    assert_cookies_small(&done, "callback");
    assert!(
        !browser.cookies.contains_key(&login_cookie),
        "the pending login's cookie outlived the login"
    );

    // The provider saw a PKCE-protected exchange, authenticated with the client secret.
    let authorize = idp.authorize_requests();
    assert_eq!(authorize.len(), 1);
    assert_eq!(authorize[0].get("code_challenge_method"), "S256");
    let tokens = idp.token_requests();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].status, 200, "{tokens:?}");
    assert_eq!(
        tokens[0].client_auth,
        ClientAuth::Basic {
            client_id: CLIENT_ID.to_owned(),
            secret_ok: true
        }
    );
    assert_eq!(tokens[0].pkce_verified, Some(true));
    assert_eq!(tokens[0].redirect_uri_matched, Some(true));
    assert_eq!(tokens[0].params["grant_type"], "authorization_code");
    assert!(
        !tokens[0].params.contains_key("client_secret"),
        "the secret went in the body as well"
    );

    // /me names the provider's person.
    let user = idp.user();
    let response = me(&server, &browser).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-user-subject"), user.sub);
    assert_eq!(header(&response, "x-user-claim-identitytype"), "\"user\"");
    assert_eq!(
        header(&response, "x-user-claim-email"),
        format!("\"{}\"", user.email)
    );
    assert_eq!(
        header(&response, "x-user-claim-name"),
        format!("\"{}\"", user.name)
    );
    assert_eq!(
        header(&response, "x-user-claim-preferred-username"),
        format!("\"{}\"", user.preferred_username)
    );
    let groups: Value = serde_json::from_str(header(&response, "x-user-claim-groups")).unwrap();
    assert_eq!(groups, serde_json::json!(user.groups));
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["subject"], user.sub.as_str());
    assert_eq!(info["email"], user.email.as_str());
    assert_eq!(info["name"], user.name.as_str());
    assert_eq!(info["preferred_username"], user.preferred_username.as_str());

    // Signed in, /login goes straight to the target without the provider.
    let before = idp.requests().len();
    let again = browser
        .get(&format!("/login?redirect_url={}", url_encode("/console")))
        .await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(
        base.join(again.location.as_deref().unwrap()).unwrap(),
        base.join("/console").unwrap()
    );
    assert_eq!(idp.requests().len(), before);
    server.stop().await;
}

#[tokio::test]
async fn federated_login_reads_userinfo() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert!(done.status == 303 || done.status == 200, "{}", done.body);
    let issued = idp.token_requests();
    assert_eq!(issued.len(), 1);
    let userinfo = idp.userinfo_requests();
    assert!(
        !userinfo.is_empty() && userinfo.iter().all(Option::is_some),
        "userinfo was not called with the access token: {userinfo:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn non_ascii_claims_are_escaped_in_the_identity_headers() {
    let (idp, server) = federated("", "").await;
    idp.set_user(fake_idp::IdpUser {
        name: "Zoë Ångström".to_owned(),
        groups: vec!["équipe".to_owned(), "a\"b".to_owned()],
        ..fake_idp::IdpUser::default()
    });
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert!(done.status == 303 || done.status == 200, "{}", done.body);
    let response = me(&server, &browser).await;
    assert_eq!(response.status(), 200);
    let name = header(&response, "x-user-claim-name");
    assert!(name.is_ascii(), "{name:?}");
    assert_eq!(
        serde_json::from_str::<String>(name).unwrap(),
        "Zoë Ångström"
    );
    let groups: Vec<String> =
        serde_json::from_str(header(&response, "x-user-claim-groups")).unwrap();
    assert_eq!(groups, ["équipe", "a\"b"]);
    server.stop().await;
}

#[tokio::test]
async fn the_idp_query_parameter_is_passed_to_the_provider() {
    let (idp, server) = federated("", "    idpQueryParameter: idp\n").await;
    let mut browser = Browser::new(&server);
    let to = to_idp(
        &idp,
        &mut browser,
        "/login?idp=okta-x&redirect_url=%2Fconsole",
    )
    .await;
    assert_eq!(to.location_query()["idp"], "okta-x");
    at_idp(&mut browser, &to).await;
    assert_eq!(idp.authorize_requests()[0].get("idp"), "okta-x");
    server.stop().await;

    // Not configured, it is not passed on.
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let to = to_idp(&idp, &mut browser, "/login?idp=okta-x").await;
    assert!(
        !to.location_query().contains_key("idp"),
        "{:?}",
        to.location
    );
    server.stop().await;
}

#[tokio::test]
async fn several_tabs_can_sign_in_at_once() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let first = to_idp(&idp, &mut browser, "/login?redirect_url=%2Fone").await;
    let second = to_idp(&idp, &mut browser, "/login?redirect_url=%2Ftwo").await;
    let first_back = at_idp(&mut browser, &first).await;
    let second_back = at_idp(&mut browser, &second).await;
    let done = browser.get(second_back.location.as_deref().unwrap()).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.location.as_deref().unwrap().ends_with("/two"),
        "{:?}",
        done.location
    );
    let done = browser.get(first_back.location.as_deref().unwrap()).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.location.as_deref().unwrap().ends_with("/one"),
        "{:?}",
        done.location
    );
    assert_eq!(me(&server, &browser).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_state_is_refused() {
    let (idp, server) = federated("", "").await;
    idp.set_authorize(AuthorizeAnswer::WrongState);
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert_refused(&server, &mut browser, &done, 400, "wrong state").await;
    assert!(
        idp.token_requests().is_empty(),
        "the code was exchanged despite the wrong state"
    );

    // A callback without any state, or with an empty one.
    idp.set_authorize(AuthorizeAnswer::Code);
    let to = to_idp(&idp, &mut browser, "/login").await;
    let back = at_idp(&mut browser, &to).await;
    let code = query_of(back.location.as_deref().unwrap())["code"].clone();
    for path in [
        format!("/callback?code={}", url_encode(&code)),
        format!("/callback?code={}&state=", url_encode(&code)),
        "/callback".to_owned(),
        "/callback?state=x&state=y&code=a&code=b".to_owned(),
    ] {
        let page = browser.get(&path).await;
        assert_refused(&server, &mut browser, &page, 400, &path).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_callback_without_the_login_cookie_is_refused() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let to = to_idp(&idp, &mut browser, "/login").await;
    let back = at_idp(&mut browser, &to).await;
    // Another browser (or one that lost the cookie) arrives with the code and state.
    let mut other = Browser::new(&server);
    let page = other.get(back.location.as_deref().unwrap()).await;
    assert_refused(&server, &mut other, &page, 400, "no login cookie").await;
    assert!(idp.token_requests().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_callback_with_another_logins_cookie_is_refused() {
    let (idp, server) = federated("", "").await;
    // The attacker starts a login and keeps the callback URL (their own code) for the victim to open.
    let mut attacker = Browser::new(&server);
    let to = to_idp(&idp, &mut attacker, "/login").await;
    let planted = at_idp(&mut attacker, &to).await.location.unwrap();
    let planted_state = query_of(&planted)["state"].clone();

    // The victim has a pending login of their own.
    let mut victim = Browser::new(&server);
    let own = to_idp(&idp, &mut victim, "/login").await;
    let own_state = own.location_query()["state"].clone();
    assert_ne!(own_state[..8], planted_state[..8]);
    let page = victim.get(&planted).await;
    assert_refused(&server, &mut victim, &page, 400, "another login's cookie").await;

    // The victim's cookie renamed to match the planted state's prefix is still the wrong login.
    let own_cookie = victim.cookies[&format!("{LOGIN_COOKIE_PREFIX}{}", &own_state[..8])].clone();
    let mut renamed = Browser::new(&server);
    renamed.cookies.insert(
        format!("{LOGIN_COOKIE_PREFIX}{}", &planted_state[..8]),
        own_cookie.clone(),
    );
    let page = renamed.get(&planted).await;
    assert_refused(&server, &mut renamed, &page, 400, "a renamed login cookie").await;

    // A login cookie is no session cookie.
    let as_session = client()
        .get(server.url("/me"))
        .header("cookie", format!("{SESSION}={own_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_session.status(), 401);
    assert!(
        idp.token_requests().is_empty(),
        "{:?}",
        idp.token_requests()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let to = to_idp(&idp, &mut browser, "/login").await;
    let pending = browser.cookies.clone();
    let back = at_idp(&mut browser, &to).await;
    let callback = back.location.clone().unwrap();
    let done = browser.get(&callback).await;
    assert!(done.status == 303 || done.status == 200, "{}", done.body);
    assert!(sets_session(&done));

    // The same browser opens the callback again (its session cookie aside).
    browser.cookies.remove(SESSION);
    let page = browser.get(&callback).await;
    assert_refused(&server, &mut browser, &page, 400, "the callback again").await;

    // Someone who copied the pending login's cookie replays code and state with it.
    let mut thief = Browser::new(&server);
    thief.cookies = pending;
    thief.cookies.remove(SESSION);
    let page = thief.get(&callback).await;
    assert!(
        page.status == 400 || page.status == 502,
        "a replay with the old login cookie: {} {}",
        page.status,
        page.body
    );
    assert_refused(
        &server,
        &mut thief,
        &page,
        page.status,
        "a replay with the old login cookie",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn an_error_from_the_provider_is_403() {
    let (idp, server) = federated("", "").await;
    idp.set_authorize(AuthorizeAnswer::AccessDenied);
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert_refused(&server, &mut browser, &done, 403, "error=access_denied").await;
    assert!(idp.token_requests().is_empty());
    server.stop().await;
}

/// A login whose ID token is `answer` ends with a 401 page and no session.
async fn id_token_refused(answer: IdTokenAnswer) {
    let (idp, server) = federated("", "").await;
    idp.set_id_token(answer);
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert_refused(&server, &mut browser, &done, 401, &format!("{answer:?}")).await;
    assert_eq!(idp.token_requests().len(), 1, "{answer:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_id_token_with_a_wrong_nonce_is_refused() {
    id_token_refused(IdTokenAnswer::WrongNonce).await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    id_token_refused(IdTokenAnswer::OtherAudience).await;
}

#[tokio::test]
async fn an_unsigned_id_token_is_refused() {
    id_token_refused(IdTokenAnswer::AlgNone).await;
}

#[tokio::test]
async fn an_id_token_signed_by_an_unknown_key_is_refused() {
    id_token_refused(IdTokenAnswer::UnknownKey).await;
}

#[tokio::test]
async fn an_id_token_signed_with_the_client_secret_is_refused() {
    id_token_refused(IdTokenAnswer::Hs256ClientSecret).await;
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    id_token_refused(IdTokenAnswer::Expired).await;
}

#[tokio::test]
async fn an_id_token_of_another_issuer_is_refused() {
    id_token_refused(IdTokenAnswer::WrongIssuer).await;
}

#[tokio::test]
async fn unknown_keys_refetch_the_jwks_at_most_once() {
    let (idp, server) = federated("", "").await;
    idp.set_id_token(IdTokenAnswer::UnknownKey);
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert_refused(&server, &mut browser, &done, 401, "unknown key").await;
    let after_first = idp.count("/jwks");
    assert!((1..=2).contains(&after_first), "{after_first} JWKS fetches");
    for i in 0..3 {
        let mut browser = Browser::new(&server);
        let done = federated_login(&idp, &mut browser, "/login").await;
        assert_refused(
            &server,
            &mut browser,
            &done,
            401,
            &format!("unknown key #{i}"),
        )
        .await;
    }
    assert!(
        idp.count("/jwks") <= 2,
        "{} JWKS fetches for four tokens signed by an unknown key within 30 s",
        idp.count("/jwks")
    );
    // A good token right after still signs in.
    idp.set_id_token(IdTokenAnswer::Good);
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert!(sets_session(&done), "{} {}", done.status, done.body);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_token_endpoint_is_502() {
    for answer in [TokenAnswer::ServerError, TokenAnswer::InvalidGrant] {
        let (idp, server) = federated("", "").await;
        idp.set_token(answer);
        let mut browser = Browser::new(&server);
        let done = federated_login(&idp, &mut browser, "/login").await;
        assert_refused(&server, &mut browser, &done, 502, &format!("{answer:?}")).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn a_provider_that_goes_down_before_the_exchange_is_502() {
    let (mut idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let to = to_idp(&idp, &mut browser, "/login").await;
    let back = at_idp(&mut browser, &to).await;
    idp.stop().await;
    let page = browser.get(back.location.as_deref().unwrap()).await;
    assert_refused(
        &server,
        &mut browser,
        &page,
        502,
        "provider down at the exchange",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_is_a_clear_503() {
    let down = fake_idp::closed_base_url().await;
    let server = fake_idp::server_for(&down, "", "").await;
    for path in [
        "/login",
        "/login?redirect_url=%2Fconsole",
        "/login/federated",
    ] {
        let mut browser = Browser::new(&server);
        let started = std::time::Instant::now();
        let page = browser.get(path).await;
        assert_refused(&server, &mut browser, &page, 503, path).await;
        assert!(
            page.body.to_ascii_lowercase().contains("identity provider"),
            "{path}: {}",
            page.body
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_id_token_still_leaves_every_cookie_small() {
    for answer in [IdTokenAnswer::Oversized, IdTokenAnswer::ManyGroups] {
        let (idp, server) = federated("", "").await;
        idp.set_id_token(answer);
        let mut browser = Browser::new(&server);
        let to = to_idp(&idp, &mut browser, "/login?redirect_url=%2Fconsole").await;
        let back = at_idp(&mut browser, &to).await;
        let done = browser.get(back.location.as_deref().unwrap()).await;
        assert_eq!(done.status, 303, "{answer:?}: {}", done.body);
        assert!(sets_session(&done), "{answer:?}");
        assert_cookies_small(&done, &format!("{answer:?}"));
        let id_token = &idp.issued_id_tokens()[0];
        assert!(
            id_token.len() > 8 * 1024,
            "{answer:?}: {} bytes",
            id_token.len()
        );

        let response = me(&server, &browser).await;
        assert_eq!(response.status(), 200, "{answer:?}");
        assert_eq!(header(&response, "x-user-subject"), idp.user().sub);
        for cookie in response.headers().get_all("set-cookie") {
            assert!(
                cookie.len() < 4096,
                "{answer:?}: /me set a {}-byte cookie",
                cookie.len()
            );
        }
        // Logging out still works, with the provider's hint however long.
        let out = browser.get("/logout").await;
        assert!(
            out.status == 303 || out.status == 200,
            "{answer:?}: {}",
            out.body
        );
        assert_cookies_small(&out, "logout");
        server.stop().await;
    }
}

#[tokio::test]
async fn logout_of_a_federated_session_ends_it_at_the_provider() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert!(sets_session(&done), "{} {}", done.status, done.body);
    let cookie = browser.cookies[SESSION].clone();

    let back_to = server.url("/bye");
    let out = browser
        .get(&format!("/logout?redirect_url={}", url_encode(&back_to)))
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    let location = out.location.clone().unwrap();
    assert!(
        location.starts_with(&format!("{}/end_session?", idp.base)),
        "{location}"
    );
    assert!(
        !browser.cookies.contains_key(SESSION),
        "the session cookie was not cleared"
    );
    let q = out.location_query();
    assert_eq!(q["id_token_hint"], idp.issued_id_tokens()[0]);
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["post_logout_redirect_uri"], back_to);

    let at = browser.get(&location).await;
    assert_eq!(at.status, 303);
    assert_eq!(idp.end_session_requests().len(), 1);
    assert!(
        at.location.as_deref().unwrap().starts_with(&back_to),
        "{:?}",
        at.location
    );
    let replay = client()
        .get(server.url("/me"))
        .header("cookie", format!("{SESSION}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn federated_logout_never_sends_the_provider_a_foreign_target() {
    let (idp, server) = federated("", "").await;
    for target in [
        None,
        Some("https://evil.example/"),
        Some("//evil.example"),
        Some("/bye"),
    ] {
        let mut browser = Browser::new(&server);
        let done = federated_login(&idp, &mut browser, "/login").await;
        assert!(sets_session(&done), "{} {}", done.status, done.body);
        let path = match target {
            Some(t) => format!("/logout?redirect_url={}", url_encode(t)),
            None => "/logout".to_owned(),
        };
        let out = browser.get(&path).await;
        assert_eq!(out.status, 303, "{path}: {}", out.body);
        let q = out.location_query();
        let post_logout = q
            .get("post_logout_redirect_uri")
            .unwrap_or_else(|| panic!("{path}: {:?}", out.location));
        let url =
            url::Url::parse(post_logout).unwrap_or_else(|e| panic!("{path}: {post_logout:?}: {e}"));
        let base = url::Url::parse(&server.base).unwrap();
        assert_eq!(url.origin(), base.origin(), "{path}: {post_logout}");
        assert!(!post_logout.contains("evil"), "{path}: {post_logout}");
        if target == Some("/bye") {
            assert_eq!(url.path(), "/bye", "{path}: {post_logout}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn logout_without_an_end_session_endpoint_stays_here() {
    let idp = FakeIdp::start().await;
    idp.set_end_session(false);
    let server = idp.start_server("", "").await;
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert!(sets_session(&done), "{} {}", done.status, done.body);
    let out = browser.get("/logout").await;
    assert_eq!(out.status, 200, "{:?} {}", out.location, out.body);
    assert!(!browser.cookies.contains_key(SESSION));
    let out = Browser::new(&server)
        .get("/logout?redirect_url=%2Fbye")
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    let base = url::Url::parse(&server.base).unwrap();
    assert_eq!(
        base.join(out.location.as_deref().unwrap()).unwrap(),
        base.join("/bye").unwrap()
    );
    server.stop().await;
}

#[tokio::test]
async fn local_accounts_beside_federation_offer_both() {
    let (idp, server) = federated("  login:\n    localAccounts: true\n", "").await;
    server.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&server);
    let form = browser.get("/login?redirect_url=%2Fconsole").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.input("csrf_token").is_some(), "{}", form.body);
    let marker = "id=\"federated-login\"";
    let at = form
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no federated-login link: {}", form.body));
    let tag_start = form.body[..at].rfind('<').unwrap();
    let tag_end = at + form.body[at..].find('>').unwrap();
    let tag = &form.body[tag_start..tag_end];
    let href = tag
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap_or_else(|| panic!("{tag}"))
        .replace("&amp;", "&");
    assert!(href.starts_with("/login/federated"), "{href}");
    assert_eq!(
        query_of(&href).get("redirect_url").map(String::as_str),
        Some("/console"),
        "{href}"
    );

    // The link signs in through the provider …
    let mut federated_browser = Browser::new(&server);
    let done = federated_login(&idp, &mut federated_browser, &href).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref().map(|l| l.ends_with("/console")),
        Some(true),
        "{:?}",
        done.location
    );
    assert_eq!(me(&server, &federated_browser).await.status(), 200);

    // … and the form with a local account.
    let after = browser.submit_login(&form, "alice", PASSWORD).await;
    assert_eq!(after.status, 303, "{}", after.body);
    let response = me(&server, &browser).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-user-claim-preferred-username"),
        "\"alice\""
    );
    server.stop().await;
}

#[tokio::test]
async fn local_passwords_do_not_work_when_only_federation_is_on() {
    let (_idp, server) = federated("", "").await;
    server.add_user("alice", PASSWORD).await;
    // Even with a form borrowed from elsewhere and a matching CSRF pair.
    let mut browser = Browser::new(&server);
    browser.cookies.insert(
        "flyteauth_csrf".to_owned(),
        "csrf-value-0123456789".to_owned(),
    );
    let page = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", "csrf-value-0123456789"),
                ("return_to", ""),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(page.status < 500, "{} {}", page.status, page.body);
    assert!(
        !sets_session(&page),
        "a local password signed in: {:?}",
        set_cookies(&page)
    );
    server.stop().await;
}

#[tokio::test]
async fn the_builtin_authorize_endpoint_signs_people_in_through_the_provider() {
    let (idp, server) = federated("", "").await;
    let redirect = "http://localhost:53593/callback";
    let (verifier, challenge) = pkce_pair();
    let path = sdk_authorize_path("flytectl", redirect, "offline all", "sdk-state", &challenge);
    let mut browser = Browser::new(&server);
    let to = to_idp(&idp, &mut browser, &path).await;
    let back = at_idp(&mut browser, &to).await;
    let mut page = browser.get(back.location.as_deref().unwrap()).await;
    // Back on this server, its own redirects lead to the SDK's redirect URI.
    for _ in 0..3 {
        assert_eq!(page.status, 303, "{}", page.body);
        let location = page.location.clone().unwrap();
        if location.starts_with(redirect) {
            break;
        }
        assert!(
            location.starts_with('/') || location.starts_with(&server.base),
            "{location}"
        );
        page = browser.get(&location).await;
    }
    let q = page.location_query();
    assert_eq!(q["state"], "sdk-state", "{:?}", page.location);
    let body = format!(
        "grant_type=authorization_code&client_id=flytectl&code={}&code_verifier={}&redirect_uri={}",
        url_encode(&q["code"]),
        url_encode(&verifier),
        url_encode(redirect)
    );
    let tokens: Value = client()
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{tokens}"));
    let response = client()
        .get(server.url("/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["subject"], idp.user().sub.as_str());
    assert_eq!(info["email"], idp.user().email.as_str());
    server.stop().await;
}

#[tokio::test]
async fn targets_elsewhere_are_ignored_through_a_federated_login() {
    let (idp, server) = federated("", "").await;
    let port = server.addr.port();
    for target in [
        "https://evil.example/".to_owned(),
        "//evil.example".to_owned(),
        "/\\evil.example".to_owned(),
        "/%2F%2Fevil.example".to_owned(),
        "https:evil.example".to_owned(),
        format!("http://127.0.0.1:{port}@evil.example/"),
        "javascript:alert(1)".to_owned(),
    ] {
        let mut browser = Browser::new(&server);
        let to = to_idp(
            &idp,
            &mut browser,
            &format!("/login?redirect_url={}", url_encode(&target)),
        )
        .await;
        assert!(
            !to.location.as_deref().unwrap().contains("evil"),
            "{target:?}: {:?}",
            to.location
        );
        let back = at_idp(&mut browser, &to).await;
        let done = browser.get(back.location.as_deref().unwrap()).await;
        assert!(
            sets_session(&done),
            "{target:?}: {} {}",
            done.status,
            done.body
        );
        if let Some(location) = &done.location {
            let base = url::Url::parse(&server.base).unwrap();
            let resolved = base.join(location).unwrap();
            assert_eq!(resolved.origin(), base.origin(), "{target:?}: {location}");
            assert!(
                !location.contains("evil") && !location.contains("javascript"),
                "{target:?}: {location}"
            );
        } else {
            assert_eq!(done.status, 200, "{target:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_error_page_does_not_reflect_the_providers_markup() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let to = to_idp(&idp, &mut browser, "/login").await;
    let state = to.location_query()["state"].clone();
    let page = browser
        .get(&format!(
            "/callback?error=access_denied&error_description={}&state={}",
            url_encode("<script>alert(1)</script><a href=\"https://evil.example\">x</a>"),
            url_encode(&state)
        ))
        .await;
    assert_refused(&server, &mut browser, &page, 403, "error with markup").await;
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(
        !page.body.contains("href=\"https://evil.example"),
        "{}",
        page.body
    );
    server.stop().await;
}

#[tokio::test]
async fn the_callback_also_accepts_form_post() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let to = to_idp(&idp, &mut browser, "/login?redirect_url=%2Fconsole").await;
    let back = at_idp(&mut browser, &to).await;
    let q = query_of(back.location.as_deref().unwrap());
    let done = browser
        .post_form("/callback", &[("code", &q["code"]), ("state", &q["state"])])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(sets_session(&done));
    assert!(
        done.location.as_deref().unwrap().ends_with("/console"),
        "{:?}",
        done.location
    );

    // A posted callback with a wrong state is refused like a redirected one.
    let mut fresh = Browser::new(&server);
    let to = to_idp(&idp, &mut fresh, "/login").await;
    let back = at_idp(&mut fresh, &to).await;
    let q = query_of(back.location.as_deref().unwrap());
    let page = fresh
        .post_form(
            "/callback",
            &[("code", &q["code"]), ("state", &format!("{}x", q["state"]))],
        )
        .await;
    assert_refused(&server, &mut fresh, &page, 400, "posted wrong state").await;

    // A posted answer over the callback's 64 KiB form limit is a readable page too, not a bare line of text.
    let big = "a".repeat(70_000);
    let page = fresh
        .post_form("/callback", &[("code", &big), ("state", "s")])
        .await;
    assert_eq!(page.status, 413, "{}", page.body);
    assert!(
        page.body
            .contains("The form could not be read or is too large."),
        "{}",
        page.body
    );
    server.stop().await;
}

#[tokio::test]
async fn control_characters_in_claims_cannot_inject_headers() {
    let (idp, server) = federated("", "").await;
    idp.set_user(fake_idp::IdpUser {
        name: "Dana\r\nX-User-Subject: admin".to_owned(),
        email: "dana@corp.example\nX-Injected: 1".to_owned(),
        ..fake_idp::IdpUser::default()
    });
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login").await;
    assert!(sets_session(&done), "{} {}", done.status, done.body);
    let response = me(&server, &browser).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-injected").is_none());
    let subjects: Vec<_> = response
        .headers()
        .get_all("x-user-subject")
        .iter()
        .collect();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(subjects[0], idp.user().sub.as_str());
    // JSON-escaped or with the control characters dropped: either way one header, no injection.
    let name: String = serde_json::from_str(header(&response, "x-user-claim-name")).unwrap();
    let expected = idp.user().name;
    assert!(
        name == expected || name == expected.replace(['\r', '\n'], ""),
        "{name:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_provider_account_named_like_a_local_one_does_not_become_it() {
    let (idp, server) = federated("  login:\n    localAccounts: true\n", "").await;
    let alice = server.add_user("alice", PASSWORD).await;
    idp.set_user(fake_idp::IdpUser {
        sub: alice.subject.clone() + "-idp",
        email: "alice@example.com".to_owned(),
        name: "Alice Example".to_owned(),
        preferred_username: "alice".to_owned(),
        groups: vec![],
    });
    let mut browser = Browser::new(&server);
    let done = federated_login(&idp, &mut browser, "/login/federated").await;
    assert!(sets_session(&done), "{} {}", done.status, done.body);
    let response = me(&server, &browser).await;
    assert_eq!(response.status(), 200);
    assert_ne!(header(&response, "x-user-subject"), alice.subject);
    assert_eq!(header(&response, "x-user-subject"), idp.user().sub);
    // The local account is untouched: its password still signs in as itself.
    let mut local = Browser::new(&server);
    let form = local.get("/login").await;
    let after = local.submit_login(&form, "alice", PASSWORD).await;
    assert!(after.status == 200 || after.status == 303, "{}", after.body);
    assert_eq!(
        header(&me(&server, &local).await, "x-user-subject"),
        alice.subject
    );
    server.stop().await;
}

/// The double itself: what a strict provider accepts and refuses, so failures above point at the server.
#[tokio::test]
async fn the_fake_provider_checks_what_a_strict_one_checks() {
    use base64::Engine;
    let idp = FakeIdp::start().await;
    let http = client();
    let doc: Value = http
        .get(format!("{}/.well-known/openid-configuration", idp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], idp.base.as_str());
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let jwks: Value = http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);

    let redirect = "http://127.0.0.1:9/callback";
    let authorize = |challenge: &str, nonce: &str| {
        format!(
            "{}/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}&state=abcdefgh-123&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256&scope=openid",
            idp.base,
            url_encode(redirect)
        )
    };
    let code_for = |location: &str| query_of(location)["code"].clone();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{CLIENT_ID}:{}",
            url::form_urlencoded::byte_serialize(fake_idp::CLIENT_SECRET.as_bytes())
                .collect::<String>()
        ))
    );
    let exchange = |code: String, verifier: String, auth: String| {
        let http = http.clone();
        let url = format!("{}/token", idp.base);
        async move {
            http.post(url)
                .header("authorization", auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=authorization_code&code={}&code_verifier={}&redirect_uri={}",
                    url_encode(&code),
                    url_encode(&verifier),
                    url_encode(redirect)
                ))
                .send()
                .await
                .unwrap()
        }
    };

    let (verifier, challenge) = pkce_pair();
    let answer = http.get(authorize(&challenge, "n-1")).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(redirect), "{location}");
    assert_eq!(query_of(&location)["state"], "abcdefgh-123");
    let code = code_for(&location);

    // Wrong verifier, wrong secret: refused, and the code is spent.
    let wrong = exchange(
        code.clone(),
        "not-the-verifier-000000000000000000000000000".into(),
        basic.clone(),
    )
    .await;
    assert_eq!(wrong.status(), 400);
    let again = exchange(code, verifier.clone(), basic.clone()).await;
    assert_eq!(again.status(), 400);
    let location = http
        .get(authorize(&challenge, "n-2"))
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let bad_secret = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:nope"))
    );
    assert_eq!(
        exchange(code_for(&location), verifier.clone(), bad_secret)
            .await
            .status(),
        401
    );

    // The right verifier and secret: a valid RS256 ID token with the nonce.
    let location = http
        .get(authorize(&challenge, "n-3"))
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let ok = exchange(code_for(&location), verifier.clone(), basic.clone()).await;
    assert_eq!(ok.status(), 200);
    let tokens: Value = ok.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[idp.base.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["nonce"], "n-3");
    assert_eq!(claims["sub"], idp.user().sub.as_str());
    let requests = idp.token_requests();
    assert_eq!(
        requests
            .iter()
            .map(|r| (r.status, r.pkce_verified))
            .collect::<Vec<_>>(),
        [
            (400, Some(false)),
            (400, Some(true)),
            (401, Some(true)),
            (200, Some(true))
        ]
    );
    let info: Value = http
        .get(format!("{}/userinfo", idp.base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], idp.user().email.as_str());

    // Each bent ID token fails the same validation.
    for bent in [
        IdTokenAnswer::OtherAudience,
        IdTokenAnswer::AlgNone,
        IdTokenAnswer::UnknownKey,
        IdTokenAnswer::Hs256ClientSecret,
        IdTokenAnswer::Expired,
        IdTokenAnswer::WrongIssuer,
    ] {
        idp.set_id_token(bent);
        let location = http
            .get(authorize(&challenge, "n-4"))
            .send()
            .await
            .unwrap()
            .headers()["location"]
            .to_str()
            .unwrap()
            .to_owned();
        let tokens: Value = exchange(code_for(&location), verifier.clone(), basic.clone())
            .await
            .json()
            .await
            .unwrap();
        let token = tokens["id_token"].as_str().unwrap();
        assert!(
            jsonwebtoken::decode::<Value>(token, &key, &validation).is_err(),
            "{bent:?} validated"
        );
    }
    idp.set_id_token(IdTokenAnswer::WrongNonce);
    let location = http
        .get(authorize(&challenge, "n-5"))
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let tokens: Value = exchange(code_for(&location), verifier.clone(), basic.clone())
        .await
        .json()
        .await
        .unwrap();
    let claims =
        jsonwebtoken::decode::<Value>(tokens["id_token"].as_str().unwrap(), &key, &validation)
            .unwrap()
            .claims;
    assert_ne!(claims["nonce"], "n-5");

    // Down means down.
    let mut idp = idp;
    idp.stop().await;
    assert!(http.get(format!("{}/jwks", idp.base)).send().await.is_err());
}

/// Regression: a `redirect_url` too long for the sign-in's cookie once sealed gave a cookie over 4 KB, which
/// browsers drop, so the sign-in could never finish; the destination is now dropped and the sign-in completes on
/// the "Signed in" page.
#[tokio::test]
async fn a_destination_too_long_for_the_sign_in_cookie_is_dropped_so_the_cookie_fits() {
    let (idp, server) = federated("", "").await;
    let mut browser = Browser::new(&server);
    let long = format!("/login?redirect_url=%2F{}", "a".repeat(3900));
    let back = federated_login(&idp, &mut browser, &long).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(back.body.contains("Signed in"), "{}", back.body);
    assert!(sets_session(&back));
    assert_cookies_small(&back, "callback");
    server.stop().await;
}
