//! The command line: global options, commands and their arguments.

use std::convert::Infallible;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use flyteauth_client::Secret;
use flyteauth_client::config::{AuthType, Overrides};

/// The spellings `--auth-type` accepts, for the help text.
const AUTH_TYPE_HELP: &str = "How to sign in: pkce (browser), headless|device-flow, client-secret|app-credential, \
                              external-command|command; config spellings (Pkce, DeviceFlow, ClientSecret, \
                              ExternalCommand) work too";

/// `flyte`: sign in to a Flyte control plane and manage API keys. Other commands (`run`, `deploy`, …) are handed
/// to the Python `flyte` found next on PATH.
#[derive(Debug, Parser)]
#[command(name = "flyte", version, arg_required_else_help = true)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts, before or after the command.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// The config file to use instead of searching for one.
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The control plane (`host[:port]`, `dns:///host`, `https://host/prefix`).
    #[arg(long, value_name = "ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Plaintext HTTP to the control plane.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// How to sign in.
    #[arg(long, value_name = "TYPE", value_parser = parse_auth_type, global = true, help = AUTH_TYPE_HELP)]
    pub auth_type: Option<AuthType>,
    /// An API key (as printed by `flyte create api-key`); replaces endpoint and credentials.
    #[arg(long, value_name = "KEY", value_parser = parse_secret, global = true)]
    pub api_key: Option<Secret>,
    /// The organisation.
    #[arg(long, value_name = "ORG", global = true)]
    pub org: Option<String>,
    /// Log what happens to stderr: -v debug, -vv trace.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// What the command line adds to files and variables.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            endpoint: self.endpoint.clone(),
            insecure: self.insecure,
            auth_type: self.auth_type,
            api_key: self.api_key.clone(),
            org: self.org.clone(),
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show who the credentials belong to.
    Whoami(OutputArgs),
    /// Sign in now with the configured flow and cache the tokens.
    Login,
    /// Remove the cached tokens of the endpoint (and revoke them at the server).
    Logout,
    /// Create a config file or an API key.
    #[command(arg_required_else_help = true)]
    Create {
        /// What to create.
        #[command(subcommand)]
        what: CreateCommand,
    },
    /// Show the configuration in force or API keys.
    #[command(arg_required_else_help = true)]
    Get {
        /// What to show.
        #[command(subcommand)]
        what: GetCommand,
    },
    /// Delete an API key.
    #[command(arg_required_else_help = true)]
    Delete {
        /// What to delete.
        #[command(subcommand)]
        what: DeleteCommand,
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// A command of the Python `flyte`.
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

/// `flyte create …`.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Write a config file (the global --endpoint, --insecure, --org and --auth-type go into it).
    Config(CreateConfigArgs),
    /// Create an API key (an app with a client secret) and print it once.
    ApiKey(CreateApiKeyArgs),
    /// A subject of the Python `flyte`.
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

/// `flyte get …`.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// Show the settings in force and the file they came from.
    Config(OutputArgs),
    /// Show one API key or list them (never their secrets).
    ApiKey(GetApiKeyArgs),
    /// A subject of the Python `flyte`.
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

/// `flyte delete …`.
#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete an API key; its tokens stop working.
    ApiKey(DeleteApiKeyArgs),
    /// A subject of the Python `flyte`.
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

/// How to print a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    #[default]
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `-o/--output FORMAT`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArgs {
    /// How to print the result.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `flyte create config`.
#[derive(Debug, Clone, Args)]
pub struct CreateConfigArgs {
    /// The local development cluster: localhost:30080, insecure, project flytesnacks, domain development.
    #[arg(long)]
    pub devbox: bool,
    /// Where to write the file.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH",
        default_value = "./.flyte/config.yaml"
    )]
    pub output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
    /// The image builder (`local` or `remote`).
    #[arg(
        long = "image-builder",
        visible_alias = "builder",
        value_name = "BUILDER"
    )]
    pub image_builder: Option<String>,
    /// The image registry.
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// The default project.
    #[arg(short = 'p', long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// The default domain.
    #[arg(short = 'd', long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// The client id of `ClientSecret`.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// A file holding the client secret (the file is referenced, not copied).
    #[arg(long, value_name = "PATH")]
    pub client_secret_location: Option<String>,
    /// A variable holding the client secret.
    #[arg(long, value_name = "NAME")]
    pub client_secret_env_var: Option<String>,
}

/// `flyte create api-key`.
#[derive(Debug, Clone, Args)]
pub struct CreateApiKeyArgs {
    /// The key's name; its client id is the name's slug.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Do not give the new app the default policies.
    #[arg(long)]
    pub no_default_policies: bool,
}

/// `flyte get api-key`.
#[derive(Debug, Clone, Args)]
pub struct GetApiKeyArgs {
    /// One key's client id; without it, the keys are listed.
    #[arg(value_name = "CLIENT_ID")]
    pub client_id: Option<String>,
    /// List at most this many keys.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `flyte delete api-key`.
#[derive(Debug, Clone, Args)]
pub struct DeleteApiKeyArgs {
    /// The key's client id.
    #[arg(value_name = "CLIENT_ID")]
    pub client_id: String,
    /// Delete without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

fn parse_auth_type(value: &str) -> Result<AuthType, String> {
    AuthType::parse(value).ok_or_else(|| {
        format!(
            "unknown auth type '{value}' (try pkce, headless, client-secret or external-command)"
        )
    })
}

fn parse_secret(value: &str) -> Result<Secret, Infallible> {
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests;
