//! The token endpoint (RFC 6749) and the device authorization endpoint (RFC 8628), as a client calls them.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, HeaderValue};
use serde::Deserialize;

use crate::{ClientError, Secret};

/// The grant type of device polling (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The poll interval when the server names none (RFC 8628 §3.2).
pub const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);

/// Tokens held by the client, with when the access token expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The access token.
    pub access_token: Secret,
    /// The refresh token, if any.
    pub refresh_token: Option<Secret>,
    /// When the access token expires: from `expires_in` when the server answered, else from the JWT's `exp`
    /// (read, not verified: it only schedules the refresh); `None` when neither is known.
    pub expires_at: Option<SystemTime>,
}

impl Tokens {
    /// Tokens from a cache entry: the expiry read from the access token's `exp`, if it is a JWT.
    pub fn from_cached(access_token: Secret, refresh_token: Option<Secret>) -> Self {
        let expires_at = jwt_expiry(&access_token);
        Self {
            access_token,
            refresh_token,
            expires_at,
        }
    }

    /// Whether the access token is missing, expired, or expires within `window` of `now`.
    pub fn needs_refresh(&self, window: Duration, now: SystemTime) -> bool {
        if self.access_token.is_empty() {
            return true;
        }
        match self.expires_at {
            Some(at) => at <= now + window,
            None => false,
        }
    }
}

/// The `exp` of a JWT, read without verifying anything; `None` for anything else.
pub fn jwt_expiry(token: &Secret) -> Option<SystemTime> {
    let exp = jwt_claims(token)?.get("exp")?.clone();
    let seconds = match exp {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))?,
        _ => return None,
    };
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// The payload of a JWT (a JSON object), read without verifying anything; `None` for anything else.
pub fn jwt_claims(token: &Secret) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.expose().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// `Basic base64(form(client_id) ":" form(secret))` (RFC 6749 §2.3.1).
pub fn basic_authorization(client_id: &str, client_secret: &Secret) -> Secret {
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = zeroize::Zeroizing::new(format!(
        "{}:{}",
        form(client_id),
        form(client_secret.expose())
    ));
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ))
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

/// An error answer (RFC 6749 §5.2).
#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    error_description: Option<String>,
}

/// The device authorization answer (RFC 8628 §3.2).
#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: Option<String>,
    user_code: Option<String>,
    verification_uri: Option<String>,
    // Some servers (Google) spell it this way.
    verification_url: Option<String>,
    verification_uri_complete: Option<String>,
    expires_in: Option<serde_json::Value>,
    interval: Option<serde_json::Value>,
}

/// A number of seconds sent as a JSON number or a string of digits (both are seen in the wild).
fn seconds(value: Option<&serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// What an endpoint answered: the status and the body.
struct Answer {
    status: u16,
    body: bytes::Bytes,
}

/// The OAuth error of a non-2xx answer: `error` and `error_description` from its JSON, else `http <status>`.
pub fn oauth_error(endpoint: &url::Url, status: u16, body: &[u8]) -> ClientError {
    let parsed = serde_json::from_slice::<ErrorAnswer>(body).ok();
    let (error, description) = match parsed {
        Some(ErrorAnswer {
            error: Some(error),
            error_description,
        }) if !error.trim().is_empty() => (
            error.trim().to_owned(),
            error_description.filter(|d| !d.trim().is_empty()),
        ),
        _ => (format!("http {status}"), None),
    };
    ClientError::OAuth {
        endpoint: crate::http::without_query(endpoint),
        error,
        description,
    }
}

/// Tokens from a successful answer of `endpoint`, the expiry counted from `now`.
fn tokens_from(endpoint: &url::Url, body: &[u8], now: SystemTime) -> Result<Tokens, ClientError> {
    let protocol = |reason: &str| ClientError::Protocol {
        url: crate::http::without_query(endpoint),
        reason: reason.to_owned(),
    };
    let answer: TokenAnswer = serde_json::from_slice(body)
        .map_err(|_| protocol("the token answer is not the JSON of RFC 6749 §5.1"))?;
    let access_token = Secret::new(
        answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| protocol("the token answer has no access_token"))?,
    );
    let refresh_token = answer
        .refresh_token
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let expires_at = match seconds(answer.expires_in.as_ref()) {
        Some(s) => now.checked_add(Duration::from_secs(s)),
        None => jwt_expiry(&access_token),
    };
    Ok(Tokens {
        access_token,
        refresh_token,
        expires_at,
    })
}

/// The answer of the device authorization endpoint (RFC 8628 §3.2).
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    /// `device_code` (kept secret: it is a bearer credential until approved).
    pub device_code: Secret,
    /// `user_code`.
    pub user_code: String,
    /// `verification_uri`.
    pub verification_uri: String,
    /// `verification_uri_complete`, or `verification_uri` with `user_code` added when the server sent none.
    pub verification_uri_complete: String,
    /// `expires_in`.
    pub expires_in: Duration,
    /// `interval` (5 s when absent).
    pub interval: Duration,
}

/// One poll of the token endpoint with a device code.
#[derive(Debug)]
pub enum DevicePoll {
    /// `authorization_pending`: ask again after the interval.
    Pending,
    /// `slow_down`: add 5 s to the interval, then ask again.
    SlowDown,
    /// Approved.
    Done(Tokens),
}

/// A client of one token endpoint.
#[derive(Debug, Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    token_endpoint: url::Url,
}

impl TokenClient {
    /// Requests go to `token_endpoint`.
    pub fn new(http: reqwest::Client, token_endpoint: url::Url) -> Self {
        Self {
            http,
            token_endpoint,
        }
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &url::Url {
        &self.token_endpoint
    }

    /// `grant_type=client_credentials`, authenticated with HTTP Basic (both parts form-encoded, RFC 6749 §2.3.1).
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: &Secret,
        scopes: &[String],
        audience: Option<&str>,
    ) -> Result<Tokens, ClientError> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        push_scope_and_audience(&mut form, scopes, audience);
        let basic = basic_authorization(client_id, client_secret);
        let answer = self
            .post(
                &self.token_endpoint,
                &form,
                Some(&basic),
                "client_credentials",
            )
            .await?;
        self.tokens(answer)
    }

    /// `grant_type=refresh_token` for the public client `client_id`. A refused refresh token (`invalid_grant`)
    /// is [`ClientError::OAuth`] with `error == "invalid_grant"`.
    pub async fn refresh(
        &self,
        client_id: &str,
        refresh_token: &Secret,
    ) -> Result<Tokens, ClientError> {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose().to_owned()),
            ("client_id", client_id.to_owned()),
        ];
        let answer = self
            .post(&self.token_endpoint, &form, None, "refresh_token")
            .await?;
        self.tokens(answer)
    }

    /// `grant_type=authorization_code` with the PKCE verifier, for the public client `client_id`.
    pub async fn exchange_code(
        &self,
        client_id: &str,
        code: &Secret,
        redirect_uri: &str,
        code_verifier: &Secret,
    ) -> Result<Tokens, ClientError> {
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.expose().to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("client_id", client_id.to_owned()),
            ("code_verifier", code_verifier.expose().to_owned()),
        ];
        let answer = self
            .post(&self.token_endpoint, &form, None, "authorization_code")
            .await?;
        self.tokens(answer)
    }

    /// Starts a device authorization at `device_endpoint`.
    pub async fn device_authorize(
        &self,
        device_endpoint: &url::Url,
        client_id: &str,
        scopes: &[String],
        audience: Option<&str>,
    ) -> Result<DeviceAuthorization, ClientError> {
        let mut form = vec![("client_id", client_id.to_owned())];
        push_scope_and_audience(&mut form, scopes, audience);
        let answer = self
            .post(device_endpoint, &form, None, "device_authorization")
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(oauth_error(device_endpoint, answer.status, &answer.body));
        }
        parse_device_authorization(device_endpoint, &answer.body)
    }

    /// One poll with `device_code`. `expired_token` is [`ClientError::DeviceCodeExpired`], `access_denied`
    /// [`ClientError::LoginDenied`].
    pub async fn device_poll(
        &self,
        client_id: &str,
        device_code: &Secret,
    ) -> Result<DevicePoll, ClientError> {
        let form = vec![
            ("grant_type", DEVICE_CODE_GRANT.to_owned()),
            ("device_code", device_code.expose().to_owned()),
            ("client_id", client_id.to_owned()),
        ];
        let answer = self
            .post(&self.token_endpoint, &form, None, "device_code")
            .await?;
        if (200..300).contains(&answer.status) {
            return tokens_from(&self.token_endpoint, &answer.body, SystemTime::now())
                .map(DevicePoll::Done);
        }
        match oauth_error(&self.token_endpoint, answer.status, &answer.body) {
            ClientError::OAuth { error, .. } if error == "authorization_pending" => {
                Ok(DevicePoll::Pending)
            }
            ClientError::OAuth { error, .. } if error == "slow_down" => Ok(DevicePoll::SlowDown),
            ClientError::OAuth { error, .. } if error == "expired_token" => {
                Err(ClientError::DeviceCodeExpired)
            }
            ClientError::OAuth {
                error, description, ..
            } if error == "access_denied" => Err(ClientError::LoginDenied { error, description }),
            // A proxy or an overloaded server in between: the code is still good, the caller polls again.
            _ if answer.status == 429 || answer.status >= 500 => {
                tracing::debug!(
                    status = answer.status,
                    "transient answer while polling the device code"
                );
                Ok(DevicePoll::Pending)
            }
            other => Err(other),
        }
    }

    /// Revokes `token` (RFC 7009) at `revocation_endpoint`; best effort, for `flyte logout`.
    pub async fn revoke(
        &self,
        revocation_endpoint: &url::Url,
        client_id: &str,
        token: &Secret,
    ) -> Result<(), ClientError> {
        let form = vec![
            ("token", token.expose().to_owned()),
            ("token_type_hint", "refresh_token".to_owned()),
            ("client_id", client_id.to_owned()),
        ];
        let answer = self
            .post(revocation_endpoint, &form, None, "revoke")
            .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(oauth_error(
                revocation_endpoint,
                answer.status,
                &answer.body,
            ))
        }
    }

    fn tokens(&self, answer: Answer) -> Result<Tokens, ClientError> {
        if !(200..300).contains(&answer.status) {
            return Err(oauth_error(
                &self.token_endpoint,
                answer.status,
                &answer.body,
            ));
        }
        tokens_from(&self.token_endpoint, &answer.body, SystemTime::now())
    }

    /// A form POST; the form is zeroed once sent since it holds codes, secrets or tokens.
    async fn post(
        &self,
        url: &url::Url,
        form: &[(&str, String)],
        authorization: Option<&Secret>,
        what: &str,
    ) -> Result<Answer, ClientError> {
        let body = zeroize::Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                .finish(),
        );
        let mut request = self
            .http
            .post(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(CACHE_CONTROL, HeaderValue::from_static("no-cache"))
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(body.as_bytes().to_vec());
        if let Some(authorization) = authorization {
            let mut value = HeaderValue::from_str(authorization.expose()).map_err(|_| {
                ClientError::Unsupported(
                    "the client id or secret cannot go into an HTTP header".into(),
                )
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| crate::http::unreachable(url, &e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| crate::http::unreachable(url, &e))?;
        tracing::debug!(url = %crate::http::without_query(url), grant = what, status, "token endpoint answered");
        Ok(Answer { status, body })
    }
}

fn push_scope_and_audience(
    form: &mut Vec<(&str, String)>,
    scopes: &[String],
    audience: Option<&str>,
) {
    let scope = scopes
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !scope.is_empty() {
        form.push(("scope", scope));
    }
    if let Some(audience) = audience.filter(|a| !a.is_empty()) {
        form.push(("audience", audience.to_owned()));
    }
}

fn parse_device_authorization(
    endpoint: &url::Url,
    body: &[u8],
) -> Result<DeviceAuthorization, ClientError> {
    let protocol = |reason: String| ClientError::Protocol {
        url: crate::http::without_query(endpoint),
        reason,
    };
    let answer: DeviceAnswer = serde_json::from_slice(body)
        .map_err(|_| protocol("the answer is not the JSON of RFC 8628 §3.2".into()))?;
    let missing = |field: &str| protocol(format!("the device authorization answer has no {field}"));
    let device_code = answer
        .device_code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| missing("device_code"))?;
    let user_code = answer
        .user_code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| missing("user_code"))?;
    let verification_uri = answer
        .verification_uri
        .or(answer.verification_url)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("verification_uri"))?;
    let expires_in = seconds(answer.expires_in.as_ref()).ok_or_else(|| missing("expires_in"))?;
    let interval = seconds(answer.interval.as_ref())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_DEVICE_INTERVAL);
    let verification_uri_complete = match answer.verification_uri_complete.filter(|u| !u.is_empty())
    {
        Some(complete) => complete,
        None => with_user_code(&verification_uri, &user_code),
    };
    Ok(DeviceAuthorization {
        device_code: Secret::new(device_code),
        user_code,
        verification_uri,
        verification_uri_complete,
        expires_in: Duration::from_secs(expires_in),
        interval,
    })
}

/// `verification_uri` with `user_code` added to its query.
fn with_user_code(verification_uri: &str, user_code: &str) -> String {
    match url::Url::parse(verification_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("user_code", user_code);
            url.to_string()
        }
        Err(_) => {
            let separator = if verification_uri.contains('?') {
                '&'
            } else {
                '?'
            };
            let code: String = url::form_urlencoded::byte_serialize(user_code.as_bytes()).collect();
            format!("{verification_uri}{separator}user_code={code}")
        }
    }
}

#[cfg(test)]
mod tests;
