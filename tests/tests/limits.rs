//! Every documented connection limit, crossed against a real server configured through `flyteauth.connections`,
//! `server.readHeaderTimeoutSeconds` and `flyteauth.maxRequestBytes`: what a client over the limit sees, and that a
//! client under it is served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_proto::cloudidl::identity as pb;
use flyteauth_tests::*;
use pb::apps_service_client::AppsServiceClient;
use prost::Message as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long any single step may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(10);

/// Starts a server with `flyteauth_extra` in its `flyteauth:` section and `server_extra` (lines indented by two
/// spaces) in its `server:` section.
async fn start(flyteauth_extra: &str, server_extra: &str) -> TestServer {
    let server_extra = server_extra.to_owned();
    let edit = move |yaml: String| {
        let anchor = "server:\n  httpPort: ";
        assert!(yaml.contains(anchor), "harness configuration changed");
        yaml.replace(anchor, &format!("server:\n{server_extra}  httpPort: "))
    };
    TestServer::start_on(&StartOptions {
        flyteauth_extra,
        edit_config: Some(&edit),
        ..StartOptions::default()
    })
    .await
}

/// Reads until the server closes the connection (or resets it); panics after [`BOUND`].
async fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read_all)
        .await
        .expect("the server kept the connection open");
    seen
}

/// Reads one HTTP/1.1 response head (up to the blank line) and returns it.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "connection closed inside a response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Writes `bytes` one at a time, `every` apart, until they are all sent or the server stops reading.
async fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    for byte in bytes {
        if writer.write_all(&[byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

#[tokio::test]
async fn a_request_head_trickled_past_the_read_header_timeout_is_cut_off() {
    let server = start("", "  readHeaderTimeoutSeconds: 1\n").await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (mut reader, writer) = tcp.into_split();
    // One byte every 200 ms would keep a per-read timeout from ever firing; the limit is on the whole head.
    let header: Vec<u8> = format!("X-Slow: {}", "a".repeat(100)).into_bytes();
    let trickling = tokio::spawn(trickle(writer, header, Duration::from_millis(200)));
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let took = started.elapsed();
    assert!(closed.is_ok(), "the trickled head was never cut off");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&took),
        "cut off after {took:?}, the timeout is 1 s"
    );
    trickling.abort();

    // A client that sends its head at once is served.
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        200
    );
    server.stop().await;
}

/// Sends `head` (ending in a blank line) and then a body that would take 200 ms per byte; returns the answer and
/// how long after the head it came.
async fn send_trickled_body(server: &TestServer, head: String) -> (String, Duration) {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, writer) = tcp.into_split();
    let body = "grant_type=client_credentials".as_bytes().to_vec();
    let trickling = tokio::spawn(trickle(writer, body, Duration::from_millis(200)));
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, reader.read_to_end(&mut answer))
        .await
        .expect("the server waited for the trickled body past its timeout")
        .ok();
    let took = started.elapsed();
    trickling.abort();
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

#[tokio::test]
async fn a_trickled_request_body_gets_408_within_the_body_timeout_and_frees_its_connection_slot() {
    // One connection slot: the normal client afterwards gets in only if the slow one released it.
    let server = start(
        "  connections:\n    maxConnections: 1\n    requestBodyTimeout: 1s\n",
        "",
    )
    .await;
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
        server.addr,
        sdk_basic(APP_ID, APP_SECRET)
    );
    let (answer, took) = send_trickled_body(&server, head).await;
    // 408 rather than 400: the request was not malformed, the client was too slow, and may send it again.
    assert!(
        answer.starts_with("HTTP/1.1 408 "),
        "after {took:?}: {answer}"
    );
    assert!(answer.contains("invalid_request"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&took),
        "failed after {took:?}, the timeout is 1 s"
    );

    let token = tokio::time::timeout(BOUND, token_request(&server, APP_ID, APP_SECRET, ""))
        .await
        .expect("the slow client's connection slot was not released");
    assert_eq!(token.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_a_408_page_on_the_login_form_and_deadline_exceeded_on_connect() {
    let server = start("  connections:\n    requestBodyTimeout: 1s\n", "").await;
    let form = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 1000\r\n\r\n",
        server.addr
    );
    let (answer, took) = send_trickled_body(&server, form).await;
    assert!(
        answer.starts_with("HTTP/1.1 408 "),
        "login form after {took:?}: {answer}"
    );
    assert!(answer.contains("text/html"), "{answer}");
    assert!(
        answer.contains("The form did not arrive in time."),
        "{answer}"
    );

    let connect = format!(
        "POST /cloudidl.identity.AppsService/Get HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer x\r\n\
         Content-Type: application/json\r\nConnect-Protocol-Version: 1\r\nContent-Length: 1000\r\n\r\n",
        server.addr
    );
    let (answer, took) = send_trickled_body(&server, connect).await;
    assert!(
        answer.contains("\"code\":\"deadline_exceeded\""),
        "Connect after {took:?}: {answer}"
    );
    assert!(answer.contains("did not arrive in time"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn header_blocks_over_max_header_bytes_get_431_on_http1_and_http2() {
    let server = start("  connections:\n    maxHeaderBytes: 8192\n", "").await;
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (name, client) in [("HTTP/1.1", &h1), ("HTTP/2", &h2)] {
        for (pad, want) in [(7000, 200), (9000, 431)] {
            let status = client
                .get(server.url("/healthz"))
                .header("x-pad", "a".repeat(pad))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, want, "{name} with a {pad}-byte header");
        }
        // The connection pool may reuse the connection: the server still serves after refusing a request.
        let status = client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{name} after the refusal");
    }
    server.stop().await;
}

#[tokio::test]
async fn clients_over_max_connections_wait_until_a_connection_closes() {
    let server = start("  connections:\n    maxConnections: 2\n", "").await;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let head = tokio::time::timeout(BOUND, read_head(&mut tcp))
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        open.push(tcp);
    }
    // The kernel completes the third handshake, but the server does not take the connection.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), read_head(&mut third)).await;
    assert!(early.is_err(), "a third connection was served: {early:?}");

    drop(open.pop());
    let head = tokio::time::timeout(BOUND, read_head(&mut third))
        .await
        .expect("the waiting client was never served");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    drop((open, third));
    server.stop().await;
}

// HTTP/2 frame types and flags used below (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

async fn write_frame(tcp: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    tcp.write_all(&frame).await.unwrap();
}

/// One frame: (type, flags, stream id, payload).
async fn read_frame(tcp: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], stream, payload)
}

/// The HPACK block of `POST /oauth2/token` on `authority`, literals only (no dynamic table, no Huffman).
fn post_token_headers(authority: &str) -> Vec<u8> {
    // Static table (RFC 7541 appendix A): 3 = `:method POST`, 6 = `:scheme http`; 4 = `:path`, 1 = `:authority`
    // as names of literals without indexing.
    let mut block = vec![0x83, 0x86];
    for (name_index, value) in [(0x04u8, "/oauth2/token"), (0x01, authority)] {
        block.push(name_index);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

#[tokio::test]
async fn http2_streams_over_max_concurrent_streams_are_refused() {
    let server = start("  connections:\n    http2MaxConcurrentStreams: 2\n", "").await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    write_frame(&mut tcp, SETTINGS, 0, 0, &[]).await;

    let exchange = async {
        let limit = loop {
            let (kind, flags, _, payload) = read_frame(&mut tcp).await;
            if kind == SETTINGS && flags & ACK == 0 {
                let limit = payload.chunks_exact(6).find_map(|setting| {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    (id == SETTINGS_MAX_CONCURRENT_STREAMS).then(|| {
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]])
                    })
                });
                break limit;
            }
        };
        assert_eq!(limit, Some(2), "the server's SETTINGS frame");
        write_frame(&mut tcp, SETTINGS, ACK, 0, &[]).await;

        // Three requests whose bodies never come: the first two stay open, the third is one too many. A client that
        // honours SETTINGS would have waited; this one does not, and the server holds the line.
        let block = post_token_headers(&server.addr.to_string());
        for stream in [1, 3, 5] {
            write_frame(&mut tcp, HEADERS, END_HEADERS, stream, &block).await;
        }
        loop {
            let (kind, _, stream, payload) = read_frame(&mut tcp).await;
            match kind {
                RST_STREAM => {
                    let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    return (stream, code);
                }
                HEADERS | DATA => panic!("stream {stream} was answered before the refusal"),
                GOAWAY => panic!("the server closed the connection instead of refusing one stream"),
                _ => {}
            }
        }
    };
    let (stream, code) = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("no stream was refused");
    assert_eq!(
        (stream, code),
        (5, REFUSED_STREAM),
        "RST_STREAM on stream {stream}"
    );
    drop(tcp);
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off_after_the_tls_handshake_timeout() {
    let tls_dir = tempfile::tempdir().unwrap();
    let paths = flyteauth_server::tls::write_self_signed(tls_dir.path(), &[]).unwrap();
    let security = format!(
        "  readHeaderTimeoutSeconds: 30\n  security:\n    secure: true\n    ssl:\n      \
         certificateFile: {}\n      keyFile: {}\n",
        paths.server_cert.display(),
        paths.server_key.display()
    );
    let server = start("  connections:\n    tlsHandshakeTimeout: 1s\n", &security).await;

    // Half a ClientHello: a TLS record header announcing 512 bytes, then nothing.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut tcp).await;
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&took),
        "cut off after {took:?}: the TLS timeout is 1 s, the header timeout 30 s"
    );
    assert!(answer.len() < 64, "the server answered {answer:?}");

    // A client that completes the handshake is served.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&paths.ca_cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    server.stop().await;
}

/// A gRPC or Connect `GetApp` of a `client_id` of `len` bytes, whose encoded message is a few bytes longer.
fn get_app(len: usize) -> pb::GetAppRequest {
    pb::GetAppRequest {
        organization: String::new(),
        client_id: "a".repeat(len),
    }
}

#[tokio::test]
async fn max_request_bytes_holds_on_http_grpc_and_connect() {
    // An admin app, so that a GetApp under the limit gets as far as looking the app up.
    let server = start(
        &format!("  maxRequestBytes: 4096\n  admins: [{APP_ID}]\n"),
        "",
    )
    .await;
    let token = server.app_token().await;

    // HTTP: the token endpoint.
    let form = |pad: usize| format!("grant_type=client_credentials&pad={}", "a".repeat(pad));
    let post = |body: String| {
        reqwest::Client::new()
            .post(server.url("/oauth2/token"))
            .header("authorization", sdk_basic(APP_ID, APP_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_eq!(post(form(3000)).await.unwrap().status(), 200);
    let over = post(form(5000)).await.unwrap();
    assert_eq!(over.status(), 413);
    let body: serde_json::Value = over.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");

    // gRPC: tonic refuses the message before any handler sees it.
    let mut grpc = AppsServiceClient::new(grpc_channel(&server).await);
    let call = |len: usize| {
        let mut request = tonic::Request::new(get_app(len));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let under = grpc.get(call(3000)).await.unwrap_err();
    assert_eq!(under.code(), tonic::Code::NotFound, "{under:?}");
    let over = grpc.get(call(5000)).await.unwrap_err();
    assert_eq!(over.code(), tonic::Code::OutOfRange, "{over:?}");

    // Connect, gzip-compressed as the flyte SDK sends it: the limit is on the message, not the wire bytes.
    let connect = |len: usize| {
        reqwest::Client::new()
            .post(server.url("/cloudidl.identity.AppsService/Get"))
            .header("content-type", "application/proto")
            .header("content-encoding", "gzip")
            .header("connect-protocol-version", "1")
            .header("authorization", format!("Bearer {token}"))
            .body(gzip(&get_app(len).encode_to_vec()))
            .send()
    };
    for (len, want) in [(3000, "not_found"), (5000, "resource_exhausted")] {
        let response = connect(len).await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], want, "Connect, {len} bytes: {status} {body}");
    }
    server.stop().await;
}
