//! What operators watch: `/metrics` on its own listener (`flyteauth.metricsListenAddress`), gRPC calls counted by
//! method and status code, and the gRPC health service following `/readyz` when the database goes away and comes
//! back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_proto::flyteidl::service as v1;
use flyteauth_tests::*;
use std::time::{Duration, Instant};

/// A gRPC unary call made by hand (h2c prior knowledge): the `grpc-status` of a trailers-only answer (tonic's
/// errors; `None` when the status follows the message in trailers) and the first message, unframed.
async fn raw_grpc(server: &TestServer, path: &str, message: &[u8]) -> (Option<String>, Vec<u8>) {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(message);
    let response = client
        .post(server.url(path))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response
        .headers()
        .get("grpc-status")
        .map(|s| s.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    let message = bytes.get(5..).unwrap_or_default().to_vec();
    (status, message)
}

/// What `grpc.health.v1.Health/Check` says about `service`: `"SERVING"`, `"NOT_SERVING"`, or the gRPC status code
/// of an error.
async fn grpc_health(server: &TestServer, service: &str) -> String {
    // HealthCheckRequest { service = 1 }.
    let mut request = Vec::new();
    if !service.is_empty() {
        request.push(0x0a);
        request.push(u8::try_from(service.len()).unwrap());
        request.extend_from_slice(service.as_bytes());
    }
    let (status, reply) = raw_grpc(server, "/grpc.health.v1.Health/Check", &request).await;
    if let Some(code) = status {
        return format!("grpc-status {code}");
    }
    // HealthCheckResponse { status = 1 }: 1 SERVING, 2 NOT_SERVING.
    match reply.as_slice() {
        [0x08, 1] => "SERVING".into(),
        [0x08, 2] => "NOT_SERVING".into(),
        other => format!("unexpected reply {other:?}"),
    }
}

/// The value of the counter `name` whose labels include every one of `labels`, summed; 0 when there is none.
fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.rsplit_once("} "))
        .filter(|(set, _)| {
            labels
                .iter()
                .all(|(k, v)| set.split(',').any(|l| l == format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.trim().parse::<f64>().unwrap() as u64)
        .sum()
}

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn metrics_listen_address_moves_metrics_off_the_public_port() {
    let port = flyteauth_tests::cli::free_port();
    let server =
        TestServer::start_with(&format!("  metricsListenAddress: 127.0.0.1:{port}\n")).await;
    let operations = format!("http://127.0.0.1:{port}");
    server.app_token().await;

    let (status, metrics) = get(format!("{operations}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        counter(
            &metrics,
            "flyteauth_tokens_issued_total",
            &[("grant", "client_credentials")]
        ) >= 1,
        "{metrics}"
    );
    assert_eq!(get(server.url("/metrics")).await.0, 404);
    // Probes answer on both ports: Kubernetes may probe either.
    for base in [operations.as_str(), server.base.as_str()] {
        for probe in ["/healthz", "/readyz"] {
            assert_eq!(get(format!("{base}{probe}")).await.0, 200, "{base}{probe}");
        }
    }
    // The operations port serves nothing else.
    assert_eq!(get(format!("{operations}/oauth2/jwks")).await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn grpc_calls_are_counted_by_method_and_status_code() {
    const USER_INFO: &str = "/flyteidl.service.IdentityService/UserInfo";
    const REQUESTS: &str = "flyteauth_grpc_requests_total";
    let server = TestServer::start().await;
    let token = server.app_token().await;
    let metrics = || async { get(server.url("/metrics")).await.1 };
    let before = metrics().await;

    let mut identity =
        v1::identity_service_client::IdentityServiceClient::new(grpc_channel(&server).await);
    let refused = identity
        .user_info(v1::UserInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(v1::UserInfoRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    identity.user_info(request).await.unwrap();
    for path in [
        "/flyteidl.service.IdentityService/NoSuchMethod",
        "/no.such.Service/Method",
    ] {
        let (status, _) = raw_grpc(&server, path, &[]).await;
        assert_eq!(status.as_deref(), Some("12"), "{path}: UNIMPLEMENTED");
    }

    let after = metrics().await;
    let grew = |labels: &[(&str, &str)]| {
        counter(&after, REQUESTS, labels) - counter(&before, REQUESTS, labels)
    };
    assert_eq!(
        grew(&[("method", USER_INFO), ("code", "UNAUTHENTICATED")]),
        1,
        "{after}"
    );
    assert_eq!(grew(&[("method", USER_INFO), ("code", "OK")]), 1, "{after}");
    assert_eq!(
        grew(&[("method", "unmatched"), ("code", "UNIMPLEMENTED")]),
        2,
        "{after}"
    );
    // Paths the client chose never become label values.
    assert!(!after.contains("NoSuchMethod") && !after.contains("no.such.Service"));
    assert!(
        after.contains(&format!(
            "flyteauth_grpc_request_duration_seconds_count{{method=\"{USER_INFO}\"}} "
        )),
        "{after}"
    );
    server.stop().await;
}

/// Polls until `/readyz` answers `readyz` and the gRPC health service says `grpc` for the overall status and for a
/// flyteauth service; panics after 20 s (the poller checks every 5 s, a stalled check takes up to 3 s).
async fn wait_until(server: &TestServer, readyz: u16, grpc: &str) -> Duration {
    let started = Instant::now();
    loop {
        let seen = (
            get(server.url("/readyz")).await.0,
            grpc_health(server, "").await,
            grpc_health(server, "flyteidl.service.IdentityService").await,
        );
        if seen == (readyz, grpc.to_owned(), grpc.to_owned()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "wanted /readyz {readyz} and gRPC {grpc}, still {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn grpc_health_follows_readyz_when_the_database_goes_away_and_comes_back() {
    use sqlx::{Connection as _, Executor as _};
    let db = PostgresDatabase::create().await;
    let server = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        ..StartOptions::default()
    })
    .await;
    wait_until(&server, 200, "SERVING").await;
    assert_eq!(
        grpc_health(&server, "no.such.Service").await,
        "grpc-status 5",
        "unknown services are NOT_FOUND"
    );

    let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap();
    let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
        .await
        .unwrap();
    let name = &db.name;
    admin
        .execute(format!(r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false"#).as_str())
        .await
        .unwrap();
    admin
        .execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            .as_str(),
        )
        .await
        .unwrap();
    let down = wait_until(&server, 503, "NOT_SERVING").await;

    admin
        .execute(format!(r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true"#).as_str())
        .await
        .unwrap();
    let up = wait_until(&server, 200, "SERVING").await;
    eprintln!("gRPC health followed the database: down after {down:?}, up again after {up:?}");
    let _ = admin.close().await;
    server.stop().await;
    db.drop_database().await;
}
