//! A tiny HTTP server on 127.0.0.1 for the tests of the transport modules: canned answers per path, every
//! request recorded. It lives on the test's runtime and stops with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::HeaderMap;

/// One answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(&value).unwrap(),
        }
    }

    pub fn proto(message: &impl prost::Message) -> Self {
        Self {
            status: 200,
            content_type: "application/proto",
            body: message.encode_to_vec(),
        }
    }

    pub fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: text.as_bytes().to_vec(),
        }
    }
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The form body as pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    pub fn form_value(&self, key: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn decode<M: prost::Message + Default>(&self) -> M {
        M::decode(self.body.clone()).unwrap()
    }
}

type Responder = Arc<dyn Fn(&Seen) -> Canned + Send + Sync>;

#[derive(Default)]
struct Inner {
    routes: HashMap<String, Responder>,
    requests: Vec<Seen>,
}

/// The server; dropping it stops it.
pub struct TestServer {
    base: url::Url,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: url::Url::parse(&format!("http://{addr}")).unwrap(),
            inner,
            task,
        }
    }

    pub fn base(&self) -> url::Url {
        self.base.clone()
    }

    /// `base` + `path` (path starting with `/`).
    pub fn url(&self, path: &str) -> url::Url {
        self.base.join(path).unwrap()
    }

    /// Answers `path` (or `Service/Method`) with `responder`.
    pub fn route(&self, path: &str, responder: impl Fn(&Seen) -> Canned + Send + Sync + 'static) {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.inner
            .lock()
            .unwrap()
            .routes
            .insert(path, Arc::new(responder));
    }

    /// Answers `method` with `message`, always.
    pub fn proto(&self, method: &str, message: impl prost::Message + Clone + 'static) {
        self.route(method, move |_| Canned::proto(&message));
    }

    /// Answers `path` with the canned answers in turn, the last one for ever.
    pub fn sequence(&self, path: &str, answers: Vec<Canned>) {
        let answers = Mutex::new(std::collections::VecDeque::from(answers));
        self.route(path, move |_| {
            let mut answers = answers.lock().unwrap();
            if answers.len() > 1 {
                answers.pop_front().unwrap()
            } else {
                answers.front().unwrap().clone()
            }
        });
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

async fn answer(State(inner): State<Arc<Mutex<Inner>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
    };
    let responder = {
        let mut inner = inner.lock().unwrap();
        inner.requests.push(seen.clone());
        inner.routes.get(&seen.path).cloned()
    };
    let canned = match responder {
        Some(responder) => responder(&seen),
        None => Canned::text(404, "404 page not found"),
    };
    Response::builder()
        .status(canned.status)
        .header("content-type", canned.content_type)
        .body(Body::from(canned.body))
        .unwrap()
}

/// An unsigned-looking JWT with `payload` (nothing here verifies signatures).
pub fn jwt(payload: serde_json::Value) -> crate::Secret {
    use base64::Engine as _;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    crate::Secret::new(format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(payload.to_string().as_bytes()),
        b64(b"sig")
    ))
}

/// Seconds since the epoch, `offset` from now.
pub fn epoch_in(offset: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now + offset
}

/// The client library's own HTTP client with default settings.
pub fn http() -> reqwest::Client {
    crate::http::build_client(&crate::config::Settings::default(), None).unwrap()
}
