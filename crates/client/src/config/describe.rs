//! `flyte get config`: the settings in force, secrets shown only as where they came from.

use serde_json::{Value, json};

use super::values::format_duration;
use super::{SecretOrigin, Settings};

pub(super) fn describe(s: &Settings) -> Value {
    let client_secret = match (&s.client_secret, &s.client_secret_origin) {
        (None, _) => Value::Null,
        (Some(_), Some(origin)) => Value::String(origin_text(origin)),
        (Some(_), None) => Value::String("set".into()),
    };
    json!({
        "endpoint": s.endpoint.as_ref().map(|e| e.to_config_string()),
        "base_url": s.endpoint.as_ref().map(|e| e.base_url(s.insecure).to_string()),
        "insecure": s.insecure,
        "insecure_skip_verify": s.insecure_skip_verify,
        "ca_cert_file_path": s.ca_cert_file_path.as_ref().map(|p| p.display().to_string()),
        "http_proxy_url": s.http_proxy_url.as_deref().map(without_password),
        "auth_type": s.auth_type.as_config_str(),
        "client_id": s.client_id,
        "client_secret": client_secret,
        "scopes": s.scopes,
        "audience": s.audience,
        "use_audience_from_admin": s.use_audience_from_admin,
        "token_refresh_window": format_duration(s.token_refresh_window),
        "command": s.command,
        "proxy_command": s.proxy_command,
        "disable_keyring": s.disable_keyring,
        "pkce_timeout": format_duration(s.pkce_timeout),
        "device_timeout": format_duration(s.device_timeout),
        "org": s.org,
        "project": s.project,
        "domain": s.domain,
    })
}

fn origin_text(origin: &SecretOrigin) -> String {
    match origin {
        SecretOrigin::File(path) => format!("from the file {}", path.display()),
        SecretOrigin::EnvVar(name) => format!("from ${name}"),
        SecretOrigin::Inline => "from $FLYTE_CREDENTIALS_CLIENT_SECRET".into(),
        SecretOrigin::ApiKey => "from the API key".into(),
    }
}

/// A proxy URL may carry `user:password@`; the password is a secret too.
fn without_password(proxy: &str) -> String {
    match url::Url::parse(proxy) {
        Ok(mut url) if url.password().is_some() => {
            // Only fails for URLs that cannot carry a password, and this one has one.
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        Ok(_) => proxy.to_owned(),
        Err(_) => match proxy.rsplit_once('@') {
            Some((_, host)) => format!("[redacted]@{host}"),
            None => proxy.to_owned(),
        },
    }
}
