//! Where a browser may be sent after a login or a logout.
//!
//! `/login?redirect_url=` and `/logout?redirect_url=` take a target from the address bar, so anybody can craft
//! one: left unchecked they turn this server into an open redirect that lends its name to a phishing page.
//! A target is therefore accepted only as
//! - a path on this server ([`is_local_path`]): one leading slash and nothing a browser could read as another
//!   host (`//host`, `/\host`, encoded slashes or backslashes, dot segments, control characters); or
//! - an absolute `http`/`https` URL without userinfo whose scheme, host and port equal those of one of
//!   `auth.authorizedUris` or of the public URL ([`resolve`]).
//!
//! Anything else is refused, and the caller falls back to the public URL.

use url::Url;

/// Longest target accepted, in bytes.
pub const MAX_TARGET_BYTES: usize = 4096;

/// Whether `target` is a path on this server that no browser can read as another host: one leading slash,
/// not `//` or `/\`, no backslash anywhere, no control character, no `%2f`, `%5c` or `%2e` (any case) and no
/// `/..` in the path part, at most [`MAX_TARGET_BYTES`].
pub fn is_local_path(target: &str) -> bool {
    // Only the path can steer a browser to another host; the query may carry anything, encoded.
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let lower = path.to_ascii_lowercase();
    let bytes = path.as_bytes();
    target.len() <= MAX_TARGET_BYTES
        && bytes.first() == Some(&b'/')
        && bytes.get(1).is_none_or(|b| *b != b'/' && *b != b'\\')
        && !target.contains('\\')
        && !target.chars().any(char::is_control)
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !lower.contains("%2e")
        && !path.contains("/..")
}

/// The origin tuple that decides whether two URLs point at the same place: scheme, host, port (the scheme's
/// default when absent, so `https://a` and `https://a:443` are one origin).
fn origin_of(url: &Url) -> Option<(&str, &str, u16)> {
    Some((url.scheme(), url.host_str()?, url.port_or_known_default()?))
}

/// Where a browser may be sent for `target`, or `None` when it may not go there.
///
/// A local path ([`is_local_path`]) is returned as given. An absolute target is refused outright if its raw
/// text holds a backslash, whitespace or a control character (the URL parser would silently drop or
/// reinterpret those, and browsers disagree on how), then parsed; it is accepted only as an `http` or `https`
/// URL with a host and no user name or password whose scheme, host and port equal those of one entry of
/// `authorized` or of `public_url`, and returned in its parsed serialization (the exact URL the check was made
/// on, not the raw text).
pub fn resolve(target: &str, authorized: &[Url], public_url: &Url) -> Option<String> {
    if target.starts_with('/') {
        // `//host` and `/\host` start with a slash too; they end here, refused, never parsed as URLs.
        return is_local_path(target).then(|| target.to_owned());
    }
    if target.is_empty()
        || target.len() > MAX_TARGET_BYTES
        || target
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let url = Url::parse(target).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let origin = origin_of(&url)?;
    let allowed = authorized
        .iter()
        .chain(std::iter::once(public_url))
        .any(|a| origin_of(a) == Some(origin));
    allowed.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn authorized() -> Vec<Url> {
        vec![
            url("https://console.example.com/console"),
            url("http://localhost:30080"),
            url("https://a.example"),
        ]
    }

    fn public() -> Url {
        url("https://auth.example.com/")
    }

    #[test]
    fn local_paths() {
        for good in [
            "/",
            "/console",
            "/console/projects?x=1&y=%2F%2F",
            "/a.b/c..d",
            "/oauth2/authorize?client_id=flytectl&redirect_uri=http%3A%2F%2Flocalhost%3A53593%2Fcallback",
            "/path#frag",
        ] {
            assert!(is_local_path(good), "{good:?} should be accepted");
        }
        let long = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        for bad in [
            "",
            "console",
            "//evil.example",
            "/\\evil.example",
            "/ok\\..\\",
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%2e%2e/admin",
            "/%2E%2E/admin",
            "/../etc",
            "/a/..",
            "/a\r\nLocation: https://evil",
            "/a\tb",
            "/a\u{7f}",
            "https://evil.example",
            long.as_str(),
        ] {
            assert!(!is_local_path(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn resolve_refuses_every_way_out() {
        let auth = authorized();
        for bad in [
            // Elsewhere, absolute.
            "https://evil.example",
            "https://evil.example/console",
            "http://console.example.com/console",
            "https://console.example.com:8443/console",
            "https://console.example.com.evil.example/",
            // Scheme-relative and its disguises.
            "//evil.example",
            "//evil.example/console",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "%2F%2Fevil.example",
            "%2f%2fevil.example",
            "/%2F%2Fevil.example",
            "/%5C%5Cevil.example",
            // Special-scheme quirk: `https:evil` parses as `https://evil/`.
            "https:evil.example",
            "https:/evil.example",
            "https:\\\\evil.example",
            // Userinfo: `good@evil` goes to evil; even `user@good` is refused.
            "https://console.example.com@evil.example/",
            "https://console.example.com:443@evil.example/",
            "https://user:pw@console.example.com/console",
            "https://user@console.example.com/console",
            // Not web schemes.
            "javascript:alert(document.cookie)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "ftp://console.example.com/",
            // Whitespace and control characters the parser would quietly strip.
            " https://console.example.com/",
            "https://console.example.com/\n",
            "https://evil.example\t/",
            "java\nscript:alert(1)",
            "https://console.example.com/\u{0}",
            // Relative forms that are not single-slash paths.
            "",
            "console",
            "?x=1",
            "#frag",
            "../admin",
            "/../admin",
        ] {
            assert_eq!(
                resolve(bad, &auth, &public()),
                None,
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn resolve_accepts_this_server_and_authorized_origins() {
        let auth = authorized();
        for (target, expected) in [
            ("/console?x=1", "/console?x=1"),
            ("/", "/"),
            // Same origin as the public URL, any path and query.
            (
                "https://auth.example.com/console/projects?a=b#c",
                "https://auth.example.com/console/projects?a=b#c",
            ),
            ("https://AUTH.example.com", "https://auth.example.com/"),
            // An authorized entry, another path than the entry's.
            (
                "https://console.example.com/other/page",
                "https://console.example.com/other/page",
            ),
            (
                "http://localhost:30080/console",
                "http://localhost:30080/console",
            ),
            // The default port spelled out or not is the same origin, both ways round.
            ("https://a.example:443/x", "https://a.example/x"),
            (
                "https://console.example.com:443/",
                "https://console.example.com/",
            ),
        ] {
            assert_eq!(
                resolve(target, &auth, &public()).as_deref(),
                Some(expected),
                "{target:?}"
            );
        }
        let with_port = [url("https://b.example:443/")];
        assert_eq!(
            resolve("https://b.example/y", &with_port, &public()).as_deref(),
            Some("https://b.example/y")
        );
        // With nothing authorized, only this server itself.
        assert_eq!(
            resolve("https://console.example.com/", &[], &public()),
            None
        );
        assert!(resolve("https://auth.example.com/x", &[], &public()).is_some());
    }
}
