#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use flyteauth_proto::flyteidl2::auth::{
    GetOAuth2MetadataResponse, GetPublicClientConfigResponse, UserInfoResponse,
};
use serde_json::json;

use super::*;
use crate::connect::test_server::{Canned, TestServer, epoch_in, jwt};
use crate::flows::PlainUi;
use crate::identity::{USER_INFO, whoami};
use crate::metadata::{GET_OAUTH2_METADATA, GET_PUBLIC_CLIENT_CONFIG};

const TOKEN: &str = "/oauth2/token";

struct Fixture {
    server: TestServer,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let server = TestServer::start().await;
        let base = server.base();
        let base = base.as_str().trim_end_matches('/').to_owned();
        server.proto(
            GET_OAUTH2_METADATA,
            GetOAuth2MetadataResponse {
                issuer: base.clone(),
                token_endpoint: format!("{base}{TOKEN}"),
                ..Default::default()
            },
        );
        server.proto(
            GET_PUBLIC_CLIENT_CONFIG,
            GetPublicClientConfigResponse {
                client_id: "flytectl".into(),
                scopes: vec!["offline".into(), "all".into()],
                authorization_metadata_key: "flyte-authorization".into(),
                ..Default::default()
            },
        );
        Self {
            server,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn settings(&self, auth_type: AuthType) -> Settings {
        let authority = self.server.base().authority().to_owned();
        Settings {
            endpoint: Some(Endpoint::parse(&authority).unwrap()),
            insecure: true,
            auth_type,
            client_id: Some("ci".into()),
            client_secret: Some(Secret::new("ci-secret")),
            ..Settings::default()
        }
    }

    fn cache_options(&self) -> CacheOptions {
        CacheOptions {
            disable_keyring: true,
            file: Some(self.dir.path().join("tokens.json")),
        }
    }

    fn service(&self) -> String {
        self.server.base().authority().to_owned()
    }

    async fn session(&self, settings: Settings) -> Session {
        Session::new(settings, Arc::new(PlainUi), self.cache_options())
            .await
            .unwrap()
    }

    async fn cache(&self) -> TokenCache {
        TokenCache::open(&self.cache_options()).await
    }

    /// Client-credentials tokens `cc-1`, `cc-2`, … one per request.
    fn numbered_tokens(&self) {
        let counter = AtomicUsize::new(0);
        self.server.route(TOKEN, move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Canned::json(
                200,
                json!({"access_token": format!("cc-{n}"), "expires_in": 3600}),
            )
        });
    }

    /// UserInfo answers only `accepted`.
    fn user_info_accepting(&self, accepted: &'static str) {
        self.server.route(USER_INFO, move |seen| {
            if seen.header("authorization").as_deref() == Some(&format!("Bearer {accepted}")) {
                Canned::proto(&UserInfoResponse {
                    subject: "ci".into(),
                    ..Default::default()
                })
            } else {
                Canned::json(
                    401,
                    json!({"code": "unauthenticated", "message": "token rejected"}),
                )
            }
        });
    }
}

#[tokio::test]
async fn client_secret_tokens_stay_in_memory() {
    let f = Fixture::new().await;
    f.numbered_tokens();
    let session = f.session(f.settings(AuthType::ClientSecret)).await;
    assert_eq!(session.access_token().await.unwrap().expose(), "cc-1");
    assert_eq!(session.access_token().await.unwrap().expose(), "cc-1");
    assert_eq!(f.server.requests_to(TOKEN).len(), 1);
    let request = &f.server.requests_to(TOKEN)[0];
    assert_eq!(request.form_value("scope").as_deref(), Some("offline all"));
    assert_eq!(session.cache_kind(), None);
    assert!(!f.dir.path().join("tokens.json").exists());
}

#[tokio::test]
async fn client_secret_without_a_secret_is_a_config_error() {
    let f = Fixture::new().await;
    let settings = Settings {
        client_secret: None,
        ..f.settings(AuthType::ClientSecret)
    };
    let err = f.session(settings).await.access_token().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Config(ConfigError::Missing(_))),
        "{err}"
    );
}

#[tokio::test]
async fn no_endpoint_is_a_config_error() {
    let err = Session::new(
        Settings::default(),
        Arc::new(PlainUi),
        CacheOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Config(ConfigError::NoEndpoint)),
        "{err}"
    );
}

#[tokio::test]
async fn call_renews_and_retries_once() {
    let f = Fixture::new().await;
    f.numbered_tokens();
    f.user_info_accepting("cc-2");
    let session = f.session(f.settings(AuthType::ClientSecret)).await;
    let me = whoami(&session).await.unwrap();
    assert_eq!(me.subject, "ci");
    assert_eq!(f.server.requests_to(USER_INFO).len(), 2);
    assert_eq!(f.server.requests_to(TOKEN).len(), 2);
}

#[tokio::test]
async fn a_token_rejected_twice_is_an_error_after_one_retry() {
    let f = Fixture::new().await;
    f.numbered_tokens();
    f.user_info_accepting("never");
    let session = f.session(f.settings(AuthType::ClientSecret)).await;
    let err = whoami(&session).await.unwrap_err();
    assert!(err.is_authentication(), "{err}");
    assert_eq!(f.server.requests_to(USER_INFO).len(), 2);
}

#[tokio::test]
async fn concurrent_renewals_of_the_same_token_ask_once() {
    let f = Fixture::new().await;
    f.numbered_tokens();
    let session = Arc::new(f.session(f.settings(AuthType::ClientSecret)).await);
    let first = session.access_token().await.unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let session = session.clone();
            let first = first.clone();
            tokio::spawn(async move { session.renew(&first).await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().expose(), "cc-2");
    }
    assert_eq!(f.server.requests_to(TOKEN).len(), 2);
}

#[tokio::test]
async fn proxy_command_token_goes_in_proxy_authorization_everywhere() {
    let f = Fixture::new().await;
    f.numbered_tokens();
    f.user_info_accepting("cc-1");
    let settings = Settings {
        proxy_command: vec!["echo".into(), "proxy-tok".into()],
        ..f.settings(AuthType::ClientSecret)
    };
    let session = f.session(settings).await;
    whoami(&session).await.unwrap();
    let requests = f.server.requests();
    assert_eq!(requests.len(), 4, "two discovery calls, the token, the RPC");
    for request in &requests {
        assert_eq!(
            request.header("proxy-authorization").as_deref(),
            Some("Bearer proxy-tok"),
            "{}",
            request.path
        );
        assert_ne!(
            request.header("authorization").as_deref(),
            Some("Bearer proxy-tok")
        );
    }
    assert!(
        f.server.requests_to(GET_OAUTH2_METADATA)[0]
            .header("authorization")
            .is_none()
    );
}

#[tokio::test]
async fn cached_login_is_refreshed_within_the_window_and_cached_again() {
    let f = Fixture::new().await;
    let expiring = jwt(json!({"sub": "alice", "exp": epoch_in(30)}));
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: expiring,
                refresh_token: Some(Secret::new("r1")),
            },
        )
        .await
        .unwrap();
    let fresh = jwt(json!({"sub": "alice", "exp": epoch_in(3600)}));
    let answer = json!({"access_token": fresh.expose(), "expires_in": 3600});
    f.server
        .route(TOKEN, move |_| Canned::json(200, answer.clone()));
    let session = f.session(f.settings(AuthType::Pkce)).await;
    assert_eq!(session.access_token().await.unwrap(), fresh);
    assert_eq!(session.cache_kind(), Some(CacheKind::File));
    let refresh = &f.server.requests_to(TOKEN)[0];
    assert_eq!(
        refresh.form_value("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(refresh.form_value("refresh_token").as_deref(), Some("r1"));
    assert_eq!(refresh.form_value("client_id").as_deref(), Some("flytectl"));
    // The server did not rotate the refresh token: the old one is kept.
    let cached = f.cache().await.load(&f.service()).await.unwrap().unwrap();
    assert_eq!(cached.access_token, fresh);
    assert_eq!(cached.refresh_token.unwrap().expose(), "r1");
    // Valid now: no more requests.
    session.access_token().await.unwrap();
    assert_eq!(f.server.requests_to(TOKEN).len(), 1);
}

#[tokio::test]
async fn a_valid_cached_token_is_used_as_it_is() {
    let f = Fixture::new().await;
    let valid = jwt(json!({"exp": epoch_in(3600)}));
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: valid.clone(),
                refresh_token: None,
            },
        )
        .await
        .unwrap();
    let session = f.session(f.settings(AuthType::DeviceFlow)).await;
    assert_eq!(session.access_token().await.unwrap(), valid);
    assert!(f.server.requests().is_empty(), "not even discovery");
}

#[tokio::test]
async fn a_refused_refresh_means_login_required_and_clears_the_cache() {
    let f = Fixture::new().await;
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: Secret::new(""),
                refresh_token: Some(Secret::new("revoked")),
            },
        )
        .await
        .unwrap();
    f.server.route(TOKEN, |_| {
        Canned::json(
            400,
            json!({"error": "invalid_grant", "error_description": "refresh token revoked"}),
        )
    });
    let session = f.session(f.settings(AuthType::Pkce)).await;
    let err = session.access_token().await.unwrap_err();
    assert!(matches!(err, ClientError::LoginRequired { .. }), "{err}");
    assert!(err.to_string().contains("flyte login"), "{err}");
    assert!(err.to_string().contains("refresh token revoked"), "{err}");
    assert_eq!(f.cache().await.load(&f.service()).await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_keeps_the_cache() {
    let f = Fixture::new().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    f.server.proto(
        GET_OAUTH2_METADATA,
        GetOAuth2MetadataResponse {
            token_endpoint: format!("http://{dead}/token"),
            ..Default::default()
        },
    );
    let entry = CachedTokens {
        access_token: Secret::new(""),
        refresh_token: Some(Secret::new("r1")),
    };
    f.cache().await.store(&f.service(), &entry).await.unwrap();
    let session = f.session(f.settings(AuthType::Pkce)).await;
    let err = session.access_token().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    assert_eq!(
        f.cache().await.load(&f.service()).await.unwrap(),
        Some(entry)
    );
}

#[tokio::test]
async fn external_command_tokens_are_cached_and_rerun_after_rejection() {
    let f = Fixture::new().await;
    let counter = f.dir.path().join("runs");
    let script = format!("echo run >> '{}'; echo ext-token", counter.display());
    let settings = Settings {
        command: vec!["sh".into(), "-c".into(), script],
        ..f.settings(AuthType::ExternalCommand)
    };
    let session = f.session(settings).await;
    assert_eq!(session.access_token().await.unwrap().expose(), "ext-token");
    assert_eq!(session.access_token().await.unwrap().expose(), "ext-token");
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().lines().count(),
        1
    );
    let cached = f.cache().await.load(&f.service()).await.unwrap().unwrap();
    assert_eq!(
        (cached.access_token.expose(), cached.refresh_token),
        ("ext-token", None)
    );
    session.renew(&Secret::new("ext-token")).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().lines().count(),
        2
    );
    assert!(
        f.server.requests().is_empty(),
        "the command needs no discovery"
    );
}

#[tokio::test]
async fn pkce_against_a_server_without_browser_login_is_unsupported() {
    let f = Fixture::new().await;
    let session = f.session(f.settings(AuthType::Pkce)).await;
    let err = session.access_token().await.unwrap_err();
    assert!(matches!(err, ClientError::Unsupported(_)), "{err}");
    let device = f
        .session(f.settings(AuthType::DeviceFlow))
        .await
        .login()
        .await
        .unwrap_err();
    assert!(device.to_string().contains("device flow"), "{device}");
}

#[tokio::test]
async fn logout_revokes_where_advertised_and_removes_the_entry() {
    let f = Fixture::new().await;
    let base = f.server.base().as_str().trim_end_matches('/').to_owned();
    let revoke = format!("{base}/oauth2/revoke");
    f.server
        .route("/.well-known/oauth-authorization-server", move |_| {
            Canned::json(
                200,
                json!({"issuer": "x", "revocation_endpoint": revoke.clone()}),
            )
        });
    f.server.route("/oauth2/revoke", |_| Canned::text(200, ""));
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: Secret::new("a"),
                refresh_token: Some(Secret::new("r1")),
            },
        )
        .await
        .unwrap();
    let session = f.session(f.settings(AuthType::Pkce)).await;
    assert!(session.logout().await.unwrap());
    let revoked = f.server.requests_to("/oauth2/revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].form_value("token").as_deref(), Some("r1"));
    assert_eq!(
        revoked[0].form_value("client_id").as_deref(),
        Some("flytectl")
    );
    assert_eq!(f.cache().await.load(&f.service()).await.unwrap(), None);
    assert!(!session.logout().await.unwrap());
}

#[tokio::test]
async fn logout_without_a_revocation_endpoint_only_removes() {
    let f = Fixture::new().await;
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: Secret::new("a"),
                refresh_token: Some(Secret::new("r1")),
            },
        )
        .await
        .unwrap();
    let session = f.session(f.settings(AuthType::Pkce)).await;
    assert!(session.logout().await.unwrap());
    assert!(f.server.requests_to("/oauth2/revoke").is_empty());
    assert_eq!(f.cache().await.load(&f.service()).await.unwrap(), None);
}

#[tokio::test]
async fn apps_calls_send_the_flyte_cli_requests() {
    use flyteauth_proto::cloudidl::identity::{
        App, DeleteAppRequest, GetAppResponse, ListAppsRequest, ListAppsResponse,
    };

    let f = Fixture::new().await;
    f.numbered_tokens();
    let app = |id: &str| App {
        client_id: id.into(),
        client_secret: "leak".into(),
        ..Default::default()
    };
    let pages = Arc::new(AtomicUsize::new(0));
    let counter = pages.clone();
    f.server
        .route("cloudidl.identity.AppsService/List", move |seen| {
            let request: ListAppsRequest = seen.decode();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let limit = request.request.unwrap().limit as usize;
            let apps = (0..limit).map(|i| app(&format!("app-{n}-{i}"))).collect();
            Canned::proto(&ListAppsResponse {
                apps,
                token: format!("page-{}", n + 1),
            })
        });
    let got = app("one");
    f.server
        .route("cloudidl.identity.AppsService/Get", move |_| {
            Canned::proto(&GetAppResponse {
                app: Some(got.clone()),
            })
        });
    f.server.route("cloudidl.identity.AppsService/Delete", |_| {
        Canned::proto(&flyteauth_proto::cloudidl::identity::DeleteAppResponse {})
    });
    let session = f.session(f.settings(AuthType::ClientSecret)).await;
    let apps = crate::apps::list_apps(&session, 150).await.unwrap();
    assert_eq!(apps.len(), 150);
    assert!(apps.iter().all(|a| a.client_secret.is_empty()));
    let lists = f.server.requests_to("cloudidl.identity.AppsService/List");
    let requests: Vec<ListAppsRequest> = lists.iter().map(|r| r.decode()).collect();
    assert_eq!(requests[0].request.as_ref().unwrap().limit, 100);
    assert_eq!(requests[0].request.as_ref().unwrap().token, "");
    assert_eq!(requests[1].request.as_ref().unwrap().limit, 50);
    assert_eq!(requests[1].request.as_ref().unwrap().token, "page-1");
    assert_eq!(requests.len(), 2);
    let one = crate::apps::get_app(&session, "one").await.unwrap();
    assert_eq!(
        (one.client_id.as_str(), one.client_secret.as_str()),
        ("one", "")
    );
    crate::apps::delete_app(&session, "gone").await.unwrap();
    let delete: DeleteAppRequest =
        f.server.requests_to("cloudidl.identity.AppsService/Delete")[0].decode();
    assert_eq!(delete.client_id, "gone");
    assert_eq!(
        f.server.requests_to("cloudidl.identity.AppsService/Delete")[0]
            .header("authorization")
            .as_deref(),
        Some("Bearer cc-1")
    );
}

#[tokio::test]
async fn api_keys_need_an_https_endpoint_and_nothing_is_created_otherwise() {
    let f = Fixture::new().await;
    f.numbered_tokens();
    let session = f.session(f.settings(AuthType::ClientSecret)).await;
    let err = crate::apps::create_api_key(&session, "My Key", false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("https"), "{text}");
    assert!(!text.contains('\n'));
    assert!(
        f.server
            .requests_to("cloudidl.identity.AppsService/Create")
            .is_empty()
    );
}

#[tokio::test]
async fn a_refresh_by_another_process_is_picked_up_from_the_cache() {
    let f = Fixture::new().await;
    let expiring = jwt(json!({"exp": epoch_in(30)}));
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: expiring.clone(),
                refresh_token: Some(Secret::new("r1")),
            },
        )
        .await
        .unwrap();
    // Only the rotated refresh token works.
    let fresh = jwt(json!({"exp": epoch_in(3600)}));
    let answer = json!({"access_token": fresh.expose(), "refresh_token": "r3", "expires_in": 3600});
    f.server.route(TOKEN, move |seen| {
        match seen.form_value("refresh_token").as_deref() {
            Some("r2") => Canned::json(200, answer.clone()),
            _ => Canned::json(400, json!({"error": "invalid_grant"})),
        }
    });
    let session = f.session(f.settings(AuthType::Pkce)).await;
    let rejected = session.access_token().await;
    // Expiring within the window with a spent refresh token in the cache: refused.
    assert!(matches!(rejected, Err(ClientError::LoginRequired { .. })));
    // Another process signs in again and then rotates: r2 in the cache.
    let other = jwt(json!({"exp": epoch_in(20)}));
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: other.clone(),
                refresh_token: Some(Secret::new("r2")),
            },
        )
        .await
        .unwrap();
    assert_eq!(session.access_token().await.unwrap(), fresh);
    let cached = f.cache().await.load(&f.service()).await.unwrap().unwrap();
    assert_eq!(cached.refresh_token.unwrap().expose(), "r3");
    // A rejected token with a newer one in the cache: the cached one, without a request.
    let newer = jwt(json!({"exp": epoch_in(3600), "n": 2}));
    f.cache()
        .await
        .store(
            &f.service(),
            &CachedTokens {
                access_token: newer.clone(),
                refresh_token: Some(Secret::new("r4")),
            },
        )
        .await
        .unwrap();
    let before = f.server.requests_to(TOKEN).len();
    assert_eq!(session.renew(&fresh).await.unwrap(), newer);
    assert_eq!(f.server.requests_to(TOKEN).len(), before);
}
