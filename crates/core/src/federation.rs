//! Mapping an external identity provider's claims onto our identity.
//!
//! After a federated login the server holds the validated ID token's claims and, when the provider has a
//! userinfo endpoint, the userinfo response. [`profile_from_claims`] turns them into a [`FederatedProfile`]:
//! the provider's `sub` is the person's subject (and `oidc:<sub>` the account's user name), and `email`,
//! `name`, `preferred_username` and `groups` come from userinfo first, then from the ID token.
//!
//! The provider is trusted to say who the person is, not to send well-formed text: control characters are
//! removed from every value (they would end up in headers, logs and pages), and the number and size of groups
//! is bounded so one account cannot bloat every cookie and row.

use serde_json::{Map, Value};

/// Prefix of a federated account's user name: `oidc:<sub>`.
pub const USERNAME_PREFIX: &str = "oidc:";
/// Longest `sub` accepted, in characters (OpenID Connect Core §2: at most 255 ASCII characters).
pub const MAX_SUBJECT_CHARS: usize = 255;
/// Most groups kept from one login; the rest are dropped.
pub const MAX_GROUPS: usize = 1000;
/// Longest group name kept, in characters; a longer one is dropped, never shortened (a shortened name could
/// be another group's).
pub const MAX_GROUP_CHARS: usize = 256;
/// Longest `email`, `name` or `preferred_username` kept, in characters; longer ones are cut.
pub const MAX_CLAIM_CHARS: usize = 1024;

/// Who a federated login is, in our terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedProfile {
    /// The provider's `sub`: the person's subject.
    pub subject: String,
    /// The account's user name: `oidc:` followed by the subject.
    pub username: String,
    /// `email`, or empty.
    pub email: String,
    /// `name`, else `given_name family_name`, else `preferred_username`, else `email`; possibly empty.
    pub name: String,
    /// `preferred_username`, or empty.
    pub preferred_username: String,
    /// `groups`, deduplicated, in the provider's order.
    pub groups: Vec<String>,
}

/// Why a provider's claims cannot make a profile. The messages never include claim values.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FederationError {
    /// The ID token has no `sub`, or it is not a non-empty string.
    #[error("the ID token has no subject")]
    MissingSubject,
    /// The `sub` is longer than 255 characters or holds control characters.
    #[error("the ID token's subject is longer than 255 characters or holds control characters")]
    InvalidSubject,
    /// The userinfo response speaks for another subject than the ID token (OpenID Connect Core §5.3.2).
    #[error("the userinfo response is for another subject than the ID token")]
    SubjectMismatch,
}

fn strip_controls(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A string claim without control characters, trimmed, at most [`MAX_CLAIM_CHARS`]; empty when absent or not
/// a string.
fn text(claims: &Map<String, Value>, key: &str) -> String {
    let Some(Value::String(s)) = claims.get(key) else {
        return String::new();
    };
    strip_controls(s)
        .trim()
        .chars()
        .take(MAX_CLAIM_CHARS)
        .collect()
}

/// Reads a claim from userinfo when it has a non-empty value there, else from the ID token.
struct Claims<'a> {
    id_token: &'a Map<String, Value>,
    userinfo: Option<&'a Map<String, Value>>,
}

impl Claims<'_> {
    fn text(&self, key: &str) -> String {
        self.userinfo
            .map(|u| text(u, key))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| text(self.id_token, key))
    }

    fn groups(&self) -> Vec<String> {
        let from = self
            .userinfo
            .and_then(|u| u.get("groups"))
            .filter(|v| !v.is_null())
            .or_else(|| self.id_token.get("groups"));
        groups(from)
    }
}

/// `groups` as an array of strings or a single string; other values dropped, control characters removed,
/// empty and over-long names dropped, duplicates dropped, at most [`MAX_GROUPS`].
fn groups(value: Option<&Value>) -> Vec<String> {
    let items: Vec<&str> = match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for item in items {
        if out.len() == MAX_GROUPS {
            break;
        }
        let group = strip_controls(item);
        if group.is_empty() || group.chars().count() > MAX_GROUP_CHARS {
            continue;
        }
        if seen.insert(group.clone()) {
            out.push(group);
        }
    }
    out
}

/// The subject of `claims`, checked.
fn subject(claims: &Map<String, Value>) -> Result<&str, FederationError> {
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(FederationError::MissingSubject),
    };
    if sub.chars().count() > MAX_SUBJECT_CHARS || sub.chars().any(char::is_control) {
        return Err(FederationError::InvalidSubject);
    }
    Ok(sub)
}

/// The profile of a federated login from the validated ID token's claims and, when the provider has one, its
/// userinfo response.
///
/// `sub` is required in the ID token (a non-empty string of at most 255 characters without control
/// characters) and taken as it is; a userinfo `sub` that differs from it is refused (the response could be
/// another person's). Other claims are taken from userinfo when present and non-empty there, else from the ID
/// token.
pub fn profile_from_claims(
    id_token: &Map<String, Value>,
    userinfo: Option<&Map<String, Value>>,
) -> Result<FederatedProfile, FederationError> {
    let sub = subject(id_token)?;
    if let Some(u) = userinfo
        && let Some(other) = u.get("sub")
        && other.as_str() != Some(sub)
    {
        return Err(FederationError::SubjectMismatch);
    }
    let claims = Claims { id_token, userinfo };
    let email = claims.text("email");
    let preferred_username = claims.text("preferred_username");
    let name = Some(claims.text("name"))
        .filter(|n| !n.is_empty())
        .or_else(|| {
            let full = format!(
                "{} {}",
                claims.text("given_name"),
                claims.text("family_name")
            );
            Some(full.trim().to_owned()).filter(|n| !n.is_empty())
        })
        .or_else(|| Some(preferred_username.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| email.clone());
    Ok(FederatedProfile {
        subject: sub.to_owned(),
        username: format!("{USERNAME_PREFIX}{sub}"),
        email,
        name,
        preferred_username,
        groups: claims.groups(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_full_id_token() {
        let id = map(json!({
            "sub": "00u1abcd",
            "email": "alice@example.com",
            "name": "Alice Liddell",
            "preferred_username": "alice",
            "groups": ["admins", "users"],
            "iss": "https://idp.example.com",
        }));
        let p = profile_from_claims(&id, None).unwrap();
        assert_eq!(
            p,
            FederatedProfile {
                subject: "00u1abcd".into(),
                username: "oidc:00u1abcd".into(),
                email: "alice@example.com".into(),
                name: "Alice Liddell".into(),
                preferred_username: "alice".into(),
                groups: vec!["admins".into(), "users".into()],
            }
        );
    }

    #[test]
    fn the_subject_is_required_and_checked() {
        for (claims, expected) in [
            (json!({}), FederationError::MissingSubject),
            (json!({"sub": ""}), FederationError::MissingSubject),
            (json!({"sub": 42}), FederationError::MissingSubject),
            (json!({"sub": null}), FederationError::MissingSubject),
            (
                json!({"sub": "a".repeat(256)}),
                FederationError::InvalidSubject,
            ),
            (json!({"sub": "a\nb"}), FederationError::InvalidSubject),
            (json!({"sub": "a\u{0}"}), FederationError::InvalidSubject),
        ] {
            assert_eq!(
                profile_from_claims(&map(claims.clone()), None),
                Err(expected),
                "{claims}"
            );
        }
        let p = profile_from_claims(&map(json!({"sub": "a".repeat(255)})), None).unwrap();
        assert_eq!(p.username.len(), 5 + 255);
        assert_eq!(p.name, "");
        assert!(p.groups.is_empty());
    }

    #[test]
    fn userinfo_must_be_for_the_same_subject() {
        let id = map(json!({"sub": "s-1"}));
        for other in [json!({"sub": "s-2"}), json!({"sub": 1}), json!({"sub": ""})] {
            assert_eq!(
                profile_from_claims(&id, Some(&map(other))),
                Err(FederationError::SubjectMismatch)
            );
        }
        // A userinfo response without `sub` is taken as the ID token's (some providers leave it out).
        let p = profile_from_claims(&id, Some(&map(json!({"email": "a@b.c"})))).unwrap();
        assert_eq!(p.email, "a@b.c");
    }

    #[test]
    fn userinfo_wins_over_the_id_token() {
        let id = map(json!({
            "sub": "s-1",
            "email": "old@example.com",
            "preferred_username": "old",
            "name": "Old Name",
            "groups": ["from-token"],
        }));
        let info = map(json!({
            "sub": "s-1",
            "email": "new@example.com",
            "preferred_username": "",
            "groups": ["from-userinfo"],
        }));
        let p = profile_from_claims(&id, Some(&info)).unwrap();
        assert_eq!(p.email, "new@example.com");
        assert_eq!(p.preferred_username, "old", "empty in userinfo");
        assert_eq!(p.name, "Old Name", "absent in userinfo");
        assert_eq!(p.groups, vec!["from-userinfo".to_owned()]);
        let no_groups = map(json!({"sub": "s-1"}));
        assert_eq!(
            profile_from_claims(&id, Some(&no_groups)).unwrap().groups,
            vec!["from-token".to_owned()]
        );
    }

    #[test]
    fn name_falls_back() {
        for (claims, expected) in [
            (
                json!({"sub": "s", "given_name": "Alice", "family_name": "Liddell", "preferred_username": "al"}),
                "Alice Liddell",
            ),
            (json!({"sub": "s", "given_name": "Alice"}), "Alice"),
            (json!({"sub": "s", "family_name": "Liddell"}), "Liddell"),
            (
                json!({"sub": "s", "preferred_username": "al", "email": "a@b.c"}),
                "al",
            ),
            (json!({"sub": "s", "email": "a@b.c"}), "a@b.c"),
            (
                json!({"sub": "s", "name": " \u{7} ", "email": "a@b.c"}),
                "a@b.c",
            ),
        ] {
            assert_eq!(
                profile_from_claims(&map(claims.clone()), None)
                    .unwrap()
                    .name,
                expected,
                "{claims}"
            );
        }
    }

    #[test]
    fn groups_in_every_shape() {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
        for (groups, expected) in [
            (json!("solo"), strings(&["solo"])),
            (
                json!(["a", 1, null, {"x": 1}, ["b"], "c"]),
                strings(&["a", "c"]),
            ),
            (json!(["a", "b", "a", "b\u{0}"]), strings(&["a", "b"])),
            (json!(["", "\r\n", "ok"]), strings(&["ok"])),
            (json!(42), vec![]),
            (json!({"a": "b"}), vec![]),
            (
                json!(["x".repeat(257), "y".repeat(256)]),
                vec!["y".repeat(256)],
            ),
        ] {
            let p = profile_from_claims(&map(json!({"sub": "s", "groups": groups.clone()})), None)
                .unwrap();
            assert_eq!(p.groups, expected, "{groups}");
        }
        let many: Vec<String> = (0..1500).map(|i| format!("g{i}")).collect();
        let p = profile_from_claims(&map(json!({"sub": "s", "groups": many})), None).unwrap();
        assert_eq!(p.groups.len(), MAX_GROUPS);
        assert_eq!(p.groups[999], "g999");
        // `roles` is not read as groups.
        let p = profile_from_claims(&map(json!({"sub": "s", "roles": ["admin"]})), None).unwrap();
        assert!(p.groups.is_empty());
    }

    #[test]
    fn control_characters_are_removed_everywhere() {
        let id = map(json!({
            "sub": "s",
            "email": "a@b.c\r\nBcc: x@y.z",
            "name": "Al\u{0}ice\u{1b}[31m",
            "preferred_username": "\talice\n",
            "groups": ["ad\u{7f}mins"],
        }));
        let p = profile_from_claims(&id, None).unwrap();
        assert_eq!(p.email, "a@b.cBcc: x@y.z");
        assert_eq!(p.name, "Alice[31m");
        assert_eq!(p.preferred_username, "alice");
        assert_eq!(p.groups, vec!["admins".to_owned()]);
        let long = map(json!({"sub": "s", "name": "n".repeat(5000)}));
        assert_eq!(
            profile_from_claims(&long, None).unwrap().name.len(),
            MAX_CLAIM_CHARS
        );
    }
}
