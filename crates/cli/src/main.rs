//! `flyte`: sign in to a Flyte control plane (browser, device code, client secret, command), see who you are, write
//! config files and manage API keys, sharing the Python `flyte` SDK's configuration and token cache. Other
//! commands go to the Python `flyte` next on PATH.

mod cli;
mod commands;
mod exit;
mod handover;
mod logging;
mod output;
mod ui;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::exit::CliError;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            match handover::foreign_command(&args).filter(|_| handover::may_be_foreign(&error)) {
                Some(command) => return fail(&handover::hand_over(&args, &command).into()),
                None => error.exit(),
            }
        }
    };
    logging::init(cli.global.verbose);
    match run(cli, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn run(cli: cli::Cli, args: &[OsString]) -> anyhow::Result<()> {
    // One thread: a command is a handful of requests, and starting worker threads would cost more than it saves.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // A login installs tokio's Ctrl-C handler, which then outlives it: without this, a Ctrl-C during a later
        // request would be swallowed instead of ending the command.
        tokio::select! {
            result = commands::run(cli, args) => result,
            _ = tokio::signal::ctrl_c() => Err(CliError::from(flyteauth_client::ClientError::Interrupted)),
        }
    })?;
    Ok(())
}

/// One `error: …` line and the exit code of the failure.
fn fail(error: &anyhow::Error) -> ExitCode {
    match error.downcast_ref::<CliError>() {
        // The library's messages are complete sentences already; their sources would only repeat them.
        Some(cli_error) => {
            eprintln!("error: {cli_error}");
            ExitCode::from(cli_error.exit_code())
        }
        None => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
