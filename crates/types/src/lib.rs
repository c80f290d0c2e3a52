//! Formats that the flyteauth server and its clients (the `flyte` CLI, the client library) must agree on,
//! kept apart from the server's domain crate so a client does not compile password hashing, RSA or the
//! server's configuration model.
//!
//! - [`api_key`]: API keys (`FLYTE_API_KEY`) as the flyte SDK encodes and decodes them;
//! - [`pkce`]: the `S256` code challenge of RFC 7636.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api_key;
pub mod pkce;
