//! Why a command failed, and the exit code that tells a script.

use flyteauth_client::ClientError;
use flyteauth_client::connect::RpcCode;

/// Any failure without a more specific code.
pub const FAILURE: u8 = 1;
/// The command line is wrong (clap uses the same code).
pub const USAGE: u8 = 2;
/// Credentials missing, refused or expired; a login that was required, denied or timed out.
pub const AUTHENTICATION: u8 = 3;
/// The server cannot be reached.
pub const UNREACHABLE: u8 = 4;
/// The configuration cannot be used.
pub const CONFIGURATION: u8 = 5;
/// The command belongs to the Python `flyte` and none can be run.
pub const HANDOVER: u8 = 127;
/// Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// A failed command: printed as one `error: …` line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The client library failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The command line cannot be acted on (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Failed(String),
    /// No other `flyte` can take the command (exit 127).
    #[error("{0}")]
    HandOver(String),
}

impl CliError {
    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Client(error) => client_exit_code(error),
            Self::Usage(_) => USAGE,
            Self::Failed(_) => FAILURE,
            Self::HandOver(_) => HANDOVER,
        }
    }
}

/// The exit code of a library failure.
pub fn client_exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::Config(_) => CONFIGURATION,
        ClientError::Interrupted => INTERRUPTED,
        ClientError::LoginTimedOut { .. }
        | ClientError::LoginDenied { .. }
        | ClientError::DeviceCodeExpired => AUTHENTICATION,
        ClientError::Unreachable { .. } => UNREACHABLE,
        ClientError::Rpc(rpc) if rpc.code == RpcCode::Unavailable => UNREACHABLE,
        error if error.is_authentication() => AUTHENTICATION,
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flyteauth_client::config::ConfigError;
    use flyteauth_client::connect::RpcError;

    use super::*;

    fn rpc(code: RpcCode) -> ClientError {
        ClientError::Rpc(RpcError {
            method: "flyteidl2.auth.IdentityService/UserInfo".into(),
            code,
            message: String::new(),
        })
    }

    fn oauth(error: &str) -> ClientError {
        ClientError::OAuth {
            endpoint: "https://h/oauth2/token".into(),
            error: error.into(),
            description: None,
        }
    }

    #[test]
    fn configuration_is_5() {
        assert_eq!(
            client_exit_code(&ClientError::Config(ConfigError::NoEndpoint)),
            5
        );
        assert_eq!(
            client_exit_code(&ClientError::Config(ConfigError::Missing(
                "no client id".into()
            ))),
            5
        );
    }

    #[test]
    fn authentication_is_3() {
        let cases = [
            ClientError::LoginRequired {
                endpoint: "h".into(),
                reason: "invalid_grant".into(),
            },
            ClientError::LoginTimedOut {
                redirect_uri: "http://localhost:53593/callback".into(),
                timeout: Duration::from_secs(120),
            },
            ClientError::LoginDenied {
                error: "access_denied".into(),
                description: None,
            },
            ClientError::DeviceCodeExpired,
            oauth("invalid_client"),
            oauth("invalid_grant"),
            rpc(RpcCode::Unauthenticated),
        ];
        for case in cases {
            assert_eq!(client_exit_code(&case), 3, "{case}");
        }
    }

    #[test]
    fn unreachable_is_4() {
        assert_eq!(
            client_exit_code(&ClientError::Unreachable {
                url: "https://h".into(),
                reason: "refused".into()
            }),
            4
        );
        assert_eq!(client_exit_code(&rpc(RpcCode::Unavailable)), 4);
    }

    #[test]
    fn everything_else_is_1() {
        let cases = [
            rpc(RpcCode::PermissionDenied),
            rpc(RpcCode::NotFound),
            oauth("unauthorized_client"),
            ClientError::Command {
                program: "gcloud".into(),
                reason: "exited with 1".into(),
            },
        ];
        for case in cases {
            assert_eq!(client_exit_code(&case), 1, "{case:?}");
        }
    }

    #[test]
    fn cli_errors() {
        assert_eq!(CliError::Usage("pass --yes".into()).exit_code(), 2);
        assert_eq!(CliError::Failed("exists".into()).exit_code(), 1);
        assert_eq!(CliError::HandOver("no flyte".into()).exit_code(), 127);
        assert_eq!(CliError::from(ClientError::Interrupted).exit_code(), 130);
        assert_eq!(
            CliError::from(ClientError::DeviceCodeExpired).exit_code(),
            3
        );
    }

    #[test]
    fn one_line_messages() {
        let error = CliError::from(ClientError::Config(ConfigError::NoEndpoint));
        assert_eq!(
            error.to_string(),
            ClientError::Config(ConfigError::NoEndpoint).to_string()
        );
        assert!(!error.to_string().contains('\n'));
    }
}
