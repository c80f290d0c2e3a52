//! The Connect unary protocol as the server serves it: method, headers (content type, encoding, protocol
//! version, timeout), body reading with its size cap, gzip, and proto or JSON decoding of real request
//! messages.
//!
//! The first byte picks the request's shape, the second the timeout header; the rest is the body.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use flyteauth_proto::cloudidl::identity::{
    CreateAppRequest, CreateAppResponse, ListAppsRequest, ListAppsResponse,
};
use flyteauth_server::connect::{self, ConnectOptions};
use http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

/// Small, so the size checks (declared and actual, before and after gzip) are crossed often.
const MAX_BODY_BYTES: usize = 4096;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

fn router() -> Router {
    let options = ConnectOptions {
        max_body_bytes: MAX_BODY_BYTES,
        ..ConnectOptions::default()
    };
    Router::new()
        .route(
            "/cloudidl.identity.AppsService/Create",
            connect::unary_with(
                options,
                |(): (), _headers, request: CreateAppRequest| async move {
                    if request.client_id.is_empty() {
                        return Err(tonic::Status::invalid_argument("client_id is required"));
                    }
                    Ok(CreateAppResponse::default())
                },
            ),
        )
        .route(
            "/cloudidl.identity.AppsService/List",
            connect::unary_with(
                options,
                |(): (), _headers, request: ListAppsRequest| async move {
                    let _ = request.request.map(|r| r.filters.len());
                    Ok(ListAppsResponse::default())
                },
            ),
        )
        .fallback(connect::not_found)
}

fuzz_target!(|data: &[u8]| {
    let [shape, timeout, body @ ..] = data else {
        return;
    };
    let path = if shape & 1 == 0 {
        "/cloudidl.identity.AppsService/Create"
    } else {
        "/cloudidl.identity.AppsService/List"
    };
    let content_type = match (shape >> 1) & 3 {
        0 => "application/proto",
        1 => "application/json",
        2 => "application/json; charset=utf-8",
        _ => "text/plain",
    };
    let mut request = Request::builder()
        .method(if shape & 0x40 == 0 {
            Method::POST
        } else {
            Method::GET
        })
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type);
    if shape & 0x08 != 0 {
        request = request.header(http::header::CONTENT_ENCODING, "gzip");
    }
    if shape & 0x10 != 0 {
        request = request.header("connect-protocol-version", "1");
    }
    if shape & 0x20 != 0 {
        request = request.header(http::header::CONTENT_LENGTH, body.len().to_string());
    }
    if *timeout != 0 {
        // Zero to a few hundred milliseconds; the handlers never wait, so this only exercises the parse.
        request = request.header("connect-timeout-ms", timeout.to_string());
    }
    let body = if shape & 0x08 != 0 && shape & 0x80 != 0 {
        // Let the fuzzer write plaintext and see it compressed, so the decoders behind gzip get coverage.
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(body).expect("gzip into memory");
        encoder.finish().expect("gzip into memory")
    } else {
        body.to_vec()
    };
    let request = request.body(Body::from(body)).expect("a valid request");
    let response = runtime()
        .block_on(router().oneshot(request))
        .expect("axum routers are infallible");
    // A client's bytes never make the server fail. 501 is Connect's `unimplemented` (an unsupported
    // encoding), a refusal like the 4xx ones; 500 would be `internal` or `unknown`.
    assert!(
        response.status() != StatusCode::INTERNAL_SERVER_ERROR,
        "status {}",
        response.status()
    );
});
