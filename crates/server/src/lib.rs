//! The flyteauth server: thin handlers over `flyteauth-core` and `flyteauth-store`, served over
//! HTTP/1.1, HTTP/2, gRPC and Connect on one listener.
//!
//! Where to look:
//! - [`app`]: every route, grouped by capability;
//! - [`oauth`]: the OAuth 2.0 / OpenID endpoints (`/oauth2/token`, `/oauth2/authorize`, revoke, introspect,
//!   userinfo, JWKS, discovery); [`grants`]: what each token grant does, in order;
//! - [`web`]: the login page, its cookies and sessions; [`users`]: local accounts (`flyteauth users`);
//! - [`rpc`]: the Flyte services, written once (gRPC bindings in [`grpc`], Connect routes in
//!   [`rpc::connect_routes`]); [`http_api`]: `/me` and `/config/v1/flyte_client`;
//! - [`apps`]: the apps service behind API keys (`cloudidl.identity.AppsService`) and the `flyteauth apps` /
//!   `flyteauth audit` commands;
//! - [`app_cache`]: apps from the store held in memory for the token endpoint;
//! - [`auth`]: bearer-token extraction and validation (the hot path); [`external`]: the external authorization
//!   server of `authServerType: External` (its metadata and keys); [`revocation_mirror`]: revocations from
//!   every replica; [`audit`]: the trail of credential events; [`opaque`]: codes, refresh tokens, cookies;
//! - [`hashing`]: the bound on bcrypt and argon2 checks; [`rate_limit`]: limits on failed authentications and
//!   the client address behind a proxy;
//! - [`error`]: the one place errors become HTTP, gRPC and Connect responses;
//! - [`serve`]: start-up; [`embedded`]: the no-configuration default;
//! - transport: [`listener`], [`tls`], [`dispatch`], [`connect`]; operations: [`health`],
//!   [`metrics`], [`telemetry`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

/// Every program that links the server allocates through mimalloc. Each request allocates and frees many small
/// short-lived blocks (header maps, bodies, futures); mimalloc keeps them on per-thread free lists, where glibc's
/// allocator spends a measurable share of the request consolidating its bins (docs/benchmarks.md, "Where the
/// time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod app;
pub mod app_cache;
pub mod apps;
pub(crate) mod audit;
pub(crate) mod auth;
pub mod connect;
pub mod dispatch;
pub mod embedded;
pub mod error;
pub mod external;
pub mod federation;
pub mod form;
pub(crate) mod grants;
pub(crate) mod grpc;
pub mod hashing;
pub mod health;
pub(crate) mod http_api;
pub mod listener;
pub mod metrics;
pub mod oauth;
pub mod opaque;
pub mod rate_limit;
pub(crate) mod revocation_mirror;
pub(crate) mod rpc;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod users;
pub mod web;
