//! What the flow tests share: a scripted HTTP endpoint on 127.0.0.1, an HTTP client, a recording UI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::time::Instant;

use super::{LoginEvent, LoginUi};
use crate::token::TokenClient;

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// When, counted from the endpoint's start (tokio's clock, so paused tests see exact times).
    pub at: Duration,
    pub path: String,
    pub form: HashMap<String, String>,
}

/// The answers of one path, in order; the last one repeats.
pub(crate) type Script = Vec<(u16, String)>;
type Scripts = HashMap<String, VecDeque<(u16, String)>>;

#[derive(Clone)]
struct Shared {
    started: Instant,
    scripts: Arc<Mutex<Scripts>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// An endpoint that answers each path from its script. It lives as long as the test's runtime.
pub(crate) struct Endpoint {
    pub base: url::Url,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Endpoint {
    pub(crate) async fn start(scripts: Vec<(&str, Script)>) -> Self {
        let shared = Shared {
            started: Instant::now(),
            scripts: Arc::new(Mutex::new(
                scripts
                    .into_iter()
                    .map(|(p, s)| (p.to_owned(), s.into()))
                    .collect(),
            )),
            received: Arc::default(),
        };
        let received = shared.received.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let app = axum::Router::new().fallback(answer).with_state(shared);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, received }
    }

    pub(crate) fn url(&self, path: &str) -> url::Url {
        self.base.join(path).unwrap()
    }

    pub(crate) fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn answer(State(shared): State<Shared>, uri: Uri, body: Bytes) -> impl IntoResponse {
    let form = url::form_urlencoded::parse(&body).into_owned().collect();
    let path = uri.path().to_owned();
    shared.received.lock().unwrap().push(Received {
        at: shared.started.elapsed(),
        path: path.clone(),
        form,
    });
    let mut scripts = shared.scripts.lock().unwrap();
    let Some(script) = scripts.get_mut(&path) else {
        return (StatusCode::NOT_FOUND, String::new());
    };
    let (status, body) = if script.len() > 1 {
        script.pop_front().unwrap()
    } else {
        script.front().cloned().unwrap()
    };
    (StatusCode::from_u16(status).unwrap(), body)
}

pub(crate) fn json(status: u16, value: serde_json::Value) -> (u16, String) {
    (status, value.to_string())
}

/// A token client for `endpoint`; no pooled connections, so an idle one closed by the server cannot turn a
/// later request into a transport error.
pub(crate) fn token_client(endpoint: url::Url) -> TokenClient {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    TokenClient::new(http, endpoint)
}

/// Records every event as a line of text.
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    pub(crate) fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl LoginUi for Recorder {
    fn event(&self, event: LoginEvent<'_>) {
        let line = match event {
            LoginEvent::BrowserOpened { url } => format!("opened {url}"),
            LoginEvent::BrowserUnavailable { url, reason } => {
                format!("unavailable {url} ({reason})")
            }
            LoginEvent::WaitingForBrowser { remaining } => {
                format!("waiting-browser {}", remaining.as_secs())
            }
            LoginEvent::DeviceCode {
                verification_uri,
                verification_uri_complete,
                user_code,
                expires_in,
            } => {
                format!(
                    "code {verification_uri} {verification_uri_complete} {user_code} {}",
                    expires_in.as_secs()
                )
            }
            LoginEvent::DeviceWaiting { remaining } => {
                format!("waiting-device {}", remaining.as_secs())
            }
            LoginEvent::DeviceSlowDown { interval } => format!("slow-down {}", interval.as_secs()),
            LoginEvent::LoggedIn => "logged-in".into(),
        };
        self.0.lock().unwrap().push(line);
    }
}
