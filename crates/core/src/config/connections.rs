//! `flyteauth.connections:` — what one client connection may cost the server: how many may be open, how long a
//! request body may take, how large a header block may be, and the HTTP/2 stream and keep-alive settings.
//!
//! The time a client may take to send its request headers is flyteadmin's `server.readHeaderTimeoutSeconds`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// The smallest accepted `maxHeaderBytes`: HTTP/1.1 reads headers into a buffer that cannot be smaller.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// `flyteauth.connections:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConnectionsConfig {
    /// `maxConnections` (4096): open client connections at most. Further clients wait in the kernel's accept
    /// backlog until a connection closes, so a burst is delayed rather than refused.
    pub max_connections: usize,
    /// `requestBodyTimeout` (30s): time from a request's headers to the end of its body; a body still
    /// incomplete after it fails the request.
    #[serde(with = "duration::go")]
    pub request_body_timeout: Duration,
    /// `tlsHandshakeTimeout` (10s): time a client may take to complete the TLS handshake.
    #[serde(with = "duration::go")]
    pub tls_handshake_timeout: Duration,
    /// `maxHeaderBytes` (32768): the largest header block of a request (the HTTP/1.1 read buffer, the HTTP/2
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`). At least [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// `http2MaxConcurrentStreams` (100): requests one HTTP/2 connection may have in flight at once.
    pub http2_max_concurrent_streams: u32,
    /// `http2KeepAliveInterval` (60s): how often an HTTP/2 connection is pinged; `0s` sends no pings.
    #[serde(with = "duration::go")]
    pub http2_keep_alive_interval: Duration,
    /// `http2KeepAliveTimeout` (20s): a connection whose peer does not answer a ping within this is closed.
    #[serde(with = "duration::go")]
    pub http2_keep_alive_timeout: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            request_body_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            http2_max_concurrent_streams: 100,
            http2_keep_alive_interval: Duration::from_secs(60),
            http2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

impl ConnectionsConfig {
    /// The first unacceptable value, as (dotted key, what is expected).
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_connections == 0 {
            return Err((
                "flyteauth.connections.maxConnections",
                "a whole number greater than zero",
            ));
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err((
                "flyteauth.connections.http2MaxConcurrentStreams",
                "a whole number greater than zero",
            ));
        }
        if self.max_header_bytes < MIN_HEADER_BYTES || u32::try_from(self.max_header_bytes).is_err()
        {
            return Err((
                "flyteauth.connections.maxHeaderBytes",
                "a size in bytes from 8192 to 4294967295",
            ));
        }
        for (key, value) in [
            (
                "flyteauth.connections.requestBodyTimeout",
                self.request_body_timeout,
            ),
            (
                "flyteauth.connections.tlsHandshakeTimeout",
                self.tls_handshake_timeout,
            ),
            (
                "flyteauth.connections.http2KeepAliveTimeout",
                self.http2_keep_alive_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err((key, "a duration greater than zero, such as \"30s\""));
            }
        }
        Ok(())
    }

    /// The keep-alive ping interval, `None` when pings are off (`0s`).
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        Some(self.http2_keep_alive_interval).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    fn key_of(yaml: &str) -> String {
        match Config::from_yaml_str(yaml) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_bounded_and_valid() {
        let c = ConnectionsConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert!(c.max_connections > 1000, "room for a thousand slow clients");
        assert!(c.max_header_bytes >= MIN_HEADER_BYTES);
        assert_eq!(c.keep_alive_interval(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn keys_parse_and_bad_values_are_named() {
        let loaded = Config::from_yaml_str(
            "flyteauth:\n  connections:\n    maxConnections: 10\n    requestBodyTimeout: 2s\n    \
             maxHeaderBytes: 9000\n    http2MaxConcurrentStreams: 7\n    http2KeepAliveInterval: 0s\n",
        )
        .unwrap();
        let c = &loaded.config.flyteauth.connections;
        assert_eq!(c.max_connections, 10);
        assert_eq!(c.request_body_timeout, Duration::from_secs(2));
        assert_eq!(c.max_header_bytes, 9000);
        assert_eq!(c.http2_max_concurrent_streams, 7);
        assert_eq!(c.keep_alive_interval(), None);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

        for (yaml, key) in [
            ("maxConnections: 0", "flyteauth.connections.maxConnections"),
            (
                "maxHeaderBytes: 100",
                "flyteauth.connections.maxHeaderBytes",
            ),
            (
                "http2MaxConcurrentStreams: 0",
                "flyteauth.connections.http2MaxConcurrentStreams",
            ),
            (
                "requestBodyTimeout: 0s",
                "flyteauth.connections.requestBodyTimeout",
            ),
        ] {
            assert_eq!(
                key_of(&format!("flyteauth:\n  connections:\n    {yaml}\n")),
                key
            );
        }
    }

    #[test]
    fn metrics_listen_address_parses() {
        let loaded =
            Config::from_yaml_str("flyteauth:\n  metricsListenAddress: 127.0.0.1:9090\n").unwrap();
        assert_eq!(
            loaded.config.flyteauth.metrics_listen_address,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(
            Config::from_yaml_str("flyteauth:\n  metricsListenAddress: \"\"\n")
                .unwrap()
                .config
                .flyteauth
                .metrics_listen_address,
            None
        );
        assert!(Config::from_yaml_str("flyteauth:\n  metricsListenAddress: nine\n").is_err());
    }
}
