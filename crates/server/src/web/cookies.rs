//! The cookies of the browser routes: their names, their attributes, and reading them back.
//!
//! Cookie values are random 256-bit tokens (base64url); what they stand for lives in the store (sessions) or is
//! compared against a form field (CSRF), so a cookie never carries a claim a client could edit.

use axum::http::{HeaderMap, HeaderValue, header};
use flyteauth_core::config::{Config, SameSitePolicy};
use subtle::ConstantTimeEq as _;

/// The login session cookie.
pub const SESSION_COOKIE: &str = "flyteauth_session";
/// The CSRF cookie of the login form (double-submit: the form must carry the same value).
pub const CSRF_COOKIE: &str = "flyteauth_csrf";

/// How cookies are written for this deployment.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    secure: bool,
    same_site: Option<&'static str>,
    domain: Option<String>,
}

impl CookiePolicy {
    /// The policy of `config`: `Secure` unless `server.security.insecureCookieHeader` is set or the public URL is
    /// plain `http` (a browser would never send a `Secure` cookie back there); `SameSite` and `Domain` from
    /// `auth.userAuth.cookieSetting`, with `SameSite=Lax` when flyteadmin's `DefaultMode` leaves it open.
    pub fn from_config(config: &Config) -> Self {
        let setting = &config.auth.user_auth.cookie_setting;
        let same_site = match setting.same_site_policy {
            SameSitePolicy::DefaultMode | SameSitePolicy::LaxMode => Some("Lax"),
            SameSitePolicy::StrictMode => Some("Strict"),
            SameSitePolicy::NoneMode => Some("None"),
        };
        let domain = Some(setting.domain.trim().to_owned()).filter(|d| !d.is_empty());
        let secure = !config.server.security.insecure_cookie_header
            && config.public_url().scheme() == "https";
        Self {
            // SameSite=None is only honoured on Secure cookies.
            same_site: if same_site == Some("None") && !secure {
                Some("Lax")
            } else {
                same_site
            },
            secure,
            domain,
        }
    }

    /// A `Set-Cookie` value for `name=value`, living `max_age` seconds (0 deletes it).
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; Max-Age={max_age}");
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(same_site) = self.same_site {
            cookie.push_str("; SameSite=");
            cookie.push_str(same_site);
        }
        if let Some(domain) = &self.domain {
            cookie.push_str("; Domain=");
            cookie.push_str(domain);
        }
        HeaderValue::from_str(&cookie).ok()
    }

    /// A `Set-Cookie` value like [`Self::set`] but always `SameSite=Lax`: for the short-lived cookie of a sign-in
    /// at the identity provider, which must come back on the provider's top-level redirect to `/callback` even
    /// when the deployment's cookies are `Strict`.
    pub fn set_lax(&self, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
        let policy = Self {
            same_site: Some("Lax"),
            ..self.clone()
        };
        policy.set(name, value, max_age)
    }

    /// A `Set-Cookie` value that deletes `name`.
    pub fn clear(&self, name: &str) -> Option<HeaderValue> {
        self.set(name, "", 0)
    }
}

/// The value of cookie `name` in the request, if it is present and well-formed (base64url characters only, at
/// most 128 of them: anything else is not one of ours).
pub fn read<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    read_at_most(headers, name, 128)
}

/// The value of a sealed cookie `name` (see [`flyteauth_core::seal`]): base64url characters only, at most 4096.
pub fn read_sealed<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    read_at_most(headers, name, flyteauth_core::seal::MAX_SEALED_CHARS)
}

fn read_at_most<'h>(headers: &'h HeaderMap, name: &str, max: usize) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= max
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// How long the CSRF cookie of a form lives.
pub const CSRF_COOKIE_SECS: u64 = 3600;

/// The CSRF token for a form to render: the browser's `flyteauth_csrf` cookie if it has one, else a fresh
/// token together with the `Set-Cookie` value that gives it to the browser.
pub fn csrf_for_form(policy: &CookiePolicy, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match read(headers, CSRF_COOKIE) {
        Some(existing) => (existing.to_owned(), None),
        None => {
            let token = crate::opaque::new_token();
            let cookie = policy.set(CSRF_COOKIE, &token, CSRF_COOKIE_SECS);
            (token, cookie)
        }
    }
}

/// Whether the form's CSRF token equals the cookie's, in constant time.
pub fn csrf_matches(cookie: Option<&str>, form: Option<&str>) -> bool {
    match (cookie, form) {
        (Some(c), Some(f)) if !c.is_empty() => c.as_bytes().ct_eq(f.as_bytes()).into(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; flyteauth_session=abc_-9; b=2"),
        );
        assert_eq!(read(&h, SESSION_COOKIE), Some("abc_-9"));
        assert_eq!(read(&h, CSRF_COOKIE), None);
    }

    #[test]
    fn refuses_values_that_are_not_ours() {
        for bad in [
            "flyteauth_session=a.b",
            "flyteauth_session=",
            "flyteauth_session=%00",
        ] {
            let mut h = HeaderMap::new();
            h.append(header::COOKIE, HeaderValue::from_static(bad));
            assert_eq!(read(&h, SESSION_COOKIE), None, "{bad}");
        }
        let long = format!("flyteauth_session={}", "a".repeat(129));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_str(&long).unwrap());
        assert_eq!(read(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn csrf_needs_both_halves_equal() {
        assert!(csrf_matches(Some("x1"), Some("x1")));
        assert!(!csrf_matches(Some("x1"), Some("x2")));
        assert!(!csrf_matches(None, Some("x1")));
        assert!(!csrf_matches(Some("x1"), None));
        assert!(!csrf_matches(Some(""), Some("")));
    }

    #[test]
    fn plain_http_cookies_are_not_secure_https_ones_are() {
        let http = CookiePolicy::from_config(&Config::default());
        let v = http.set(SESSION_COOKIE, "v", 60).unwrap();
        let v = v.to_str().unwrap();
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Lax") && !v.contains("Secure"));
    }
}
