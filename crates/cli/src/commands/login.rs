//! `flyte login`.

use flyteauth_client::identity;
use flyteauth_proto::flyteidl2::auth::UserInfoResponse;

use crate::cli::GlobalArgs;
use crate::exit::CliError;

/// Runs the configured flow whatever is cached, caches the tokens and says who signed in.
pub async fn run(global: &GlobalArgs) -> Result<(), CliError> {
    let (session, ui) = super::session(global).await?;
    let info = super::drawing(&ui, async {
        session.login().await?;
        identity::whoami(&session).await
    })
    .await?;
    super::print(&signed_in(&session.endpoint().cache_service(), &info))
}

/// `Signed in to host as alice (subject)`.
fn signed_in(service: &str, info: &UserInfoResponse) -> String {
    let who = [&info.preferred_username, &info.name, &info.subject]
        .into_iter()
        .find(|s| !s.is_empty())
        .map_or("(unknown)", |s| s.as_str());
    format!("Signed in to {service} as {who} ({})\n", info.subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_person_by_the_best_name_known() {
        let mut info = UserInfoResponse {
            subject: "u-1".into(),
            name: "Alice L".into(),
            preferred_username: "alice".into(),
            ..Default::default()
        };
        assert_eq!(
            signed_in("h:8088", &info),
            "Signed in to h:8088 as alice (u-1)\n"
        );
        info.preferred_username.clear();
        assert_eq!(
            signed_in("h:8088", &info),
            "Signed in to h:8088 as Alice L (u-1)\n"
        );
        info.name.clear();
        assert_eq!(
            signed_in("h:8088", &info),
            "Signed in to h:8088 as u-1 (u-1)\n"
        );
    }
}
