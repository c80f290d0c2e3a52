//! A service calling the control plane over gRPC with its own client credentials: settings found the way the
//! `flyte` SDK finds them, a [`Session`] with the client-credentials grant, the tonic [`AuthInterceptor`] that
//! adds the token (and renews it before it expires), and one `flyteidl.service.IdentityService/UserInfo` call.
//! It prints the subject the control plane sees.
//!
//! Run it with a config file as the only argument, or without one to use the usual discovery
//! (`FLYTE_ADMIN_ENDPOINT` and friends, `./.flyte/config.yaml`, `~/.flyte/config.yaml`, …):
//!
//! ```text
//! cargo run -p flyteauth-client --example service_call -- service.yaml
//! ```
//!
//! with `service.yaml` like
//!
//! ```yaml
//! admin:
//!   endpoint: dns:///flyte.example.com
//!   clientId: my-service
//!   clientSecretLocation: /etc/flyte/client_secret   # implies authType ClientSecret
//!   # insecure: true                                 # plaintext (an http:// control plane, e.g. localhost:8080)
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use flyteauth_client::cache::CacheOptions;
use flyteauth_client::config::{AuthType, Overrides, Places, ProcessEnv, Settings};
use flyteauth_client::flows::PlainUi;
use flyteauth_client::interceptor::{AuthInterceptor, TrustedIdentityClaims};
use flyteauth_client::session::Session;
use flyteauth_proto::flyteidl::service::UserInfoRequest;
use flyteauth_proto::flyteidl::service::identity_service_client::IdentityServiceClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(subject) => {
            println!("{subject}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<String, Box<dyn Error>> {
    let overrides = Overrides {
        config_file: std::env::args_os().nth(1).map(PathBuf::from),
        ..Overrides::default()
    };
    let settings = Settings::discover(&overrides, &Places::of_process(), &ProcessEnv)?;
    if settings.auth_type != AuthType::ClientSecret {
        return Err("this example signs in as a service: configure admin.clientId and admin.clientSecretLocation \
                    (or authType: ClientSecret)"
            .into());
    }
    if settings.insecure_skip_verify {
        return Err("insecureSkipVerify is not supported by this example's gRPC channel; use caCertFilePath".into());
    }
    let base = settings.require_endpoint()?.base_url(settings.insecure);
    let ca_file = settings.ca_cert_file_path.clone();

    let session =
        Arc::new(Session::new(settings, Arc::new(PlainUi), CacheOptions::default()).await?);
    let interceptor = AuthInterceptor::new(session, TrustedIdentityClaims::default()).await?;

    let mut endpoint = Endpoint::from_shared(base.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    if base.scheme() == "https" {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(std::fs::read(path)?));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint.connect().await?;
    let client = IdentityServiceClient::with_interceptor(channel, interceptor.clone());

    let reply = interceptor
        .call_with_retry(|| {
            let mut client = client.clone();
            async move { client.user_info(UserInfoRequest {}).await }
        })
        .await?;
    Ok(reply.into_inner().subject)
}
