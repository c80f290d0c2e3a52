//! `flyte whoami`.

use flyteauth_client::identity;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::exit::CliError;
use crate::output;

/// Asks the control plane who the credentials belong to (signing in first if nothing is cached).
pub async fn run(global: &GlobalArgs, format: OutputFormat) -> Result<(), CliError> {
    let (session, ui) = super::session(global).await?;
    let info = super::drawing(&ui, identity::whoami(&session)).await?;
    super::print(&output::user_info(&info, format)?)
}
