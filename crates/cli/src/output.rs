//! Printing results as lines for people (`table`), JSON or YAML. Every renderer returns the whole text, ending in
//! a newline, so commands print it at once and tests read it without a terminal.

use flyteauth_proto::cloudidl::identity::App;
use flyteauth_proto::flyteidl2::auth::UserInfoResponse;
use serde::Serialize;
use serde_json::Value;

use crate::cli::OutputFormat;
use crate::exit::CliError;

/// The `whoami` lines worth a person's attention, in this order; empty ones are left out.
const WHOAMI_LINES: &[&str] = &[
    "subject",
    "name",
    "preferred_username",
    "email",
    "identity_type",
];

/// `flyte whoami`.
pub fn user_info(info: &UserInfoResponse, format: OutputFormat) -> Result<String, CliError> {
    let value = to_value(info)?;
    match format {
        OutputFormat::Table => {
            let mut text = String::new();
            for key in WHOAMI_LINES {
                let field = if *key == "identity_type" {
                    value.pointer("/additional_claims/identity_type")
                } else {
                    value.get(*key)
                };
                if let Some(shown) = field.map(scalar).filter(|s| !s.is_empty()) {
                    text.push_str(&format!("{key}: {shown}\n"));
                }
            }
            Ok(text)
        }
        _ => structured(&value, format),
    }
}

/// `flyte get config`: every setting as `key: value`, nested keys joined with dots.
pub fn config(description: &Value, format: OutputFormat) -> Result<String, CliError> {
    match format {
        OutputFormat::Table => {
            let mut lines = Vec::new();
            flatten("", description, &mut lines);
            Ok(lines
                .into_iter()
                .map(|(k, v)| format!("{}\n", format!("{k}: {v}").trim_end()))
                .collect())
        }
        _ => structured(description, format),
    }
}

/// `flyte get api-key`: apps without their secrets. `one` prints a single app as an object rather than a list.
pub fn apps(apps: &[App], one: bool, format: OutputFormat) -> Result<String, CliError> {
    let apps: Vec<App> = apps
        .iter()
        .cloned()
        .map(|mut app| {
            // The server sends a secret only on creation; this keeps one sent by mistake off the screen.
            app.client_secret.clear();
            app
        })
        .collect();
    match format {
        OutputFormat::Table => {
            let rows: Vec<[&str; 3]> = apps
                .iter()
                .map(|a| {
                    [
                        a.client_id.as_str(),
                        a.client_name.as_str(),
                        a.organization.as_str(),
                    ]
                })
                .collect();
            Ok(table(["CLIENT ID", "NAME", "ORGANIZATION"], &rows))
        }
        _ => {
            let value = match (one, apps.first()) {
                (true, Some(app)) => to_value(app)?,
                _ => to_value(&apps)?,
            };
            structured(&value, format)
        }
    }
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
pub fn table<const N: usize>(header: [&str; N], rows: &[[&str; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn structured(value: &Value, format: OutputFormat) -> Result<String, CliError> {
    match format {
        OutputFormat::Yaml => serde_saphyr::to_string(value)
            .map_err(|e| CliError::Failed(format!("cannot write YAML: {e}"))),
        _ => serde_json::to_string_pretty(value)
            .map(|mut text| {
                text.push('\n');
                text
            })
            .map_err(|e| CliError::Failed(format!("cannot write JSON: {e}"))),
    }
}

fn to_value(value: &impl Serialize) -> Result<Value, CliError> {
    serde_json::to_value(value).map_err(|e| CliError::Failed(format!("cannot write JSON: {e}")))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, inner, out);
            }
        }
        other => out.push((prefix.to_owned(), scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use flyteauth_proto::wkt::{Struct, Value as ProtoValue, value::Kind};
    use serde_json::json;

    use super::*;

    fn alice() -> UserInfoResponse {
        let mut claims = Struct::default();
        claims.fields.insert(
            "identity_type".into(),
            ProtoValue {
                kind: Some(Kind::StringValue("user".into())),
            },
        );
        UserInfoResponse {
            subject: "u-123".into(),
            name: "Alice Liddell".into(),
            preferred_username: "alice".into(),
            email: String::new(),
            additional_claims: Some(claims),
            ..Default::default()
        }
    }

    #[test]
    fn whoami_table_leaves_out_empty_lines() {
        let text = user_info(&alice(), OutputFormat::Table).unwrap();
        assert_eq!(
            text,
            "subject: u-123\nname: Alice Liddell\npreferred_username: alice\nidentity_type: user\n"
        );
    }

    #[test]
    fn whoami_json_uses_proto_field_names() {
        let text = user_info(&alice(), OutputFormat::Json).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["subject"], "u-123");
        assert_eq!(value["preferred_username"], "alice");
        assert_eq!(value["additional_claims"]["identity_type"], "user");
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn whoami_yaml() {
        let text = user_info(&alice(), OutputFormat::Yaml).unwrap();
        assert!(text.contains("subject: u-123"), "{text}");
        assert!(text.contains("identity_type: user"), "{text}");
    }

    #[test]
    fn config_table_flattens() {
        let description = json!({"admin": {"endpoint": "dns:///h", "insecure": false, "scopes": ["a", "b"], "clientId": null}, "config_file": "/x/config.yaml"});
        let text = config(&description, OutputFormat::Table).unwrap();
        assert_eq!(
            text,
            "admin.clientId:\nadmin.endpoint: dns:///h\nadmin.insecure: false\nadmin.scopes: a, b\nconfig_file: /x/config.yaml\n"
        );
    }

    fn app(id: &str, name: &str) -> App {
        App {
            client_id: id.into(),
            client_name: name.into(),
            organization: "acme".into(),
            client_secret: "s3cret".into(),
            ..Default::default()
        }
    }

    #[test]
    fn apps_table_is_aligned_and_secret_free() {
        let text = apps(
            &[app("ci", "ci"), app("deploy-bot", "Deploy bot")],
            false,
            OutputFormat::Table,
        )
        .unwrap();
        assert_eq!(
            text,
            "CLIENT ID   NAME        ORGANIZATION\n\
             ci          ci          acme\n\
             deploy-bot  Deploy bot  acme\n"
        );
    }

    #[test]
    fn apps_json_never_holds_the_secret() {
        for format in [OutputFormat::Json, OutputFormat::Yaml] {
            let text = apps(&[app("ci", "ci")], false, format).unwrap();
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("ci"));
        }
        let list: Value =
            serde_json::from_str(&apps(&[app("ci", "ci")], false, OutputFormat::Json).unwrap())
                .unwrap();
        assert_eq!(list[0]["client_id"], "ci");
        let one: Value =
            serde_json::from_str(&apps(&[app("ci", "ci")], true, OutputFormat::Json).unwrap())
                .unwrap();
        assert_eq!(one["client_id"], "ci");
    }

    #[test]
    fn empty_table_is_the_header() {
        assert_eq!(table(["A", "B"], &[]), "A  B\n");
    }
}
