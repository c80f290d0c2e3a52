//! `flyte create|get|delete api-key`.

use std::io::{BufRead, IsTerminal, Write};

use flyteauth_client::apps;

use crate::cli::{CreateApiKeyArgs, DeleteApiKeyArgs, GetApiKeyArgs, GlobalArgs};
use crate::exit::CliError;
use crate::output;

/// Creates a key and prints it: the one place a secret reaches the screen, since nobody can see it again.
pub async fn create(global: &GlobalArgs, args: &CreateApiKeyArgs) -> Result<(), CliError> {
    let (session, ui) = super::session(global).await?;
    let created = super::drawing(
        &ui,
        apps::create_api_key(&session, &args.name, args.no_default_policies),
    )
    .await?;
    super::print(&format!(
        "Client ID: {}\nexport FLYTE_API_KEY=\"{}\"\n",
        created.client_id,
        created.api_key.expose()
    ))
}

/// Shows one key, or lists them.
pub async fn get(global: &GlobalArgs, args: &GetApiKeyArgs) -> Result<(), CliError> {
    let (session, ui) = super::session(global).await?;
    let text = match &args.client_id {
        Some(id) => {
            let app = super::drawing(&ui, apps::get_app(&session, id)).await?;
            output::apps(&[app], true, args.output.output)?
        }
        None => {
            let list = super::drawing(&ui, apps::list_apps(&session, args.limit)).await?;
            output::apps(&list, false, args.output.output)?
        }
    };
    super::print(&text)
}

/// Deletes a key after asking (or with `--yes`).
pub async fn delete(global: &GlobalArgs, args: &DeleteApiKeyArgs) -> Result<(), CliError> {
    let asked = confirm(args.yes, std::io::stdin().is_terminal(), || {
        eprint!("Delete API key {}? [y/N] ", args.client_id);
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map(|_| answer)
    })?;
    if !asked {
        return Err(CliError::Failed(format!(
            "API key {} not deleted",
            args.client_id
        )));
    }
    let (session, ui) = super::session(global).await?;
    super::drawing(&ui, apps::delete_app(&session, &args.client_id)).await?;
    super::print(&format!("Deleted API key {}\n", args.client_id))
}

/// Whether to go ahead: `--yes`, else the answer to `ask` on a terminal. Without a terminal to ask on, a script
/// must say `--yes`: guessing either way could delete a key or silently do nothing.
fn confirm(
    yes: bool,
    interactive: bool,
    ask: impl FnOnce() -> std::io::Result<String>,
) -> Result<bool, CliError> {
    if yes {
        return Ok(true);
    }
    if !interactive {
        return Err(CliError::Usage(
            "pass --yes to delete without a prompt".into(),
        ));
    }
    let answer = ask().map_err(|e| CliError::Failed(format!("cannot read the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn yes_skips_the_question() {
        assert!(confirm(true, false, || panic!("asked")).unwrap());
        assert!(confirm(true, true, || panic!("asked")).unwrap());
    }

    #[test]
    fn no_terminal_and_no_yes_is_a_usage_error() {
        let error = confirm(false, false, || panic!("asked")).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert_eq!(error.to_string(), "pass --yes to delete without a prompt");
    }

    #[test]
    fn only_yes_answers_delete() {
        for answer in ["y\n", "Y\n", "yes\n", " YES \r\n"] {
            assert!(
                confirm(false, true, || Ok(answer.to_owned())).unwrap(),
                "{answer:?}"
            );
        }
        for answer in ["\n", "n\n", "no\n", "", "yep\n"] {
            assert!(
                !confirm(false, true, || Ok(answer.to_owned())).unwrap(),
                "{answer:?}"
            );
        }
    }
}
