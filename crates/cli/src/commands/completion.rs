//! `flyte completion SHELL`.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::CliError;

/// Prints the completion script of `shell`.
pub fn run(shell: Shell) -> Result<(), CliError> {
    super::print(&script(shell))
}

fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "flyte", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_knows_the_commands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let text = script(shell);
            assert!(
                text.contains("whoami") && text.contains("api-key"),
                "{shell}"
            );
        }
    }
}
