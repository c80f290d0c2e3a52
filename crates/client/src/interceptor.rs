//! Calling the control plane over gRPC (tonic) with a session's token: an interceptor that adds it, renews it
//! in the background before it expires, and a helper that renews and retries once after `UNAUTHENTICATED`.
//!
//! With [`TrustedIdentityClaims`] enabled (the seed documents' `connection.trustedIdentityClaims`), the
//! interceptor also sends the service's own identity from its token, `x-user-subject` and
//! `x-user-claim-identitytype`, for downstream services that trust the caller.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use crate::session::Session;
use crate::token::{Tokens, jwt_claims};
use crate::{ClientError, Secret};

/// The shortest pause of the background renewal, so a token whose lifetime is shorter than the refresh window
/// does not make it spin.
const MIN_RENEW_PAUSE: Duration = if cfg!(test) {
    Duration::from_millis(50)
} else {
    Duration::from_secs(10)
};
/// The pause before trying again after a failed background renewal.
const RETRY_PAUSE: Duration = Duration::from_secs(30);

/// `connection.trustedIdentityClaims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIdentityClaims {
    /// `enabled`.
    pub enabled: bool,
    /// `externalIdentityClaim`: the claim sent as `x-user-subject` (default `sub`).
    pub external_identity_claim: String,
    /// `externalIdentityTypeClaim`: the claim sent as `x-user-claim-identitytype` (default `identity_type`).
    pub external_identity_type_claim: String,
}

impl Default for TrustedIdentityClaims {
    fn default() -> Self {
        Self {
            enabled: false,
            external_identity_claim: "sub".to_owned(),
            external_identity_type_claim: "identity_type".to_owned(),
        }
    }
}

/// The metadata every call carries, rebuilt when the token changes.
#[derive(Clone)]
struct Current {
    token: Secret,
    expires_at: Option<SystemTime>,
    headers: Vec<(&'static str, AsciiMetadataValue)>,
}

struct Shared {
    session: Arc<Session>,
    trusted: TrustedIdentityClaims,
    current: RwLock<Current>,
    renewed: tokio::sync::Notify,
}

impl Shared {
    fn current(&self) -> Current {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, tokens: &Tokens) -> Result<(), ClientError> {
        let current = build_current(&self.session, &self.trusted, tokens)?;
        match self.current.write() {
            Ok(mut slot) => *slot = current,
            Err(poisoned) => *poisoned.into_inner() = current,
        }
        self.renewed.notify_one();
        Ok(())
    }
}

/// Stops the background renewal when the last clone of the interceptor is dropped.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A tonic interceptor with the session's current token.
#[derive(Clone)]
pub struct AuthInterceptor {
    shared: Arc<Shared>,
    _renewal: Arc<Renewal>,
}

impl std::fmt::Debug for AuthInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthInterceptor").finish_non_exhaustive()
    }
}

impl AuthInterceptor {
    /// Gets a first token and starts renewing it in the background before it expires.
    pub async fn new(
        session: Arc<Session>,
        trusted: TrustedIdentityClaims,
    ) -> Result<Self, ClientError> {
        let tokens = session.valid_tokens().await?;
        let current = build_current(&session, &trusted, &tokens)?;
        let shared = Arc::new(Shared {
            session,
            trusted,
            current: RwLock::new(current),
            renewed: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(renew_in_background(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            _renewal: Arc::new(Renewal(task)),
        })
    }

    /// Renews the token after the server rejected it.
    pub async fn renew(&self) -> Result<(), ClientError> {
        let rejected = self.shared.current().token;
        let tokens = self.shared.session.renew_tokens(&rejected).await?;
        self.shared.set(&tokens)
    }

    /// Runs `call`; after `UNAUTHENTICATED` renews the token and runs it once more.
    pub async fn call_with_retry<T, F, Fut>(&self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        match call().await {
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                tracing::debug!("the server rejected the token; renewing it once");
                if let Err(error) = self.renew().await {
                    return Err(status_of(&error));
                }
                call().await
            }
            other => other,
        }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let current = self.shared.current();
        insert_headers(request.metadata_mut(), &current.headers);
        Ok(request)
    }
}

fn insert_headers(metadata: &mut MetadataMap, headers: &[(&'static str, AsciiMetadataValue)]) {
    for (name, value) in headers {
        metadata.insert(*name, value.clone());
    }
}

/// The status a caller sees when the token could not be renewed.
fn status_of(error: &ClientError) -> tonic::Status {
    let code = match error {
        ClientError::Rpc(e) => e.code.into(),
        ClientError::Unreachable { .. } => tonic::Code::Unavailable,
        _ => tonic::Code::Unauthenticated,
    };
    tonic::Status::new(code, error.to_string())
}

async fn renew_in_background(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let current = strong.current();
        let window = strong.session.refresh_window();
        let pause = match current.expires_at {
            Some(at) => at
                .checked_sub(window)
                .and_then(|due| due.duration_since(SystemTime::now()).ok())
                .unwrap_or_default()
                .max(MIN_RENEW_PAUSE),
            // Without a known expiry only a rejection renews the token (`renew`, `call_with_retry`).
            None => Duration::MAX,
        };
        let renewed = strong.clone();
        drop(strong);
        tokio::select! {
            () = sleep(pause) => {}
            () = renewed.renewed.notified() => continue,
        }
        drop(renewed);
        let Some(strong) = shared.upgrade() else {
            return;
        };
        match strong.session.valid_tokens().await {
            Ok(tokens) => {
                if let Err(error) = strong.set(&tokens) {
                    tracing::warn!(%error, "the renewed token cannot be sent");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "renewing the token in the background failed; retrying");
                drop(strong);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

async fn sleep(pause: Duration) {
    if pause == Duration::MAX {
        std::future::pending::<()>().await;
    } else {
        tokio::time::sleep(pause).await;
    }
}

fn build_current(
    session: &Session,
    trusted: &TrustedIdentityClaims,
    tokens: &Tokens,
) -> Result<Current, ClientError> {
    let header_error =
        |what: &str| ClientError::Unsupported(format!("the {what} cannot go into a gRPC header"));
    let mut headers = Vec::new();
    let mut authorization =
        AsciiMetadataValue::try_from(format!("Bearer {}", tokens.access_token.expose()))
            .map_err(|_| header_error("token"))?;
    authorization.set_sensitive(true);
    headers.push(("authorization", authorization));
    if let Some(proxy) = session.proxy_authorization() {
        let mut value = AsciiMetadataValue::try_from(format!("Bearer {}", proxy.expose()))
            .map_err(|_| header_error("proxy token"))?;
        value.set_sensitive(true);
        headers.push(("proxy-authorization", value));
    }
    if trusted.enabled {
        for (name, value) in identity_headers(trusted, &tokens.access_token) {
            let value =
                AsciiMetadataValue::try_from(value).map_err(|_| header_error("identity"))?;
            headers.push((name, value));
        }
    }
    Ok(Current {
        token: tokens.access_token.clone(),
        expires_at: tokens.expires_at,
        headers,
    })
}

/// `x-user-subject` and `x-user-claim-identitytype` from the token's claims, written as the flyteauth server
/// writes them: the subject as it is when it is a plain header value, else as a JSON string; the identity type
/// always as a JSON string (with the quotes). A claim the token lacks is left out.
pub fn identity_headers(
    trusted: &TrustedIdentityClaims,
    token: &Secret,
) -> Vec<(&'static str, String)> {
    let Some(claims) = jwt_claims(token) else {
        return Vec::new();
    };
    let text = |claim: &str| match claims.get(claim)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut headers = Vec::new();
    if let Some(subject) = text(&trusted.external_identity_claim) {
        let subject = if is_plain_header_value(&subject) {
            subject
        } else {
            ascii_json_string(&subject)
        };
        headers.push(("x-user-subject", subject));
    }
    if let Some(kind) = text(&trusted.external_identity_type_claim) {
        headers.push(("x-user-claim-identitytype", ascii_json_string(&kind)));
    }
    headers
}

fn is_plain_header_value(value: &str) -> bool {
    value.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

/// A JSON string of ASCII only: quotes, backslashes and line breaks escaped, everything beyond `~` as `\uXXXX`.
fn ascii_json_string(value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
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
    out
}

#[cfg(test)]
mod tests;
