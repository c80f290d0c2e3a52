//! The decision rules of the grants: given an authenticated client and the request, what is granted.

use crate::clients::Client;
use crate::oauth::{ErrorCode, OAuthError};

/// The grant type name of the client-credentials grant.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// Scopes that only make sense with refresh tokens, which client_credentials never issues.
const OFFLINE_SCOPES: &[&str] = &["offline", "offline_access"];

/// The parameters of a client_credentials token request that shape the grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCredentialsRequest<'a> {
    /// `scope`: absent or empty means "the client's registered scopes".
    pub scope: Option<&'a str>,
    /// `audience`: absent or empty means "this server".
    pub audience: Option<&'a str>,
}

/// What is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Granted scopes, in request (or registration) order, without duplicates.
    pub scopes: Vec<String>,
    /// The token's `aud`.
    pub audience: Vec<String>,
}

/// Decides a client_credentials request for an already authenticated `client`.
///
/// - The client must be confidential and allow `client_credentials` (else `unauthorized_client`).
/// - `offline`/`offline_access` are dropped from the request: this grant never issues refresh tokens
///   (RFC 6749 §4.4.3), yet both Flyte SDKs ask for the server-advertised `all offline` by default.
/// - `scope` absent or empty after that (the SDKs send `scope=` when they have none): the client's registered
///   scopes minus `offline`/`offline_access`. Otherwise each space-separated scope must be registered for the
///   client (else `invalid_scope`).
/// - `audience` absent or empty: `[default_audience]`. Otherwise it must be one of `accepted_audiences` or of
///   the client's own `audience` list (else `invalid_target`), and becomes the token's only audience.
pub fn client_credentials(
    client: &Client,
    req: &ClientCredentialsRequest<'_>,
    accepted_audiences: &[String],
    default_audience: &str,
) -> Result<Grant, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use the client_credentials grant",
        ));
    }
    if !client.allows_grant(CLIENT_CREDENTIALS) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client is not allowed to use the client_credentials grant",
        ));
    }

    let mut scopes: Vec<String> = Vec::new();
    let requested: Vec<&str> = req
        .scope
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter(|s| !OFFLINE_SCOPES.contains(s))
        .collect();
    match (!requested.is_empty()).then_some(requested) {
        None => {
            for s in &client.scopes {
                if !OFFLINE_SCOPES.contains(&s.as_str()) && !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
        }
        Some(requested) => {
            for s in requested {
                if !client.scopes.iter().any(|r| r == s) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("the scope {s:?} is not registered for this client"),
                    ));
                }
                if !scopes.iter().any(|g| g == s) {
                    scopes.push(s.to_owned());
                }
            }
        }
    }

    let audience = match req.audience.map(str::trim).filter(|a| !a.is_empty()) {
        None => vec![default_audience.to_owned()],
        Some(a) => {
            if accepted_audiences
                .iter()
                .chain(&client.audience)
                .any(|ok| ok == a)
            {
                vec![a.to_owned()]
            } else {
                return Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    format!("the audience {a:?} is not served here nor registered for this client"),
                ));
            }
        }
    };
    Ok(Grant { scopes, audience })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::hash_generated_secret;

    fn client() -> Client {
        Client {
            id: "ci".into(),
            name: "CI".into(),
            secret: Some(hash_generated_secret("s")),
            grant_types: vec![CLIENT_CREDENTIALS.into()],
            scopes: vec![
                "all".into(),
                "offline".into(),
                "offline_access".into(),
                "read".into(),
            ],
            audience: vec!["https://other.example.com".into()],
            redirect_uris: vec![],
        }
    }

    fn accepted() -> Vec<String> {
        vec![
            "http://localhost:8088".into(),
            "http://localhost:8088/".into(),
        ]
    }

    fn decide(scope: Option<&str>, audience: Option<&str>) -> Result<Grant, OAuthError> {
        client_credentials(
            &client(),
            &ClientCredentialsRequest { scope, audience },
            &accepted(),
            "http://localhost:8088",
        )
    }

    #[test]
    fn absent_or_empty_scope_grants_registered_scopes_without_offline() {
        for scope in [None, Some(""), Some("   ")] {
            let g = decide(scope, None).unwrap();
            assert_eq!(g.scopes, ["all", "read"], "{scope:?}");
            assert_eq!(g.audience, ["http://localhost:8088"]);
        }
    }

    #[test]
    fn requested_scopes_must_be_registered() {
        assert_eq!(decide(Some("all"), None).unwrap().scopes, ["all"]);
        assert_eq!(
            decide(Some("read  all read"), None).unwrap().scopes,
            ["read", "all"]
        );
        // What the SDKs send by default: offline is dropped, never an error.
        assert_eq!(decide(Some("all offline"), None).unwrap().scopes, ["all"]);
        assert_eq!(
            decide(Some("offline_access"), None).unwrap().scopes,
            ["all", "read"]
        );
        let err = decide(Some("all admin"), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidScope);
        assert!(err.description.contains("admin"));
    }

    #[test]
    fn audience_must_be_accepted_or_registered() {
        assert_eq!(
            decide(None, Some("")).unwrap().audience,
            ["http://localhost:8088"]
        );
        assert_eq!(
            decide(None, Some("http://localhost:8088/"))
                .unwrap()
                .audience,
            ["http://localhost:8088/"]
        );
        assert_eq!(
            decide(None, Some("https://other.example.com"))
                .unwrap()
                .audience,
            ["https://other.example.com"]
        );
        let err = decide(None, Some("https://evil.example.com")).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidTarget);
    }

    #[test]
    fn client_must_allow_the_grant_and_be_confidential() {
        let mut c = client();
        c.grant_types = vec!["authorization_code".into()];
        let err = client_credentials(&c, &ClientCredentialsRequest::default(), &accepted(), "x")
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnauthorizedClient);

        let mut c = client();
        c.secret = None;
        let err = client_credentials(&c, &ClientCredentialsRequest::default(), &accepted(), "x")
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnauthorizedClient);
    }
}
