//! The flyteauth domain, free of HTTP, SQL and async runtimes.
//!
//! Modules:
//! - [`clock`]: the injected source of time ([`clock::SystemClock`], [`clock::ManualClock`] for tests);
//! - [`config`]: the flyteadmin-compatible YAML configuration, its defaults and validation;
//! - [`secrets`]: reading secrets the way flyteadmin does (env, then files) and writing a fresh set;
//! - [`keys`]: RSA signing keys, RFC 7638 key ids, the key ring and its JWKS;
//! - [`token`]: minting and validating RS256 access tokens (RFC 9068 shape plus the Flyte claims);
//! - [`identity`]: who a validated token speaks for ([`identity::Identity`], [`identity::UserInfo`]);
//! - [`clients`]: OAuth clients, secret hashes (bcrypt and SHA-256) and the static clients from config;
//! - [`grant`]: the decision rules of the grants (client_credentials for now);
//! - [`oauth`]: RFC 6749 error codes;
//! - [`metadata`]: the RFC 8414 server metadata and Flyte's public client configuration.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod clients;
pub mod clock;
pub mod config;
pub mod grant;
pub mod identity;
pub mod keys;
pub mod metadata;
pub mod oauth;
pub mod secrets;
pub mod token;
