//! Who a validated token speaks for.

use std::any::Any;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Profile information about the principal, serialized in snake_case with every field present (the shape of
/// flyteidl's `UserInfoResponse` and of `/me`).
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct UserInfo {
    /// Stable subject identifier.
    pub subject: String,
    /// Display name.
    pub name: String,
    /// Preferred user name.
    pub preferred_username: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// E-mail address.
    pub email: String,
    /// Picture URL.
    pub picture: String,
    /// Every other claim (for tokens: all access-token claims, as flyteadmin returns them).
    pub additional_claims: serde_json::Map<String, serde_json::Value>,
}

impl UserInfo {
    /// The profile of an application: subject and user name are the client id, the name is the client's name
    /// when known.
    pub fn for_app(client_id: &str, client_name: Option<&str>) -> Self {
        Self {
            subject: client_id.to_owned(),
            name: client_name
                .filter(|n| !n.is_empty())
                .unwrap_or(client_id)
                .to_owned(),
            preferred_username: client_id.to_owned(),
            ..Self::default()
        }
    }
}

/// Whether a principal is a person or an application; serialized `"user"` / `"app"` (the `identity_type`
/// claim of our access tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person, authenticated through a login.
    User,
    /// An application, authenticated with its own credentials (its subject is its client id).
    App,
}

/// The principal behind a validated access token.
///
/// The validator's memo hands the same `Arc<Identity>` to every call presenting the same token, so whatever the
/// host derives from an identity (say, its rendered `/me` answer) can be kept with it through
/// [`Identity::memoized`] and computed once per token rather than once per request.
#[derive(Clone, PartialEq)]
pub struct Identity {
    /// `sub`: the user's subject, or the client id for applications.
    pub subject: String,
    /// `client_id`: the OAuth client the token was issued to.
    pub client_id: String,
    /// User or application.
    pub kind: PrincipalKind,
    /// Granted scopes (`scp`).
    pub scopes: Vec<String>,
    /// `aud`.
    pub audience: Vec<String>,
    /// `jti`: the token's id, for revocation.
    pub token_id: String,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// `iat`, unix seconds (revocations of a whole app or user cover tokens issued at or before a time).
    pub issued_at: i64,
    /// `sid`: the login (refresh-token family) a user token belongs to; `None` for app tokens.
    pub session_id: Option<String>,
    /// Profile; for applications see [`UserInfo::for_app`], with `additional_claims` holding the token's claims.
    pub user_info: UserInfo,
    /// The host's once-per-identity slot behind [`Identity::memoized`]; build with `Default::default()`.
    pub memo: IdentityMemo,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The memo is the host's derived data, not part of who the token speaks for.
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("kind", &self.kind)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("session_id", &self.session_id)
            .field("user_info", &self.user_info)
            .finish_non_exhaustive()
    }
}

/// A slot holding one value of any type, filled at most once, for [`Identity::memoized`].
///
/// It is not part of the identity's value: a clone starts empty (what was derived from the original need not
/// hold for an edited copy), any two slots compare equal, and `Debug` shows nothing of its content.
#[derive(Default)]
pub struct IdentityMemo(OnceLock<Box<dyn Any + Send + Sync>>);

impl Clone for IdentityMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for IdentityMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for IdentityMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityMemo")
    }
}

impl PrincipalKind {
    /// The wire spelling: `"user"` or `"app"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::User => "user",
            Self::App => "app",
        }
    }

    /// Reads the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "app" => Some(Self::App),
            _ => None,
        }
    }
}

impl Identity {
    /// The value `init` derives from this identity, computed on the first call and kept with the identity for
    /// every later one (concurrent first calls run `init` once; the others wait for it). `None` when a value of
    /// another type was stored first: one slot serves one purpose. `init` must not call `memoized` on the same
    /// identity.
    pub fn memoized<T: Send + Sync + 'static>(
        &self,
        init: impl FnOnce(&Identity) -> T,
    ) -> Option<&T> {
        self.memo
            .0
            .get_or_init(|| Box::new(init(self)))
            .downcast_ref::<T>()
    }

    /// Whether `scope` was granted (exact match; `all` is not expanded here).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// `s` as a JSON string (quotes included) made of visible ASCII and spaces only: `"` and `\` escaped, tab,
/// line feed and carriage return as `\t`, `\n`, `\r`, every other control character and every non-ASCII
/// character as `\uXXXX` (UTF-16, so characters beyond the BMP become a surrogate pair). Any JSON reader gets
/// `s` back, and the result is always a valid HTTP header value.
pub fn ascii_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_ascii_json_string(&mut out, s);
    out
}

/// `items` as a JSON array of [`ascii_json_string`]s, without spaces: `["a","b"]`.
pub fn ascii_json_array<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_ascii_json_string(&mut out, item.as_ref());
    }
    out.push(']');
    out
}

fn push_ascii_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Whether `value` can go into an HTTP header as it is and read back the same: visible ASCII and inner spaces
/// (a leading or trailing space would be trimmed by the reader).
fn is_plain_header_value(value: &str) -> bool {
    value.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

/// The identity headers `/me` answers with, for an ingress to copy to the upstream, in this order:
/// - `x-user-subject`: the subject as it is, or — when it holds anything but visible ASCII and inner spaces —
///   as an [`ascii_json_string`], so the value is always a valid header and never splits a response;
/// - `x-user-claim-identitytype`: `"user"` or `"app"` (JSON, with the quotes, as flyteadmin writes claims);
/// - `x-user-claim-email`, `x-user-claim-name`, `x-user-claim-preferred-username`: JSON strings, each only when
///   not empty;
/// - `x-user-claim-groups`: a JSON array, only when `groups` is not empty.
///
/// Every value is visible ASCII and spaces only.
pub fn identity_headers(
    info: &UserInfo,
    kind: PrincipalKind,
    groups: &[String],
) -> Vec<(&'static str, String)> {
    let subject = if is_plain_header_value(&info.subject) {
        info.subject.clone()
    } else {
        ascii_json_string(&info.subject)
    };
    let mut headers = vec![
        ("x-user-subject", subject),
        (
            "x-user-claim-identitytype",
            ascii_json_string(kind.as_str()),
        ),
    ];
    for (name, value) in [
        ("x-user-claim-email", &info.email),
        ("x-user-claim-name", &info.name),
        ("x-user-claim-preferred-username", &info.preferred_username),
    ] {
        if !value.is_empty() {
            headers.push((name, ascii_json_string(value)));
        }
    }
    if !groups.is_empty() {
        headers.push(("x-user-claim-groups", ascii_json_array(groups)));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_serializes_every_field_in_snake_case() {
        let json = serde_json::to_value(UserInfo::default()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "subject",
            "name",
            "preferred_username",
            "given_name",
            "family_name",
            "email",
            "picture",
            "additional_claims",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn user_info_deserializes_partial_objects() {
        let u: UserInfo = serde_json::from_str(r#"{"subject":"abc","email":"a@b.c"}"#).unwrap();
        assert_eq!(u.subject, "abc");
        assert_eq!(u.email, "a@b.c");
        assert!(u.additional_claims.is_empty());
    }

    #[test]
    fn app_user_info_uses_the_client_id_and_name() {
        let u = UserInfo::for_app("ci-bot", Some("CI bot"));
        assert_eq!(
            (
                u.subject.as_str(),
                u.name.as_str(),
                u.preferred_username.as_str()
            ),
            ("ci-bot", "CI bot", "ci-bot")
        );
        assert_eq!(UserInfo::for_app("ci-bot", None).name, "ci-bot");
        assert_eq!(UserInfo::for_app("ci-bot", Some("")).name, "ci-bot");
    }

    #[test]
    fn has_scope_is_exact() {
        let id = Identity {
            subject: "s".into(),
            client_id: "c".into(),
            kind: PrincipalKind::App,
            scopes: vec!["all".into()],
            audience: vec![],
            token_id: "t".into(),
            expires_at: 0,
            issued_at: 0,
            session_id: None,
            user_info: UserInfo::default(),
            memo: IdentityMemo::default(),
        };
        assert!(id.has_scope("all"));
        assert!(!id.has_scope("al"));
        assert!(!id.has_scope("offline"));
    }

    #[test]
    fn memoized_runs_once_per_identity_and_not_across_clones() {
        let id = Identity {
            subject: "s".into(),
            client_id: "c".into(),
            kind: PrincipalKind::App,
            scopes: vec![],
            audience: vec![],
            token_id: "t".into(),
            expires_at: 0,
            issued_at: 0,
            session_id: None,
            user_info: UserInfo::default(),
            memo: IdentityMemo::default(),
        };
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let render = |i: &Identity| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("<{}>", i.subject)
        };
        assert_eq!(id.memoized(render).map(String::as_str), Some("<s>"));
        assert_eq!(id.memoized(render).map(String::as_str), Some("<s>"));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Another type finds the slot taken.
        assert_eq!(id.memoized(|_| 7u32), None);
        // A clone starts empty, still equals the original, and Debug shows no memo content.
        let mut copy = id.clone();
        assert_eq!(copy, id);
        copy.subject = "other".into();
        assert_eq!(copy.memoized(render).map(String::as_str), Some("<other>"));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(!format!("{id:?}").contains("<s>"));
    }

    fn visible_ascii(value: &str) -> bool {
        value.bytes().all(|b| (b' '..=b'~').contains(&b))
    }

    #[test]
    fn ascii_json_round_trips_through_a_json_reader() {
        for s in [
            "",
            "plain",
            "Zoë Ångström",
            "emoji 🦀 and 𝄞",
            "quote \" backslash \\ slash /",
            "line\r\nInjected: yes",
            "nul \u{0} del \u{7f} bell \u{7} nbsp \u{a0} ls \u{2028}",
        ] {
            let encoded = ascii_json_string(s);
            assert!(visible_ascii(&encoded), "{encoded}");
            assert_eq!(serde_json::from_str::<String>(&encoded).unwrap(), s);
        }
        assert_eq!(ascii_json_string("é"), r#""\u00e9""#);
        assert_eq!(ascii_json_string("🦀"), r#""\ud83e\udd80""#);
        assert_eq!(ascii_json_string("a\r\nb"), r#""a\r\nb""#);
        assert_eq!(ascii_json_array::<&str>(&[]), "[]");
        let groups = ["admins", "δ-team", "a\"b"];
        let array = ascii_json_array(&groups);
        assert_eq!(array, r#"["admins","\u03b4-team","a\"b"]"#);
        assert_eq!(serde_json::from_str::<Vec<String>>(&array).unwrap(), groups);
    }

    #[test]
    fn identity_headers_in_order_and_json_encoded() {
        let info = UserInfo {
            subject: "00u1abcd".into(),
            name: "Alice".into(),
            preferred_username: "alice".into(),
            email: "a@b.c".into(),
            ..UserInfo::default()
        };
        let groups = vec!["a".to_owned(), "b".to_owned()];
        let headers = identity_headers(&info, PrincipalKind::User, &groups);
        assert_eq!(
            headers,
            vec![
                ("x-user-subject", "00u1abcd".to_owned()),
                ("x-user-claim-identitytype", r#""user""#.to_owned()),
                ("x-user-claim-email", r#""a@b.c""#.to_owned()),
                ("x-user-claim-name", r#""Alice""#.to_owned()),
                ("x-user-claim-preferred-username", r#""alice""#.to_owned()),
                ("x-user-claim-groups", r#"["a","b"]"#.to_owned()),
            ]
        );
        // An app with only a subject: empty claims are left out.
        let app = UserInfo {
            subject: "ci".into(),
            ..UserInfo::default()
        };
        assert_eq!(
            identity_headers(&app, PrincipalKind::App, &[]),
            vec![
                ("x-user-subject", "ci".to_owned()),
                ("x-user-claim-identitytype", r#""app""#.to_owned()),
            ]
        );
    }

    #[test]
    fn identity_headers_never_carry_raw_non_ascii_or_line_breaks() {
        let info = UserInfo {
            subject: "evil\r\nSet-Cookie: x=1".into(),
            name: "Renée 🎉\r\nX-Injected: 1".into(),
            preferred_username: "rené".into(),
            email: "e@x.y\n".into(),
            ..UserInfo::default()
        };
        let groups = vec!["grüppe".to_owned(), "x\r\ny".to_owned()];
        let headers = identity_headers(&info, PrincipalKind::User, &groups);
        assert_eq!(headers.len(), 6);
        for (name, value) in &headers {
            assert!(visible_ascii(value), "{name}: {value:?}");
            assert!(!value.contains('\r') && !value.contains('\n'), "{name}");
        }
        assert_eq!(headers[0].1, r#""evil\r\nSet-Cookie: x=1""#);
        assert_eq!(
            headers[3].1,
            r#""Ren\u00e9e \ud83c\udf89\r\nX-Injected: 1""#
        );
        assert_eq!(
            serde_json::from_str::<String>(&headers[3].1).unwrap(),
            info.name
        );
        // A subject with a non-ASCII character or edge spaces is JSON-escaped too; one with inner spaces is not.
        for (subject, expected) in [
            ("josé", r#""jos\u00e9""#),
            (" padded", r#"" padded""#),
            ("with space", "with space"),
        ] {
            let info = UserInfo {
                subject: subject.into(),
                ..UserInfo::default()
            };
            assert_eq!(
                identity_headers(&info, PrincipalKind::User, &[])[0].1,
                expected
            );
        }
    }
}
