//! What the browser carries: the session cookie's claims and the pending federated login.
//!
//! Both are [sealed](crate::seal) cookies, so any replica that shares the cookie secrets can read them and a
//! restart loses nothing.
//! - [`SESSION_COOKIE`] holds [`SessionClaims`]: who is signed in, since when, until when, and when the
//!   session was last seen (for the idle timeout). `/me` answers from it alone, without the database; the
//!   revocation set says whether the session was ended meanwhile ([`crate::revocation::RevocationSet::is_login_revoked`]).
//! - A [`pending_login_cookie`] per federated login in progress holds a [`PendingLogin`]: the `state`,
//!   `nonce` and PKCE verifier sent to the identity provider and where to go afterwards. Its name carries the
//!   start of the `state`, so several tabs can sign in at once without overwriting one another's.
//!
//! Browsers keep at most 4096 bytes of a cookie, and some drop larger ones silently, so both are sealed to at
//! most [`MAX_COOKIE_BYTES`] including the name, leaving room for the attributes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use crate::identity::{PrincipalKind, UserInfo};
use crate::seal::{SealError, Sealer};

/// Name of the browser session cookie.
pub const SESSION_COOKIE: &str = "flyteauth_session";
/// Most bytes of a cookie's `name=value`; with its attributes the `Set-Cookie` stays under 4096.
pub const MAX_COOKIE_BYTES: usize = 4000;
/// How old `seen` may get before `/me` refreshes the cookie.
pub const TOUCH_AFTER_SECS: i64 = 60;
/// Characters `name`, `email` and `preferred_username` are cut to when a session would not fit a cookie
/// without its groups.
pub const TRUNCATED_CLAIM_CHARS: usize = 256;

/// Prefix of a pending federated login's cookie name; the first 8 characters of its `state` follow.
pub const PENDING_LOGIN_PREFIX: &str = "flyteauth_login_";
/// How long a federated login may take, from leaving for the identity provider to coming back.
pub const PENDING_LOGIN_SECS: i64 = 600;
/// Shortest `state` whose pending login has a cookie (16 base64url characters: 96 bits).
pub const MIN_STATE_CHARS: usize = 16;
/// Characters of the `state` in the pending login's cookie name.
const STATE_PREFIX_CHARS: usize = 8;

/// The claims inside the session cookie. The JSON names are one or two letters: the cookie is sent with every
/// request and must stay under 4 KB.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SessionClaims {
    /// The session's id: its key in the store and in the revocation set.
    #[serde(rename = "i")]
    pub sid: String,
    /// The person's subject.
    #[serde(rename = "s")]
    pub sub: String,
    /// The account's user name (`oidc:<sub>` for a federated account).
    #[serde(rename = "u")]
    pub username: String,
    /// Display name.
    #[serde(rename = "n", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// E-mail address.
    #[serde(rename = "e", default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// Preferred user name.
    #[serde(rename = "p", default, skip_serializing_if = "String::is_empty")]
    pub preferred_username: String,
    /// Groups; empty when there are none or when they did not fit (see `groups_omitted`).
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Whether the groups were left out to keep the cookie small (the store's session row still has them).
    #[serde(rename = "go", default, skip_serializing_if = "is_false")]
    pub groups_omitted: bool,
    /// Whether the person signed in through the federated identity provider.
    #[serde(rename = "f", default, skip_serializing_if = "is_false")]
    pub federated: bool,
    /// When the person signed in, unix seconds.
    #[serde(rename = "a")]
    pub auth_time: i64,
    /// When the session ends whatever happens, unix seconds.
    #[serde(rename = "x")]
    pub exp: i64,
    /// When the session was last used (as far as the cookie knows), unix seconds.
    #[serde(rename = "t")]
    pub seen: i64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a session is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionEnded {
    /// Past its absolute lifetime.
    #[error("the session has expired")]
    Expired,
    /// Unused for longer than the idle timeout.
    #[error("the session ended after being idle")]
    Idle,
}

impl SessionClaims {
    /// Whether the session is still on at `now`: not past `exp`, and used within the last `idle_secs`.
    pub fn check(&self, now: i64, idle_secs: i64) -> Result<(), SessionEnded> {
        if now >= self.exp {
            return Err(SessionEnded::Expired);
        }
        if now >= self.seen.saturating_add(idle_secs) {
            return Err(SessionEnded::Idle);
        }
        Ok(())
    }

    /// Whether `seen` is old enough that the cookie should be refreshed at `now` (refreshing on every request
    /// would send a `Set-Cookie` with each one).
    pub fn needs_touch(&self, now: i64) -> bool {
        now >= self.seen.saturating_add(TOUCH_AFTER_SECS)
    }

    /// The same session seen at `now` (never moved back, should the clock be).
    pub fn touched(&self, now: i64) -> SessionClaims {
        SessionClaims {
            seen: self.seen.max(now),
            ..self.clone()
        }
    }

    /// The profile `/me` answers with: subject, names and e-mail, plus `sub`, `identity_type` (`"user"`),
    /// `groups` (when there are any) and `auth_time` as additional claims. The session id is not shown: it is
    /// what logout revokes, and pages and upstreams have no use for it.
    pub fn user_info(&self) -> UserInfo {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(self.sub.clone()));
        claims.insert(
            "identity_type".into(),
            Value::String(PrincipalKind::User.as_str().to_owned()),
        );
        if !self.groups.is_empty() {
            claims.insert(
                "groups".into(),
                Value::Array(self.groups.iter().cloned().map(Value::String).collect()),
            );
        }
        claims.insert("auth_time".into(), Value::from(self.auth_time));
        UserInfo {
            subject: self.sub.clone(),
            name: self.name.clone(),
            preferred_username: self.preferred_username.clone(),
            email: self.email.clone(),
            additional_claims: claims,
            ..UserInfo::default()
        }
    }
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
    }
}

/// Seals `claims` as the session cookie's value, within [`MAX_COOKIE_BYTES`] for `flyteauth_session=<value>`.
///
/// When they do not fit, the groups are dropped (`groups_omitted` set); when they still do not fit, `name`,
/// `email` and `preferred_username` are cut to [`TRUNCATED_CLAIM_CHARS`] characters; past that
/// [`SealError::TooLarge`].
pub fn seal_session(sealer: &Sealer, claims: &SessionClaims) -> Result<String, SealError> {
    let max = MAX_COOKIE_BYTES - SESSION_COOKIE.len() - 1;
    let sealed = sealer.seal(SESSION_COOKIE, claims)?;
    if sealed.len() <= max {
        return Ok(sealed);
    }
    let mut smaller = claims.clone();
    if !smaller.groups.is_empty() {
        smaller.groups = Vec::new();
        smaller.groups_omitted = true;
        let sealed = sealer.seal(SESSION_COOKIE, &smaller)?;
        if sealed.len() <= max {
            return Ok(sealed);
        }
    }
    for field in [
        &mut smaller.name,
        &mut smaller.email,
        &mut smaller.preferred_username,
    ] {
        truncate_chars(field, TRUNCATED_CLAIM_CHARS);
    }
    let sealed = sealer.seal(SESSION_COOKIE, &smaller)?;
    if sealed.len() <= max {
        return Ok(sealed);
    }
    Err(SealError::TooLarge {
        len: sealed.len(),
        max,
    })
}

/// A federated login in progress: what was sent to the identity provider, to check what comes back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PendingLogin {
    /// The `state` sent; the callback must present it.
    #[serde(rename = "s")]
    pub state: String,
    /// The `nonce` sent; the ID token must carry it.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The PKCE `code_verifier` whose challenge was sent.
    #[serde(rename = "v")]
    pub pkce_verifier: String,
    /// Where to go after the login (already validated), or empty.
    #[serde(rename = "r", default)]
    pub return_to: String,
    /// When the login started, unix seconds.
    #[serde(rename = "c")]
    pub created_at: i64,
}

/// 256 random bits in unpadded base64url (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The cookie name of the pending login whose `state` this is: [`PENDING_LOGIN_PREFIX`] and the state's first
/// 8 characters; `None` when `state` is shorter than [`MIN_STATE_CHARS`] or not base64url (then it cannot be
/// one of ours).
pub fn pending_login_cookie(state: &str) -> Option<String> {
    let ok = state.len() >= MIN_STATE_CHARS
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    // All ASCII, so any byte index is a character boundary.
    ok.then(|| format!("{PENDING_LOGIN_PREFIX}{}", &state[..STATE_PREFIX_CHARS]))
}

impl PendingLogin {
    /// A new login toward the identity provider at `now`, with fresh 256-bit `state`, `nonce` and PKCE verifier,
    /// continuing to `return_to` (validated by the caller) afterwards.
    pub fn new(return_to: impl Into<String>, now: i64) -> PendingLogin {
        PendingLogin {
            state: random_token(),
            nonce: random_token(),
            pkce_verifier: random_token(),
            return_to: return_to.into(),
            created_at: now,
        }
    }

    /// The PKCE `code_challenge` (`S256`) of the verifier, for the authorization request.
    pub fn pkce_challenge(&self) -> String {
        crate::pkce::s256_challenge(&self.pkce_verifier)
    }

    /// The name of this login's cookie; see [`pending_login_cookie`].
    pub fn cookie_name(&self) -> Option<String> {
        pending_login_cookie(&self.state)
    }

    /// Whether `presented` (the callback's `state`) is this login's, compared in constant time.
    pub fn state_matches(&self, presented: &str) -> bool {
        self.state.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// Whether the login took too long: [`PENDING_LOGIN_SECS`] or more since it started.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.created_at.saturating_add(PENDING_LOGIN_SECS)
    }
}

/// Seals `pending` as its cookie: `(name, value)`, the two within [`MAX_COOKIE_BYTES`]. When a long
/// `return_to` would make it too large, it is left out (the browser then lands on the public URL) rather than
/// cut, which would make it another address. [`SealError::BadName`] when the `state` cannot name a cookie.
pub fn seal_pending_login(
    sealer: &Sealer,
    pending: &PendingLogin,
) -> Result<(String, String), SealError> {
    let name = pending.cookie_name().ok_or(SealError::BadName)?;
    let max = MAX_COOKIE_BYTES - name.len() - 1;
    let mut sealed = sealer.seal(&name, pending)?;
    if sealed.len() > max && !pending.return_to.is_empty() {
        let without = PendingLogin {
            return_to: String::new(),
            ..pending.clone()
        };
        sealed = sealer.seal(&name, &without)?;
    }
    if sealed.len() > max {
        return Err(SealError::TooLarge {
            len: sealed.len(),
            max,
        });
    }
    Ok((name, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::from_secrets(&[7; 32], &[8; 64]).unwrap()
    }

    fn claims() -> SessionClaims {
        SessionClaims {
            sid: "sid-1".into(),
            sub: "00u1abcd".into(),
            username: "oidc:00u1abcd".into(),
            name: "Alice".into(),
            email: "alice@example.com".into(),
            preferred_username: "alice".into(),
            groups: vec!["admins".into()],
            groups_omitted: false,
            federated: true,
            auth_time: 1000,
            exp: 1000 + 8 * 3600,
            seen: 1000,
        }
    }

    #[test]
    fn lifetime_and_idle() {
        let c = claims();
        assert_eq!(c.check(1000, 3600), Ok(()));
        assert_eq!(c.check(4599, 3600), Ok(()));
        assert_eq!(c.check(4600, 3600), Err(SessionEnded::Idle));
        let busy = c.touched(c.exp - 10);
        assert_eq!(busy.check(c.exp - 1, 3600), Ok(()));
        assert_eq!(busy.check(c.exp, 3600), Err(SessionEnded::Expired));
        assert_eq!(
            c.check(c.exp + 10_000, 3600),
            Err(SessionEnded::Expired),
            "expiry is reported before idleness"
        );
        assert_eq!(c.check(1000, i64::MAX), Ok(()));
    }

    #[test]
    fn touching() {
        let c = claims();
        assert!(!c.needs_touch(1000));
        assert!(!c.needs_touch(1059));
        assert!(c.needs_touch(1060));
        let t = c.touched(1060);
        assert_eq!(t.seen, 1060);
        assert_eq!(
            SessionClaims {
                seen: 1000,
                ..t.clone()
            },
            c,
            "nothing else changed"
        );
        assert_eq!(t.touched(500).seen, 1060, "the clock going back");
    }

    #[test]
    fn sealed_session_round_trips_in_a_small_cookie() {
        let s = sealer();
        let sealed = seal_session(&s, &claims()).unwrap();
        assert!(sealed.len() < 400, "{}", sealed.len());
        let opened: SessionClaims = s.open(SESSION_COOKIE, &sealed).unwrap();
        assert_eq!(opened, claims());
        // Optional fields may be absent from the JSON.
        let minimal: SessionClaims =
            serde_json::from_str(r#"{"i":"s","s":"u","u":"alice","a":1,"x":2,"t":1}"#).unwrap();
        assert_eq!(minimal.name, "");
        assert!(minimal.groups.is_empty() && !minimal.groups_omitted && !minimal.federated);
    }

    #[test]
    fn many_groups_are_dropped_to_stay_under_the_limit() {
        let s = sealer();
        let mut big = claims();
        big.groups = (0..500)
            .map(|i| format!("a-rather-long-group-name-from-the-directory-{i:04}"))
            .collect();
        let sealed = seal_session(&s, &big).unwrap();
        assert!(SESSION_COOKIE.len() + 1 + sealed.len() <= MAX_COOKIE_BYTES);
        let opened: SessionClaims = s.open(SESSION_COOKIE, &sealed).unwrap();
        assert!(opened.groups.is_empty());
        assert!(opened.groups_omitted);
        assert_eq!(opened.name, "Alice");
        // A few groups stay.
        let opened: SessionClaims = s
            .open(SESSION_COOKIE, &seal_session(&s, &claims()).unwrap())
            .unwrap();
        assert_eq!(opened.groups, vec!["admins".to_owned()]);
        assert!(!opened.groups_omitted);
    }

    #[test]
    fn huge_names_are_cut_and_a_huge_subject_is_refused() {
        let s = sealer();
        let mut big = claims();
        big.name = "é".repeat(3000);
        big.email = "e".repeat(3000);
        big.preferred_username = "p".repeat(3000);
        let sealed = seal_session(&s, &big).unwrap();
        assert!(SESSION_COOKIE.len() + 1 + sealed.len() <= MAX_COOKIE_BYTES);
        let opened: SessionClaims = s.open(SESSION_COOKIE, &sealed).unwrap();
        assert_eq!(opened.name.chars().count(), TRUNCATED_CLAIM_CHARS);
        assert_eq!(opened.email.len(), TRUNCATED_CLAIM_CHARS);
        assert!(opened.groups_omitted);
        let mut huge = claims();
        huge.sub = "s".repeat(4000);
        assert!(matches!(
            seal_session(&s, &huge),
            Err(SealError::TooLarge { .. })
        ));
    }

    #[test]
    fn user_info_from_a_session() {
        let info = claims().user_info();
        assert_eq!(info.subject, "00u1abcd");
        assert_eq!(info.name, "Alice");
        assert_eq!(info.preferred_username, "alice");
        assert_eq!(info.email, "alice@example.com");
        assert_eq!(
            Value::Object(info.additional_claims),
            serde_json::json!({
                "sub": "00u1abcd",
                "identity_type": "user",
                "groups": ["admins"],
                "auth_time": 1000,
            })
        );
        let mut no_groups = claims();
        no_groups.groups.clear();
        let info = no_groups.user_info();
        assert!(!info.additional_claims.contains_key("groups"));
        assert!(!info.additional_claims.contains_key("sid"));
    }

    #[test]
    fn pending_logins() {
        let p = PendingLogin::new("/console", 5000);
        for token in [&p.state, &p.nonce, &p.pkce_verifier] {
            assert_eq!(token.len(), 43);
        }
        assert_ne!(p.state, p.nonce);
        assert_ne!(p.state, PendingLogin::new("/console", 5000).state);
        crate::pkce::check_verifier(&p.pkce_verifier).unwrap();
        assert!(crate::pkce::verify_s256(
            &p.pkce_verifier,
            &p.pkce_challenge()
        ));
        assert!(p.state_matches(&p.state.clone()));
        assert!(!p.state_matches(&p.state[..42]));
        assert!(!p.state_matches(""));
        assert!(!p.is_expired(5000 + PENDING_LOGIN_SECS - 1));
        assert!(p.is_expired(5000 + PENDING_LOGIN_SECS));
        assert_eq!(
            p.cookie_name().unwrap(),
            format!("flyteauth_login_{}", &p.state[..8])
        );
    }

    #[test]
    fn pending_login_cookie_names() {
        assert_eq!(
            pending_login_cookie("abcdefgh-_ABCDEF").as_deref(),
            Some("flyteauth_login_abcdefgh")
        );
        for bad in [
            "",
            "short",
            "abcdefghijklmno",
            "abcdefgh ijklmnop",
            "abcdéfghijklmnopq",
            "abc;efghijklmnopq",
            "abcdefghijklmnop=",
        ] {
            assert_eq!(pending_login_cookie(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sealed_pending_logins() {
        let s = sealer();
        let p = PendingLogin::new("https://console.example.com/x?y=1", 5000);
        let (name, value) = seal_pending_login(&s, &p).unwrap();
        assert_eq!(Some(name.clone()), pending_login_cookie(&p.state));
        assert_eq!(s.open::<PendingLogin>(&name, &value).unwrap(), p);
        // Another tab's login cookie does not open as this one's.
        let q = PendingLogin::new("/", 5000);
        let (other, _) = seal_pending_login(&s, &q).unwrap();
        assert!(s.open::<PendingLogin>(&other, &value).is_err());
        // A return_to too long for a cookie is left out, not cut.
        let long = PendingLogin::new(format!("/{}", "a".repeat(4000)), 5000);
        let (name, value) = seal_pending_login(&s, &long).unwrap();
        assert!(name.len() + 1 + value.len() <= MAX_COOKIE_BYTES);
        let opened: PendingLogin = s.open(&name, &value).unwrap();
        assert_eq!(opened.return_to, "");
        assert_eq!(opened.state, long.state);
        let bad = PendingLogin {
            state: "x".into(),
            ..p
        };
        assert_eq!(seal_pending_login(&s, &bad), Err(SealError::BadName));
    }
}
