//! `flyte create config`: the YAML a new config file holds.

use std::collections::BTreeMap;

use serde::Serialize;

use super::values::{is_loopback, org_from_host, parse_endpoint};
use super::{AuthType, ConfigError};

/// What `flyte create config` was asked to write.
#[derive(Debug, Clone, Default)]
pub struct NewConfig {
    /// `--endpoint` (any form [`super::Endpoint::parse`] accepts).
    pub endpoint: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--auth-type`.
    pub auth_type: Option<AuthType>,
    /// `--org`; else the first label of an endpoint host with three or more labels, as the `flyte` CLI does.
    pub org: Option<String>,
    /// `-p/--project`.
    pub project: Option<String>,
    /// `-d/--domain`.
    pub domain: Option<String>,
    /// `--client-id`.
    pub client_id: Option<String>,
    /// `--client-secret-location`.
    pub client_secret_location: Option<String>,
    /// `--client-secret-env-var`.
    pub client_secret_env_var: Option<String>,
    /// `--image-builder` (`local` default, `remote` for hosted endpoints, as the `flyte` CLI decides).
    pub image_builder: Option<String>,
    /// `--registry`.
    pub registry: Option<String>,
    /// `--devbox`: `localhost:30080`, insecure, project `flytesnacks`, domain `development`, builder `local`.
    pub devbox: bool,
}

const DEVBOX_ENDPOINT: &str = "localhost:30080";
const DEVBOX_PROJECT: &str = "flytesnacks";
const DEVBOX_DOMAIN: &str = "development";
const BUILDERS: [&str; 3] = ["local", "local-podman", "remote"];

#[derive(Serialize)]
#[serde(untagged)]
enum Entry {
    Flag(bool),
    Text(String),
}

fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn bad(flag: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        setting: flag.to_owned(),
        message: message.into(),
    }
}

/// The YAML text for `config`, keys sorted as the `flyte` CLI writes them.
pub fn render_new_config(config: &NewConfig) -> Result<String, ConfigError> {
    let mut endpoint = given(&config.endpoint);
    let mut insecure = config.insecure;
    let mut project = given(&config.project);
    let mut domain = given(&config.domain);
    if config.devbox {
        if endpoint.is_some() {
            return Err(bad(
                "--devbox",
                format!("already implies --endpoint {DEVBOX_ENDPOINT}; pass one or the other"),
            ));
        }
        endpoint = Some(DEVBOX_ENDPOINT.into());
        insecure = true;
        project = project.or_else(|| Some(DEVBOX_PROJECT.into()));
        domain = domain.or_else(|| Some(DEVBOX_DOMAIN.into()));
    }
    let endpoint = endpoint
        .map(|e| parse_endpoint(&e).map_err(|m| bad("--endpoint", m)))
        .transpose()?;

    let mut admin = BTreeMap::new();
    if let Some(endpoint) = &endpoint {
        admin.insert("endpoint", Entry::Text(endpoint.to_config_string()));
    }
    if insecure {
        admin.insert("insecure", Entry::Flag(true));
    }
    if let Some(auth_type) = config.auth_type {
        admin.insert("authType", Entry::Text(auth_type.as_config_str().into()));
    }
    for (key, value) in [
        ("clientId", &config.client_id),
        ("clientSecretLocation", &config.client_secret_location),
        ("clientSecretEnvVar", &config.client_secret_env_var),
    ] {
        if let Some(value) = given(value) {
            admin.insert(key, Entry::Text(value));
        }
    }

    let derived_org = endpoint.as_ref().and_then(|e| org_from_host(&e.authority));
    let mut task = BTreeMap::new();
    for (key, value) in [
        ("org", given(&config.org).or_else(|| derived_org.clone())),
        ("project", project),
        ("domain", domain),
    ] {
        if let Some(value) = value {
            task.insert(key, Entry::Text(value));
        }
    }

    if admin.is_empty() && task.is_empty() {
        return Err(ConfigError::Missing(
            "a config file needs at least one of --endpoint, --devbox, --org, --project or --domain".into(),
        ));
    }

    let builder = match given(&config.image_builder) {
        Some(builder) if BUILDERS.contains(&builder.as_str()) => builder,
        Some(builder) => {
            return Err(bad(
                "--image-builder",
                format!(
                    "unknown image builder {builder:?}: expected local, local-podman or remote"
                ),
            ));
        }
        // A hosted control plane (a name whose first label is the organization) builds images itself; a
        // devbox, a loopback address, a plaintext or a private endpoint builds them here.
        None => {
            let hosted = !config.devbox
                && !insecure
                && derived_org.is_some()
                && !endpoint.as_ref().is_some_and(|e| is_loopback(&e.authority));
            if hosted { "remote" } else { "local" }.to_owned()
        }
    };
    let mut image = BTreeMap::new();
    image.insert("builder", Entry::Text(builder));
    if let Some(registry) = given(&config.registry) {
        image.insert("registry", Entry::Text(registry));
    }

    let mut document = BTreeMap::new();
    for (section, entries) in [("admin", admin), ("image", image), ("task", task)] {
        if !entries.is_empty() {
            document.insert(section, entries);
        }
    }
    serde_saphyr::to_string(&document)
        .map_err(|e| ConfigError::Missing(format!("cannot write the config: {e}")))
}
