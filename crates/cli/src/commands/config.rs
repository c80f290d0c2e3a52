//! `flyte create config` and `flyte get config`.

use std::io::Write;
use std::path::Path;

use flyteauth_client::ClientError;
use flyteauth_client::config::{NewConfig, render_new_config};
use serde_json::Value;

use crate::cli::{CreateConfigArgs, GlobalArgs, OutputFormat};
use crate::exit::CliError;
use crate::output;

/// Writes a new config file from the flags.
pub fn create(global: &GlobalArgs, args: &CreateConfigArgs) -> Result<(), CliError> {
    let text = render_new_config(&new_config(global, args)).map_err(ClientError::from)?;
    write_config(&args.output, &text, args.force)?;
    super::print(&format!(
        "Config file written to {}\n",
        args.output.display()
    ))
}

/// Shows the settings in force and where they came from.
pub fn get(global: &GlobalArgs, format: OutputFormat) -> Result<(), CliError> {
    let settings = super::settings(global)?;
    let mut description = settings.describe();
    if let Value::Object(map) = &mut description {
        let file = settings
            .config_file
            .as_ref()
            .map(|p| Value::String(p.display().to_string()));
        map.insert("config_file".to_owned(), file.unwrap_or(Value::Null));
    }
    super::print(&output::config(&description, format)?)
}

/// The global `--endpoint`, `--insecure`, `--org` and `--auth-type` are the new file's, not this run's.
fn new_config(global: &GlobalArgs, args: &CreateConfigArgs) -> NewConfig {
    NewConfig {
        endpoint: global.endpoint.clone(),
        insecure: global.insecure,
        auth_type: global.auth_type,
        org: global.org.clone(),
        project: args.project.clone(),
        domain: args.domain.clone(),
        client_id: args.client_id.clone(),
        client_secret_location: args.client_secret_location.clone(),
        client_secret_env_var: args.client_secret_env_var.clone(),
        image_builder: args.image_builder.clone(),
        registry: args.registry.clone(),
        devbox: args.devbox,
    }
}

/// Writes `text` to `path`, creating its directory. An existing file is kept unless `force`: opened with
/// `create_new`, so a file appearing meanwhile is not clobbered either.
fn write_config(path: &Path, text: &str, force: bool) -> Result<(), CliError> {
    let file_error = |action: &'static str, error: std::io::Error| {
        CliError::Client(ClientError::File {
            action,
            path: path.to_path_buf(),
            reason: error.to_string(),
        })
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| file_error("create the directory of", e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Failed(format!(
                "{} already exists; pass --force to replace it",
                path.display()
            ))
        } else {
            file_error("write", e)
        }
    })?;
    file.write_all(text.as_bytes())
        .map_err(|e| file_error("write", e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, CreateCommand};

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "admin: {endpoint: dns:///old}\n").unwrap();
        let error = write_config(&path, "admin: {endpoint: dns:///new}\n", false).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert_eq!(
            error.to_string(),
            format!(
                "{} already exists; pass --force to replace it",
                path.display()
            )
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "admin: {endpoint: dns:///old}\n"
        );
    }

    #[test]
    fn force_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "a much longer old file than the new one\n").unwrap();
        write_config(&path, "new\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }

    #[test]
    fn creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("project/.flyte/config.yaml");
        write_config(&path, "x: 1\n", false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x: 1\n");
    }

    #[test]
    fn an_unwritable_place_is_a_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let error = write_config(&blocker.join("config.yaml"), "x: 1\n", true).unwrap_err();
        assert!(
            matches!(error, CliError::Client(ClientError::File { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn global_flags_go_into_the_new_file() {
        let cli = Cli::try_parse_from([
            "flyte",
            "create",
            "config",
            "--endpoint",
            "https://flyte.example.com:443",
            "--auth-type",
            "DeviceFlow",
            "--org",
            "acme",
            "-p",
            "proj",
            "-d",
            "development",
            "--builder",
            "remote",
            "--insecure",
        ])
        .unwrap();
        let Command::Create {
            what: CreateCommand::Config(args),
        } = cli.command
        else {
            panic!("{:?}", cli.command)
        };
        let new = new_config(&cli.global, &args);
        assert_eq!(
            new.endpoint.as_deref(),
            Some("https://flyte.example.com:443")
        );
        assert!(new.insecure);
        assert_eq!(
            new.auth_type,
            Some(flyteauth_client::config::AuthType::DeviceFlow)
        );
        assert_eq!(new.org.as_deref(), Some("acme"));
        assert_eq!(new.project.as_deref(), Some("proj"));
        assert_eq!(new.domain.as_deref(), Some("development"));
        assert_eq!(new.image_builder.as_deref(), Some("remote"));
        assert!(!new.devbox);
    }
}
