//! Rate limits on failed authentications, and the source address they are keyed by.
//!
//! Two throttles per kind of credential: one per source address (whatever it targets) and one per
//! (client id or account, source address). There is deliberately no limit per client id or account alone: a
//! flood of wrong secrets from one address must not lock the client out for its legitimate users elsewhere.
//! The check runs before the secret is hashed, so a limited source costs no bcrypt.
//!
//! Behind a reverse proxy every request arrives from the proxy; only when the TCP peer is in
//! `flyteauth.trustedProxies` is `flyteauth.clientAddressHeader` believed, and then its rightmost address that
//! is not itself a trusted proxy is the client (the hops to the left were written by whoever sent the request).

use crate::web::throttle::{Throttle, quota, retry_after_secs};
use flyteauth_core::clock::Clock;
use flyteauth_core::config::{ExtensionsConfig, FailureQuota, TrustedProxy};
use http::{HeaderMap, HeaderName};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Longest client id or account name kept as part of a key (longer ones are cut: memory stays bounded).
const MAX_SUBJECT_BYTES: usize = 128;

/// A source over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until the next attempt may be made (`Retry-After`).
    pub retry_after: u64,
    /// Which limit: `address` or `client_and_address`.
    pub reason: &'static str,
}

/// The limits of one kind of credential (client secrets, passwords).
#[derive(Debug)]
pub struct FailureLimits {
    kind: &'static str,
    per_address: Throttle<IpAddr>,
    per_subject: Throttle<(Box<str>, IpAddr)>,
}

fn quota_of(q: &FailureQuota) -> Option<governor::Quota> {
    quota(q.count, q.period, q.burst)
}

/// The key of a source: IPv4 as is; IPv6 by its /64, the block one host usually has to itself.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let masked = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(masked))
        }
        v4 => v4,
    }
}

fn subject_key(subject: &str) -> Box<str> {
    let mut end = subject.len().min(MAX_SUBJECT_BYTES);
    while !subject.is_char_boundary(end) {
        end -= 1;
    }
    subject[..end].into()
}

impl FailureLimits {
    /// Limits for `kind` (`client_auth`, `login`: the metric label), `None` being no limit.
    pub fn new(
        kind: &'static str,
        per_address: Option<governor::Quota>,
        per_subject: Option<governor::Quota>,
        max_keys: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            kind,
            per_address: Throttle::new(per_address, max_keys, clock.clone()),
            per_subject: Throttle::new(per_subject, max_keys, clock),
        }
    }

    /// The limits on failed client authentications: both quotas of `flyteauth.rateLimits`.
    pub fn for_clients(config: &ExtensionsConfig, clock: Arc<dyn Clock>) -> Self {
        let limits = &config.rate_limits;
        let on = |q: &FailureQuota| quota_of(q).filter(|_| limits.enabled);
        Self::new(
            "client_auth",
            on(&limits.failures_per_address),
            on(&limits.failures_per_client_and_address),
            limits.max_tracked_keys,
            clock,
        )
    }

    /// The limits on failed sign-ins: `flyteauth.login.addressMaxFailures` per `addressWindow` by address, and
    /// `flyteauth.rateLimits.failuresPerClientAndAddress` by (account, address).
    pub fn for_logins(config: &ExtensionsConfig, clock: Arc<dyn Clock>) -> Self {
        let limits = &config.rate_limits;
        let login = &config.login;
        Self::new(
            "login",
            quota(
                login.address_max_failures,
                login.address_window,
                login.address_max_failures,
            ),
            quota_of(&limits.failures_per_client_and_address).filter(|_| limits.enabled),
            limits.max_tracked_keys,
            clock,
        )
    }

    /// Whether `subject` from `ip` may try now; counts a rejection when not. Takes nothing from the allowance.
    pub fn check(&self, subject: &str, ip: Option<IpAddr>) -> Result<(), Limited> {
        let Some(ip) = ip.map(source_key) else {
            return Ok(());
        };
        let limited = if let Some(wait) = self.per_address.blocked_for(&ip) {
            Some((wait, "address"))
        } else {
            self.per_subject
                .blocked_for(&(subject_key(subject), ip))
                .map(|wait| (wait, "client_and_address"))
        };
        match limited {
            None => Ok(()),
            Some((wait, reason)) => {
                crate::metrics::rate_limited(self.kind, reason);
                Err(Limited {
                    retry_after: retry_after_secs(wait),
                    reason,
                })
            }
        }
    }

    /// Counts a failed attempt of `subject` from `ip`.
    pub fn failed(&self, subject: &str, ip: Option<IpAddr>) {
        let Some(ip) = ip.map(source_key) else {
            return;
        };
        self.per_address.failed(ip);
        self.per_subject.failed((subject_key(subject), ip));
    }
}

/// Where requests come from: the TCP peer, or behind a trusted proxy the address it forwards.
#[derive(Debug, Clone)]
pub struct ClientAddress {
    trusted: Vec<TrustedProxy>,
    header: Option<HeaderName>,
}

impl ClientAddress {
    /// From `flyteauth.trustedProxies` and `flyteauth.clientAddressHeader` (already validated).
    pub fn from_config(config: &ExtensionsConfig) -> Self {
        Self {
            trusted: config.parsed_trusted_proxies(),
            header: HeaderName::from_bytes(
                config
                    .client_address_header
                    .trim()
                    .to_ascii_lowercase()
                    .as_bytes(),
            )
            .ok(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|p| p.contains(ip))
    }

    /// The client's address for a request from the TCP peer `peer` with `headers`. The port is the peer's when
    /// the address is the peer's, 0 when it came from the header.
    pub fn resolve(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<SocketAddr> {
        let peer = peer?;
        if self.trusted.is_empty() || !self.is_trusted(peer.ip()) {
            return Some(peer);
        }
        let Some(header) = &self.header else {
            return Some(peer);
        };
        // Several header lines are one list in order (RFC 9110 §5.3); walk it from the right.
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all(header) {
            let Ok(value) = value.to_str() else {
                return Some(peer);
            };
            hops.extend(value.split(','));
        }
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.is_trusted(ip) => continue,
                Some(ip) => return Some(SocketAddr::new(ip, 0)),
                // An unreadable hop: whatever lies left of it cannot be trusted either.
                None => return Some(peer),
            }
        }
        Some(peer)
    }
}

/// One hop of `X-Forwarded-For`: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]:443` or `192.0.2.1:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|s| s.ip())
}

impl From<Limited> for crate::error::ApiError {
    fn from(l: Limited) -> Self {
        Self::RateLimited {
            retry_after: l.retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteauth_core::clock::ManualClock;
    use http::HeaderValue;
    use std::time::Duration;
    use time::OffsetDateTime;

    fn config(proxies: &[&str]) -> ExtensionsConfig {
        ExtensionsConfig {
            trusted_proxies: proxies.iter().map(|s| s.to_string()).collect(),
            ..ExtensionsConfig::default()
        }
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        headers
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_sending_x_forwarded_for_is_ignored() {
        let none = ClientAddress::from_config(&config(&[]));
        let headers = xff(&["198.51.100.7"]);
        assert_eq!(
            none.resolve(peer("127.0.0.2:5000"), &headers),
            peer("127.0.0.2:5000")
        );
        let other = ClientAddress::from_config(&config(&["10.0.0.0/8"]));
        assert_eq!(
            other.resolve(peer("127.0.0.2:5000"), &headers),
            peer("127.0.0.2:5000")
        );
    }

    #[test]
    fn a_trusted_proxy_gives_the_rightmost_untrusted_hop() {
        let cfg = ClientAddress::from_config(&config(&["10.0.0.0/8", "127.0.0.1"]));
        // The client forged the first hop; the proxy appended the real one.
        let headers = xff(&["203.0.113.9, 198.51.100.7"]);
        assert_eq!(
            cfg.resolve(peer("10.1.1.1:80"), &headers),
            peer("198.51.100.7:0")
        );
        // A chain of trusted proxies is skipped.
        let headers = xff(&["203.0.113.9", "198.51.100.7, 10.2.2.2"]);
        assert_eq!(
            cfg.resolve(peer("127.0.0.1:80"), &headers),
            peer("198.51.100.7:0")
        );
        // Bracketed IPv6 with a port.
        let headers = xff(&["[2001:db8::1]:443"]);
        assert_eq!(
            cfg.resolve(peer("10.1.1.1:80"), &headers),
            peer("[2001:db8::1]:0")
        );
        // Nothing usable: the proxy itself.
        for bad in [xff(&[]), xff(&["garbage"]), xff(&["10.3.3.3"])] {
            assert_eq!(cfg.resolve(peer("10.1.1.1:80"), &bad), peer("10.1.1.1:80"));
        }
    }

    #[test]
    fn a_custom_header_is_read_instead() {
        let mut ext = config(&["10.0.0.0/8"]);
        ext.client_address_header = "X-Real-IP".into();
        let cfg = ClientAddress::from_config(&ext);
        let mut headers = xff(&["203.0.113.9"]);
        headers.insert("x-real-ip", HeaderValue::from_static("198.51.100.7"));
        assert_eq!(
            cfg.resolve(peer("10.1.1.1:80"), &headers),
            peer("198.51.100.7:0")
        );
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64_block() {
        assert_eq!(
            source_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            source_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_flood_from_one_address_leaves_the_client_usable_elsewhere() {
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        ));
        let mut ext = ExtensionsConfig::default();
        ext.rate_limits.failures_per_client_and_address = FailureQuota {
            count: 3,
            period: Duration::from_secs(60),
            burst: 3,
        };
        let limits = FailureLimits::for_clients(&ext, clock.clone());
        let attacker = Some("127.0.0.2".parse().unwrap());
        let legit = Some("127.0.0.1".parse().unwrap());
        for _ in 0..10 {
            limits.failed("app", attacker);
        }
        let limited = limits.check("app", attacker).unwrap_err();
        assert_eq!(limited.reason, "client_and_address");
        assert!(limited.retry_after >= 1);
        assert_eq!(limits.check("app", legit), Ok(()));
        assert_eq!(limits.check("other-app", attacker), Ok(()));
        clock.advance(time::Duration::minutes(2));
        assert_eq!(limits.check("app", attacker), Ok(()));
    }

    #[test]
    fn many_clients_from_one_address_hit_the_address_limit() {
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        ));
        let mut ext = ExtensionsConfig::default();
        ext.rate_limits.failures_per_address.count = 5;
        ext.rate_limits.failures_per_address.burst = 5;
        let limits = FailureLimits::for_clients(&ext, clock);
        let attacker = Some("127.0.0.2".parse().unwrap());
        for i in 0..6 {
            limits.failed(&format!("guess-{i}"), attacker);
        }
        assert_eq!(
            limits.check("fresh", attacker).unwrap_err().reason,
            "address"
        );
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        let mut ext = ExtensionsConfig::default();
        ext.rate_limits.enabled = false;
        let limits = FailureLimits::for_clients(&ext, clock);
        let ip = Some("127.0.0.2".parse().unwrap());
        for _ in 0..1000 {
            limits.failed("x", ip);
        }
        assert_eq!(limits.check("x", ip), Ok(()));
    }
}
