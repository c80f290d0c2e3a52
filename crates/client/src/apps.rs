//! API keys: `cloudidl.identity.AppsService` over Connect, as `flyte create|get|delete api-key` use it.

use flyteauth_proto::cloudidl::common::ListRequest;
use flyteauth_proto::cloudidl::identity::{
    App, ConsentMethod, CreateAppRequest, CreateAppResponse, DeleteAppRequest, DeleteAppResponse,
    GetAppRequest, GetAppResponse, GrantTypes, ListAppsRequest, ListAppsResponse, ResponseTypes,
    TokenEndpointAuthMethod,
};

use crate::session::Session;
use crate::{ClientError, Secret};

const CREATE: &str = "cloudidl.identity.AppsService/Create";
const GET: &str = "cloudidl.identity.AppsService/Get";
const LIST: &str = "cloudidl.identity.AppsService/List";
const DELETE: &str = "cloudidl.identity.AppsService/Delete";

/// The redirect URI the `flyte` CLI registers for every app it creates.
const APP_REDIRECT_URI: &str = "http://localhost:8080/authorization-code/callback";
/// The largest page the `flyte` CLI asks for.
const PAGE_LIMIT: usize = 100;

/// A new API key.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The app's client id (the slug of the name, as the `flyte` CLI makes it).
    pub client_id: String,
    /// The encoded key for `FLYTE_API_KEY`.
    pub api_key: Secret,
}

/// The slug the `flyte` CLI makes of a name: lower case, every run of other characters than `[0-9a-z]` one `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    out
}

/// Creates an app for `name` and encodes its key for the session's endpoint (which must be port-less https).
pub async fn create_api_key(
    session: &Session,
    name: &str,
    skip_default_policies: bool,
) -> Result<CreatedApiKey, ClientError> {
    let base = session.connect().base().clone();
    // Checked before anything is created, so an endpoint that cannot carry a key leaves no orphan app behind.
    flyteauth_types::api_key::key_host(&base)
        .map_err(|e| ClientError::Unsupported(e.to_string()))?;
    let client_id = slug(name);
    if client_id.trim_matches('-').is_empty() {
        return Err(ClientError::Unsupported(format!(
            "the name {name:?} has no letters or digits to make a client id of"
        )));
    }
    let organization = session.settings().org.clone().unwrap_or_default();
    let request = CreateAppRequest {
        organization: organization.clone(),
        client_id: client_id.clone(),
        client_name: client_id.clone(),
        redirect_uris: vec![APP_REDIRECT_URI.to_owned()],
        response_types: vec![ResponseTypes::Code as i32],
        grant_types: vec![
            GrantTypes::ClientCredentials as i32,
            GrantTypes::AuthorizationCode as i32,
        ],
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic as i32,
        consent_method: ConsentMethod::Required as i32,
        skip_default_policy_assignments: skip_default_policies,
        ..Default::default()
    };
    let response: CreateAppResponse = session.call(CREATE, &request).await?;
    let url = format!("{}/{CREATE}", base.as_str().trim_end_matches('/'));
    let app = response.app.ok_or_else(|| ClientError::Protocol {
        url: url.clone(),
        reason: "the answer holds no app".into(),
    })?;
    if app.client_secret.is_empty() {
        return Err(ClientError::Protocol {
            url,
            reason: "the new app has no client secret".into(),
        });
    }
    let client_id = if app.client_id.is_empty() {
        client_id
    } else {
        app.client_id.clone()
    };
    let organization = if app.organization.is_empty() {
        organization
    } else {
        app.organization.clone()
    };
    let secret = Secret::new(app.client_secret);
    let api_key =
        flyteauth_types::api_key::encode(&base, &client_id, secret.expose(), &organization)
            .map_err(|e| ClientError::Protocol {
                url,
                reason: e.to_string(),
            })?;
    Ok(CreatedApiKey {
        client_id,
        api_key: Secret::new(api_key),
    })
}

/// One app (no secret).
pub async fn get_app(session: &Session, client_id: &str) -> Result<App, ClientError> {
    let request = GetAppRequest {
        organization: String::new(),
        client_id: client_id.to_owned(),
    };
    let response: GetAppResponse = session.call(GET, &request).await?;
    let mut app = response.app.ok_or_else(|| ClientError::Protocol {
        url: format!(
            "{}/{GET}",
            session.connect().base().as_str().trim_end_matches('/')
        ),
        reason: "the answer holds no app".into(),
    })?;
    app.client_secret.clear();
    Ok(app)
}

/// The caller's apps, following page tokens, at most `limit`.
pub async fn list_apps(session: &Session, limit: usize) -> Result<Vec<App>, ClientError> {
    let mut apps = Vec::new();
    let mut token = String::new();
    while apps.len() < limit {
        let page = (limit - apps.len()).min(PAGE_LIMIT);
        let request = ListAppsRequest {
            organization: String::new(),
            request: Some(ListRequest {
                limit: u32::try_from(page).unwrap_or(100),
                token: token.clone(),
                ..Default::default()
            }),
        };
        let response: ListAppsResponse = session.call(LIST, &request).await?;
        let got = response.apps.len();
        apps.extend(response.apps.into_iter().map(|mut app| {
            app.client_secret.clear();
            app
        }));
        // A server that repeats its page token (or sends an empty page with one) would loop for ever.
        if response.token.is_empty() || response.token == token || got == 0 {
            break;
        }
        token = response.token;
    }
    apps.truncate(limit);
    Ok(apps)
}

/// Deletes an app; its tokens stop working on every replica within seconds.
pub async fn delete_app(session: &Session, client_id: &str) -> Result<(), ClientError> {
    let request = DeleteAppRequest {
        organization: String::new(),
        client_id: client_id.to_owned(),
    };
    let _: DeleteAppResponse = session.call(DELETE, &request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn slug_as_the_flyte_cli_makes_it() {
        assert_eq!(slug("My CI Key"), "my-ci-key");
        assert_eq!(slug("ci"), "ci");
        assert_eq!(slug("a__b--c"), "a-b-c");
        assert_eq!(slug(" lead & trail "), "-lead-trail-");
        assert_eq!(slug("Ünïcode 2"), "-n-code-2");
        assert_eq!(slug("ABC123"), "abc123");
    }
}
