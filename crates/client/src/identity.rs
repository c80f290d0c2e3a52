//! `whoami`: `flyteidl2.auth.IdentityService/UserInfo` with the session's token.

use flyteauth_proto::flyteidl2::auth::{UserInfoRequest, UserInfoResponse};

use crate::ClientError;
use crate::session::Session;

/// `Service/Method` of the user info call.
pub const USER_INFO: &str = "flyteidl2.auth.IdentityService/UserInfo";

/// Who the session's token belongs to.
pub async fn whoami(session: &Session) -> Result<UserInfoResponse, ClientError> {
    session.call(USER_INFO, &UserInfoRequest {}).await
}
