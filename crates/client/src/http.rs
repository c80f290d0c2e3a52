//! The HTTP client every request goes through: rustls with the aws-lc provider, the system's roots plus
//! `SSL_CERT_FILE` and `admin.caCertFilePath`, `insecureSkipVerify`, `admin.httpProxyURL`, no redirects followed,
//! and the `proxy-authorization` header of `admin.proxyCommand`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, PROXY_AUTHORIZATION};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::{ConfigError, Settings};
use crate::{ClientError, Secret};

/// How long one request may take in total.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `user-agent` of every request.
pub fn user_agent() -> String {
    format!("flyte-rs/{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the client for `settings`. `proxy_authorization` is the already-run proxy command's token, sent as
/// `proxy-authorization: Bearer …` on every request.
pub fn build_client(
    settings: &Settings,
    proxy_authorization: Option<&Secret>,
) -> Result<reqwest::Client, ClientError> {
    let tls = tls_config(settings)?;
    let mut headers = HeaderMap::new();
    if let Some(token) = proxy_authorization {
        headers.insert(PROXY_AUTHORIZATION, bearer(token)?);
    }
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(user_agent())
        .default_headers(headers);
    if let Some(proxy) = settings.http_proxy_url.as_deref().filter(|p| !p.is_empty()) {
        let proxy = reqwest::Proxy::all(proxy).map_err(|e| {
            ClientError::Config(ConfigError::BadValue {
                setting: "admin.httpProxyURL".into(),
                message: e.to_string(),
            })
        })?;
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| {
        ClientError::Unsupported(format!(
            "cannot set up the HTTP client: {}",
            error_chain(&e)
        ))
    })
}

/// `Bearer <token>` as a sensitive header value (hidden from hyper's debug output).
pub(crate) fn bearer(token: &Secret) -> Result<HeaderValue, ClientError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        ClientError::Unsupported(
            "a token holds characters that cannot go into an HTTP header".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Turns a transport error into [`ClientError::Unreachable`] naming `url` (without its query).
pub fn unreachable(url: &url::Url, error: &reqwest::Error) -> ClientError {
    let reason = if error.is_timeout() {
        format!("timed out ({})", error_chain(error))
    } else {
        error_chain(error)
    };
    ClientError::Unreachable {
        url: without_query(url),
        reason,
    }
}

/// `url` without query string and fragment, for messages and logs (a query may carry a code).
pub(crate) fn without_query(url: &url::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The explanations of an error and its sources, without reqwest's own "for url (…)" (which keeps the query).
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        // The top-level message names the kind (builder, request, body, decode) and possibly the URL.
        let text = error.to_string();
        return match text.find(" for url (") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
    }
    parts.join(": ")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_config(settings: &Settings) -> Result<rustls::ClientConfig, ClientError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Unsupported(format!("cannot set up TLS: {e}")))?;
    let mut config = if settings.insecure_skip_verify {
        tracing::warn!("insecureSkipVerify is set: the server's TLS certificate is not checked");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(settings.ca_cert_file_path.as_deref())?)
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set) plus the PEM bundle of `caCertFilePath`.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, ClientError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "some system certificates could not be loaded");
    }
    let (added, ignored) = store.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    if let Some(path) = ca_file {
        let file_error = |reason: String| ClientError::File {
            action: "read",
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(format!("not a PEM certificate bundle ({e})")))?;
        if certs.is_empty() {
            return Err(file_error("no PEM certificate in the file".into()));
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| file_error(format!("unusable certificate ({e})")))?;
        }
    }
    Ok(store)
}

/// `insecureSkipVerify`: any certificate chain is accepted, but the handshake signatures are still checked so
/// the peer at least holds the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let settings = Settings {
            ca_cert_file_path: Some(path.clone()),
            ..Settings::default()
        };
        let err = build_client(&settings, None).unwrap_err();
        assert!(matches!(err, ClientError::File { .. }), "{err}");
        let missing = Settings {
            ca_cert_file_path: Some(dir.path().join("missing.pem")),
            ..Settings::default()
        };
        assert!(matches!(
            build_client(&missing, None).unwrap_err(),
            ClientError::File { .. }
        ));
    }

    #[test]
    fn builds_with_defaults_proxy_and_skip_verify() {
        let settings = Settings {
            insecure_skip_verify: true,
            http_proxy_url: Some("http://127.0.0.1:3128".into()),
            ..Settings::default()
        };
        build_client(&settings, Some(&Secret::new("proxy-token"))).unwrap();
        let bad_proxy = Settings {
            http_proxy_url: Some("::not a url".into()),
            ..Settings::default()
        };
        assert!(matches!(
            build_client(&bad_proxy, None).unwrap_err(),
            ClientError::Config(_)
        ));
    }

    #[test]
    fn bearer_is_sensitive() {
        let value = bearer(&Secret::new("abc")).unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Bearer abc");
        assert!(bearer(&Secret::new("a\nb")).is_err());
    }

    #[test]
    fn urls_in_messages_lose_their_query() {
        let url = url::Url::parse("https://h.example/cb?code=secret#x").unwrap();
        assert_eq!(without_query(&url), "https://h.example/cb");
    }
}
