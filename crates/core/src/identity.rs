//! Who a validated token speaks for.

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
#[derive(Clone, Debug, PartialEq)]
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
    /// Whether `scope` was granted (exact match; `all` is not expanded here).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
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
        };
        assert!(id.has_scope("all"));
        assert!(!id.has_scope("al"));
        assert!(!id.has_scope("offline"));
    }
}
