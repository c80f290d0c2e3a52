#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::CommandFactory;
use clap::error::ErrorKind;

use super::*;

fn parse(line: &str) -> Cli {
    Cli::try_parse_from(std::iter::once("flyte").chain(line.split_whitespace()))
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn parse_error(line: &str) -> ErrorKind {
    Cli::try_parse_from(std::iter::once("flyte").chain(line.split_whitespace()))
        .map(|_| ())
        .unwrap_err()
        .kind()
}

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn whoami_output_formats() {
    assert!(matches!(
        parse("whoami").command,
        Command::Whoami(OutputArgs {
            output: OutputFormat::Table
        })
    ));
    assert!(matches!(
        parse("whoami -o json").command,
        Command::Whoami(OutputArgs {
            output: OutputFormat::Json
        })
    ));
    assert!(matches!(
        parse("whoami --output yaml").command,
        Command::Whoami(OutputArgs {
            output: OutputFormat::Yaml
        })
    ));
    assert_eq!(parse_error("whoami -o xml"), ErrorKind::InvalidValue);
}

#[test]
fn login_logout() {
    assert!(matches!(parse("login").command, Command::Login));
    assert!(matches!(parse("logout").command, Command::Logout));
    assert_eq!(parse_error("login now"), ErrorKind::UnknownArgument);
}

#[test]
fn global_options_anywhere() {
    let cli = parse("-c /tmp/c.yaml --endpoint dns:///h:8088 --insecure --org acme -vv whoami");
    assert_eq!(
        cli.global.config.as_deref(),
        Some(std::path::Path::new("/tmp/c.yaml"))
    );
    assert_eq!(cli.global.endpoint.as_deref(), Some("dns:///h:8088"));
    assert!(cli.global.insecure);
    assert_eq!(cli.global.org.as_deref(), Some("acme"));
    assert_eq!(cli.global.verbose, 2);

    let after = parse("whoami --config c.yaml --endpoint h -v");
    assert_eq!(
        after.global.config.as_deref(),
        Some(std::path::Path::new("c.yaml"))
    );
    assert_eq!(after.global.endpoint.as_deref(), Some("h"));
    assert_eq!(after.global.verbose, 1);
    assert_eq!(
        parse("get api-key -v --org o").global.org.as_deref(),
        Some("o")
    );
}

#[test]
fn overrides_carry_every_global_option() {
    let cli = parse(
        "--config f.yaml --endpoint e --insecure --auth-type pkce --api-key k --org o logout",
    );
    let overrides = cli.global.overrides();
    assert_eq!(
        overrides.config_file.as_deref(),
        Some(std::path::Path::new("f.yaml"))
    );
    assert_eq!(overrides.endpoint.as_deref(), Some("e"));
    assert!(overrides.insecure);
    assert_eq!(overrides.auth_type, Some(AuthType::Pkce));
    assert_eq!(overrides.api_key.as_ref().map(Secret::expose), Some("k"));
    assert_eq!(overrides.org.as_deref(), Some("o"));
}

#[test]
fn auth_type_aliases() {
    let cases = [
        ("headless", AuthType::DeviceFlow),
        ("device-flow", AuthType::DeviceFlow),
        ("device_flow", AuthType::DeviceFlow),
        ("DeviceFlow", AuthType::DeviceFlow),
        ("pkce", AuthType::Pkce),
        ("Pkce", AuthType::Pkce),
        ("client-secret", AuthType::ClientSecret),
        ("client_secret", AuthType::ClientSecret),
        ("clientsecret", AuthType::ClientSecret),
        ("app-credential", AuthType::ClientSecret),
        ("app_credential", AuthType::ClientSecret),
        ("ClientSecret", AuthType::ClientSecret),
        ("external-command", AuthType::ExternalCommand),
        ("external_command", AuthType::ExternalCommand),
        ("externalcommand", AuthType::ExternalCommand),
        ("command", AuthType::ExternalCommand),
        ("custom", AuthType::ExternalCommand),
        ("ExternalCommand", AuthType::ExternalCommand),
    ];
    for (spelling, expected) in cases {
        assert_eq!(
            parse(&format!("--auth-type {spelling} login"))
                .global
                .auth_type,
            Some(expected),
            "{spelling}"
        );
    }
    assert_eq!(
        parse_error("--auth-type telepathy login"),
        ErrorKind::ValueValidation
    );
}

#[test]
fn api_key_value_is_redacted() {
    let cli = parse("--api-key c2VjcmV0 whoami");
    assert_eq!(
        cli.global.api_key.as_ref().map(Secret::expose),
        Some("c2VjcmV0")
    );
    assert!(!format!("{cli:?}").contains("c2VjcmV0"));
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("--api-key <KEY>"), "{help}");
}

#[test]
fn create_config_options() {
    let cli = parse(
        "create config --devbox -o out.yaml --force --image-builder remote --registry ghcr.io/acme -p proj -d dev \
         --client-id ci --client-secret-location /etc/secret --client-secret-env-var CI_SECRET",
    );
    let Command::Create {
        what: CreateCommand::Config(args),
    } = cli.command
    else {
        panic!("{:?}", cli.command)
    };
    assert!(args.devbox && args.force);
    assert_eq!(args.output, PathBuf::from("out.yaml"));
    assert_eq!(args.image_builder.as_deref(), Some("remote"));
    assert_eq!(args.registry.as_deref(), Some("ghcr.io/acme"));
    assert_eq!(
        (args.project.as_deref(), args.domain.as_deref()),
        (Some("proj"), Some("dev"))
    );
    assert_eq!(args.client_id.as_deref(), Some("ci"));
    assert_eq!(args.client_secret_location.as_deref(), Some("/etc/secret"));
    assert_eq!(args.client_secret_env_var.as_deref(), Some("CI_SECRET"));

    let defaults = parse("create config --builder local --project p --domain d");
    let Command::Create {
        what: CreateCommand::Config(args),
    } = defaults.command
    else {
        panic!()
    };
    assert_eq!(args.output, PathBuf::from("./.flyte/config.yaml"));
    assert!(!args.force && !args.devbox);
    assert_eq!(args.image_builder.as_deref(), Some("local"));
}

#[test]
fn get_config() {
    assert!(matches!(
        parse("get config -o yaml").command,
        Command::Get {
            what: GetCommand::Config(OutputArgs {
                output: OutputFormat::Yaml
            })
        }
    ));
    assert!(matches!(
        parse("get config").command,
        Command::Get {
            what: GetCommand::Config(OutputArgs {
                output: OutputFormat::Table
            })
        }
    ));
}

#[test]
fn api_key_commands() {
    let Command::Create {
        what: CreateCommand::ApiKey(create),
    } = parse("create api-key --name ci-bot --no-default-policies").command
    else {
        panic!()
    };
    assert_eq!(create.name, "ci-bot");
    assert!(create.no_default_policies);
    assert_eq!(
        parse_error("create api-key"),
        ErrorKind::MissingRequiredArgument
    );

    let Command::Get {
        what: GetCommand::ApiKey(get),
    } = parse("get api-key").command
    else {
        panic!()
    };
    assert_eq!(
        (get.client_id, get.limit, get.output.output),
        (None, 100, OutputFormat::Table)
    );
    let Command::Get {
        what: GetCommand::ApiKey(get),
    } = parse("get api-key ci-bot --limit 5 -o json").command
    else {
        panic!()
    };
    assert_eq!(
        (get.client_id.as_deref(), get.limit, get.output.output),
        (Some("ci-bot"), 5, OutputFormat::Json)
    );

    let Command::Delete {
        what: DeleteCommand::ApiKey(delete),
    } = parse("delete api-key ci-bot --yes").command
    else {
        panic!()
    };
    assert_eq!(delete.client_id, "ci-bot");
    assert!(delete.yes);
    let Command::Delete {
        what: DeleteCommand::ApiKey(delete),
    } = parse("delete api-key ci-bot").command
    else {
        panic!()
    };
    assert!(!delete.yes);
    assert_eq!(
        parse_error("delete api-key"),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn completion_shells() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(
            matches!(
                parse(&format!("completion {shell}")).command,
                Command::Completion { .. }
            ),
            "{shell}"
        );
    }
    assert_eq!(parse_error("completion tcsh"), ErrorKind::InvalidValue);
}

fn words(values: &[OsString]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn unknown_commands_are_external() {
    let Command::External(args) = parse("run --remote hello.py main --x 1").command else {
        panic!()
    };
    assert_eq!(
        words(&args),
        ["run", "--remote", "hello.py", "main", "--x", "1"]
    );
    let Command::External(args) = parse("--endpoint h deploy app.py").command else {
        panic!()
    };
    assert_eq!(words(&args), ["deploy", "app.py"]);
    let Command::Get {
        what: GetCommand::External(args),
    } = parse("get project --all").command
    else {
        panic!()
    };
    assert_eq!(words(&args), ["project", "--all"]);
    let Command::Create {
        what: CreateCommand::External(args),
    } = parse("create secret s").command
    else {
        panic!()
    };
    assert_eq!(words(&args), ["secret", "s"]);
    let Command::Delete {
        what: DeleteCommand::External(args),
    } = parse("delete cluster c").command
    else {
        panic!()
    };
    assert_eq!(words(&args), ["cluster", "c"]);
}

#[test]
fn help_and_version_are_ours() {
    assert_eq!(parse_error("--help"), ErrorKind::DisplayHelp);
    assert_eq!(parse_error("-h"), ErrorKind::DisplayHelp);
    assert_eq!(parse_error("--version"), ErrorKind::DisplayVersion);
    assert_eq!(parse_error("whoami --help"), ErrorKind::DisplayHelp);
    assert_eq!(
        parse_error("get"),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
}
