//! The embedded default: what `flyteauth serve` does with no configuration file.
//!
//! Everything lives in one data directory (0700): the SQLite database, a generated secret set and
//! one confidential client, `default-app`, whose secret is written once to a 0600 file and stored
//! in the database only as a hash.

use flyteauth_core::clients::{generate_secret, hash_generated_secret};
use flyteauth_store::{NewApp, Store};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Client id of the confidential client the embedded default creates.
pub const DEFAULT_CLIENT_ID: &str = "default-app";

/// Why the embedded default could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// No data directory could be determined.
    #[error("no data directory: pass --data-dir, or set FLYTEAUTH_DATA_DIR, XDG_DATA_HOME or HOME")]
    NoDataDir,
    /// A file or directory could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The store refused the default client.
    #[error("could not create the default client: {0}")]
    Store(#[from] flyteauth_store::StoreError),
}

/// The data directory: `--data-dir`, else `$FLYTEAUTH_DATA_DIR`, else `$XDG_DATA_HOME/flyteauth`,
/// else `~/.local/share/flyteauth`.
pub fn data_dir(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("FLYTEAUTH_DATA_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(dir).join("flyteauth"));
    }
    env("HOME")
        .map(|home| PathBuf::from(home).join(".local/share/flyteauth"))
        .ok_or(EmbeddedError::NoDataDir)
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> Result<(), EmbeddedError> {
    let io = |source| EmbeddedError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// Writes a new file readable by the owner only; fails if it exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), EmbeddedError> {
    let io = |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The default client as it stands after start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultClient {
    /// Created just now; the caller prints how to use it, once.
    Created {
        /// Where the secret was written.
        secret_file: PathBuf,
    },
    /// Already present from an earlier start.
    Existing {
        /// Where the secret was written when it was created.
        secret_file: PathBuf,
    },
}

/// Makes sure the default client exists, creating it and its secret file on first start.
pub async fn ensure_default_client(
    store: &dyn Store,
    data_dir: &Path,
    now: i64,
) -> Result<DefaultClient, EmbeddedError> {
    let secret_file = data_dir.join(format!("{DEFAULT_CLIENT_ID}.secret"));
    if store.get_app(DEFAULT_CLIENT_ID).await?.is_some() {
        return Ok(DefaultClient::Existing { secret_file });
    }
    let secret = generate_secret();
    // The file first: a client whose secret nobody can read would be useless.
    if secret_file.exists() {
        std::fs::remove_file(&secret_file).map_err(|source| EmbeddedError::Io {
            path: secret_file.clone(),
            source,
        })?;
    }
    write_private_file(&secret_file, format!("{secret}\n").as_bytes())?;
    store
        .create_app(&NewApp {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_name: "Default app of the embedded server".to_owned(),
            organization: String::new(),
            secret_hash: hash_generated_secret(&secret).encode(),
            grant_types: vec!["client_credentials".to_owned()],
            scopes: vec!["all".to_owned()],
            audience: Vec::new(),
            redirect_uris: Vec::new(),
            created_by: "flyteauth serve (embedded default)".to_owned(),
            created_at: now,
        })
        .await?;
    Ok(DefaultClient::Created { secret_file })
}

/// How to use the default client: printed once, when it is created.
pub fn usage_banner(public_url: &str, secret_file: &Path, ca_file: Option<&Path>) -> String {
    let secret = secret_file.display();
    let host = public_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut text = format!(
        "\nflyteauth created the confidential client '{DEFAULT_CLIENT_ID}'; its secret is in {secret} (mode 0600).\n\
         \n  Get a token:\n    curl -s -u \"{DEFAULT_CLIENT_ID}:$(cat {secret})\" -d grant_type=client_credentials {public_url}/oauth2/token\n"
    );
    let insecure = if ca_file.is_none() {
        "\n    insecure: true"
    } else {
        ""
    };
    let ca = ca_file
        .map(|ca| format!("\n    caCertFilePath: {}", ca.display()))
        .unwrap_or_default();
    text.push_str(&format!(
        "\n  flytekit and the flyte SDK (~/.flyte/config.yaml):\n  admin:\n    endpoint: dns:///{host}{insecure}\n    authType: ClientSecret\n    clientId: {DEFAULT_CLIENT_ID}\n    clientSecretLocation: {secret}{ca}\n"
    ));
    match ca_file {
        Some(ca) => text.push_str(&format!(
            "\n  The flyte SDK's token requests also need: export SSL_CERT_FILE={}\n",
            ca.display()
        )),
        None => text.push_str(
            "\n  The flyte 2.x SDK sends credentials only over TLS: restart with --self-signed-tls to use it.\n",
        ),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_data_dir_wins() {
        assert_eq!(
            data_dir(Some(Path::new("/x/y"))).unwrap(),
            PathBuf::from("/x/y")
        );
    }

    #[test]
    fn banner_names_the_secret_file_not_the_secret() {
        let banner = usage_banner(
            "http://localhost:8088",
            Path::new("/d/default-app.secret"),
            None,
        );
        assert!(banner.contains("/d/default-app.secret"));
        assert!(banner.contains("dns:///localhost:8088"));
        assert!(banner.contains("insecure: true"));
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("flyteauth-embedded-{}", std::process::id()));
        ensure_private_dir(&dir).unwrap();
        let file = dir.join("secret");
        let _ = std::fs::remove_file(&file);
        write_private_file(&file, b"x").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            write_private_file(&file, b"y").is_err(),
            "must not overwrite"
        );
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
