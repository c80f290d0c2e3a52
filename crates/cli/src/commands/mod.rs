//! The commands, each a thin layer over the client library: read the settings, open a session, call, print.

mod api_key;
mod completion;
mod config;
mod login;
mod logout;
mod whoami;

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use flyteauth_client::ClientError;
use flyteauth_client::cache::CacheOptions;
use flyteauth_client::config::{Places, ProcessEnv, Settings};
use flyteauth_client::session::Session;

use crate::cli::{Cli, Command, CreateCommand, DeleteCommand, GetCommand, GlobalArgs};
use crate::exit::CliError;
use crate::handover;
use crate::ui::TerminalUi;

/// The file cache to use instead of the default one (tests, operators).
const TOKEN_CACHE_FILE_VAR: &str = "FLYTE_TOKEN_CACHE_FILE";

/// Runs the parsed command line; `args` is the original argv, handed over unchanged to the Python `flyte` when
/// the command is not ours.
pub async fn run(cli: Cli, args: &[OsString]) -> Result<(), CliError> {
    let global = cli.global;
    match cli.command {
        Command::Whoami(out) => whoami::run(&global, out.output).await,
        Command::Login => login::run(&global).await,
        Command::Logout => logout::run(&global).await,
        Command::Create { what } => match what {
            CreateCommand::Config(create) => config::create(&global, &create),
            CreateCommand::ApiKey(create) => api_key::create(&global, &create).await,
            CreateCommand::External(words) => {
                Err(handover::hand_over(args, &foreign("create", &words)))
            }
        },
        Command::Get { what } => match what {
            GetCommand::Config(out) => config::get(&global, out.output),
            GetCommand::ApiKey(get) => api_key::get(&global, &get).await,
            GetCommand::External(words) => Err(handover::hand_over(args, &foreign("get", &words))),
        },
        Command::Delete { what } => match what {
            DeleteCommand::ApiKey(delete) => api_key::delete(&global, &delete).await,
            DeleteCommand::External(words) => {
                Err(handover::hand_over(args, &foreign("delete", &words)))
            }
        },
        Command::Completion { shell } => completion::run(shell),
        Command::External(words) => Err(handover::hand_over(args, &foreign("", &words))),
    }
}

/// `flyte get project` for the words clap did not know under `get`.
fn foreign(parent: &str, words: &[OsString]) -> String {
    let word = words
        .first()
        .map(|w| w.to_string_lossy().into_owned())
        .unwrap_or_default();
    if parent.is_empty() {
        format!("flyte {word}")
    } else {
        format!("flyte {parent} {word}")
    }
}

/// The settings in force for this command line and process.
pub fn settings(global: &GlobalArgs) -> Result<Settings, CliError> {
    Ok(
        Settings::discover(&global.overrides(), &Places::of_process(), &ProcessEnv)
            .map_err(ClientError::from)?,
    )
}

/// A session on the configured endpoint, drawing logins on stderr.
pub async fn session(global: &GlobalArgs) -> Result<(Session, Arc<TerminalUi>), CliError> {
    let settings = settings(global)?;
    settings.require_endpoint().map_err(ClientError::from)?;
    let cache = CacheOptions {
        disable_keyring: settings.disable_keyring,
        file: std::env::var_os(TOKEN_CACHE_FILE_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let ui = Arc::new(TerminalUi::stderr());
    let session = Session::new(settings, ui.clone(), cache).await?;
    Ok((session, ui))
}

/// Runs `work` (which may draw a login), then leaves stderr on a clean line whatever the outcome.
pub async fn drawing<T>(
    ui: &TerminalUi,
    work: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, CliError> {
    let result = work.await;
    ui.finish();
    Ok(result?)
}

/// Writes `text` to stdout. A closed pipe (`flyte get api-key | head -1`) is not a failure.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Failed(format!("cannot write to stdout: {error}")))
        }
        _ => Ok(()),
    }
}
