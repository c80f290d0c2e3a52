//! A browser session obtained the way a person obtains one: a local account in the server's store, then
//! the login form (`GET /login`, which sets the CSRF cookie and carries the same token in a hidden field)
//! and its submission (`POST /login`, which answers with the sealed session cookie).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use flyteauth_server::state::AppState;
use flyteauth_server::users::{self, NewAccount};
use flyteauth_store::UserRecord;

use crate::client::{Connection, Response};

pub use flyteauth_core::browser_session::{SESSION_COOKIE, TOUCH_AFTER_SECS};
pub use flyteauth_server::web::cookies::CSRF_COOKIE;

/// The person's account name.
pub const USERNAME: &str = "bench-browser";
/// Their password (a passphrase, as the password rules want).
pub const PASSWORD: &str = "a long benchmark passphrase, 0123456789";

/// Creates the person's local account in the server's store, as `flyteauth users add` does.
pub async fn create_person(state: &AppState) -> anyhow::Result<UserRecord> {
    users::add(
        state.store.as_ref(),
        &NewAccount {
            username: USERNAME.to_owned(),
            email: "bench-browser@example.com".to_owned(),
            display_name: "Bench Browser".to_owned(),
            is_admin: false,
        },
        PASSWORD,
        state.clock.unix_now(),
    )
    .await
    .context("create the person")
}

/// The value of the cookie `name` among the response's `Set-Cookie` headers.
pub fn set_cookie<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers_named("set-cookie")
        .filter_map(|cookie| cookie.split(';').next()?.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The `value` of the form's hidden input `name`.
fn hidden_field<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(&html[start..start + len])
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The first part of an HTML error page, enough to see what went wrong.
fn excerpt(response: &Response) -> String {
    response.text().chars().take(400).collect()
}

/// Signs in through the login form and returns the value of the session cookie it sets.
pub fn sign_in(addr: SocketAddr, username: &str, password: &str) -> anyhow::Result<String> {
    let mut conn = Connection::open(addr)?;
    let form = conn.request("GET", "/login", &[("accept", "text/html")], &[])?;
    if form.status != 200 {
        bail!("GET /login answered {}: {}", form.status, excerpt(&form));
    }
    let csrf_cookie = set_cookie(&form, CSRF_COOKIE)
        .with_context(|| format!("GET /login set no {CSRF_COOKIE} cookie"))?
        .to_owned();
    let html = form.text();
    let csrf_token =
        hidden_field(&html, "csrf_token").context("the login form has no csrf_token")?;
    let body = format!(
        "username={}&password={}&csrf_token={}&return_to=",
        form_encode(username),
        form_encode(password),
        form_encode(csrf_token),
    );
    let cookie = format!("{CSRF_COOKIE}={csrf_cookie}");
    let answer = conn.request(
        "POST",
        "/login",
        &[
            ("accept", "text/html"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &cookie),
        ],
        body.as_bytes(),
    )?;
    if !matches!(answer.status, 200 | 303) {
        bail!(
            "POST /login answered {}: {}",
            answer.status,
            excerpt(&answer)
        );
    }
    set_cookie(&answer, SESSION_COOKIE)
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "POST /login answered {} without a {SESSION_COOKIE} cookie: {}",
                answer.status,
                excerpt(&answer)
            )
        })
}

/// What `GET /me` with only the session cookie answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeAnswer {
    /// 200 for the person, without a new cookie.
    Current,
    /// 200 for the person, with a refreshed cookie (the session's idle clock was due for a reset).
    Refreshed,
}

/// Fails unless `GET /me` with the session cookie `value` and no bearer token answers 200 for `subject`, in
/// its body and its `X-User-Subject` header.
pub fn check_me(addr: SocketAddr, value: &str, subject: &str) -> anyhow::Result<MeAnswer> {
    let cookie = format!("{SESSION_COOKIE}={value}");
    let response = crate::client::get(addr, "/me", &[("cookie", &cookie)])?;
    if response.status != 200 {
        bail!(
            "GET /me with the session cookie answered {}: {}",
            response.status,
            response.text()
        );
    }
    match response.header("x-user-subject") {
        Some(s) if s == subject => {}
        other => {
            bail!("GET /me with the session cookie: X-User-Subject {other:?}, not {subject:?}")
        }
    }
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).context("/me body is not JSON")?;
    if body["subject"] != subject {
        bail!("GET /me with the session cookie returned an unexpected identity: {body}");
    }
    Ok(if set_cookie(&response, SESSION_COOKIE).is_some() {
        MeAnswer::Refreshed
    } else {
        MeAnswer::Current
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_and_hidden_fields() {
        let response = Response {
            status: 200,
            head: "content-type: text/html\nSet-Cookie: flyteauth_csrf=abc-_1; Path=/; HttpOnly\n\
                   set-cookie: other=x\n"
                .to_owned(),
            body: Vec::new(),
        };
        assert_eq!(set_cookie(&response, CSRF_COOKIE), Some("abc-_1"));
        assert_eq!(set_cookie(&response, SESSION_COOKIE), None);
        let html = "<input type=\"hidden\" name=\"csrf_token\" value=\"tok-1\">";
        assert_eq!(hidden_field(html, "csrf_token"), Some("tok-1"));
        assert_eq!(hidden_field(html, "return_to"), None);
        assert_eq!(form_encode("a b,c/é"), "a+b%2Cc%2F%C3%A9");
    }

    /// The set-up of the http benchmark's cookie runs against a real in-process server: the account,
    /// the sign-in through the form, `/me` with only the cookie; a wrong password gets no cookie.
    #[test]
    fn signs_in_through_the_real_login_form() -> anyhow::Result<()> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let server = runtime.block_on(crate::inproc::start(|_| axum::Router::new()))?;
        let user = runtime.block_on(create_person(&server.state))?;
        let first = sign_in(server.addr, USERNAME, PASSWORD)?;
        let second = sign_in(server.addr, USERNAME, PASSWORD)?;
        assert_ne!(first, second, "each sign-in is a session of its own");
        assert_eq!(
            check_me(server.addr, &first, &user.subject)?,
            MeAnswer::Current
        );
        assert_eq!(
            check_me(server.addr, &second, &user.subject)?,
            MeAnswer::Current
        );
        assert!(sign_in(server.addr, USERNAME, "not the password at all").is_err());
        server.stop(&runtime)
    }
}
