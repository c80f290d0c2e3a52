//! What the ingress (nginx `auth_request`) relies on, with local accounts: `/login` and `/logout` never send a
//! browser anywhere but this server, `/me` names the person or app behind a session cookie or bearer token (or
//! answers 401, never a redirect), and session cookies that were tampered with, sealed elsewhere, expired, idle
//! or ended by a logout are refused — on every replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_tests::browser::{Browser, Page, url_encode};
use flyteauth_tests::{APP_ID, PostgresDatabase, StartOptions, TestServer};
use serde_json::Value;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple";
const SESSION: &str = "flyteauth_session";

async fn server_with_alice(flyteauth_extra: &str) -> TestServer {
    let server = TestServer::start_with(flyteauth_extra).await;
    server.add_user("alice", PASSWORD).await;
    server
}

/// An HTTP client that follows no redirect, so a 3xx is seen as such.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A port on 127.0.0.1 other than the server's.
async fn other_port() -> u16 {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tcp.local_addr().unwrap().port()
}

/// Redirect targets that point away from `server`.
fn bad_targets(server: &TestServer, other: u16) -> Vec<String> {
    let port = server.addr.port();
    vec![
        "https://evil.example".to_owned(),
        "https://evil.example/console".to_owned(),
        "//evil.example".to_owned(),
        "//evil.example/console".to_owned(),
        "/\\evil.example".to_owned(),
        "\\\\evil.example".to_owned(),
        "/%2F%2Fevil.example".to_owned(),
        "/%2f%2fevil.example".to_owned(),
        "/%5Cevil.example".to_owned(),
        "/\t/evil.example".to_owned(),
        "https:evil.example".to_owned(),
        "http:/\\evil.example".to_owned(),
        format!("https://127.0.0.1:{port}@evil.example"),
        format!("http://127.0.0.1:{port}@evil.example/"),
        format!("http://127.0.0.1:{other}"),
        format!("http://127.0.0.1:{other}/console"),
        format!("https://127.0.0.1:{port}/console"),
        "javascript:alert(1)".to_owned(),
        "JavaScript:alert(document.domain)//".to_owned(),
        "data:text/html,<script>alert(1)</script>".to_owned(),
        "evil.example".to_owned(),
        " https://evil.example".to_owned(),
    ]
}

/// Every URL-ish attribute value of the page (`href`, `action`, `src`, meta refresh `content`).
fn links(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "action=\"", "src=\"", "content=\""] {
        let mut rest = body;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            out.push(rest[..end].replace("&amp;", "&"));
        }
    }
    out
}

/// Resolves `target` as a browser would on a page of `server`, and says whether it stays on `server`'s origin.
fn resolves_home(server: &TestServer, target: &str) -> bool {
    let base = url::Url::parse(&server.base).unwrap();
    match base.join(target) {
        Ok(url) => url.origin() == base.origin() && url.username().is_empty(),
        Err(_) => false,
    }
}

/// Asserts that `page` sends the browser nowhere but `server`: a redirect stays on its origin and names nothing of
/// the attacker's, and no link, form or hidden `return_to` of the page leads elsewhere.
fn assert_stays_home(server: &TestServer, page: &Page, other: u16, context: &str) {
    assert!(
        page.status < 500,
        "{context}: {} {}",
        page.status,
        page.body
    );
    let evil = |s: &str| {
        let lower = s.to_ascii_lowercase();
        lower.contains("evil")
            || lower.contains(&format!(":{other}"))
            || lower.contains("javascript:")
    };
    if (300..400).contains(&page.status) {
        let location = page
            .location
            .as_deref()
            .unwrap_or_else(|| panic!("{context}: a {} without Location", page.status));
        assert!(
            resolves_home(server, location) && !evil(location),
            "{context}: redirected to {location:?}"
        );
        assert!(
            !location.chars().any(char::is_control),
            "{context}: {location:?}"
        );
    } else {
        assert!(page.location.is_none(), "{context}: {:?}", page.location);
    }
    if let Some(refresh) = page.headers.get("refresh") {
        panic!("{context}: Refresh header {refresh:?}");
    }
    if let Some(return_to) = page.input("return_to") {
        assert!(
            return_to.is_empty() || (resolves_home(server, &return_to) && !evil(&return_to)),
            "{context}: the form would continue to {return_to:?}"
        );
    }
    for link in links(&page.body) {
        if link.contains(':') || link.starts_with('/') || link.starts_with('\\') {
            // `content="text/html; …"` and similar are not URLs; anything that could be one must stay home.
            if link.starts_with("text/") || link.starts_with("width=") {
                continue;
            }
            assert!(
                resolves_home(server, &link) && !evil(&link),
                "{context}: the page links to {link:?}"
            );
        }
    }
}

/// `/login?redirect_url=<target>`.
fn login_path(target: &str) -> String {
    format!("/login?redirect_url={}", url_encode(target))
}

/// Signs `browser` in as alice through `/login?redirect_url=<target>` (or plain `/login`) and returns the
/// answer to the form.
async fn sign_in(browser: &mut Browser, target: Option<&str>) -> Page {
    let path = target.map_or_else(|| "/login".to_owned(), login_path);
    let form = browser.get(&path).await;
    assert_eq!(form.status, 200, "{path}: {}", form.body);
    let after = browser.submit_login(&form, "alice", PASSWORD).await;
    assert!(
        after.status == 200 || after.status == 303,
        "{path}: {} {}",
        after.status,
        after.body
    );
    assert!(
        browser.cookies.contains_key(SESSION),
        "{path}: no session cookie after signing in"
    );
    after
}

async fn me_with_cookie(server: &TestServer, cookie: &str) -> reqwest::Response {
    client()
        .get(server.url("/me"))
        .header("cookie", format!("{SESSION}={cookie}"))
        .send()
        .await
        .unwrap()
}

/// Asserts a `/me` refusal: 401, no redirect, a JSON error body.
async fn assert_me_refused(response: reqwest::Response, context: &str) {
    let status = response.status().as_u16();
    let location = response.headers().get("location").cloned();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let set_cookie: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = response.text().await.unwrap();
    assert_eq!(status, 401, "{context}: {body}");
    assert!(location.is_none(), "{context}: redirected to {location:?}");
    assert!(
        content_type.starts_with("application/json"),
        "{context}: {content_type}"
    );
    let json: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{context}: {e}: {body}"));
    assert!(json["error"].is_string(), "{context}: {body}");
    assert!(json["error_description"].is_string(), "{context}: {body}");
    for cookie in set_cookie {
        assert!(
            !cookie.starts_with(&format!("{SESSION}=")) || cookie.contains("Max-Age=0"),
            "{context}: a refused request got a session cookie: {cookie}"
        );
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn login_ignores_targets_elsewhere_before_signing_in() {
    let server = server_with_alice("").await;
    let other = other_port().await;
    for target in bad_targets(&server, other) {
        for param in ["redirect_url", "return_to"] {
            let context = format!("/login?{param}={target:?}");
            let mut browser = Browser::new(&server);
            let form = browser
                .get(&format!("/login?{param}={}", url_encode(&target)))
                .await;
            assert_stays_home(&server, &form, other, &context);
            assert_eq!(form.status, 200, "{context}: {}", form.body);
            let after = browser.submit_login(&form, "alice", PASSWORD).await;
            assert_stays_home(&server, &after, other, &format!("{context}, signed in"));
            assert!(browser.cookies.contains_key(SESSION), "{context}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_forged_login_form_cannot_send_the_browser_elsewhere() {
    let server = server_with_alice("").await;
    let other = other_port().await;
    for target in bad_targets(&server, other) {
        let mut browser = Browser::new(&server);
        let form = browser.get("/login").await;
        let csrf = form.input("csrf_token").unwrap();
        let after = browser
            .post_form(
                "/login",
                &[
                    ("csrf_token", &csrf),
                    ("return_to", &target),
                    ("redirect_url", &target),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_stays_home(
            &server,
            &after,
            other,
            &format!("POST /login return_to={target:?}"),
        );
        assert!(browser.cookies.contains_key(SESSION), "{target:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn login_ignores_targets_elsewhere_when_signed_in() {
    let server = server_with_alice("").await;
    let other = other_port().await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser, None).await;
    for target in bad_targets(&server, other) {
        for param in ["redirect_url", "return_to"] {
            let page = browser
                .get(&format!("/login?{param}={}", url_encode(&target)))
                .await;
            assert_stays_home(
                &server,
                &page,
                other,
                &format!("signed in, /login?{param}={target:?}"),
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn logout_ignores_targets_elsewhere() {
    let server = server_with_alice("").await;
    let other = other_port().await;
    for target in bad_targets(&server, other) {
        let path = format!("/logout?redirect_url={}", url_encode(&target));
        // Signed out already …
        let page = Browser::new(&server).get(&path).await;
        assert_stays_home(&server, &page, other, &format!("signed out, {path}"));
        // … and signed in.
        let mut browser = Browser::new(&server);
        sign_in(&mut browser, None).await;
        let cookie = browser.cookies[SESSION].clone();
        let page = browser.get(&path).await;
        assert_stays_home(&server, &page, other, &format!("signed in, {path}"));
        assert!(
            !browser.cookies.contains_key(SESSION),
            "{path}: the session cookie was not cleared"
        );
        assert_me_refused(me_with_cookie(&server, &cookie).await, &path).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn targets_on_this_server_are_followed() {
    let server = server_with_alice("").await;
    let relative = "/console/projects/flytesnacks?domain=development&x=a%20b".to_owned();
    let absolute = server.url("/console/projects?domain=staging");
    for target in [relative, absolute] {
        let same = |location: &str| {
            let base = url::Url::parse(&server.base).unwrap();
            base.join(location).unwrap() == base.join(&target).unwrap()
        };
        let mut browser = Browser::new(&server);
        let after = sign_in(&mut browser, Some(&target)).await;
        assert_eq!(after.status, 303, "{target}: {}", after.body);
        let location = after.location.clone().unwrap();
        assert!(same(&location), "{target}: went to {location}");

        let again = browser.get(&login_path(&target)).await;
        assert_eq!(again.status, 303, "signed in, {target}: {}", again.body);
        assert!(
            same(again.location.as_deref().unwrap()),
            "{:?}",
            again.location
        );

        let out = browser
            .get(&format!("/logout?redirect_url={}", url_encode(&target)))
            .await;
        assert_eq!(out.status, 303, "logout to {target}: {}", out.body);
        assert!(same(out.location.as_deref().unwrap()), "{:?}", out.location);
        assert!(!browser.cookies.contains_key(SESSION));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_target_with_markup_is_escaped_in_the_login_page() {
    let server = server_with_alice("").await;
    let target = "/console\"><script>alert(1)</script>";
    let mut browser = Browser::new(&server);
    let form = browser.get(&login_path(target)).await;
    assert!(form.status < 500, "{}", form.body);
    assert!(!form.body.contains("<script>alert"), "{}", form.body);
    server.stop().await;
}

#[tokio::test]
async fn logout_without_a_target_says_signed_out() {
    let server = server_with_alice("").await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser, None).await;
    let page = browser.get("/logout").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.content_type.starts_with("text/html"));
    assert!(!browser.cookies.contains_key(SESSION));
    server.stop().await;
}

#[tokio::test]
async fn me_with_a_session_cookie_names_the_person() {
    let server = TestServer::start().await;
    let alice = server.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser, None).await;
    let cookie = browser.cookies[SESSION].clone();

    let response = me_with_cookie(&server, &cookie).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-user-subject"), alice.subject);
    assert_eq!(header(&response, "x-user-claim-identitytype"), "\"user\"");
    assert_eq!(
        header(&response, "x-user-claim-email"),
        "\"alice@example.com\""
    );
    assert_eq!(header(&response, "x-user-claim-name"), "\"Alice Example\"");
    assert_eq!(
        header(&response, "x-user-claim-preferred-username"),
        "\"alice\""
    );
    assert!(
        header(&response, "content-type").starts_with("application/json"),
        "{:?}",
        response.headers()
    );
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["subject"], alice.subject.as_str());
    assert_eq!(info["name"], "Alice Example");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["additional_claims"]["identity_type"], "user");
    for field in [
        "subject",
        "name",
        "preferred_username",
        "given_name",
        "family_name",
        "email",
        "picture",
        "additional_claims",
    ] {
        assert!(info.get(field).is_some(), "{field} missing: {info}");
    }

    // nginx's auth_request may use HEAD.
    let head = client()
        .head(server.url("/me"))
        .header("cookie", format!("{SESSION}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "x-user-subject"), alice.subject);
    server.stop().await;
}

#[tokio::test]
async fn me_with_a_bearer_token_names_the_app() {
    let server = TestServer::start().await;
    let token = server.app_token().await;
    for name in ["authorization", "flyte-authorization"] {
        let response = client()
            .get(server.url("/me"))
            .header(name, format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(header(&response, "x-user-subject"), APP_ID, "{name}");
        assert_eq!(
            header(&response, "x-user-claim-identitytype"),
            "\"app\"",
            "{name}"
        );
        let info: Value = response.json().await.unwrap();
        assert_eq!(info["subject"], APP_ID, "{name}: {info}");
        assert_eq!(info["additional_claims"]["identity_type"], "app", "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn me_without_valid_credentials_is_401_never_a_redirect() {
    let server = TestServer::start().await;
    let token = server.app_token().await;
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("nothing", vec![]),
        (
            "a browser's Accept",
            vec![("accept", "text/html,application/xhtml+xml".to_owned())],
        ),
        (
            "a garbage bearer",
            vec![("authorization", "Bearer nope".to_owned())],
        ),
        (
            "a tampered bearer",
            vec![("authorization", format!("Bearer {tampered}"))],
        ),
        (
            "a tampered flyte-authorization",
            vec![("flyte-authorization", format!("Bearer {tampered}"))],
        ),
        (
            "Basic credentials",
            vec![("authorization", "Basic dGVzdDp0ZXN0".to_owned())],
        ),
        (
            "a garbage cookie",
            vec![("cookie", format!("{SESSION}=garbage"))],
        ),
        ("an empty cookie", vec![("cookie", format!("{SESSION}="))]),
        (
            "a huge cookie",
            vec![("cookie", format!("{SESSION}={}", "A".repeat(6000)))],
        ),
        (
            "another cookie",
            vec![("cookie", "flyteauth_csrf=abc; other=1".to_owned())],
        ),
    ];
    for (what, headers) in cases {
        let mut request = client().get(server.url("/me"));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        assert_me_refused(request.send().await.unwrap(), what).await;
    }
    let head = client().head(server.url("/me")).send().await.unwrap();
    assert_eq!(head.status(), 401);
    assert!(head.headers().get("location").is_none());
    server.stop().await;
}

/// `cookie` with the character at `at` replaced by another base64url character.
fn flip(cookie: &str, at: usize) -> String {
    let mut bytes = cookie.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_tampered_session_cookie_is_refused() {
    let server = server_with_alice("").await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser, None).await;
    let cookie = browser.cookies[SESSION].clone();
    assert_eq!(me_with_cookie(&server, &cookie).await.status(), 200);
    let n = cookie.len();
    assert!(n > 20, "{cookie}");
    for at in [0, 1, 5, n / 2, n - 20, n - 2] {
        let bad = flip(&cookie, at);
        assert_me_refused(
            me_with_cookie(&server, &bad).await,
            &format!("flipped at {at}"),
        )
        .await;
    }
    for (what, bad) in [
        ("truncated", cookie[..n - 4].to_owned()),
        ("shortened by half", cookie[..n / 2].to_owned()),
        ("extended", format!("{cookie}AAAA")),
        ("padded", format!("{cookie}==")),
        (
            "standard base64",
            cookie.replace('-', "+").replace('_', "/"),
        ),
    ] {
        if bad == cookie {
            continue;
        }
        assert_me_refused(me_with_cookie(&server, &bad).await, what).await;
    }
    // The browser routes refuse it too: the login page shows the form again.
    let mut forged = Browser::new(&server);
    forged
        .cookies
        .insert(SESSION.to_owned(), flip(&cookie, n / 2));
    let page = forged.get("/login").await;
    assert_eq!(page.status, 200);
    assert!(page.input("csrf_token").is_some(), "{}", page.body);
    assert_eq!(me_with_cookie(&server, &cookie).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_session_cookie_of_another_deployment_is_refused() {
    let server = server_with_alice("").await;
    let elsewhere = server_with_alice("").await;
    let mut browser = Browser::new(&elsewhere);
    sign_in(&mut browser, None).await;
    let foreign = browser.cookies[SESSION].clone();
    assert_eq!(me_with_cookie(&elsewhere, &foreign).await.status(), 200);
    assert_me_refused(
        me_with_cookie(&server, &foreign).await,
        "a cookie sealed by another deployment",
    )
    .await;
    server.stop().await;
    elsewhere.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let server = server_with_alice("  session:\n    lifetime: 2s\n").await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser, None).await;
    let cookie = browser.cookies[SESSION].clone();
    assert_eq!(me_with_cookie(&server, &cookie).await.status(), 200);
    // Used all the time, it still ends at its lifetime.
    let deadline = Instant::now() + Duration::from_millis(3_500);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = me_with_cookie(&server, &cookie).await;
    }
    assert_me_refused(me_with_cookie(&server, &cookie).await, "expired session").await;
    let page = browser.get("/login").await;
    assert!(page.input("csrf_token").is_some(), "{}", page.body);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_session_is_refused() {
    let server = server_with_alice("  session:\n    idleTimeout: 2s\n").await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser, None).await;
    let cookie = browser.cookies[SESSION].clone();
    assert_eq!(me_with_cookie(&server, &cookie).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_me_refused(me_with_cookie(&server, &cookie).await, "idle session").await;
    server.stop().await;
}

#[tokio::test]
async fn a_session_cookie_replayed_after_logout_is_refused() {
    let server = server_with_alice("").await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser, None).await;
    let cookie = browser.cookies[SESSION].clone();
    assert_eq!(me_with_cookie(&server, &cookie).await.status(), 200);
    let out = browser.get("/logout").await;
    assert!(out.status == 200 || out.status == 303, "{}", out.body);
    assert_me_refused(
        me_with_cookie(&server, &cookie).await,
        "replayed after logout",
    )
    .await;
    // Nor do the browser routes take it back.
    let mut replay = Browser::new(&server);
    replay.cookies.insert(SESSION.to_owned(), cookie.clone());
    let page = replay.get("/login").await;
    assert!(page.input("csrf_token").is_some(), "{}", page.body);
    // A second logout with the dead cookie is harmless.
    let again = replay.get("/logout").await;
    assert!(again.status < 500, "{}", again.body);
    server.stop().await;
}

#[tokio::test]
async fn logout_on_one_replica_ends_the_session_on_the_other_within_5s() {
    let db = PostgresDatabase::create().await;
    let a = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        ..StartOptions::default()
    })
    .await;
    let b = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        secrets_dir: Some(a.secrets_dir()),
        public_url: Some(a.base.clone()),
        ..StartOptions::default()
    })
    .await;
    a.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&a);
    sign_in(&mut browser, None).await;
    let cookie = browser.cookies[SESSION].clone();
    // Sealed with the shared secrets, the session works on the replica that never saw the login.
    let at_b = me_with_cookie(&b, &cookie).await;
    assert_eq!(at_b.status(), 200);
    assert_eq!(header(&at_b, "x-user-claim-name"), "\"Alice Example\"");

    let out = browser.get("/logout").await;
    assert!(out.status == 200 || out.status == 303, "{}", out.body);
    let logged_out = Instant::now();
    assert_me_refused(
        me_with_cookie(&a, &cookie).await,
        "at the replica that logged out",
    )
    .await;
    let refused_after = loop {
        let response = me_with_cookie(&b, &cookie).await;
        if response.status() == 401 {
            assert_me_refused(response, "at the other replica").await;
            break logged_out.elapsed();
        }
        assert_eq!(response.status(), 200);
        assert!(
            logged_out.elapsed() < Duration::from_secs(5),
            "the other replica still accepts the session 5 s after the logout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(refused_after < Duration::from_secs(5), "{refused_after:?}");
    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}

/// The `Set-Cookie` header of the session cookie in `page`.
fn session_set_cookie(page: &Page) -> String {
    page.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{SESSION}=")) && !c.contains("Max-Age=0"))
        .unwrap_or_else(|| panic!("no session cookie in {:?}", page.headers))
}

fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_small() {
    let server = server_with_alice("").await;
    let mut browser = Browser::new(&server);
    let after = sign_in(&mut browser, None).await;
    let set_cookie = session_set_cookie(&after);
    let attrs = attributes(&set_cookie);
    assert!(attrs.contains(&"httponly".to_owned()), "{set_cookie}");
    assert!(attrs.contains(&"path=/".to_owned()), "{set_cookie}");
    assert!(attrs.contains(&"samesite=lax".to_owned()), "{set_cookie}");
    assert!(
        !attrs.contains(&"secure".to_owned()),
        "an http public URL never gets Secure cookies: {set_cookie}"
    );
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain=")),
        "{set_cookie}"
    );
    let max_age: u64 = attrs
        .iter()
        .find_map(|a| a.strip_prefix("max-age="))
        .expect("Max-Age")
        .parse()
        .unwrap();
    assert!(max_age > 0 && max_age <= 12 * 3600, "{set_cookie}");
    let value = set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches(&format!("{SESSION}="));
    assert!(value.len() < 4096, "{} bytes", value.len());
    assert!(set_cookie.len() < 4096, "{} bytes", set_cookie.len());
    server.stop().await;
}

#[tokio::test]
async fn cookie_settings_come_from_the_configuration() {
    // An https public URL gets Secure cookies; cookieSetting sets SameSite and Domain.
    let public = "https://flyte.example.com".to_owned();
    let server = TestServer::start_on(&StartOptions {
        public_url: Some(public.clone()),
        user_auth: "    cookieSetting:\n      sameSitePolicy: StrictMode\n      domain: flyte.example.com\n",
        ..StartOptions::default()
    })
    .await;
    server.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&server);
    let set_cookie = session_set_cookie(&sign_in(&mut browser, None).await);
    let attrs = attributes(&set_cookie);
    assert!(attrs.contains(&"secure".to_owned()), "{set_cookie}");
    assert!(
        attrs.contains(&"samesite=strict".to_owned()),
        "{set_cookie}"
    );
    assert!(
        attrs.contains(&"domain=flyte.example.com".to_owned()),
        "{set_cookie}"
    );
    server.stop().await;

    // insecureCookieHeader drops Secure even on an https public URL (TLS ends before the server).
    let insecure = |yaml: String| {
        yaml.replacen(
            "server:\n",
            "server:\n  security:\n    insecureCookieHeader: true\n",
            1,
        )
    };
    let server = TestServer::start_on(&StartOptions {
        public_url: Some(public),
        edit_config: Some(&insecure),
        ..StartOptions::default()
    })
    .await;
    server.add_user("alice", PASSWORD).await;
    let mut browser = Browser::new(&server);
    let set_cookie = session_set_cookie(&sign_in(&mut browser, None).await);
    assert!(
        !attributes(&set_cookie).contains(&"secure".to_owned()),
        "{set_cookie}"
    );
    server.stop().await;
}
