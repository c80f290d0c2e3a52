//! The loopback listener that receives the browser back from the identity provider.
//!
//! It reads each request's line and headers by hand instead of running an HTTP server: it answers GETs on a
//! loopback port for a minute or two, from the person's own browser, and needs nothing but the request target.
//! Connections are served side by side because browsers open spare connections that never send a request.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use url::{Host, Url};

use crate::flows::{LoginEvent, LoginUi};
use crate::{ClientError, Secret};

/// How often the person is told the login is still waiting.
const WAITING_EVERY: Duration = Duration::from_secs(5);
/// A connection that has not sent its request by then is a browser's spare one: dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Far more than a callback needs (its URL is a few hundred bytes), small enough to bound memory.
const MAX_HEAD: usize = 16 * 1024;
/// Connections beyond this many at once are closed unanswered.
const MAX_CONNECTIONS: usize = 32;

/// What the right callback looks like.
pub(super) struct Expected<'a> {
    /// The redirect URI: its path is the callback's.
    pub redirect_uri: &'a Url,
    /// The `state` of the authorization request.
    pub state: &'a str,
    /// Named on the success page.
    pub signed_in_to: &'a str,
}

/// Binds the redirect URI's host and port (`localhost` as 127.0.0.1, the address every browser tries).
pub(super) async fn bind(redirect_uri: &Url) -> Result<TcpListener, ClientError> {
    let unusable = |why: &str| {
        ClientError::Unsupported(format!(
            "the redirect URI {redirect_uri} advertised by the server {why}; the browser login needs a loopback http:// URI"
        ))
    };
    if redirect_uri.scheme() != "http" {
        return Err(unusable("is not an http:// URI"));
    }
    let port = redirect_uri
        .port_or_known_default()
        .ok_or_else(|| unusable("has no port"))?;
    let host = match redirect_uri.host() {
        Some(Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST).to_string()
        }
        Some(Host::Domain(name)) => name.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(unusable("has no host")),
    };
    match TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => {
            tracing::debug!(address = ?listener.local_addr().ok(), "login callback listener bound");
            Ok(listener)
        }
        Err(error) => Err(ClientError::CallbackPortInUse {
            address: format!("{}:{port}", redirect_uri.host_str().unwrap_or(&host)),
            reason: error.to_string(),
        }),
    }
}

/// Serves `listener` until the callback with the right `state` arrives, and returns its code.
pub(super) async fn wait_for_callback(
    listener: TcpListener,
    expected: &Expected<'_>,
    timeout: Duration,
    ui: &dyn LoginUi,
) -> Result<Secret, ClientError> {
    let deadline = Instant::now() + timeout;
    let timed_out = tokio::time::sleep_until(deadline);
    tokio::pin!(timed_out);
    let mut waiting = tokio::time::interval_at(Instant::now() + WAITING_EVERY, WAITING_EVERY);
    waiting.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut connections = FuturesUnordered::new();
    loop {
        tokio::select! {
            () = &mut timed_out => {
                return Err(ClientError::LoginTimedOut { redirect_uri: expected.redirect_uri.to_string(), timeout });
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => connections.push(serve(stream, expected)),
                Ok(_) => tracing::debug!("too many callback connections at once; one closed"),
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin on the error.
                    tracing::debug!(%error, "accepting a callback connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(outcome) = connections.next(), if !connections.is_empty() => match outcome {
                Outcome::KeepWaiting => {}
                Outcome::Code(code) => return Ok(code),
                Outcome::Denied { error, description } => return Err(ClientError::LoginDenied { error, description }),
            },
            _ = waiting.tick() => {
                ui.event(LoginEvent::WaitingForBrowser { remaining: deadline.saturating_duration_since(Instant::now()) });
            }
        }
    }
}

/// What one request meant for the login.
#[derive(Debug)]
enum Outcome {
    KeepWaiting,
    Code(Secret),
    Denied {
        error: String,
        description: Option<String>,
    },
}

/// Reads one request, answers it, closes the connection.
async fn serve(mut stream: TcpStream, expected: &Expected<'_>) -> Outcome {
    let request_line =
        match tokio::time::timeout(READ_TIMEOUT, read_request_line(&mut stream)).await {
            Ok(Some(line)) => line,
            _ => return Outcome::KeepWaiting,
        };
    let (page, outcome) = answer(&request_line, expected);
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&page.to_http()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        // The browser went away; a code it brought is still good.
        tracing::debug!("the callback page could not be sent");
    }
    outcome
}

/// The request line, once the whole head has arrived: closing a socket with unread input makes the kernel
/// reset the connection, and the browser would show an error instead of the page.
async fn read_request_line(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        head.extend_from_slice(&chunk[..n]);
        let complete =
            head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n");
        if n == 0 || complete || head.len() >= MAX_HEAD {
            break;
        }
    }
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(&head[..end])
        .trim_end_matches('\r')
        .to_owned();
    zeroize::Zeroize::zeroize(&mut head);
    Some(line)
}

/// The page for `request_line` and what it means for the login.
fn answer(request_line: &str, expected: &Expected<'_>) -> (Page, Outcome) {
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return (
            Page::new(405, "Method not allowed", "Only GET is served here."),
            Outcome::KeepWaiting,
        );
    }
    let Ok(url) = expected.redirect_uri.join(target) else {
        return (
            Page::new(400, "Bad request", "The request could not be read."),
            Outcome::KeepWaiting,
        );
    };
    if url.path().trim_end_matches('/') != expected.redirect_uri.path().trim_end_matches('/') {
        tracing::debug!(
            path = url.path(),
            "request on the callback port for another path"
        );
        return (
            Page::new(
                404,
                "Not found",
                "Nothing here: this port only waits for a sign-in.",
            ),
            Outcome::KeepWaiting,
        );
    }
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(expected.state) {
        tracing::debug!("callback without the state of this login");
        let page = Page::new(
            400,
            "Wrong sign-in",
            "This sign-in does not belong to the login waiting here. Start the login again from the command line.",
        );
        return (page, Outcome::KeepWaiting);
    }
    if let Some(error) = param("error") {
        let description = param("error_description").filter(|d| !d.is_empty());
        let message = match &description {
            Some(d) => format!("The sign-in was refused: {error} ({d})."),
            None => format!("The sign-in was refused: {error}."),
        };
        return (
            Page::new(200, "Sign-in refused", &message),
            Outcome::Denied { error, description },
        );
    }
    match param("code").filter(|c| !c.is_empty()) {
        Some(code) => {
            let message = format!(
                "Signed in to {}. You can close this tab.",
                expected.signed_in_to
            );
            (
                Page::new(200, "Signed in", &message),
                Outcome::Code(Secret::new(code)),
            )
        }
        None => (
            Page::new(400, "Bad request", "The sign-in came back without a code."),
            Outcome::KeepWaiting,
        ),
    }
}

/// A tiny static HTML page.
struct Page {
    status: u16,
    body: String,
}

impl Page {
    fn new(status: u16, title: &str, message: &str) -> Self {
        let (title, message) = (escape(title), escape(message));
        let body = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{message}</p></body></html>\n"
        );
        Self { status, body }
    }

    fn to_http(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "",
        };
        format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
             cache-control: no-store\r\nreferrer-policy: no-referrer\r\nconnection: close\r\n\r\n{}",
            self.status,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }
}

/// The query (an `error` from whoever sent the browser here) must not become markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn expected(redirect: &Url) -> Expected<'_> {
        Expected {
            redirect_uri: redirect,
            state: "s1",
            signed_in_to: "idp.example",
        }
    }

    #[test]
    fn answers_each_kind_of_request() {
        let redirect = Url::parse("http://localhost:53593/callback").unwrap();
        let e = expected(&redirect);
        let status = |line: &str| answer(line, &e).0.status;
        assert_eq!(status("GET /favicon.ico HTTP/1.1"), 404);
        assert_eq!(status("POST /callback?code=c&state=s1 HTTP/1.1"), 405);
        assert_eq!(status("GET /callback?code=c HTTP/1.1"), 400);
        assert_eq!(status("GET /callback?code=c&state=other HTTP/1.1"), 400);
        assert_eq!(status("GET /callback?state=s1 HTTP/1.1"), 400);
        assert!(
            matches!(answer("GET /callback/?state=s1&code=c HTTP/1.1", &e).1, Outcome::Code(c) if c.expose() == "c")
        );
        let (page, outcome) = answer(
            "GET /callback?state=s1&error=access_denied&error_description=%3Cb%3Eno HTTP/1.1",
            &e,
        );
        assert!(
            page.body.contains("access_denied (&lt;b&gt;no)"),
            "{}",
            page.body
        );
        assert!(
            matches!(outcome, Outcome::Denied { error, description } if error == "access_denied" && description.as_deref() == Some("<b>no"))
        );
    }

    #[test]
    fn success_page_names_the_host() {
        let redirect = Url::parse("http://127.0.0.1:1/cb").unwrap();
        let (page, _) = answer("GET /cb?state=s1&code=x HTTP/1.1", &expected(&redirect));
        assert!(
            page.body
                .contains("Signed in to idp.example. You can close this tab.")
        );
        let http = String::from_utf8(page.to_http()).unwrap();
        assert!(http.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(http.contains(&format!("content-length: {}\r\n", page.body.len())));
    }
}
