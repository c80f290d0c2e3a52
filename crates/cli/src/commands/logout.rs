//! `flyte logout`.

use crate::cli::GlobalArgs;
use crate::exit::CliError;

/// Revokes and removes the cached tokens of the endpoint.
pub async fn run(global: &GlobalArgs) -> Result<(), CliError> {
    let (session, ui) = super::session(global).await?;
    let was_signed_in = super::drawing(&ui, session.logout()).await?;
    let service = session.endpoint().cache_service();
    super::print(&if was_signed_in {
        format!("Signed out of {service}\n")
    } else {
        format!("Not signed in to {service}\n")
    })
}
