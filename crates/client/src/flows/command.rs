//! Tokens printed by a command (`admin.command` for `ExternalCommand`, `admin.proxyCommand`).

use std::process::Stdio;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::{ClientError, Secret};

/// A token command that takes longer is stuck (waiting for a person who cannot see it, or for the network).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` (argv; no shell), without a terminal on stdin, and returns its standard output, trimmed. A
/// non-zero exit, empty output or a failure to start is [`ClientError::Command`], naming only the program.
///
/// Its standard error goes to ours, so a command can tell the person what to do (a helper that opens a
/// browser, say). It has a minute; then it is killed.
pub async fn run_token_command(command: &[String]) -> Result<Secret, ClientError> {
    run_with_timeout(command, TIMEOUT).await
}

async fn run_with_timeout(command: &[String], timeout: Duration) -> Result<Secret, ClientError> {
    let Some((program, args)) = command.split_first() else {
        return Err(ClientError::Command {
            program: "(none)".into(),
            reason: "is empty".into(),
        });
    };
    let failed = |reason: String| ClientError::Command {
        program: program.clone(),
        reason,
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("could not be started: {e}")))?;
    // On timeout the child is dropped, which kills it.
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(failed(format!("could not be waited for: {e}"))),
        Err(_) => return Err(failed(format!("did not finish within {timeout:?}"))),
    };
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        // Never the output: it may hold half a token.
        return Err(failed(format!("failed ({})", output.status)));
    }
    let text = std::str::from_utf8(&stdout)
        .map_err(|_| failed("printed something that is not UTF-8".into()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(failed("printed no token".into()));
    }
    tracing::debug!(%program, "token command succeeded");
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn trims_the_output() {
        let token = run_token_command(&sh("printf '  tok-123 \\n\\n'"))
            .await
            .unwrap();
        assert_eq!(token.expose(), "tok-123");
    }

    #[tokio::test]
    async fn stdin_is_not_a_terminal_and_ends_at_once() {
        let token = run_with_timeout(&sh("read line; echo \"read:$?\""), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(token.expose(), "read:1");
    }

    #[tokio::test]
    async fn failure_names_the_program_and_status_not_the_output() {
        let err = run_token_command(&sh("echo half-a-secret; exit 3"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, ClientError::Command { program, .. } if program == "sh"),
            "{err:?}"
        );
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(!text.contains("half-a-secret"), "{text}");
    }

    #[tokio::test]
    async fn empty_output_missing_program_and_empty_command() {
        let err = run_token_command(&sh("echo '   '")).await.unwrap_err();
        assert!(err.to_string().contains("printed no token"), "{err}");
        let err = run_token_command(&["/nonexistent/token-helper".into(), "x".into()])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the command /nonexistent/token-helper could not be started"),
            "{err}"
        );
        let err = run_token_command(&[]).await.unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[tokio::test]
    async fn a_stuck_command_times_out() {
        let started = std::time::Instant::now();
        let err = run_with_timeout(&sh("exec sleep 30"), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did not finish within 200ms"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
