//! The Rust client of a Flyte control plane's authentication, as served by flyteauth (or flyteadmin).
//!
//! - [`config`]: where settings come from, with the precedence of the `flyte` 2.x SDK and the keys and
//!   variables of flytekit and flytectl;
//! - [`metadata`]: the anonymous discovery calls (`AuthMetadataService`) that name the token endpoint and
//!   the public client;
//! - [`token`]: the token endpoint: client credentials, refresh, code exchange, device polling;
//! - [`flows`]: the login flows a person sees: PKCE in a browser, the device flow, an external command;
//! - [`cache`]: the token cache, in the OS keyring under the layout the Python `flyte` SDK uses, or a 0600 file;
//! - [`session`]: one place that hands out a valid access token: cached, refreshed before it expires,
//!   renewed once after the server rejected it;
//! - [`connect`] and [`interceptor`]: calling the control plane over Connect or gRPC (tonic) with that token;
//! - [`identity`] and [`apps`]: `whoami` and API keys.
//!
//! Nothing here depends on the server: the crate compiles without password hashing, RSA or SQL.

pub mod apps;
pub mod browser;
pub mod cache;
pub mod config;
pub mod connect;
mod error;
pub mod flows;
pub mod http;
pub mod identity;
pub mod interceptor;
pub mod metadata;
pub mod secret;
pub mod session;
pub mod token;

pub use error::ClientError;
pub use secret::Secret;
