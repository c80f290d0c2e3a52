//! The flyteauth domain, free of HTTP, SQL and async runtimes.
//!
//! Modules:
//! - [`clock`]: the injected source of time ([`clock::SystemClock`], [`clock::ManualClock`] for tests);
//! - [`config`]: the flyteadmin-compatible YAML configuration, its defaults and validation;
//! - [`secrets`]: reading secrets the way flyteadmin does (env, then files) and writing a fresh set;
//! - [`keys`]: signing keys (RSA, EC P-256, Ed25519) parsed once, RFC 7638 key ids, the key ring and its JWKS;
//! - [`token`]: minting and validating RS256 (or ES256, EdDSA) access tokens (RFC 9068 shape plus the Flyte claims), ID tokens;
//!   validating an external authorization server's tokens against its keys ([`token::RemoteAuthority`]);
//! - [`revocation`]: the in-memory revocation set every validation consults;
//! - [`identity`]: who a validated token speaks for ([`identity::Identity`], [`identity::UserInfo`]) and the
//!   identity headers `/me` gives an ingress;
//! - [`seal`]: authenticated encryption of cookie values (the cookie format);
//! - [`browser_session`]: the session cookie's claims and the pending federated login;
//! - [`federation`]: an external identity provider's claims mapped onto our identity;
//! - [`return_url`]: where a browser may be sent after a login or a logout;
//! - [`clients`]: OAuth clients, secret hashes (bcrypt and SHA-256) and the static clients from config;
//! - [`apps`]: apps created at run time (`cloudidl.identity.AppsService`): client id, name and redirect URI
//!   rules, grant-type numbers, list paging;
//! - [`api_key`]: API keys (`FLYTE_API_KEY`) as the flyte SDK encodes and decodes them;
//! - [`access`]: who may manage which apps (owners and admins);
//! - [`grant`]: the token endpoint's rules: request parsing, client authentication, each grant's decision;
//! - [`authorize`]: validating authorization requests (the authorization-code grant's first leg);
//! - [`device`]: the RFC 8628 device authorization grant: user codes and the device authorization request;
//! - [`pkce`]: RFC 7636 `S256` challenges and verifiers;
//! - [`redirect`]: matching redirect URIs (exact, with the RFC 8252 loopback port exception);
//! - [`password`], [`users`]: argon2id password hashes, password and user-name rules, subjects;
//! - [`oauth`]: RFC 6749 error codes;
//! - [`metadata`]: the RFC 8414 / OpenID Connect Discovery metadata, endpoint paths, Flyte's public client
//!   configuration.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub use flyteauth_types::api_key;
pub mod apps;
pub mod authorize;
pub mod browser_session;
pub mod clients;
pub mod clock;
pub mod config;
pub mod device;
pub mod federation;
pub mod grant;
pub mod identity;
pub mod keys;
pub mod metadata;
pub mod oauth;
pub mod password;
pub mod pkce;
pub mod redirect;
pub mod return_url;
pub mod revocation;
pub mod seal;
pub mod secrets;
pub mod token;
pub mod users;
