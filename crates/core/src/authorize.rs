//! Validating an authorization request (`/oauth2/authorize`, RFC 6749 §4.1.1, RFC 7636 §4.3) in two stages.
//!
//! 1. [`check_client_and_redirect`] (or [`requested_client_id`] then [`check_redirect_uri`]): who asks, and
//!    where the answer may go. Until both are verified nothing may be sent to the redirect URI, so these errors
//!    ([`AuthorizePageError`]) are shown to the person on a page (RFC 6749 §4.1.2.1).
//! 2. [`validate`]: everything else. Its errors ([`RedirectableError`]) go back to the verified redirect URI,
//!    with the request's `state`.
//!
//! Repeated parameters (RFC 6749 §3.1) are refused while parsing the query, before stage 1: the parameters
//! arrive here as a map.

use std::collections::HashMap;

use crate::clients::Client;
use crate::grant::{AUTHORIZATION_CODE, REFRESH_TOKEN, printable, resolve_audience};
use crate::oauth::{ErrorCode, OAuthError};
use crate::pkce;
use crate::redirect::redirect_uri_matches;

/// Longest accepted `state` and `nonce`, in bytes.
pub const MAX_STATE_BYTES: usize = 1024;

/// Scopes of OpenID Connect every client may ask for.
pub const OPENID_SCOPES: &[&str] = &["openid", "profile", "email"];

/// Scopes asking for a refresh token; granted only to clients allowed the `refresh_token` grant.
pub const OFFLINE_SCOPES: &[&str] = &["offline", "offline_access"];

/// Why an authorization request cannot even be answered at its redirect URI; shown on a page, never redirected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizePageError {
    /// A parameter appears twice (the caller's query parser reports it).
    #[error("The sign-in request repeats the parameter {0:?}.")]
    RepeatedParameter(String),
    /// No `client_id`.
    #[error("The sign-in request names no application (client_id).")]
    MissingClientId,
    /// No client of that id.
    #[error("No application is registered as {0:?}.")]
    UnknownClient(String),
    /// No `redirect_uri`.
    #[error("The sign-in request has no redirect_uri.")]
    MissingRedirectUri,
    /// A `redirect_uri` that is not registered for the client.
    #[error("The redirect_uri {0:?} is not registered for this application.")]
    UnregisteredRedirectUri(String),
}

/// An error to send back to the verified redirect URI (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct RedirectableError {
    /// The verified redirect URI.
    pub redirect_uri: String,
    /// The request's `state`, to echo (absent when none was sent or it was refused as too long).
    pub state: Option<String>,
    /// `error` and `error_description`.
    pub error: OAuthError,
}

/// A valid authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The client.
    pub client_id: String,
    /// The verified redirect URI, exactly as presented (the token request must repeat it).
    pub redirect_uri: String,
    /// Granted scopes, in request order without duplicates.
    pub scopes: Vec<String>,
    /// `state`, verbatim.
    pub state: Option<String>,
    /// The PKCE `S256` challenge, when one was sent (always, for public clients).
    pub code_challenge: Option<String>,
    /// `nonce`, verbatim, for the ID token.
    pub nonce: Option<String>,
    /// The tokens' `aud`.
    pub audience: Vec<String>,
}

impl AuthorizationRequest {
    /// Whether a refresh token is granted (`offline` or `offline_access`).
    pub fn grants_offline(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| OFFLINE_SCOPES.contains(&s.as_str()))
    }

    /// Whether an ID token is granted (`openid`).
    pub fn grants_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }
}

fn non_empty<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The `client_id` to look up.
pub fn requested_client_id(params: &HashMap<String, String>) -> Result<&str, AuthorizePageError> {
    non_empty(params, "client_id").ok_or(AuthorizePageError::MissingClientId)
}

/// The presented `redirect_uri`, if it is one of `client`'s (see [`crate::redirect`]).
pub fn check_redirect_uri(
    client: &Client,
    presented: Option<&str>,
) -> Result<String, AuthorizePageError> {
    let uri = presented
        .filter(|u| !u.is_empty())
        .ok_or(AuthorizePageError::MissingRedirectUri)?;
    if redirect_uri_matches(&client.redirect_uris, uri) {
        Ok(uri.to_owned())
    } else {
        Err(AuthorizePageError::UnregisteredRedirectUri(printable(uri)))
    }
}

/// Stage 1: `found` is what looking up [`requested_client_id`] gave. Returns the client and the verified
/// redirect URI.
pub fn check_client_and_redirect(
    params: &HashMap<String, String>,
    found: Option<Client>,
) -> Result<(Client, String), AuthorizePageError> {
    let id = requested_client_id(params)?;
    let client = found
        .filter(|c| c.id == id)
        .ok_or_else(|| AuthorizePageError::UnknownClient(printable(id)))?;
    let redirect_uri = check_redirect_uri(&client, non_empty(params, "redirect_uri"))?;
    Ok((client, redirect_uri))
}

/// The scopes a person's sign-in grants `client` (the authorization-code and the device grants), for the
/// request's `scope` parameter; in request order, without duplicates.
///
/// - Each requested scope must be registered for the client, except `openid`, `profile` and `email`, always
///   allowed; `offline`/`offline_access` need the `refresh_token` grant. Else `invalid_scope`.
/// - No scope (absent, empty or blank): the client's registered scopes, without `offline`/`offline_access` if
///   it lacks the `refresh_token` grant.
pub fn user_scopes(client: &Client, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let offline_allowed = client.allows_grant(REFRESH_TOKEN);
    let mut scopes: Vec<String> = Vec::new();
    let requested: Vec<&str> = requested
        .unwrap_or_default()
        .split_ascii_whitespace()
        .collect();
    if requested.is_empty() {
        for s in &client.scopes {
            if (offline_allowed || !OFFLINE_SCOPES.contains(&s.as_str())) && !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        return Ok(scopes);
    }
    for s in requested {
        let allowed = if OFFLINE_SCOPES.contains(&s) {
            offline_allowed
        } else {
            OPENID_SCOPES.contains(&s) || client.scopes.iter().any(|r| r == s)
        };
        if !allowed {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "the scope {:?} is not registered for this client",
                    printable(s)
                ),
            ));
        }
        if !scopes.iter().any(|g| g == s) {
            scopes.push(s.to_owned());
        }
    }
    Ok(scopes)
}

/// Stage 2: validates the rest of the request of `client`, whose `redirect_uri` stage 1 verified.
///
/// - `state`: kept verbatim; at most [`MAX_STATE_BYTES`] (else `invalid_request`, not echoed).
/// - `response_type` must be `code` (`unsupported_response_type`; missing: `invalid_request`).
/// - The client must allow `authorization_code` (`unauthorized_client`).
/// - PKCE: public clients must send an `S256` `code_challenge`; confidential ones may, and then it is checked
///   the same way (`plain` refused; `invalid_request`).
/// - `scope`: as [`user_scopes`] decides.
/// - `nonce`: optional, at most [`MAX_STATE_BYTES`].
/// - `audience`: as for client_credentials (absent: `default_audience`; else one of `accepted_audiences` or
///   of the client's audiences, `invalid_target`).
pub fn validate(
    client: &Client,
    redirect_uri: &str,
    params: &HashMap<String, String>,
    accepted_audiences: &[String],
    default_audience: &str,
) -> Result<AuthorizationRequest, RedirectableError> {
    let state = non_empty(params, "state");
    let fail = |state: Option<&str>, code: ErrorCode, description: String| RedirectableError {
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        error: OAuthError::new(code, description),
    };
    if state.is_some_and(|s| s.len() > MAX_STATE_BYTES) {
        return Err(fail(
            None,
            ErrorCode::InvalidRequest,
            format!("state must be at most {MAX_STATE_BYTES} bytes"),
        ));
    }
    let err = |code: ErrorCode, description: String| fail(state, code, description);
    let oauth = |e: OAuthError| RedirectableError {
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        error: e,
    };

    match non_empty(params, "response_type") {
        None => {
            return Err(err(
                ErrorCode::InvalidRequest,
                "response_type is required".into(),
            ));
        }
        Some("code") => {}
        Some(other) => {
            return Err(err(
                ErrorCode::UnsupportedResponseType,
                format!(
                    "response_type {:?} is not supported; use code",
                    printable(other)
                ),
            ));
        }
    }
    if !client.allows_grant(AUTHORIZATION_CODE) {
        return Err(err(
            ErrorCode::UnauthorizedClient,
            "the client is not allowed to use the authorization_code grant".into(),
        ));
    }

    let method = non_empty(params, "code_challenge_method");
    let code_challenge = match non_empty(params, "code_challenge") {
        Some(challenge) => {
            pkce::check_challenge(challenge, method).map_err(oauth)?;
            Some(challenge.to_owned())
        }
        None if client.is_public() => {
            return Err(err(
                ErrorCode::InvalidRequest,
                "code_challenge is required (PKCE with S256)".into(),
            ));
        }
        None if method.is_some() => {
            return Err(err(
                ErrorCode::InvalidRequest,
                "code_challenge_method was sent without a code_challenge".into(),
            ));
        }
        None => None,
    };

    let scopes = user_scopes(client, params.get("scope").map(String::as_str)).map_err(oauth)?;

    let nonce = non_empty(params, "nonce");
    if nonce.is_some_and(|n| n.len() > MAX_STATE_BYTES) {
        return Err(err(
            ErrorCode::InvalidRequest,
            format!("nonce must be at most {MAX_STATE_BYTES} bytes"),
        ));
    }
    let audience = resolve_audience(
        client,
        non_empty(params, "audience"),
        accepted_audiences,
        default_audience,
    )
    .map_err(oauth)?;

    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state: state.map(str::to_owned),
        code_challenge,
        nonce: nonce.map(str::to_owned),
        audience,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::hash_generated_secret;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "http://localhost:53593/callback";
    const DEFAULT_AUD: &str = "http://localhost:8088";

    fn flytectl() -> Client {
        Client {
            id: "flytectl".into(),
            name: "flytectl".into(),
            secret: None,
            grant_types: vec!["refresh_token".into(), "authorization_code".into()],
            scopes: vec!["all".into(), "offline".into(), "access_token".into()],
            audience: vec!["api://flyte".into()],
            redirect_uris: vec![REDIRECT.into(), "http://localhost:12345/callback".into()],
        }
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// What flytectl sends.
    fn sdk_request() -> HashMap<String, String> {
        params(&[
            ("client_id", "flytectl"),
            ("response_type", "code"),
            ("scope", "offline all"),
            ("redirect_uri", "http://localhost:40001/callback"),
            ("state", "S t&a=te"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
    }

    fn run(
        client: &Client,
        p: &HashMap<String, String>,
    ) -> Result<AuthorizationRequest, RedirectableError> {
        validate(client, REDIRECT, p, &[DEFAULT_AUD.to_owned()], DEFAULT_AUD)
    }

    fn run_with(
        edit: impl FnOnce(&mut HashMap<String, String>),
    ) -> Result<AuthorizationRequest, RedirectableError> {
        let mut p = sdk_request();
        edit(&mut p);
        run(&flytectl(), &p)
    }

    #[test]
    fn stage_one_verifies_client_and_redirect() {
        let p = sdk_request();
        let (client, uri) = check_client_and_redirect(&p, Some(flytectl())).unwrap();
        assert_eq!(client.id, "flytectl");
        assert_eq!(
            uri, "http://localhost:40001/callback",
            "loopback port may differ"
        );

        assert_eq!(
            check_client_and_redirect(&params(&[]), Some(flytectl())).unwrap_err(),
            AuthorizePageError::MissingClientId
        );
        assert_eq!(
            check_client_and_redirect(&p, None).unwrap_err(),
            AuthorizePageError::UnknownClient("flytectl".into())
        );
        let mut other = flytectl();
        other.id = "other".into();
        assert!(matches!(
            check_client_and_redirect(&p, Some(other)),
            Err(AuthorizePageError::UnknownClient(_))
        ));
        let mut q = p.clone();
        q.remove("redirect_uri");
        assert_eq!(
            check_client_and_redirect(&q, Some(flytectl())).unwrap_err(),
            AuthorizePageError::MissingRedirectUri
        );
        q.insert(
            "redirect_uri".into(),
            "https://evil.example.com/callback".into(),
        );
        let e = check_client_and_redirect(&q, Some(flytectl())).unwrap_err();
        assert!(matches!(e, AuthorizePageError::UnregisteredRedirectUri(_)));
        assert!(e.to_string().contains("evil.example.com"));
        assert!(
            AuthorizePageError::RepeatedParameter("state".into())
                .to_string()
                .contains("state")
        );
    }

    #[test]
    fn the_sdk_request_is_valid() {
        let r = run(&flytectl(), &sdk_request()).unwrap();
        assert_eq!(r.client_id, "flytectl");
        assert_eq!(r.redirect_uri, REDIRECT);
        assert_eq!(r.scopes, ["offline", "all"]);
        assert_eq!(r.state.as_deref(), Some("S t&a=te"));
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(r.nonce, None);
        assert_eq!(r.audience, [DEFAULT_AUD]);
        assert!(r.grants_offline());
        assert!(!r.grants_openid());
    }

    #[test]
    fn response_type_must_be_code() {
        let e = run_with(|p| {
            p.insert("response_type".into(), "token".into());
        })
        .unwrap_err();
        assert_eq!(e.error.code, ErrorCode::UnsupportedResponseType);
        assert_eq!(e.state.as_deref(), Some("S t&a=te"));
        assert_eq!(e.redirect_uri, REDIRECT);
        let e = run_with(|p| {
            p.remove("response_type");
        })
        .unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn the_client_must_allow_the_grant() {
        let mut c = flytectl();
        c.grant_types = vec!["client_credentials".into()];
        let e = run(&c, &sdk_request()).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::UnauthorizedClient);
    }

    #[test]
    fn pkce_rules() {
        for edit in [
            |p: &mut HashMap<String, String>| {
                p.remove("code_challenge");
            },
            |p: &mut HashMap<String, String>| {
                p.insert("code_challenge_method".into(), "plain".into());
            },
            |p: &mut HashMap<String, String>| {
                p.remove("code_challenge_method");
            },
            |p: &mut HashMap<String, String>| {
                p.insert("code_challenge".into(), "short".into());
            },
        ] {
            let e = run_with(edit).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::InvalidRequest, "{}", e.error);
        }
        let e = run_with(|p| {
            p.insert("code_challenge_method".into(), "plain".into());
        })
        .unwrap_err();
        assert!(e.error.description.contains("plain"));

        // Confidential clients: optional, but checked when present.
        let mut conf = flytectl();
        conf.secret = Some(hash_generated_secret("s"));
        let mut p = sdk_request();
        p.remove("code_challenge");
        p.remove("code_challenge_method");
        assert_eq!(run(&conf, &p).unwrap().code_challenge, None);
        p.insert("code_challenge_method".into(), "S256".into());
        assert_eq!(
            run(&conf, &p).unwrap_err().error.code,
            ErrorCode::InvalidRequest
        );
        p.insert("code_challenge".into(), CHALLENGE.into());
        p.insert("code_challenge_method".into(), "plain".into());
        assert_eq!(
            run(&conf, &p).unwrap_err().error.code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn scope_rules() {
        let scopes = |s: &str| {
            run_with(|p| {
                p.insert("scope".into(), s.into());
            })
        };
        assert_eq!(
            scopes("openid profile email all all").unwrap().scopes,
            ["openid", "profile", "email", "all"]
        );
        assert!(scopes("openid").unwrap().grants_openid());
        assert_eq!(
            scopes("").unwrap().scopes,
            ["all", "offline", "access_token"]
        );
        assert_eq!(scopes("offline_access").unwrap().scopes, ["offline_access"]);
        let e = scopes("all admin").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidScope);
        assert!(e.error.description.contains("admin"));

        // Without the refresh_token grant, offline is refused, and left out of the default.
        let mut c = flytectl();
        c.grant_types = vec!["authorization_code".into()];
        let mut p = sdk_request();
        assert_eq!(run(&c, &p).unwrap_err().error.code, ErrorCode::InvalidScope);
        p.insert("scope".into(), "offline_access".into());
        assert_eq!(run(&c, &p).unwrap_err().error.code, ErrorCode::InvalidScope);
        p.remove("scope");
        assert_eq!(run(&c, &p).unwrap().scopes, ["all", "access_token"]);
    }

    #[test]
    fn user_scopes_directly() {
        let c = flytectl();
        for none in [None, Some(""), Some("  ")] {
            assert_eq!(
                user_scopes(&c, none).unwrap(),
                ["all", "offline", "access_token"]
            );
        }
        assert_eq!(
            user_scopes(&c, Some("email all email")).unwrap(),
            ["email", "all"]
        );
        let e = user_scopes(&c, Some("admin")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn state_and_nonce_limits() {
        let long = "x".repeat(MAX_STATE_BYTES + 1);
        let e = run_with(|p| {
            p.insert("state".into(), long.clone());
        })
        .unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidRequest);
        assert_eq!(e.state, None, "an oversized state is not echoed");
        let ok = run_with(|p| {
            p.insert("state".into(), "s".repeat(MAX_STATE_BYTES));
            p.insert("nonce".into(), "n-1".into());
        })
        .unwrap();
        assert_eq!(ok.nonce.as_deref(), Some("n-1"));
        let e = run_with(|p| {
            p.insert("nonce".into(), long.clone());
        })
        .unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidRequest);
        assert_eq!(e.state.as_deref(), Some("S t&a=te"));
        let no_state = run_with(|p| {
            p.insert("state".into(), String::new());
        })
        .unwrap();
        assert_eq!(no_state.state, None);
    }

    #[test]
    fn audience_rules() {
        let aud = |a: &str| {
            run_with(|p| {
                p.insert("audience".into(), a.into());
            })
        };
        assert_eq!(aud("").unwrap().audience, [DEFAULT_AUD]);
        assert_eq!(aud("api://flyte").unwrap().audience, ["api://flyte"]);
        assert_eq!(aud(DEFAULT_AUD).unwrap().audience, [DEFAULT_AUD]);
        let e = aud("https://evil.example.com").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidTarget);
        assert_eq!(e.state.as_deref(), Some("S t&a=te"));
    }
}
