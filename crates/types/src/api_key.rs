//! API keys: an app's credentials and the server's host in one string, as the flyte 2 SDK reads `FLYTE_API_KEY`.
//!
//! A key is the standard base64 (with `=` padding) of `host:client_id:client_secret:org`, `org` being the literal
//! `None` when there is none. The SDK decodes it by splitting on `:` at most three times from the left and then
//! connects to `https://<host>`. So a host cannot carry a port (`localhost:8443:id:secret:None` splits into host
//! `localhost` and client id `8443`), nor a scheme prefix such as `dns:///`, nor an IPv6 address, and neither the
//! client id nor the secret may contain `:`. [`key_host`] refuses public URLs a key cannot point at, and
//! [`encode`] refuses parts that would not come back unchanged.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use url::{Host, Url};

/// What the SDK writes (and reads) for "no organization".
pub const NO_ORGANIZATION: &str = "None";

/// The parts of an API key.
///
/// `Debug` prints `client_secret` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The server's host name, without scheme or port; the SDK connects to `https://<host>`.
    pub host: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The organization, `None` when the key says `None` (or nothing).
    pub organization: Option<String>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("host", &self.host)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("organization", &self.organization)
            .finish()
    }
}

/// Why no API key can be minted, or a string is not one. Each message is one line and never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The public URL is not https: the SDK always connects to `https://<host>`.
    #[error("API keys need a port-less https public URL (port 443): {url} is not https")]
    NotHttps {
        /// The public URL (without user information).
        url: String,
    },
    /// The public URL has a port other than 443, which a key cannot carry.
    #[error("API keys need a port-less https public URL (port 443): {url} has port {port}")]
    HasPort {
        /// The public URL (without user information).
        url: String,
        /// Its port.
        port: u16,
    },
    /// The public URL has a path (or a query or fragment), which a key cannot carry.
    #[error(
        "API keys need a public URL without a path, such as https://flyte.example.com: {url} has one (a key carries only the host)"
    )]
    HasPath {
        /// The public URL (without user information).
        url: String,
    },
    /// The public URL has no host name.
    #[error("API keys need a public URL with a host name")]
    NoHost,
    /// The public URL's host is an IPv6 address, whose `:` would split the key.
    #[error(
        "API keys need a host name or IPv4 address in the public URL: {url} has an IPv6 address, whose ':' would split the key"
    )]
    Ipv6Host {
        /// The public URL (without user information).
        url: String,
    },
    /// A part contains `:`, which would shift every later part when the key is split.
    #[error("the {field} of an API key must not contain ':' (keys are split on ':')")]
    Colon {
        /// `client_id`, `client_secret` or `organization`.
        field: &'static str,
    },
    /// A required part is empty.
    #[error("the {field} of an API key must not be empty")]
    Empty {
        /// `host`, `client_id` or `client_secret`.
        field: &'static str,
    },
    /// The string is not an API key.
    #[error("malformed API key: {0}")]
    Malformed(String),
}

/// The public URL as shown in messages: user information (which could hold a password) removed.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    // Only fails for URLs that cannot have user information, which then have none to remove.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// The host a key can carry for this public URL: https, no port other than 443, no path other than "/".
pub fn key_host(public_url: &Url) -> Result<String, ApiKeyError> {
    if public_url.scheme() != "https" {
        return Err(ApiKeyError::NotHttps {
            url: shown(public_url),
        });
    }
    let host = match public_url.host() {
        None => return Err(ApiKeyError::NoHost),
        Some(Host::Ipv6(_)) => {
            return Err(ApiKeyError::Ipv6Host {
                url: shown(public_url),
            });
        }
        Some(Host::Domain("")) => return Err(ApiKeyError::NoHost),
        Some(Host::Domain(d)) => d.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
    };
    // `Url` reports no port when it is the scheme's default, so `https://h:443/` passes.
    if let Some(port) = public_url.port() {
        return Err(ApiKeyError::HasPort {
            url: shown(public_url),
            port,
        });
    }
    if !matches!(public_url.path(), "" | "/")
        || public_url.query().is_some()
        || public_url.fragment().is_some()
    {
        return Err(ApiKeyError::HasPath {
            url: shown(public_url),
        });
    }
    Ok(host)
}

/// Standard base64 (with padding) of `host:client_id:client_secret:org` (org `None` when empty); refuses `:` in
/// the client id, the secret or the organization, and an empty client id or secret.
///
/// An organization literally named `None` reads back as no organization; that is the SDK's convention.
pub fn encode(
    public_url: &Url,
    client_id: &str,
    client_secret: &str,
    organization: &str,
) -> Result<String, ApiKeyError> {
    let host = key_host(public_url)?;
    for (field, value) in [("client_id", client_id), ("client_secret", client_secret)] {
        if value.is_empty() {
            return Err(ApiKeyError::Empty { field });
        }
    }
    for (field, value) in [
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("organization", organization),
    ] {
        if value.contains(':') {
            return Err(ApiKeyError::Colon { field });
        }
    }
    let org = if organization.is_empty() {
        NO_ORGANIZATION
    } else {
        organization
    };
    Ok(STANDARD.encode(format!("{host}:{client_id}:{client_secret}:{org}")))
}

/// As the flyte SDK decodes it: base64, then split on `:` at most three times from the left into exactly four
/// parts; `None` (or nothing) as the organization means none. Surrounding whitespace is ignored and missing
/// padding tolerated.
///
/// Like the SDK, this does not notice a key whose host had a port: the port becomes the client id. Such keys are
/// never minted ([`key_host`]).
pub fn decode(key: &str) -> Result<ApiKey, ApiKeyError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(ApiKeyError::Malformed("the key is empty".into()));
    }
    let bytes = STANDARD
        .decode(key)
        .or_else(|_| STANDARD_NO_PAD.decode(key.trim_end_matches('=')))
        .map_err(|_| ApiKeyError::Malformed("not standard base64".into()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ApiKeyError::Malformed("the decoded key is not UTF-8 text".into()))?;
    let parts: Vec<&str> = text.splitn(4, ':').collect();
    let [host, client_id, client_secret, org] = parts[..] else {
        return Err(ApiKeyError::Malformed(format!(
            "expected host:client_id:client_secret:org, found {} part(s)",
            parts.len()
        )));
    };
    for (field, value) in [
        ("host", host),
        ("client_id", client_id),
        ("client_secret", client_secret),
    ] {
        if value.is_empty() {
            return Err(ApiKeyError::Empty { field });
        }
    }
    let organization = (!org.is_empty() && org != NO_ORGANIZATION).then(|| org.to_owned());
    Ok(ApiKey {
        host: host.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        organization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret shaped like the server's generated ones (43 URL-safe characters).
    fn generate_secret() -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn round_trip() {
        let secret = generate_secret();
        for (public, host) in [
            ("https://flyte.example.com", "flyte.example.com"),
            ("https://Flyte.Example.COM/", "flyte.example.com"),
            ("https://flyte.example.com:443/", "flyte.example.com"),
            ("https://127.0.0.1", "127.0.0.1"),
        ] {
            for org in ["", "acme"] {
                let key = encode(&url(public), "ci-bot", &secret, org).unwrap();
                let decoded = decode(&key).unwrap();
                assert_eq!(
                    decoded,
                    ApiKey {
                        host: host.into(),
                        client_id: "ci-bot".into(),
                        client_secret: secret.clone(),
                        organization: (!org.is_empty()).then(|| org.to_owned()),
                    }
                );
            }
        }
    }

    #[test]
    fn the_encoding_is_exactly_the_sdks() {
        let key = encode(&url("https://acme.example.com"), "ci-bot", "s3cret", "acme").unwrap();
        assert_eq!(key, STANDARD.encode("acme.example.com:ci-bot:s3cret:acme"));
        let key = encode(&url("https://my.host.com/"), "cid", "sec", "").unwrap();
        assert_eq!(key, STANDARD.encode("my.host.com:cid:sec:None"));
        // Standard alphabet, with the padding Python's b64encode writes (13 bytes → two '=').
        let key = encode(&url("https://h.io"), "a", "b", "").unwrap();
        assert_eq!(key, "aC5pbzphOmI6Tm9uZQ==");
    }

    /// What the SDK makes of keys whose host has a port or a `dns:///` prefix: the wrong endpoint and client id.
    #[test]
    fn a_port_or_a_dns_prefix_breaks_decoding() {
        let with_port = STANDARD.encode("localhost:8090:cid:sec:None");
        let got = decode(&with_port).unwrap();
        assert_eq!(
            (
                got.host.as_str(),
                got.client_id.as_str(),
                got.client_secret.as_str(),
                got.organization.as_deref()
            ),
            ("localhost", "8090", "cid", Some("sec:None"))
        );
        let with_prefix = STANDARD.encode("dns:///h.com:cid:sec:org");
        let got = decode(&with_prefix).unwrap();
        assert_eq!(
            (
                got.host.as_str(),
                got.client_id.as_str(),
                got.client_secret.as_str(),
                got.organization.as_deref()
            ),
            ("dns", "///h.com", "cid", Some("sec:org"))
        );
        // A ':' in the secret bleeds into the organization, which is why encode refuses it.
        let got = decode(&STANDARD.encode("h.com:cid:se:c:None")).unwrap();
        assert_eq!(got.client_secret, "se");
        assert_eq!(got.organization.as_deref(), Some("c:None"));
    }

    #[test]
    fn public_urls_a_key_cannot_point_at_are_refused_in_one_line() {
        let err = key_host(&url("https://127.0.0.1:8443")).unwrap_err();
        assert_eq!(
            err,
            ApiKeyError::HasPort {
                url: "https://127.0.0.1:8443/".into(),
                port: 8443
            }
        );
        assert_eq!(
            err.to_string(),
            "API keys need a port-less https public URL (port 443): https://127.0.0.1:8443/ has port 8443"
        );
        assert!(matches!(
            key_host(&url("http://flyte.example.com")),
            Err(ApiKeyError::NotHttps { .. })
        ));
        assert!(matches!(
            key_host(&url("http://localhost:8088")),
            Err(ApiKeyError::NotHttps { .. })
        ));
        assert!(matches!(
            key_host(&url("dns:///flyte.example.com")),
            Err(ApiKeyError::NotHttps { .. })
        ));
        for with_path in [
            "https://example.com/flyte",
            "https://example.com/flyte/",
            "https://example.com/?x=1",
            "https://example.com/#f",
        ] {
            assert!(
                matches!(key_host(&url(with_path)), Err(ApiKeyError::HasPath { .. })),
                "{with_path}"
            );
        }
        assert!(matches!(
            key_host(&url("https://[::1]/")),
            Err(ApiKeyError::Ipv6Host { .. })
        ));
        // User information never reaches a message.
        let err = key_host(&url("https://u:hunter2@example.com:8443/")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        for err in [
            ApiKeyError::NotHttps { url: "x".into() },
            ApiKeyError::HasPath { url: "x".into() },
            ApiKeyError::NoHost,
            ApiKeyError::Ipv6Host { url: "x".into() },
            ApiKeyError::Colon { field: "client_id" },
            ApiKeyError::Empty { field: "client_id" },
            ApiKeyError::Malformed("x".into()),
        ] {
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn parts_that_would_not_come_back_are_refused() {
        let u = url("https://example.com");
        for (id, secret, org, field) in [
            ("a:b", "s", "", "client_id"),
            ("a", "s:t", "", "client_secret"),
            ("a", "s", "o:p", "organization"),
        ] {
            let err = encode(&u, id, secret, org).unwrap_err();
            assert_eq!(err, ApiKeyError::Colon { field });
            assert!(!err.to_string().contains("s:t"), "{err}");
        }
        assert_eq!(
            encode(&u, "", "s", ""),
            Err(ApiKeyError::Empty { field: "client_id" })
        );
        assert_eq!(
            encode(&u, "a", "", ""),
            Err(ApiKeyError::Empty {
                field: "client_secret"
            })
        );
    }

    #[test]
    fn malformed_keys_never_echo_the_secret() {
        for bad in [
            String::new(),
            "not base64 at all!".to_owned(),
            STANDARD.encode([0xff, 0xfe, 0x00]),
            STANDARD.encode("host:cid:s3cret"),
            STANDARD.encode("host::s3cret:None"),
        ] {
            let err = decode(&bad).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cret"), "{text}");
        }
        // Padding may be missing, whitespace may surround the key, an empty org means none.
        let key = STANDARD_NO_PAD.encode("h.io:a:b:");
        let got = decode(&format!("  {key}\n")).unwrap();
        assert_eq!(got.organization, None);
        let got = decode(&STANDARD.encode("h.io:a:s3cret:None")).unwrap();
        assert!(!format!("{got:?}").contains("s3cret"));
    }

    #[test]
    fn generated_secrets_never_contain_a_colon() {
        let u = url("https://example.com");
        for _ in 0..2000 {
            let secret = generate_secret();
            assert_eq!(secret.len(), 43);
            assert!(!secret.contains(':'), "{secret}");
            let key = encode(&u, "ci-bot", &secret, "").unwrap();
            assert_eq!(decode(&key).unwrap().client_secret, secret);
        }
    }
}
