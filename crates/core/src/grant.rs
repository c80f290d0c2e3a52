//! The decision rules of the token endpoint: parsing the request ([`TokenRequest`]), reading and checking the
//! client's credentials ([`PresentedClient`], [`authenticate`]) and, per grant, what is granted.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::clients::{Client, equalize_timing_for_unknown_client};
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

    let audience = resolve_audience(client, req.audience, accepted_audiences, default_audience)?;
    Ok(Grant { scopes, audience })
}

/// The token's `aud` for a requested `audience`: absent or empty means `[default_audience]`; otherwise it must
/// be one of `accepted_audiences` or of the client's own `audience` list (else `invalid_target`).
pub(crate) fn resolve_audience(
    client: &Client,
    requested: Option<&str>,
    accepted_audiences: &[String],
    default_audience: &str,
) -> Result<Vec<String>, OAuthError> {
    match requested.map(str::trim).filter(|a| !a.is_empty()) {
        None => Ok(vec![default_audience.to_owned()]),
        Some(a) => {
            if accepted_audiences
                .iter()
                .chain(&client.audience)
                .any(|ok| ok == a)
            {
                Ok(vec![a.to_owned()])
            } else {
                Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    format!(
                        "the audience {:?} is not served here nor registered for this client",
                        printable(a)
                    ),
                ))
            }
        }
    }
}

/// Caps and sanitises client-supplied text before it goes into an error description.
pub(crate) fn printable(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = s
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The grant type name of the authorization-code grant.
pub const AUTHORIZATION_CODE: &str = "authorization_code";

/// The grant type name of the refresh-token grant.
pub const REFRESH_TOKEN: &str = "refresh_token";

/// The grant type name of the device authorization grant (RFC 8628 §3.4).
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The short name [`TokenRequest::grant_type`] gives the device grant, for metric labels and logs.
pub const DEVICE_CODE_LABEL: &str = "device_code";

/// A token request, parsed once from the form parameters of `POST /oauth2/token`.
///
/// Parameters a grant does not use are tolerated: the Flyte SDKs send every authorization-request parameter
/// (`response_type`, `state`, `code_challenge`, …) again with the code. Empty values count as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// `grant_type=client_credentials` (RFC 6749 §4.4).
    ClientCredentials {
        /// `scope`, verbatim (an empty value means "the client's registered scopes").
        scope: Option<String>,
        /// `audience`, when not empty.
        audience: Option<String>,
    },
    /// `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5).
    AuthorizationCode {
        /// `code`.
        code: String,
        /// `redirect_uri`, when not empty.
        redirect_uri: Option<String>,
        /// `code_verifier`, when not empty.
        code_verifier: Option<String>,
    },
    /// `grant_type=refresh_token` (RFC 6749 §6).
    RefreshToken {
        /// `refresh_token`.
        refresh_token: String,
        /// `scope`, when not empty: narrows the new access token's scopes.
        scope: Option<String>,
    },
    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4). `scope` and `audience` are
    /// tolerated and ignored: what is granted was decided by the device authorization request.
    DeviceCode {
        /// `device_code`.
        device_code: String,
    },
}

impl TokenRequest {
    /// Reads the grant from `params`.
    ///
    /// - no (or an empty) `grant_type`: `invalid_request`;
    /// - a grant type other than the four above: `unsupported_grant_type`, naming it (sanitised, capped);
    /// - no (or an empty) `code` / `refresh_token` / `device_code` for the grants that need one:
    ///   `invalid_request`.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, OAuthError> {
        let get = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
        let grant_type = params
            .get("grant_type")
            .map(String::as_str)
            .unwrap_or_default();
        match grant_type {
            "" => Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "grant_type is required",
            )),
            CLIENT_CREDENTIALS => Ok(Self::ClientCredentials {
                scope: params.get("scope").cloned(),
                audience: get("audience"),
            }),
            AUTHORIZATION_CODE => Ok(Self::AuthorizationCode {
                code: get("code").ok_or_else(|| {
                    OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "code is required for the authorization_code grant",
                    )
                })?,
                redirect_uri: get("redirect_uri"),
                code_verifier: get("code_verifier"),
            }),
            REFRESH_TOKEN => Ok(Self::RefreshToken {
                refresh_token: get("refresh_token").ok_or_else(|| {
                    OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "refresh_token is required for the refresh_token grant",
                    )
                })?,
                scope: get("scope"),
            }),
            DEVICE_CODE => Ok(Self::DeviceCode {
                device_code: get("device_code").ok_or_else(|| {
                    OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "device_code is required for the device_code grant",
                    )
                })?,
            }),
            other => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {:?} is not supported", printable(other)),
            )),
        }
    }

    /// The grant's short name, one of a fixed set (fit for a metric label): the wire name for the RFC 6749
    /// grants (`client_credentials`, `authorization_code`, `refresh_token`), [`DEVICE_CODE_LABEL`]
    /// (`device_code`) rather than the URN for the device grant.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Self::ClientCredentials { .. } => CLIENT_CREDENTIALS,
            Self::AuthorizationCode { .. } => AUTHORIZATION_CODE,
            Self::RefreshToken { .. } => REFRESH_TOKEN,
            Self::DeviceCode { .. } => DEVICE_CODE_LABEL,
        }
    }

    /// The grant's wire name, as sent in `grant_type` (the URN [`DEVICE_CODE`] for the device grant).
    pub fn wire_name(&self) -> &'static str {
        match self {
            Self::DeviceCode { .. } => DEVICE_CODE,
            other => other.grant_type(),
        }
    }
}

/// Client credentials as presented, before they are checked.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedClient {
    /// The client id.
    pub id: String,
    /// The secret; `None` when none was sent or it was empty (what public clients do).
    pub secret: Option<String>,
    /// Whether they came in an `Authorization: Basic` header (failures then answer with `WWW-Authenticate`).
    pub via_basic: bool,
}

impl fmt::Debug for PresentedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedClient")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("via_basic", &self.via_basic)
            .finish()
    }
}

/// Why the presented client authentication could not even be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// The `Authorization` header is not well-formed Basic credentials (not UTF-8, not base64, no `:`, bad
    /// form-URL-encoding). RFC 6749 §5.2 makes this `invalid_client`, answered with a `WWW-Authenticate`
    /// challenge.
    #[error("the Basic credentials are malformed")]
    MalformedBasic,
    /// The `Authorization` header uses another scheme than Basic (`invalid_request`).
    #[error("only Basic client authentication is accepted in the Authorization header")]
    UnsupportedScheme,
    /// Both a Basic header and a `client_secret` in the body (`invalid_request`, RFC 6749 §2.3).
    #[error("use exactly one client authentication method (Basic header or form body)")]
    TwoMethods,
    /// The body's `client_id` differs from the Basic one (`invalid_request`).
    #[error("client_id in the body does not match the Basic credentials")]
    ClientIdMismatch,
}

impl ClientAuthError {
    /// The RFC 6749 error this is answered with: `invalid_client` for [`ClientAuthError::MalformedBasic`],
    /// `invalid_request` for the others.
    pub fn oauth_error(&self) -> OAuthError {
        let code = match self {
            Self::MalformedBasic => ErrorCode::InvalidClient,
            _ => ErrorCode::InvalidRequest,
        };
        OAuthError::new(code, self.to_string())
    }
}

impl PresentedClient {
    /// Reads client authentication from the `Authorization` header value (`Basic`, both parts
    /// form-URL-decoded as RFC 6749 §2.3.1 asks and as the Flyte SDKs encode the secret) or from the form
    /// body (`client_id`, `client_secret`). `Ok(None)`: the request names no client at all.
    pub fn from_request(
        authorization_header: Option<&[u8]>,
        params: &HashMap<String, String>,
    ) -> Result<Option<Self>, ClientAuthError> {
        let basic = authorization_header.map(parse_basic).transpose()?;
        let body_id = params.get("client_id").filter(|s| !s.is_empty());
        let body_secret = params.get("client_secret").filter(|s| !s.is_empty());
        match (basic, body_id) {
            (Some(_), _) if body_secret.is_some() => Err(ClientAuthError::TwoMethods),
            (Some((id, secret)), other_id) => {
                if other_id.is_some_and(|other| *other != id) {
                    return Err(ClientAuthError::ClientIdMismatch);
                }
                Ok(Some(Self {
                    id,
                    secret: Some(secret).filter(|s| !s.is_empty()),
                    via_basic: true,
                }))
            }
            (None, Some(id)) => Ok(Some(Self {
                id: id.clone(),
                secret: body_secret.cloned(),
                via_basic: false,
            })),
            (None, None) => Ok(None),
        }
    }
}

fn parse_basic(value: &[u8]) -> Result<(String, String), ClientAuthError> {
    let bad = ClientAuthError::MalformedBasic;
    let value = std::str::from_utf8(value).map_err(|_| bad)?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ClientAuthError::UnsupportedScheme);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad)?;
    let colon = decoded.iter().position(|b| *b == b':').ok_or(bad)?;
    let id = form_decode(&decoded[..colon]).ok_or(bad)?;
    let secret = form_decode(&decoded[colon + 1..]).ok_or(bad)?;
    if id.is_empty() {
        return Err(bad);
    }
    Ok((id, secret))
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space); `None` if not UTF-8.
fn form_decode(raw: &[u8]) -> Option<String> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Whether `presented` authenticates as `client`. Which grants a client may then use is decided by each grant
/// (a public client gets no `client_credentials`, for one).
///
/// - Unknown client (`None`): no, after spending about as long as a bcrypt check.
/// - Public client: only without a secret (a public client that sends one is misconfigured; refusing tells it so).
/// - Confidential client: the secret must verify against its hash.
///
/// May run bcrypt for confidential and unknown clients: call it off async workers then.
pub fn authenticate(client: Option<&Client>, presented: &PresentedClient) -> bool {
    let secret = presented.secret.as_deref().unwrap_or_default();
    match client {
        Some(c) if c.id != presented.id => false,
        Some(c) => match &c.secret {
            None => presented.secret.is_none(),
            Some(hash) => !secret.is_empty() && hash.verify(secret),
        },
        None => {
            equalize_timing_for_unknown_client(secret);
            false
        }
    }
}

/// What an authorization code was bound to when it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeBinding<'a> {
    /// The client the code was issued to.
    pub client_id: &'a str,
    /// The `redirect_uri` of the authorization request (always present: the authorize endpoint requires it).
    pub redirect_uri: &'a str,
    /// The PKCE `S256` challenge; empty when the authorization request had none (confidential clients only).
    pub code_challenge: &'a str,
    /// When the code stops being redeemable, unix seconds.
    pub expires_at: i64,
}

/// Decides an authorization_code token request for the authenticated `client` and the stored `code`.
///
/// Every refusal is `invalid_grant` with its own description, except a client that may not use the grant
/// (`unauthorized_client`):
/// - the code was issued to another client;
/// - the code has expired (`now >= expires_at`);
/// - `redirect_uri` missing, or not byte-identical to the one of the authorization request (RFC 6749 §4.1.3);
/// - PKCE: a challenge was bound but no verifier sent, the verifier is malformed or does not match; or no
///   challenge was bound but a verifier is sent (a downgrade attempt), or the client is public.
pub fn authorization_code(
    client: &Client,
    code: &CodeBinding<'_>,
    presented_redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    now: i64,
) -> Result<(), OAuthError> {
    let invalid = |d: &'static str| OAuthError::new(ErrorCode::InvalidGrant, d);
    if !client.allows_grant(AUTHORIZATION_CODE) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client is not allowed to use the authorization_code grant",
        ));
    }
    if code.client_id != client.id {
        return Err(invalid(
            "the authorization code was issued to another client",
        ));
    }
    if now >= code.expires_at {
        return Err(invalid("the authorization code has expired"));
    }
    match presented_redirect_uri {
        None => {
            return Err(invalid(
                "redirect_uri is required: send the one of the authorization request",
            ));
        }
        Some(uri) if uri != code.redirect_uri => {
            return Err(invalid(
                "redirect_uri does not match the one of the authorization request",
            ));
        }
        Some(_) => {}
    }
    match (code.code_challenge.is_empty(), code_verifier) {
        (false, None) => Err(invalid("code_verifier is required (PKCE)")),
        (false, Some(verifier)) => {
            crate::pkce::check_verifier(verifier)?;
            if crate::pkce::verify_s256(verifier, code.code_challenge) {
                Ok(())
            } else {
                Err(invalid("code_verifier does not match the code_challenge"))
            }
        }
        (true, Some(_)) => Err(invalid(
            "code_verifier sent, but the authorization request had no code_challenge",
        )),
        (true, None) if client.is_public() => Err(invalid(
            "the authorization code has no PKCE challenge, which public clients require",
        )),
        (true, None) => Ok(()),
    }
}

/// The scopes of an access token minted by a refresh: absent or empty `requested` means all of `granted`;
/// otherwise each requested scope must be among `granted` (RFC 6749 §6: narrowing only, else
/// `invalid_scope`). The refresh token itself keeps `granted`.
pub fn refresh_scopes(
    granted: &[String],
    requested: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let requested: Vec<&str> = requested
        .unwrap_or_default()
        .split_ascii_whitespace()
        .collect();
    if requested.is_empty() {
        return Ok(granted.to_vec());
    }
    let mut out: Vec<String> = Vec::with_capacity(requested.len());
    for s in requested {
        if !granted.iter().any(|g| g == s) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "the scope {:?} was not granted to this refresh token",
                    printable(s)
                ),
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
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
    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn token_requests_parse_once() {
        let r = TokenRequest::parse(&params(&[
            ("grant_type", "client_credentials"),
            ("scope", ""),
            ("audience", ""),
        ]))
        .unwrap();
        assert_eq!(
            r,
            TokenRequest::ClientCredentials {
                scope: Some(String::new()),
                audience: None
            }
        );
        assert_eq!(r.grant_type(), "client_credentials");

        // What the SDKs send with a code: every authorize parameter again, tolerated.
        let r = TokenRequest::parse(&params(&[
            ("grant_type", "authorization_code"),
            ("code", "c0de"),
            ("code_verifier", "v"),
            ("client_id", "flytectl"),
            ("redirect_uri", "http://localhost:53593/callback"),
            ("response_type", "code"),
            ("scope", "all offline"),
            ("state", "s"),
            ("code_challenge", "x"),
            ("code_challenge_method", "S256"),
        ]))
        .unwrap();
        assert_eq!(
            r,
            TokenRequest::AuthorizationCode {
                code: "c0de".into(),
                redirect_uri: Some("http://localhost:53593/callback".into()),
                code_verifier: Some("v".into()),
            }
        );
        assert_eq!(r.grant_type(), "authorization_code");

        let r = TokenRequest::parse(&params(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt"),
            ("scope", ""),
        ]))
        .unwrap();
        assert_eq!(
            r,
            TokenRequest::RefreshToken {
                refresh_token: "rt".into(),
                scope: None
            }
        );
        assert_eq!(r.grant_type(), "refresh_token");
        assert_eq!(r.wire_name(), "refresh_token");

        // What the Flyte SDKs poll with: scope and audience again, tolerated.
        let r = TokenRequest::parse(&params(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", "dc"),
            ("client_id", "flytectl"),
            ("scope", "all offline"),
            ("audience", ""),
        ]))
        .unwrap();
        assert_eq!(
            r,
            TokenRequest::DeviceCode {
                device_code: "dc".into()
            }
        );
        assert_eq!(r.grant_type(), "device_code");
        assert_eq!(r.wire_name(), DEVICE_CODE);
    }

    #[test]
    fn bad_token_requests() {
        for p in [params(&[]), params(&[("grant_type", "")])] {
            let e = TokenRequest::parse(&p).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(e.description.contains("grant_type"));
        }
        let long = format!("urn:x\n{}", "y".repeat(500));
        let e = TokenRequest::parse(&params(&[("grant_type", &long)])).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedGrantType);
        assert!(!e.description.contains('\n'));
        assert!(e.description.len() < 120, "{}", e.description);
        for (grant, missing) in [
            ("authorization_code", "code"),
            ("refresh_token", "refresh_token"),
            (DEVICE_CODE, "device_code"),
        ] {
            for p in [
                params(&[("grant_type", grant)]),
                params(&[("grant_type", grant), (missing, "")]),
            ] {
                let e = TokenRequest::parse(&p).unwrap_err();
                assert_eq!(e.code, ErrorCode::InvalidRequest);
                assert!(e.description.contains(missing));
            }
        }
    }

    fn basic(raw: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(raw)).into_bytes()
    }

    #[test]
    fn basic_password_is_form_url_decoded() {
        // What the Flyte SDKs send for the secret "s3cr+t/=x y" (quote_plus before base64).
        let p =
            PresentedClient::from_request(Some(&basic("my-app:s3cr%2Bt%2F%3Dx+y")), &params(&[]))
                .unwrap()
                .unwrap();
        assert_eq!(p.id, "my-app");
        assert_eq!(p.secret.as_deref(), Some("s3cr+t/=x y"));
        assert!(p.via_basic);
        assert!(!format!("{p:?}").contains("s3cr"));
        // A matching body client_id is fine; an empty Basic secret is no secret.
        let p = PresentedClient::from_request(
            Some(&basic("flytectl:")),
            &params(&[("client_id", "flytectl")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.secret, None);
    }

    #[test]
    fn body_credentials() {
        let p = PresentedClient::from_request(
            None,
            &params(&[("client_id", "ci"), ("client_secret", "s")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (p.id.as_str(), p.secret.as_deref(), p.via_basic),
            ("ci", Some("s"), false)
        );
        let p = PresentedClient::from_request(
            None,
            &params(&[("client_id", "flytectl"), ("client_secret", "")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.secret, None);
        assert_eq!(
            PresentedClient::from_request(None, &params(&[("client_id", "")])),
            Ok(None)
        );
    }

    #[test]
    fn two_authentication_methods_are_rejected() {
        let e =
            PresentedClient::from_request(Some(&basic("a:b")), &params(&[("client_secret", "x")]))
                .unwrap_err();
        assert_eq!(e, ClientAuthError::TwoMethods);
        assert_eq!(e.oauth_error().code, ErrorCode::InvalidRequest);
        let e = PresentedClient::from_request(Some(&basic("a:b")), &params(&[("client_id", "c")]))
            .unwrap_err();
        assert_eq!(e, ClientAuthError::ClientIdMismatch);
    }

    #[test]
    fn garbage_basic_header_is_invalid_client() {
        for header in [
            &b"Basic !!!"[..],
            b"Basic",
            b"\xff\xfe",
            &basic("no-colon"),
            &basic(":secret"),
            &basic("id:%ff"),
        ] {
            let e = PresentedClient::from_request(Some(header), &params(&[])).unwrap_err();
            assert_eq!(e, ClientAuthError::MalformedBasic, "{header:?}");
            assert_eq!(e.oauth_error().code, ErrorCode::InvalidClient);
        }
        let e = PresentedClient::from_request(Some(b"Bearer abc"), &params(&[])).unwrap_err();
        assert_eq!(e, ClientAuthError::UnsupportedScheme);
        assert_eq!(e.oauth_error().code, ErrorCode::InvalidRequest);
    }

    fn public_client() -> Client {
        Client {
            id: "flytectl".into(),
            name: "flytectl".into(),
            secret: None,
            grant_types: vec![AUTHORIZATION_CODE.into(), REFRESH_TOKEN.into()],
            scopes: vec!["all".into(), "offline".into()],
            audience: vec![],
            redirect_uris: vec!["http://localhost:53593/callback".into()],
        }
    }

    fn presented(id: &str, secret: Option<&str>) -> PresentedClient {
        PresentedClient {
            id: id.into(),
            secret: secret.map(str::to_owned),
            via_basic: false,
        }
    }

    #[test]
    fn authentication_rules() {
        let conf = client();
        assert!(authenticate(Some(&conf), &presented("ci", Some("s"))));
        assert!(!authenticate(Some(&conf), &presented("ci", Some("x"))));
        assert!(!authenticate(Some(&conf), &presented("ci", None)));
        assert!(!authenticate(None, &presented("ci", Some("s"))));

        let public = public_client();
        assert!(authenticate(Some(&public), &presented("flytectl", None)));
        assert!(!authenticate(
            Some(&public),
            &presented("flytectl", Some("x"))
        ));
        assert!(!authenticate(Some(&public), &presented("other", None)));
        // What a public client may do once authenticated is the grants' decision.
        let err = client_credentials(&public, &ClientCredentialsRequest::default(), &[], "x")
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnauthorizedClient);
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "http://localhost:53593/callback";

    fn binding(challenge: &'static str) -> CodeBinding<'static> {
        CodeBinding {
            client_id: "flytectl",
            redirect_uri: REDIRECT,
            code_challenge: challenge,
            expires_at: 1000,
        }
    }

    #[test]
    fn authorization_code_checks() {
        let c = public_client();
        authorization_code(&c, &binding(CHALLENGE), Some(REDIRECT), Some(VERIFIER), 999).unwrap();

        let cases: Vec<(Result<(), OAuthError>, &str)> = vec![
            (
                authorization_code(
                    &client(),
                    &binding(CHALLENGE),
                    Some(REDIRECT),
                    Some(VERIFIER),
                    0,
                ),
                "allowed",
            ),
            (
                authorization_code(
                    &c,
                    &CodeBinding {
                        client_id: "flyte-cli",
                        ..binding(CHALLENGE)
                    },
                    Some(REDIRECT),
                    Some(VERIFIER),
                    0,
                ),
                "another client",
            ),
            (
                authorization_code(
                    &c,
                    &binding(CHALLENGE),
                    Some(REDIRECT),
                    Some(VERIFIER),
                    1000,
                ),
                "expired",
            ),
            (
                authorization_code(&c, &binding(CHALLENGE), None, Some(VERIFIER), 0),
                "required",
            ),
            (
                authorization_code(
                    &c,
                    &binding(CHALLENGE),
                    Some("http://localhost:53594/callback"),
                    Some(VERIFIER),
                    0,
                ),
                "does not match the one",
            ),
            (
                authorization_code(&c, &binding(CHALLENGE), Some(REDIRECT), None, 0),
                "code_verifier is required",
            ),
            (
                authorization_code(&c, &binding(CHALLENGE), Some(REDIRECT), Some("short"), 0),
                "43 to 128",
            ),
            (
                authorization_code(
                    &c,
                    &binding(CHALLENGE),
                    Some(REDIRECT),
                    Some(&"a".repeat(43)),
                    0,
                ),
                "does not match the code_challenge",
            ),
            (
                authorization_code(&c, &binding(""), Some(REDIRECT), Some(VERIFIER), 0),
                "had no code_challenge",
            ),
            (
                authorization_code(&c, &binding(""), Some(REDIRECT), None, 0),
                "public clients require",
            ),
        ];
        for (result, needle) in cases {
            let e = result.unwrap_err();
            assert!(e.description.contains(needle), "{needle}: {e}");
            let expected = if needle == "allowed" {
                ErrorCode::UnauthorizedClient
            } else {
                ErrorCode::InvalidGrant
            };
            assert_eq!(e.code, expected, "{needle}");
        }

        // A confidential client may skip PKCE.
        let mut conf = client();
        conf.id = "flytectl".into();
        conf.grant_types.push(AUTHORIZATION_CODE.into());
        authorization_code(&conf, &binding(""), Some(REDIRECT), None, 0).unwrap();
    }

    #[test]
    fn refresh_can_only_narrow() {
        let granted: Vec<String> = vec!["all".into(), "offline".into(), "openid".into()];
        for req in [None, Some(""), Some("  ")] {
            assert_eq!(refresh_scopes(&granted, req).unwrap(), granted);
        }
        assert_eq!(refresh_scopes(&granted, Some("all all")).unwrap(), ["all"]);
        assert_eq!(
            refresh_scopes(&granted, Some("openid all")).unwrap(),
            ["openid", "all"]
        );
        let e = refresh_scopes(&granted, Some("all admin")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("admin"));
    }
}
