//! Matching a presented `redirect_uri` against a client's registered ones.
//!
//! The rule is exact string comparison (RFC 6749 §3.1.2.2, OAuth 2.0 Security BCP §4.1.3), with one exception
//! for native apps: a registered loopback URI (`http` on `localhost`, `127.0.0.1` or `[::1]`) matches the same
//! URI on any port (RFC 8252 §7.3), because the CLI picks a free port at run time. Scheme, host, path and query
//! must still be identical, byte for byte.
//!
//! Anything a parser could read differently from a human is refused outright: userinfo (`@`), fragments (`#`),
//! backslashes, whitespace and control characters, and any presented URI whose normalised form (as the `url`
//! crate serialises it) is not byte-identical to what was sent — which catches case changes, dot segments,
//! shortened IP addresses and similar tricks on the loopback path.

use url::Url;

/// The host names a loopback redirect URI may use.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// Whether `presented` is one of `registered` under the rules of this module.
pub fn redirect_uri_matches(registered: &[String], presented: &str) -> bool {
    if !plausible(presented) {
        return false;
    }
    let Ok(parsed) = Url::parse(presented) else {
        return false;
    };
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return false;
    }
    registered
        .iter()
        .any(|r| plausible(r) && (r == presented || loopback_match(r, &parsed, presented)))
}

/// Refuses characters that make URIs ambiguous before any parsing.
fn plausible(uri: &str) -> bool {
    !uri.is_empty()
        && !uri
            .chars()
            .any(|c| matches!(c, '@' | '#' | '\\') || c.is_whitespace() || c.is_control())
}

/// The loopback exception: same URI as `registered` except for the port.
fn loopback_match(registered: &str, presented: &Url, presented_raw: &str) -> bool {
    // The presented URI must be in canonical form, so what we compare is what a browser will open.
    if presented.as_str() != presented_raw {
        return false;
    }
    let Ok(reg) = Url::parse(registered) else {
        return false;
    };
    if !is_loopback(&reg) || !is_loopback(presented) {
        return false;
    }
    if reg.host_str() != presented.host_str()
        || reg.path() != presented.path()
        || reg.query() != presented.query()
    {
        return false;
    }
    // Same URI once the port is taken from the registration: nothing else may differ.
    let mut with_registered_port = presented.clone();
    if with_registered_port.set_port(reg.port()).is_err() {
        return false;
    }
    with_registered_port.as_str() == reg.as_str()
}

fn is_loopback(u: &Url) -> bool {
    u.scheme() == "http"
        && u.username().is_empty()
        && u.password().is_none()
        && u.fragment().is_none()
        && u.host_str().is_some_and(|h| LOOPBACK_HOSTS.contains(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Vec<String> {
        vec![
            "http://localhost:53593/callback".to_owned(),
            "http://127.0.0.1:12345/cb?x=1".to_owned(),
            "http://[::1]:8080/callback".to_owned(),
            "https://console.example.com/oauth/callback".to_owned(),
            "com.example.app:/oauth2redirect".to_owned(),
        ]
    }

    fn ok(uri: &str) -> bool {
        redirect_uri_matches(&reg(), uri)
    }

    #[test]
    fn exact_matches() {
        for uri in reg() {
            assert!(ok(&uri), "{uri}");
        }
    }

    #[test]
    fn loopback_ports_may_differ() {
        assert!(ok("http://localhost:40000/callback"));
        assert!(ok("http://localhost/callback"));
        assert!(ok("http://127.0.0.1:1/cb?x=1"));
        assert!(ok("http://[::1]:9/callback"));
    }

    #[test]
    fn loopback_everything_but_the_port_must_match() {
        for uri in [
            "https://localhost:53593/callback",
            "http://localhost:53593/callback/",
            "http://localhost:53593/callback/extra",
            "http://localhost:53593/Callback",
            "http://localhost:53593/callbac",
            "http://localhost:53593/callback?x=1",
            "http://127.0.0.1:53593/callback",
            "http://localhost:12345/cb?x=1",
            "http://127.0.0.1:12345/cb",
            "http://127.0.0.1:12345/cb?x=2",
            "http://127.0.0.1:12345/cb?x=1&y=2",
            "http://[::1]:8080/callback?",
        ] {
            assert!(!ok(uri), "{uri}");
        }
    }

    #[test]
    fn tricks_are_refused() {
        for uri in [
            "",
            "http://evil.com@localhost:53593/callback",
            "http://localhost:53593@evil.com/callback",
            "http://user:pw@localhost:53593/callback",
            "http://localhost:53593/callback#frag",
            "http://localhost:53593/callback#",
            "http://LOCALHOST:53593/callback",
            "HTTP://localhost:53593/callback",
            "http://localhost.:53593/callback",
            "http://localhost:53593/./callback",
            "http://localhost:53593/x/../callback",
            "http://localhost:53593/%63allback",
            "http://localhost:53593/callback%2F..",
            "http://localhost:53593//callback",
            "http://localhost:053593/callback",
            "http://127.1:12345/cb?x=1",
            "http://0x7f.0.0.1:12345/cb?x=1",
            "http://[0:0::1]:8080/callback",
            "http://localhost:53593\\@evil.com/callback",
            "http://localhost:53593/callback\n",
            " http://localhost:53593/callback",
            "http://localhost:53593/callback.evil.com",
            "http://localhost.evil.com:53593/callback",
            "https://console.example.com/oauth/callback/",
            "https://console.example.com/oauth/callback?next=/",
            "https://console.example.com:443/oauth/callback",
            "https://console.example.com:8443/oauth/callback",
            "https://CONSOLE.example.com/oauth/callback",
            "https://console.example.com/oauth/callbackx",
            "https://console.example.com/oauth",
            "com.example.app:/oauth2redirect/x",
            "callback",
            "/callback",
        ] {
            assert!(!ok(uri), "{uri:?} must not match");
        }
    }

    #[test]
    fn bad_registrations_match_nothing() {
        let reg = vec![
            "http://localhost:1/cb#frag".to_owned(),
            "http://u@localhost:1/cb".to_owned(),
        ];
        assert!(!redirect_uri_matches(&reg, "http://localhost:1/cb#frag"));
        assert!(!redirect_uri_matches(&reg, "http://localhost:2/cb"));
        assert!(!redirect_uri_matches(&[], "http://localhost:2/cb"));
    }

    #[test]
    fn a_registration_without_path_normalises_consistently() {
        let reg = vec!["http://localhost:1".to_owned()];
        assert!(redirect_uri_matches(&reg, "http://localhost:1"));
        // The url crate spells the empty path as "/": that is the same URI.
        assert!(redirect_uri_matches(&reg, "http://localhost:2/"));
        assert!(!redirect_uri_matches(&reg, "http://localhost:2/x"));
    }
}
