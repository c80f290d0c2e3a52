//! `flyteauth.rateLimits`, `flyteauth.hashing`, `flyteauth.trustedProxies` and `flyteauth.clientAddressHeader`:
//! how much work a caller may make the server do, and who the caller is behind a proxy.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// `flyteauth.rateLimits:` — failed authentications slow down per source address and per (client id or account,
/// source address). Never per client or account alone: a flood from one address must not lock out the
/// legitimate users of the same client elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RateLimitsConfig {
    /// `enabled` (true): whether the limits below apply.
    pub enabled: bool,
    /// `failuresPerAddress` (100 per 1m, burst 100): failed client authentications and sign-ins from one source
    /// address, whatever they target.
    #[serde(deserialize_with = "super::serde_util::null_default")]
    pub failures_per_address: FailureQuota,
    /// `failuresPerClientAndAddress` (10 per 1m, burst 10): failed authentications of one client id (or one
    /// account on the login page) from one source address.
    #[serde(deserialize_with = "super::serde_util::null_default")]
    pub failures_per_client_and_address: FailureQuota,
    /// `maxTrackedKeys` (100000): keys each limiter remembers at most; beyond it, idle keys are dropped, and
    /// if that is not enough the limiter starts afresh (memory stays bounded whatever the number of addresses).
    pub max_tracked_keys: usize,
    /// `auditWindow` (1m): repeated failed client authentications of one client id from one address within this
    /// window are written as one audit row with a count; `0s` writes one row per failure.
    #[serde(with = "duration::go")]
    pub audit_window: Duration,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failures_per_address: FailureQuota {
                count: 100,
                period: Duration::from_secs(60),
                burst: 100,
            },
            failures_per_client_and_address: FailureQuota {
                count: 10,
                period: Duration::from_secs(60),
                burst: 10,
            },
            max_tracked_keys: 100_000,
            audit_window: Duration::from_secs(60),
        }
    }
}

/// A number of failures per period, with a burst: up to `burst` failures at once, then one more every
/// `period / count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FailureQuota {
    /// `count`: failures allowed per `period`; 0 switches this limit off.
    pub count: u32,
    /// `period`: the period `count` is measured over.
    #[serde(with = "duration::go")]
    pub period: Duration,
    /// `burst`: failures allowed at once before the rate applies (at least 1).
    pub burst: u32,
}

impl Default for FailureQuota {
    fn default() -> Self {
        Self {
            count: 10,
            period: Duration::from_secs(60),
            burst: 10,
        }
    }
}

impl FailureQuota {
    /// The interval after which one more failure is allowed, `None` when the limit is off.
    pub fn replenish_interval(&self) -> Option<Duration> {
        if self.count == 0 || self.period.is_zero() {
            return None;
        }
        Some((self.period / self.count).max(Duration::from_nanos(1)))
    }
}

/// `flyteauth.hashing:` — bcrypt and argon2 checks run on a bounded number of threads with a bounded queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HashingConfig {
    /// `maxConcurrent` (0 = the number of CPU cores): secret checks that run at once.
    pub max_concurrent: usize,
    /// `maxQueued` (64): secret checks that may wait for a free slot; beyond it a request is refused at once
    /// (503 with `Retry-After`).
    pub max_queued: usize,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 0,
            max_queued: 64,
        }
    }
}

/// One entry of `flyteauth.trustedProxies`: an address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a single address; the host bits of a block must be zero.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| "an IP address or CIDR block")?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or("a CIDR prefix length within the address family")?,
            None => max,
        };
        let proxy = Self { network, prefix };
        if proxy.masked(network) != Some(network) {
            return Err("a CIDR block whose host bits are zero");
        }
        Ok(proxy)
    }

    fn masked(&self, addr: IpAddr) -> Option<IpAddr> {
        match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::from((u32::from(a) & mask).to_be_bytes()))
            }
            (IpAddr::V6(_), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::from((u128::from(a) & mask).to_be_bytes()))
            }
            _ => None,
        }
    }

    /// Whether `addr` lies in this block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.masked(addr) == Some(self.network)
    }
}

impl std::fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The default of `flyteauth.clientAddressHeader`.
pub const DEFAULT_CLIENT_ADDRESS_HEADER: &str = "X-Forwarded-For";

/// Checks what the types cannot: quotas with a burst and a period, parseable proxies, a header name.
pub(super) fn check(ext: &super::ExtensionsConfig) -> Result<(), (String, &'static str)> {
    let limits = &ext.rate_limits;
    for (key, quota) in [
        (
            "flyteauth.rateLimits.failuresPerAddress",
            &limits.failures_per_address,
        ),
        (
            "flyteauth.rateLimits.failuresPerClientAndAddress",
            &limits.failures_per_client_and_address,
        ),
    ] {
        if quota.count > 0 && quota.period.is_zero() {
            return Err((format!("{key}.period"), "a positive duration"));
        }
        if quota.count > 0 && quota.burst == 0 {
            return Err((format!("{key}.burst"), "at least 1"));
        }
    }
    if limits.max_tracked_keys == 0 {
        return Err(("flyteauth.rateLimits.maxTrackedKeys".into(), "at least 1"));
    }
    for (i, entry) in ext.trusted_proxies.iter().enumerate() {
        TrustedProxy::parse(entry).map_err(|e| (format!("flyteauth.trustedProxies[{i}]"), e))?;
    }
    let header = ext.client_address_header.trim();
    if header.is_empty()
        || !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err((
            "flyteauth.clientAddressHeader".into(),
            "an HTTP header name such as X-Forwarded-For",
        ));
    }
    Ok(())
}

impl super::ExtensionsConfig {
    /// `trustedProxies`, parsed; entries that do not parse are left out (validation refuses them first).
    pub fn parsed_trusted_proxies(&self) -> Vec<TrustedProxy> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| TrustedProxy::parse(p).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_and_match() {
        let block = TrustedProxy::parse("10.1.0.0/16").unwrap();
        assert!(block.contains("10.1.2.3".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        assert!(!block.contains("::1".parse().unwrap()));
        let one = TrustedProxy::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = TrustedProxy::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6 = TrustedProxy::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        for bad in ["10.1.0.1/16", "10.0.0.0/33", "nope", "::/129", "10.0.0.0/x"] {
            assert!(TrustedProxy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_zero_count_switches_a_quota_off() {
        let off = FailureQuota {
            count: 0,
            ..FailureQuota::default()
        };
        assert_eq!(off.replenish_interval(), None);
        assert_eq!(
            FailureQuota::default().replenish_interval(),
            Some(Duration::from_secs(6))
        );
    }
}
