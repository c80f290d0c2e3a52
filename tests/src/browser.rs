//! A scripted person with a browser: keeps cookies, follows nothing by itself, fills the real login page.

use crate::TestServer;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// PKCE verifier and its S256 challenge, as the SDKs make them.
pub fn pkce_pair() -> (String, String) {
    let verifier = flyteauth_core::clients::generate_secret() + "-verifier.~_";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A browser with a cookie jar for one server.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    /// Cookies by name, as the server set them.
    pub cookies: HashMap<String, String>,
}

/// What one request answered.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: String,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// The `value` of the input named `name` in the page's form.
    pub fn input(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(
            self.body[start..end]
                .replace("&amp;", "&")
                .replace("&quot;", "\""),
        )
    }

    /// The query parameters of the redirect target.
    pub fn location_query(&self) -> HashMap<String, String> {
        let location = self.location.as_deref().unwrap_or_default();
        let url = reqwest::Url::parse(location)
            .or_else(|_| reqwest::Url::parse("http://relative.invalid")?.join(location))
            .unwrap();
        url.query_pairs().into_owned().collect()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
            cookies: HashMap::new(),
        }
    }

    /// A browser with an empty cookie jar whose connections come from `local` (e.g. `127.0.0.2`, another
    /// loopback address), so the server sees another client address.
    pub fn from_address(server: &TestServer, local: std::net::IpAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(local)
                .build()
                .unwrap(),
            base: server.base.clone(),
            cookies: HashMap::new(),
        }
    }

    /// The same person (this browser's cookies) on another machine, whose connections come from `local`.
    pub fn moved_to(&self, local: std::net::IpAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(local)
                .build()
                .unwrap(),
            base: self.base.clone(),
            cookies: self.cookies.clone(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Page {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.text().await.unwrap();
        Page {
            status,
            location,
            content_type,
            body,
            headers,
        }
    }

    fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with('/') {
            format!("{}{path_or_url}", self.base)
        } else {
            path_or_url.to_owned()
        }
    }

    /// GET `path_or_url` with the jar's cookies.
    pub async fn get(&mut self, path_or_url: &str) -> Page {
        let response = self
            .http
            .get(self.absolute(path_or_url))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.read(response).await
    }

    /// POSTs a form body to `path`.
    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .http
            .post(self.absolute(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.read(response).await
    }

    /// Submits the login form `page` with `username` and `password`.
    pub async fn submit_login(&mut self, page: &Page, username: &str, password: &str) -> Page {
        let csrf = page
            .input("csrf_token")
            .expect("login page has a CSRF field");
        let return_to = page.input("return_to").unwrap_or_default();
        self.post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("return_to", &return_to),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Opens `authorize_query` (`/oauth2/authorize?…`), signs in through the login page if asked, and returns
    /// the final redirect to the client (its Location carries `code` and `state`).
    pub async fn authorize(
        &mut self,
        authorize_path: &str,
        username: &str,
        password: &str,
    ) -> Page {
        let first = self.get(authorize_path).await;
        if first.status != 303
            || !first
                .location
                .as_deref()
                .unwrap_or_default()
                .starts_with("/login")
        {
            return first;
        }
        let login = self.get(first.location.as_deref().unwrap()).await;
        assert_eq!(login.status, 200, "{}", login.body);
        let after = self.submit_login(&login, username, password).await;
        if after.status != 303 {
            return after;
        }
        self.get(after.location.as_deref().unwrap()).await
    }
}

/// Form-URL-encodes one component.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The authorize path the Flyte SDKs open, for `client_id` with `challenge` and `state`.
pub fn sdk_authorize_path(
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
    challenge: &str,
) -> String {
    format!(
        "/oauth2/authorize?client_id={}&response_type=code&scope={}&redirect_uri={}&state={}&code_challenge={}&code_challenge_method=S256",
        url_encode(client_id),
        url_encode(scope),
        url_encode(redirect_uri),
        url_encode(state),
        url_encode(challenge)
    )
}
