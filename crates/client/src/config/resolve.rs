//! Precedence: a flag, else a variable, else the file's key, else the default.

use std::path::PathBuf;

use flyteauth_types::api_key;

use super::env::{Vars, strip_one_newline};
use super::file::{self, Candidate};
use super::values::{
    parse_auth_type_setting, parse_bool, parse_command, parse_duration, parse_endpoint, parse_list,
    parse_text,
};
use super::yaml::{self, FileValues, Leaf};
use super::{AuthType, ConfigError, Env, Overrides, Places, SecretOrigin, Settings};
use crate::Secret;

/// Where a value came from, to blame it when it is wrong.
enum Origin<'a> {
    Var(String),
    Key {
        file: &'a FileValues,
        key: &'static str,
        line: u64,
    },
    Flag(&'static str),
}

impl Origin<'_> {
    fn error(&self, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        match self {
            Self::Var(name) => ConfigError::BadValue {
                setting: name.clone(),
                message,
            },
            Self::Flag(flag) => ConfigError::BadValue {
                setting: (*flag).to_owned(),
                message,
            },
            Self::Key { file, key, line } => file.error(key, *line, message),
        }
    }
}

/// The variables and the loaded file, read one setting at a time.
struct Sources<'a> {
    vars: &'a Vars<'a>,
    file: Option<&'a FileValues>,
}

impl<'a> Sources<'a> {
    /// A single value from the first set variable of `names`, else the file's `key`. Empty values are unset.
    fn value<T>(
        &self,
        names: &[&str],
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<(T, Origin<'a>)>, ConfigError> {
        if let Some(found) = self.vars.first(names)? {
            let origin = Origin::Var(found.name);
            let value = parse(&found.value).map_err(|m| origin.error(m))?;
            return Ok(Some((value, origin)));
        }
        let Some((file, node)) = self.file.and_then(|f| f.get(key).map(|n| (f, n))) else {
            return Ok(None);
        };
        let origin = Origin::Key {
            file,
            key,
            line: node.line,
        };
        match &node.leaf {
            Leaf::Scalar(text) if text.trim().is_empty() => Ok(None),
            Leaf::Scalar(text) => {
                let value = parse(text).map_err(|m| origin.error(m))?;
                Ok(Some((value, origin)))
            }
            other => Err(origin.error(format!("expected a single value, found {}", other.kind()))),
        }
    }

    fn get<T>(
        &self,
        names: &[&str],
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        Ok(self.value(names, key, parse)?.map(|(value, _)| value))
    }

    /// A list: a variable parsed by `parse`, else the file's `key` as a YAML list of strings or one string.
    fn list(
        &self,
        names: &[&str],
        key: &'static str,
        parse: fn(&str) -> Result<Vec<String>, String>,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        if let Some(found) = self.vars.first(names)? {
            return parse(&found.value)
                .map(Some)
                .map_err(|m| Origin::Var(found.name).error(m));
        }
        let Some((file, node)) = self.file.and_then(|f| f.get(key).map(|n| (f, n))) else {
            return Ok(None);
        };
        let origin = Origin::Key {
            file,
            key,
            line: node.line,
        };
        match &node.leaf {
            Leaf::Scalar(text) => parse(text).map(Some).map_err(|m| origin.error(m)),
            Leaf::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.clone().ok_or_else(|| {
                        origin.error(format!(
                            "expected a list of strings, but item {} is not one",
                            i + 1
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            other => Err(origin.error(format!(
                "expected a list of strings, found {}",
                other.kind()
            ))),
        }
    }
}

/// A non-empty flag value.
fn flag(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn positive(
    parse: fn(&str) -> Result<std::time::Duration, String>,
) -> impl Fn(&str) -> Result<std::time::Duration, String> {
    move |value| {
        let duration = parse(value)?;
        if duration.is_zero() {
            return Err("must be longer than 0s".into());
        }
        Ok(duration)
    }
}

pub(super) fn discover(
    overrides: &Overrides,
    places: &Places,
    env: &dyn Env,
) -> Result<Settings, ConfigError> {
    let vars = Vars::new(env, &places.cwd, places.home.as_deref());
    let candidate = file::search(overrides, places, &vars)?;
    let loaded = match &candidate {
        Some(candidate) => {
            file::check_named(candidate)?;
            tracing::debug!(path = %candidate.path.display(), "reading the config file");
            Some(yaml::load(&candidate.path)?)
        }
        None => {
            tracing::debug!("no config file found; using variables and flags only");
            None
        }
    };
    let src = Sources {
        vars: &vars,
        file: loaded.as_ref(),
    };
    let mut s = Settings {
        config_file: candidate.map(|Candidate { path, .. }| path),
        ..Settings::default()
    };

    let key = api_key_of(overrides, &vars)?;

    s.endpoint = if let Some(endpoint) = flag(&overrides.endpoint) {
        Some(parse_endpoint(endpoint).map_err(|m| Origin::Flag("--endpoint").error(m))?)
    } else if let Some((key, origin)) = &key {
        Some(parse_endpoint(&key.host).map_err(|m| {
            origin.error(format!("the key's host cannot be used as an endpoint: {m}"))
        })?)
    } else {
        src.get(
            &["FLYTE_ADMIN_ENDPOINT", "FLYTE_PLATFORM_URL"],
            "admin.endpoint",
            parse_endpoint,
        )?
    };
    s.insecure = overrides.insecure
        || src
            .get(
                &["FLYTE_ADMIN_INSECURE", "FLYTE_PLATFORM_INSECURE"],
                "admin.insecure",
                parse_bool,
            )?
            .unwrap_or(false);
    s.insecure_skip_verify = src
        .get(
            &[
                "FLYTE_ADMIN_INSECURESKIPVERIFY",
                "FLYTE_PLATFORM_INSECURE_SKIP_VERIFY",
            ],
            "admin.insecureSkipVerify",
            parse_bool,
        )?
        .unwrap_or(false);
    s.ca_cert_file_path = src.get(
        &[
            "FLYTE_ADMIN_CACERTFILEPATH",
            "FLYTE_PLATFORM_CA_CERT_FILE_PATH",
        ],
        "admin.caCertFilePath",
        |v| parse_text(v).map(|p| vars.path(&p)),
    )?;
    s.http_proxy_url = src.get(
        &["FLYTE_ADMIN_HTTPPROXYURL", "FLYTE_PLATFORM_HTTP_PROXY_URL"],
        "admin.httpProxyURL",
        parse_text,
    )?;
    let configured_auth_type = src
        .get(
            &[
                "FLYTE_AUTH_TYPE",
                "FLYTE_ADMIN_AUTHTYPE",
                "FLYTE_CREDENTIALS_AUTH_MODE",
            ],
            "admin.authType",
            parse_auth_type_setting,
        )?
        .unwrap_or_default();

    let forces_client_secret = if let Some((key, _)) = &key {
        s.client_id = Some(key.client_id.clone());
        s.client_secret = Some(Secret::new(key.client_secret.clone()));
        s.client_secret_origin = Some(SecretOrigin::ApiKey);
        true
    } else {
        s.client_id = src.get(
            &["FLYTE_ADMIN_CLIENTID", "FLYTE_CREDENTIALS_CLIENT_ID"],
            "admin.clientId",
            parse_text,
        )?;
        client_secret(&src, &vars, &mut s)?
    };
    s.auth_type = match overrides.auth_type {
        Some(auth_type) => auth_type,
        None if forces_client_secret => AuthType::ClientSecret,
        None => configured_auth_type,
    };

    s.scopes = src
        .list(
            &["FLYTE_ADMIN_SCOPES", "FLYTE_CREDENTIALS_SCOPES"],
            "admin.scopes",
            parse_list,
        )?
        .unwrap_or_default();
    s.audience = src.get(
        &["FLYTE_ADMIN_AUDIENCE", "FLYTE_CREDENTIALS_AUDIENCE"],
        "admin.audience",
        parse_text,
    )?;
    s.use_audience_from_admin = src
        .get(
            &["FLYTE_ADMIN_USEAUDIENCEFROMADMIN"],
            "admin.useAudienceFromAdmin",
            parse_bool,
        )?
        .unwrap_or(false);
    if let Some(window) = src.get(
        &["FLYTE_ADMIN_TOKENREFRESHWINDOW"],
        "admin.tokenRefreshWindow",
        parse_duration,
    )? {
        s.token_refresh_window = window;
    }
    s.command = src
        .list(
            &[
                "FLYTE_AUTH_COMMAND",
                "FLYTE_ADMIN_COMMAND",
                "FLYTE_CREDENTIALS_COMMAND",
            ],
            "admin.command",
            parse_command,
        )?
        .unwrap_or_default();
    s.proxy_command = src
        .list(
            &[
                "FLYTE_AUTH_PROXY_COMMAND",
                "FLYTE_ADMIN_PROXYCOMMAND",
                "FLYTE_CREDENTIALS_PROXY_COMMAND",
            ],
            "admin.proxyCommand",
            parse_command,
        )?
        .unwrap_or_default();
    s.disable_keyring = src
        .get(
            &["FLYTE_ADMIN_DISABLEKEYRING"],
            "admin.disableKeyring",
            parse_bool,
        )?
        .unwrap_or(false);
    if let Some(timeout) = src.get(
        &["FLYTE_ADMIN_PKCECONFIG_TIMEOUT"],
        "admin.pkceConfig.timeout",
        positive(parse_duration),
    )? {
        s.pkce_timeout = timeout;
    }
    if let Some(timeout) = src.get(
        &["FLYTE_ADMIN_DEVICEFLOWCONFIG_TIMEOUT"],
        "admin.deviceFlowConfig.timeout",
        positive(parse_duration),
    )? {
        s.device_timeout = timeout;
    }

    s.org = match (
        flag(&overrides.org),
        key.as_ref().and_then(|(k, _)| k.organization.clone()),
    ) {
        (Some(org), _) => Some(org.to_owned()),
        (None, Some(org)) => Some(org),
        (None, None) => src.get(&["FLYTE_TASK_ORG"], "task.org", parse_text)?,
    };
    s.project = src.get(&["FLYTE_TASK_PROJECT"], "task.project", parse_text)?;
    s.domain = src.get(&["FLYTE_TASK_DOMAIN"], "task.domain", parse_text)?;
    Ok(s)
}

/// `--api-key`, else `FLYTE_API_KEY`, decoded.
fn api_key_of<'a>(
    overrides: &Overrides,
    vars: &Vars<'_>,
) -> Result<Option<(api_key::ApiKey, Origin<'a>)>, ConfigError> {
    if let Some(key) = overrides
        .api_key
        .as_ref()
        .filter(|k| !k.expose().trim().is_empty())
    {
        return Ok(Some((
            api_key::decode(key.expose())?,
            Origin::Flag("--api-key"),
        )));
    }
    match vars.get("FLYTE_API_KEY")? {
        Some(found) => {
            let secret = Secret::new(found.value);
            Ok(Some((
                api_key::decode(secret.expose())?,
                Origin::Var(found.name),
            )))
        }
        None => Ok(None),
    }
}

/// Fills the client secret: the variable `clientSecretEnvVar` names, else the file `clientSecretLocation` names,
/// else `FLYTE_CREDENTIALS_CLIENT_SECRET`. Returns whether the configuration forces `ClientSecret`: an explicit
/// location, or a named variable that is set, as both SDKs decide.
fn client_secret(
    src: &Sources<'_>,
    vars: &Vars<'_>,
    s: &mut Settings,
) -> Result<bool, ConfigError> {
    let env_var = src.get(
        &[
            "FLYTE_ADMIN_CLIENTSECRETENVVAR",
            "FLYTE_CREDENTIALS_CLIENT_SECRET_ENV_VAR",
        ],
        "admin.clientSecretEnvVar",
        parse_text,
    )?;
    if let Some(name) = env_var
        && let Some(found) = vars.get(&name)?
    {
        s.client_secret = Some(Secret::new(found.value));
        s.client_secret_origin = Some(SecretOrigin::EnvVar(name));
        return Ok(true);
    }
    let location = src.value(
        &[
            "FLYTE_ADMIN_CLIENTSECRETLOCATION",
            "FLYTE_CREDENTIALS_CLIENT_SECRET_LOCATION",
        ],
        "admin.clientSecretLocation",
        |v| parse_text(v).map(|p| vars.path(&p)),
    )?;
    if let Some((path, origin)) = location {
        let secret = read_secret_file(&path).map_err(|m| origin.error(m))?;
        s.client_secret = Some(secret);
        s.client_secret_origin = Some(SecretOrigin::File(path));
        return Ok(true);
    }
    if let Some(found) = vars.get("FLYTE_CREDENTIALS_CLIENT_SECRET")? {
        s.client_secret = Some(Secret::new(found.value));
        s.client_secret_origin = Some(SecretOrigin::Inline);
    }
    Ok(false)
}

fn read_secret_file(path: &PathBuf) -> Result<Secret, String> {
    let content = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the client secret file {}: {e}", path.display()))?;
    let secret = Secret::new(strip_one_newline(content));
    if secret.is_empty() {
        return Err(format!(
            "the client secret file {} is empty",
            path.display()
        ));
    }
    Ok(secret)
}
