//! End-to-end tests of the transport on 127.0.0.1: HTTP/1.1, h2c, TLS with ALPN, gRPC and
//! Connect on one listener, connection limits, timeouts and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bytes::Bytes;
use flyteauth_proto::flyteidl2::auth::{UserInfoRequest, UserInfoResponse};
use flyteauth_server::dispatch::Dispatch;
use flyteauth_server::listener::{self, ServeOptions};
use flyteauth_server::{connect, health, tls};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const USER_INFO: &str = "/flyteidl2.auth.IdentityService/UserInfo";

fn app() -> Dispatch {
    let (_reporter, health_service) = health::grpc_service();
    let grpc = tonic::service::Routes::new(health_service);
    let http = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/version",
            get(|req: Request<Body>| async move { format!("{:?}", req.version()) }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow done"
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "never"
            }),
        )
        .route(
            USER_INFO,
            connect::unary(|(): (), _h: HeaderMap, _r: UserInfoRequest| async {
                Ok::<_, tonic::Status>(UserInfoResponse {
                    subject: "alice".to_owned(),
                    ..Default::default()
                })
            }),
        )
        .merge(health::router(|| async { Ok::<(), String>(()) }));
    Dispatch::new(grpc, http)
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, opts: ServeOptions) -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(listener::serve(tcp, tls, app(), shutdown, opts));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Triggers shutdown and waits for `serve` to return.
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flyteauth-transport-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A self-signed CA + server config, and a client connector trusting only that CA.
fn tls_pair(name: &str, alpn: &[&[u8]]) -> (Arc<rustls::ServerConfig>, TlsConnector, PathBuf) {
    let dir = tempdir(name);
    let paths = tls::write_self_signed(&dir, &[]).unwrap();
    let server = tls::load_server_config(&paths.server_cert, &paths.server_key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls::read_certs(&paths.ca_cert).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut client = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (server, TlsConnector::from(Arc::new(client)), dir)
}

fn get_request(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .header(header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The Connect request exactly as connectrpc 0.10 sends it: gzip body, proto codec.
fn connect_request(addr: SocketAddr) -> Request<Full<Bytes>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&UserInfoRequest {}.encode_to_vec()).unwrap();
    let body = gz.finish().unwrap();
    Request::post(format!("http://{addr}{USER_INFO}"))
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/proto")
        .header(header::CONTENT_ENCODING, "gzip")
        .header(header::ACCEPT_ENCODING, "gzip,identity")
        .header("connect-protocol-version", "1")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn read_all(resp: http::Response<hyper::body::Incoming>) -> (StatusCode, HeaderMap, Bytes) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

async fn http1_client<IO>(io: IO) -> hyper::client::conn::http1::SendRequest<Full<Bytes>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn h2_client<IO>(io: IO) -> hyper::client::conn::http2::SendRequest<Full<Bytes>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

fn quick() -> ServeOptions {
    ServeOptions {
        shutdown_grace: Duration::from_secs(5),
        ..ServeOptions::default()
    }
}

#[tokio::test]
async fn http1_and_h2c_on_one_port() {
    let server = Server::start(None, quick()).await;
    let addr = server.addr;

    let mut h1 = http1_client(TcpStream::connect(addr).await.unwrap()).await;
    let (status, _, body) = read_all(
        h1.send_request(get_request(addr, "/version"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"HTTP/1.1");
    // Keep-alive: a second request on the same connection.
    let (_, _, body) = read_all(h1.send_request(get_request(addr, "/peer")).await.unwrap()).await;
    assert_eq!(&body[..], b"127.0.0.1");
    // Connect over plaintext HTTP/1.1, as pyqwest does.
    let (status, headers, body) =
        read_all(h1.send_request(connect_request(addr)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/proto");
    assert_eq!(UserInfoResponse::decode(body).unwrap().subject, "alice");

    let mut h2 = h2_client(TcpStream::connect(addr).await.unwrap()).await;
    let (status, _, body) = read_all(
        h2.send_request(get_request(addr, "/version"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"HTTP/2.0");
    let (status, _, _) = read_all(
        h2.send_request(get_request(addr, "/healthz"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    drop((h1, h2));
    server.stop().await;
}

#[tokio::test]
async fn grpc_health_check_over_h2c() {
    let server = Server::start(None, quick()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32);
    let err = client
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn tls_negotiates_h2_and_http1_with_the_self_signed_ca() {
    let (server_tls, h2_connector, dir) = tls_pair("alpn", &[b"h2", b"http/1.1"]);
    let server = Server::start(Some(server_tls), quick()).await;
    let addr = server.addr;
    let localhost = ServerName::try_from("localhost").unwrap();

    // ALPN h2: what pyqwest negotiates over TLS; run the Connect call on it.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = h2_connector.connect(localhost.clone(), tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = h2_client(stream).await;
    let (status, headers, body) =
        read_all(h2.send_request(connect_request(addr)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/proto");
    assert_eq!(UserInfoResponse::decode(body).unwrap().subject, "alice");
    let (_, _, body) = read_all(
        h2.send_request(get_request(addr, "/version"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(&body[..], b"HTTP/2.0");

    // ALPN http/1.1 only.
    let (_, h1_connector, dir2) = tls_pair("alpn-h1", &[b"http/1.1"]);
    let _ = std::fs::remove_dir_all(dir2);
    let tcp = TcpStream::connect(addr).await.unwrap();
    // This connector trusts another CA: the handshake must fail.
    assert!(h1_connector.connect(localhost.clone(), tcp).await.is_err());

    let mut h1_config = rustls::ClientConfig::clone(h2_connector.config());
    h1_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let h1_connector = TlsConnector::from(Arc::new(h1_config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = h1_connector.connect(localhost.clone(), tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = http1_client(stream).await;
    let (_, _, body) = read_all(
        h1.send_request(get_request(addr, "/version"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(&body[..], b"HTTP/1.1");

    // gRPC over TLS (grpcio with a CA file): tonic on top of the rustls stream.
    let connector = h2_connector.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .unwrap();
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32);

    drop((h1, h2));
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_connections_do_not_disturb_the_server() {
    let (server_tls, connector, dir) = tls_pair("garbage", &[b"h2"]);
    let tls_server = Server::start(Some(server_tls), quick()).await;
    let plain_server = Server::start(None, quick()).await;

    // Plaintext HTTP to the TLS port.
    let mut tcp = TcpStream::connect(tls_server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    // Garbage to the plaintext port: a 400 or a closed connection, never a crash.
    let mut tcp = TcpStream::connect(plain_server.addr).await.unwrap();
    tcp.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    // Half an HTTP/2 preface, then a hang-up.
    let mut tcp = TcpStream::connect(plain_server.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    drop(tcp);

    let tcp = TcpStream::connect(tls_server.addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut h2 = h2_client(stream).await;
    let (status, _, _) = read_all(
        h2.send_request(get_request(tls_server.addr, "/hello"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut h1 = http1_client(TcpStream::connect(plain_server.addr).await.unwrap()).await;
    let (status, _, _) = read_all(
        h1.send_request(get_request(plain_server.addr, "/hello"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    drop((h1, h2));
    tls_server.stop().await;
    plain_server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_read_header_timeout() {
    let (server_tls, _, dir) = tls_pair("silent", &[b"h2"]);
    let opts = ServeOptions {
        read_header_timeout: Duration::from_millis(200),
        tls_handshake_timeout: Duration::from_millis(200),
        ..quick()
    };
    let plain = Server::start(None, opts).await;
    let tls_server = Server::start(Some(server_tls), opts).await;
    for addr in [plain.addr, tls_server.addr] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("the server kept a silent connection open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    // An HTTP/2 client that connects (preface + SETTINGS) but never sends a request gets a
    // GOAWAY and a closed connection.
    let tcp = TcpStream::connect(plain.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "idle h2 connection was not closed");
    drop(sender);

    plain.stop().await;
    tls_server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let server = Server::start(None, quick()).await;
    let addr = server.addr;
    let mut h1 = http1_client(TcpStream::connect(addr).await.unwrap()).await;
    let mut h2 = h2_client(TcpStream::connect(addr).await.unwrap()).await;
    let slow1 = tokio::spawn(h1.send_request(get_request(addr, "/slow")));
    let slow2 = tokio::spawn(h2.send_request(get_request(addr, "/slow")));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let stopping = tokio::spawn(server.stop());
    for slow in [slow1, slow2] {
        let resp = slow.await.unwrap().unwrap();
        let (status, _, body) = read_all(resp).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"slow done");
    }
    let took = stopping.await.unwrap();
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The listener is closed.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_grace_bounds_hanging_requests() {
    let opts = ServeOptions {
        shutdown_grace: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = Server::start(None, opts).await;
    let addr = server.addr;
    let mut h1 = http1_client(TcpStream::connect(addr).await.unwrap()).await;
    let hanging = tokio::spawn(h1.send_request(get_request(addr, "/hang")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = server.stop().await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(hanging.await.unwrap().is_err());
}

#[tokio::test]
async fn max_connections_holds_back_extra_clients() {
    let opts = ServeOptions {
        max_connections: Some(1),
        ..quick()
    };
    let server = Server::start(None, opts).await;
    let addr = server.addr;

    let mut first = http1_client(TcpStream::connect(addr).await.unwrap()).await;
    let (status, _, _) = read_all(
        first
            .send_request(get_request(addr, "/hello"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The kernel completes the TCP handshake, but the server does not serve it yet.
    let mut second = http1_client(TcpStream::connect(addr).await.unwrap()).await;
    let waiting = tokio::spawn(async move {
        let resp = second
            .send_request(get_request(addr, "/hello"))
            .await
            .unwrap();
        read_all(resp).await.0
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());

    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the second client was never served")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}
