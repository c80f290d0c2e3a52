use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;

use super::*;
use crate::keys::tests::test_keys;

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("flyteauth-secrets-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn no_env(dir: &Path) -> SecretSource {
    SecretSource::new(dir, "FLYTE_SECRET_").with_env_vars(Vec::<(String, String)>::new())
}

fn b64(bytes: &[u8]) -> String {
    RAW_STD.encode(bytes)
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), contents).unwrap();
}

/// A complete set in `dir` with the default names, using the shared test key.
fn complete_set(dir: &Path) {
    write(dir, COOKIE_HASH_KEY, b64(&[1; 64]));
    write(dir, COOKIE_BLOCK_KEY, b64(&[2; 32]));
    write(dir, CLAIM_SYMMETRIC_KEY, b64(&[3; 32]));
    write(dir, TOKEN_RSA_KEY, &test_keys()[0].1);
}

#[test]
fn environment_comes_before_files() {
    let dir = TempDir::new();
    write(&dir.0, "both", "from-file");
    write(&dir.0, "file-only", "from-file");
    let src = SecretSource::new(&dir.0, "MY_PREFIX_")
        .with_env_vars([("MY_PREFIX_both", "from-env"), ("MY_PREFIX_env-only", "e")]);
    assert_eq!(src.read("both").unwrap().unwrap().expose(), b"from-env");
    assert_eq!(
        src.read("file-only").unwrap().unwrap().expose(),
        b"from-file"
    );
    assert_eq!(src.read("env-only").unwrap().unwrap().expose(), b"e");
    assert!(src.read("neither").unwrap().is_none());
    match src.require("neither") {
        Err(e @ SecretError::Missing { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("\"neither\"") && msg.contains("MY_PREFIX_neither"),
                "{msg}"
            );
            assert!(
                msg.contains(&dir.0.join("neither").display().to_string()),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(src.secrets_prefix(), dir.0);
}

#[test]
fn from_config_uses_the_secrets_section() {
    let cfg = crate::config::SecretsConfig {
        secrets_prefix: "/nonexistent/flyteauth".into(),
        env_prefix: "X_".into(),
    };
    let src = SecretSource::from_config(&cfg);
    assert_eq!(src.secrets_prefix(), Path::new("/nonexistent/flyteauth"));
    assert!(src.read("whatever-not-set-anywhere").unwrap().is_none());
}

#[test]
fn secret_names_cannot_escape_the_directory() {
    let src = no_env(Path::new("/tmp"));
    for name in ["", ".", "..", "../etc/passwd", "a/b", "a\\b"] {
        assert!(
            matches!(src.read(name), Err(SecretError::Malformed { .. })),
            "{name:?}"
        );
    }
}

#[test]
fn unreadable_secrets_are_io_errors() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("a-directory")).unwrap();
    assert!(matches!(
        no_env(&dir.0).read("a-directory"),
        Err(SecretError::Io { .. })
    ));
}

#[test]
fn base64_secrets_tolerate_line_breaks_whitespace_and_padding() {
    let bytes: Vec<u8> = (0..64).collect();
    let raw = b64(&bytes);
    let padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    for form in [
        raw.clone(),
        format!("{raw}\n"),
        format!("{raw}\r\n"),
        format!("{raw}  \t\n"),
        format!("{}\r\n{}", &raw[..30], &raw[30..]),
        padded,
    ] {
        let decoded = decode_base64_secret("k", &Secret::new(form.clone().into_bytes())).unwrap();
        assert_eq!(decoded.expose(), bytes.as_slice(), "{form:?}");
    }
    match decode_base64_secret("k", &Secret::new(b"not*base64".to_vec())) {
        Err(SecretError::Malformed { name, reason }) => {
            assert_eq!(name, "k");
            assert!(!reason.contains("not*base64"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn auth_secrets_load_a_complete_set() {
    let dir = TempDir::new();
    complete_set(&dir.0);
    let loaded = AuthSecrets::load(&no_env(&dir.0), &Config::default()).unwrap();
    assert_eq!(loaded.cookie_hash_key.expose(), [1; 64]);
    assert_eq!(loaded.cookie_block_key.expose(), [2; 32]);
    assert_eq!(loaded.claim_symmetric_key.expose(), [3; 32]);
    assert_eq!(loaded.key_ring.current().kid(), test_keys()[0].0.kid());
    assert!(loaded.key_ring.previous().is_none());
    let debug = format!("{loaded:?}");
    assert!(
        debug.contains("<redacted>") && !debug.contains("[1, 1"),
        "{debug}"
    );

    write(&dir.0, TOKEN_RSA_KEY_OLD, &test_keys()[1].1);
    let loaded = AuthSecrets::load(&no_env(&dir.0), &Config::default()).unwrap();
    assert_eq!(
        loaded.key_ring.previous().unwrap().kid(),
        test_keys()[1].0.kid()
    );
}

#[test]
fn auth_secrets_use_the_configured_names() {
    let dir = TempDir::new();
    write(&dir.0, "hash", b64(&[1; 32]));
    write(&dir.0, "block", b64(&[2; 16]));
    write(&dir.0, "claims", b64(&[3; 32]));
    let mut cfg = Config::default();
    cfg.auth.user_auth.cookie_hash_key_secret_name = "hash".into();
    cfg.auth.user_auth.cookie_block_key_secret_name = "block".into();
    let sas = &mut cfg.auth.app_auth.self_auth_server;
    sas.claim_symmetric_encryption_key_secret_name = "claims".into();
    sas.token_signing_rsa_key_secret_name = "signing".into();
    sas.old_token_signing_rsa_key_secret_name = String::new();
    let src = no_env(&dir.0).with_env_vars([("FLYTE_SECRET_signing", test_keys()[1].1.clone())]);
    let loaded = AuthSecrets::load(&src, &cfg).unwrap();
    assert_eq!(loaded.cookie_block_key.expose().len(), 16);
    assert_eq!(loaded.key_ring.current().kid(), test_keys()[1].0.kid());
}

#[test]
fn missing_or_malformed_secrets_are_named() {
    let cases: [(&str, &[u8], &str); 6] = [
        (COOKIE_HASH_KEY, b"", "missing"),
        (COOKIE_HASH_KEY, b"AAAA", "bytes"),
        (
            COOKIE_BLOCK_KEY,
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "16, 24 or 32",
        ),
        (CLAIM_SYMMETRIC_KEY, b"%%%", "base64"),
        (
            TOKEN_RSA_KEY,
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "PKCS#1",
        ),
        (TOKEN_RSA_KEY_OLD, b"garbage", "PEM"),
    ];
    for (name, contents, hint) in cases {
        let dir = TempDir::new();
        complete_set(&dir.0);
        if contents.is_empty() {
            std::fs::remove_file(dir.0.join(name)).unwrap();
        } else {
            write(&dir.0, name, contents);
        }
        let err = AuthSecrets::load(&no_env(&dir.0), &Config::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{name:?}")), "{name}: {msg}");
        assert!(msg.contains(hint), "{name}: {msg}");
    }
}

#[test]
fn oidc_client_secret_trims_one_trailing_newline() {
    let dir = TempDir::new();
    let cfg = crate::config::OpenIdConfig::default();
    assert!(
        load_oidc_client_secret(&no_env(&dir.0), &cfg)
            .unwrap()
            .is_none()
    );
    write(&dir.0, OIDC_CLIENT_SECRET, "s3cret\n\n");
    assert_eq!(
        load_oidc_client_secret(&no_env(&dir.0), &cfg)
            .unwrap()
            .unwrap()
            .expose(),
        b"s3cret\n"
    );
    write(&dir.0, OIDC_CLIENT_SECRET, "s3cret");
    assert_eq!(
        load_oidc_client_secret(&no_env(&dir.0), &cfg)
            .unwrap()
            .unwrap()
            .expose(),
        b"s3cret"
    );

    let file = dir.0.join("legacy-secret");
    std::fs::write(&file, "legacy\n").unwrap();
    let legacy = crate::config::OpenIdConfig {
        client_secret_file: Some(file),
        ..cfg.clone()
    };
    assert_eq!(
        load_oidc_client_secret(&no_env(&dir.0), &legacy)
            .unwrap()
            .unwrap()
            .expose(),
        b"legacy"
    );
}

#[test]
fn secrets_never_show_in_debug() {
    let s = Secret::new(b"hunter2".to_vec());
    assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
}

#[test]
fn a_fresh_set_is_written_privately_and_loads() {
    let dir = TempDir::new();
    let target = dir.0.join("data").join("secrets");
    let written = write_fresh_set(&target).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            CLAIM_SYMMETRIC_KEY,
            COOKIE_HASH_KEY,
            COOKIE_BLOCK_KEY,
            TOKEN_RSA_KEY
        ]
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), 0o700);
        for path in &written {
            assert_eq!(mode(path), 0o600, "{}", path.display());
        }
    }

    let src = no_env(&target);
    for (name, len) in [
        (CLAIM_SYMMETRIC_KEY, 32),
        (COOKIE_HASH_KEY, 64),
        (COOKIE_BLOCK_KEY, 32),
    ] {
        let raw = src.require(name).unwrap();
        assert!(
            !raw.expose().contains(&b'='),
            "{name} is written without padding"
        );
        assert!(
            !raw.expose().ends_with(b"\n"),
            "{name} is written without a newline"
        );
        assert_eq!(
            decode_base64_secret(name, &raw).unwrap().expose().len(),
            len,
            "{name}"
        );
    }
    let pem = src.require(TOKEN_RSA_KEY).unwrap();
    assert!(pem.expose().starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));

    let loaded = AuthSecrets::load(&src, &Config::default()).unwrap();
    assert_eq!(loaded.key_ring.current().public().modulus().len(), 256);

    match write_fresh_set(&target) {
        Err(SecretError::Exists { path }) => assert_eq!(path, target.join(CLAIM_SYMMETRIC_KEY)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fresh_set_refuses_to_overwrite_any_existing_file() {
    let dir = TempDir::new();
    write(&dir.0, TOKEN_RSA_KEY, "keep me");
    match write_fresh_set(&dir.0) {
        Err(e @ SecretError::Exists { .. }) => assert!(e.to_string().contains(TOKEN_RSA_KEY)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read(dir.0.join(TOKEN_RSA_KEY)).unwrap(),
        b"keep me"
    );
    assert!(
        !dir.0.join(COOKIE_HASH_KEY).exists(),
        "nothing else was written"
    );
}

#[test]
fn a_fresh_set_of_each_algorithm_loads_under_that_algorithm_only() {
    for alg in SigningAlgorithm::ALL {
        let dir = TempDir::new();
        write_fresh_set_for(&dir.0, alg).unwrap();
        let src = no_env(&dir.0);
        let mut cfg = Config::default();
        cfg.flyteauth.signing_algorithm = alg;
        let loaded = AuthSecrets::load(&src, &cfg).unwrap();
        assert_eq!(loaded.key_ring.current().algorithm(), alg);

        let other = if alg == SigningAlgorithm::Rs256 {
            SigningAlgorithm::EdDsa
        } else {
            SigningAlgorithm::Rs256
        };
        cfg.flyteauth.signing_algorithm = other;
        let err = AuthSecrets::load(&src, &cfg).unwrap_err();
        assert!(
            matches!(err, SecretError::AlgorithmMismatch { found, configured, .. } if found == alg && configured == other),
            "{err:?}"
        );
        let line = err.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains(&format!("flyteauth.signingAlgorithm is {other}"))
                && line.contains(TOKEN_RSA_KEY),
            "{line}"
        );
    }
}

#[test]
fn the_previous_key_may_be_of_another_kind() {
    let dir = TempDir::new();
    write_fresh_set_for(&dir.0, SigningAlgorithm::Es256).unwrap();
    write(&dir.0, TOKEN_RSA_KEY_OLD, &test_keys()[0].1);
    let mut cfg = Config::default();
    cfg.flyteauth.signing_algorithm = SigningAlgorithm::Es256;
    cfg.auth
        .app_auth
        .self_auth_server
        .old_token_signing_rsa_key_secret_name = TOKEN_RSA_KEY_OLD.into();
    let loaded = AuthSecrets::load(&no_env(&dir.0), &cfg).unwrap();
    let previous = loaded.key_ring.previous().unwrap();
    assert_eq!(previous.algorithm(), SigningAlgorithm::Rs256);
    assert_eq!(previous.kid(), test_keys()[0].0.kid());
}
