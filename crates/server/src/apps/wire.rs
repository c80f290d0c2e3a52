//! Between the stored [`AppRecord`] and the `cloudidl.identity` messages.
//!
//! Out: an app as the SDK reads it (`App`), its secret only when just created. In: the fields of a create or
//! update request this server keeps, validated; the rest (`response_types`, `application_type`, `contacts`,
//! the URIs of the consent screen, `consent_method`, …) is accepted and ignored, because our token endpoint
//! serves apps with their client credentials only and shows no consent page for them.

use flyteauth_core::apps::{
    self as rules, AppError, app_grant_types, grant_type_number, validate_client_id,
    validate_client_name, validate_redirect_uris,
};
use flyteauth_proto::cloudidl::identity as pb;
use flyteauth_proto::wkt;
use flyteauth_store::{AppRecord, AppUpdate, NewApp};

/// A request field that cannot be accepted; the message starts with the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidField(pub String);

impl From<AppError> for InvalidField {
    fn from(e: AppError) -> Self {
        Self(e.to_string())
    }
}

/// The most characters an organization name may have.
pub const MAX_ORGANIZATION_CHARS: usize = 128;

/// A new app as asked for, validated: what the store will keep apart from the secret and the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The client id (an SDK slug).
    pub client_id: String,
    /// The display name (the client id when none was given).
    pub client_name: String,
    /// The organization (may be empty).
    pub organization: String,
    /// Grant type names; always include `client_credentials`.
    pub grant_types: Vec<String>,
    /// Absolute redirect URIs.
    pub redirect_uris: Vec<String>,
}

impl AppSpec {
    /// Validates the parts of a new app; `grant_types` are cloudidl `GrantTypes` numbers.
    pub fn new(
        client_id: &str,
        client_name: &str,
        organization: &str,
        grant_types: &[i32],
        redirect_uris: Vec<String>,
    ) -> Result<Self, InvalidField> {
        validate_client_id(client_id)?;
        let client_name = match validate_client_name(client_name)? {
            name if name.is_empty() => client_id.to_owned(),
            name => name,
        };
        check_organization(organization)?;
        let grant_types = app_grant_types(grant_types)?;
        validate_redirect_uris(&redirect_uris)?;
        Ok(Self {
            client_id: client_id.to_owned(),
            client_name,
            organization: organization.to_owned(),
            grant_types,
            redirect_uris,
        })
    }

    /// The row to store: scopes `all` (what platform calls need), no audience restriction.
    pub fn into_new_app(self, secret_hash: String, created_by: &str, now: i64) -> NewApp {
        NewApp {
            client_id: self.client_id,
            client_name: self.client_name,
            organization: self.organization,
            secret_hash,
            grant_types: self.grant_types,
            scopes: rules::APP_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            audience: Vec::new(),
            redirect_uris: self.redirect_uris,
            created_by: created_by.to_owned(),
            created_at: now,
        }
    }
}

/// An organization is free text, but it travels inside API keys, which are split on ':'.
pub fn check_organization(organization: &str) -> Result<(), InvalidField> {
    let bad = |why: &str| Err(InvalidField(format!("invalid organization: {why}")));
    if organization.chars().any(char::is_control) {
        return bad("must be printable text");
    }
    if organization.contains(':') {
        return bad("must not contain ':' (API keys are split on ':')");
    }
    if organization.chars().count() > MAX_ORGANIZATION_CHARS {
        return bad(&format!(
            "must be at most {MAX_ORGANIZATION_CHARS} characters"
        ));
    }
    Ok(())
}

/// The spec of `CreateAppRequest`.
pub fn create_spec(request: &pb::CreateAppRequest) -> Result<AppSpec, InvalidField> {
    AppSpec::new(
        &request.client_id,
        &request.client_name,
        &request.organization,
        &request.grant_types,
        request.redirect_uris.clone(),
    )
}

/// The change an `UpdateAppRequest` asks for, at `now`.
///
/// The request carries the whole registration, as the SDK's update sends it (it reads the app first): the
/// lists replace the stored ones, an empty list included; an empty `client_name` keeps the stored name.
pub fn update_of(request: &pb::UpdateAppRequest, now: i64) -> Result<AppUpdate, InvalidField> {
    let client_name = validate_client_name(&request.client_name)?;
    validate_redirect_uris(&request.redirect_uris)?;
    Ok(AppUpdate {
        client_name: Some(client_name).filter(|n| !n.is_empty()),
        grant_types: Some(app_grant_types(&request.grant_types)?),
        redirect_uris: Some(request.redirect_uris.clone()),
        ..AppUpdate::at(now)
    })
}

/// The names of the fields `update` changes in `app`, for the audit trail.
pub fn changed_fields(app: &AppRecord, update: &AppUpdate) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if update
        .client_name
        .as_ref()
        .is_some_and(|n| *n != app.client_name)
    {
        changed.push("client_name");
    }
    if update
        .grant_types
        .as_ref()
        .is_some_and(|g| *g != app.grant_types)
    {
        changed.push("grant_types");
    }
    if update
        .redirect_uris
        .as_ref()
        .is_some_and(|r| *r != app.redirect_uris)
    {
        changed.push("redirect_uris");
    }
    changed
}

/// Grant type names as cloudidl `GrantTypes` numbers; names without a number are left out.
pub fn grant_type_numbers(names: &[String]) -> Vec<i32> {
    names.iter().filter_map(|n| grant_type_number(n)).collect()
}

/// A stored app as the SDK reads it. `secret` is given only in the answer to Create: the store keeps a hash.
pub fn app(record: &AppRecord, secret: Option<&str>) -> pb::App {
    pb::App {
        organization: record.organization.clone(),
        client_id: record.client_id.clone(),
        client_id_issued_at: Some(wkt::Timestamp {
            seconds: record.created_at,
            nanos: 0,
        }),
        redirect_uris: record.redirect_uris.clone(),
        grant_types: grant_type_numbers(&record.grant_types),
        client_name: record.client_name.clone(),
        // Confidential clients authenticate with HTTP Basic at our token endpoint (the form body works too).
        token_endpoint_auth_method: pb::TokenEndpointAuthMethod::ClientSecretBasic as i32,
        client_secret: secret.unwrap_or_default().to_owned(),
        // Secrets do not expire; an absent timestamp says so.
        client_secret_expires_at: None,
        profile: Some(pb::Profile {
            apporg: record.organization.clone(),
        }),
        ..pb::App::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AppRecord {
        AppRecord {
            client_id: "ci-bot".into(),
            client_name: "CI bot".into(),
            organization: "acme".into(),
            secret_hash: "sha256:00".into(),
            grant_types: vec!["authorization_code".into(), "client_credentials".into()],
            scopes: vec!["all".into()],
            audience: vec![],
            redirect_uris: vec!["http://localhost:8080/authorization-code/callback".into()],
            created_by: "alice-sub".into(),
            created_at: 1_700_000_000,
            updated_at: 1_700_000_100,
        }
    }

    #[test]
    fn a_record_becomes_an_app_without_its_secret() {
        let app = app(&record(), None);
        assert_eq!(app.client_id, "ci-bot");
        assert_eq!(app.client_name, "CI bot");
        assert_eq!(app.organization, "acme");
        assert_eq!(app.profile.unwrap().apporg, "acme");
        assert_eq!(app.client_id_issued_at.unwrap().seconds, 1_700_000_000);
        assert_eq!(
            app.grant_types,
            [
                pb::GrantTypes::AuthorizationCode as i32,
                pb::GrantTypes::ClientCredentials as i32
            ]
        );
        assert_eq!(
            app.token_endpoint_auth_method,
            pb::TokenEndpointAuthMethod::ClientSecretBasic as i32
        );
        assert!(app.client_secret.is_empty());
        assert_eq!(app.redirect_uris.len(), 1);
    }

    #[test]
    fn only_create_answers_carry_the_secret_and_json_uses_proto_names() {
        let app = app(&record(), Some("s3cret"));
        assert_eq!(app.client_secret, "s3cret");
        let json = serde_json::to_value(&app).unwrap();
        assert_eq!(json["client_id"], "ci-bot");
        assert_eq!(json["client_secret"], "s3cret");
        assert_eq!(json["token_endpoint_auth_method"], "CLIENT_SECRET_BASIC");
        assert_eq!(
            json["grant_types"],
            serde_json::json!(["AUTHORIZATION_CODE", "CLIENT_CREDENTIALS"])
        );
        assert_eq!(json["profile"]["apporg"], "acme");
        let back: pb::App = serde_json::from_value(json).unwrap();
        assert_eq!(back, app);
    }

    #[test]
    fn the_sdk_create_request_is_accepted() {
        // What `flyte create api-key --name "My Bot"` sends.
        let request = pb::CreateAppRequest {
            client_id: "my-bot".into(),
            client_name: "my-bot".into(),
            redirect_uris: vec!["http://localhost:8080/authorization-code/callback".into()],
            response_types: vec![pb::ResponseTypes::Code as i32],
            grant_types: vec![
                pb::GrantTypes::ClientCredentials as i32,
                pb::GrantTypes::AuthorizationCode as i32,
            ],
            token_endpoint_auth_method: pb::TokenEndpointAuthMethod::ClientSecretBasic as i32,
            consent_method: pb::ConsentMethod::Required as i32,
            ..Default::default()
        };
        let spec = create_spec(&request).unwrap();
        assert_eq!(spec.client_id, "my-bot");
        assert_eq!(
            spec.grant_types,
            ["authorization_code", "client_credentials"]
        );
        let new = spec.into_new_app("sha256:ab".into(), "alice-sub", 5);
        assert_eq!(new.scopes, ["all"]);
        assert!(new.audience.is_empty());
        assert_eq!(new.created_by, "alice-sub");
    }

    #[test]
    fn bad_fields_are_named() {
        let base = pb::CreateAppRequest {
            client_id: "ok".into(),
            ..Default::default()
        };
        let cases = [
            (
                pb::CreateAppRequest {
                    client_id: "Not A Slug".into(),
                    ..base.clone()
                },
                "client_id",
            ),
            (
                pb::CreateAppRequest {
                    client_name: "a\nb".into(),
                    ..base.clone()
                },
                "client_name",
            ),
            (
                pb::CreateAppRequest {
                    grant_types: vec![9],
                    ..base.clone()
                },
                "grant_types",
            ),
            (
                pb::CreateAppRequest {
                    redirect_uris: vec!["/relative".into()],
                    ..base.clone()
                },
                "redirect_uris",
            ),
            (
                pb::CreateAppRequest {
                    organization: "a:b".into(),
                    ..base.clone()
                },
                "organization",
            ),
        ];
        for (request, field) in cases {
            let err = create_spec(&request).unwrap_err();
            assert!(err.0.contains(field), "{field}: {err}");
        }
        // No name: the client id stands in.
        assert_eq!(create_spec(&base).unwrap().client_name, "ok");
    }

    #[test]
    fn updates_replace_the_lists_and_keep_an_unnamed_name() {
        let request = pb::UpdateAppRequest {
            client_id: "ci-bot".into(),
            ..Default::default()
        };
        let update = update_of(&request, 9).unwrap();
        assert_eq!(update.client_name, None);
        assert_eq!(update.redirect_uris, Some(vec![]));
        assert_eq!(
            update.grant_types,
            Some(vec!["client_credentials".to_owned()])
        );
        assert_eq!(update.secret_hash, None);
        assert_eq!(
            changed_fields(&record(), &update),
            ["grant_types", "redirect_uris"]
        );
        let renamed = pb::UpdateAppRequest {
            client_name: "New".into(),
            grant_types: vec![0, 3],
            redirect_uris: record().redirect_uris,
            ..request
        };
        let update = update_of(&renamed, 9).unwrap();
        assert_eq!(changed_fields(&record(), &update), ["client_name"]);
    }
}
