//! Tests of discovery and precedence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// A home directory and a working directory inside a temporary directory, and a set of variables.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cwd: PathBuf,
    home: PathBuf,
    env: HashMap<String, String>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let cwd = root.join("work");
        let home = root.join("home");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        Self {
            _dir: dir,
            root,
            cwd,
            home,
            env: HashMap::new(),
        }
    }

    /// Writes `content` at `path` (relative to the temporary root), creating directories.
    fn write(&self, path: &str, content: &str) -> PathBuf {
        let path = self.root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.env.insert(name.to_owned(), value.into());
        self
    }

    fn places(&self) -> Places {
        Places {
            cwd: self.cwd.clone(),
            home: Some(self.home.clone()),
        }
    }

    fn discover_with(&self, overrides: &Overrides) -> Result<Settings, ConfigError> {
        Settings::discover(overrides, &self.places(), &MapEnv(self.env.clone()))
    }

    fn discover(&self) -> Settings {
        self.discover_with(&Overrides::default()).unwrap()
    }

    fn error(&self) -> ConfigError {
        self.discover_with(&Overrides::default()).unwrap_err()
    }

    fn find(&self, overrides: &Overrides) -> Option<PathBuf> {
        Settings::find_config_file(overrides, &self.places(), &MapEnv(self.env.clone()))
    }
}

fn endpoint_of(s: &Settings) -> String {
    s.endpoint
        .as_ref()
        .map(Endpoint::to_config_string)
        .unwrap_or_default()
}

fn one_line(err: &ConfigError) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "more than one line: {text}");
    text
}

fn key(host: &str, id: &str, secret: &str, org: &str) -> String {
    STANDARD.encode(format!("{host}:{id}:{secret}:{org}"))
}

// ---------------------------------------------------------------------------------------------------------------
// Search order

/// Every location in order; removing the winner each time reveals the next.
#[test]
fn each_location_in_the_search_order() {
    let mut w = World::new();
    std::fs::create_dir_all(w.root.join(".git")).unwrap();
    w.cwd = w.root.join("work/sub");
    std::fs::create_dir_all(&w.cwd).unwrap();
    let locations = [
        "work/sub/config.yaml",
        "work/sub/.flyte/config.yaml",
        ".flyte/config.yaml",
        "uctl.yaml",
        "flytectl.yaml",
        "home/.union/config.yaml",
        "home/.flyte/config.yaml",
    ];
    let mut written = Vec::new();
    for (i, location) in locations.iter().enumerate() {
        written.push(w.write(
            location,
            &format!("admin:\n  endpoint: dns:///host{i}.test\n"),
        ));
    }
    w.set(
        "UCTL_CONFIG",
        w.root.join("uctl.yaml").display().to_string(),
    );
    w.set(
        "FLYTECTL_CONFIG",
        w.root.join("flytectl.yaml").display().to_string(),
    );
    for (i, path) in written.iter().enumerate() {
        let s = w.discover();
        assert_eq!(endpoint_of(&s), format!("dns:///host{i}.test"), "step {i}");
        assert_eq!(s.config_file.as_deref(), Some(path.as_path()));
        assert_eq!(
            w.find(&Overrides::default()).as_deref(),
            Some(path.as_path())
        );
        std::fs::remove_file(path).unwrap();
        // A variable whose file is gone would be an error: unset it once its turn is over.
        if locations[i] == "uctl.yaml" {
            w.env.remove("UCTL_CONFIG");
        }
        if locations[i] == "flytectl.yaml" {
            w.env.remove("FLYTECTL_CONFIG");
        }
    }
    let s = w.discover();
    assert_eq!(s.config_file, None);
    assert_eq!(s.endpoint, None);
    assert_eq!(w.find(&Overrides::default()), None);
}

#[test]
fn the_config_flag_beats_every_location() {
    let w = World::new();
    w.write("work/config.yaml", "admin:\n  endpoint: near.test\n");
    let named = w.write("elsewhere/mine.yml", "admin:\n  endpoint: named.test\n");
    let overrides = Overrides {
        config_file: Some(named.clone()),
        ..Overrides::default()
    };
    let s = w.discover_with(&overrides).unwrap();
    assert_eq!(endpoint_of(&s), "dns:///named.test");
    assert_eq!(s.config_file, Some(named));
}

#[test]
fn a_relative_config_flag_is_relative_to_the_working_directory_and_tilde_is_home() {
    let w = World::new();
    w.write("work/conf/a.yaml", "admin:\n  endpoint: relative.test\n");
    w.write("home/b.yaml", "admin:\n  endpoint: tilde.test\n");
    let relative = Overrides {
        config_file: Some("conf/a.yaml".into()),
        ..Overrides::default()
    };
    assert_eq!(
        endpoint_of(&w.discover_with(&relative).unwrap()),
        "dns:///relative.test"
    );
    let tilde = Overrides {
        config_file: Some("~/b.yaml".into()),
        ..Overrides::default()
    };
    assert_eq!(
        endpoint_of(&w.discover_with(&tilde).unwrap()),
        "dns:///tilde.test"
    );
}

#[test]
fn the_git_root_is_found_from_a_subdirectory_and_a_worktree_file_counts() {
    let mut w = World::new();
    w.cwd = w.root.join("repo/a/b");
    std::fs::create_dir_all(&w.cwd).unwrap();
    let config = w.write("repo/.flyte/config.yaml", "admin:\n  endpoint: git.test\n");
    // Without .git the file is not found.
    assert_eq!(w.discover().config_file, None);
    w.write("repo/.git", "gitdir: /somewhere/else\n");
    let s = w.discover();
    assert_eq!(s.config_file, Some(config));
    assert_eq!(endpoint_of(&s), "dns:///git.test");
    // The nearest .git wins: a nested repository without a config hides the outer one.
    std::fs::create_dir_all(w.root.join("repo/a/.git")).unwrap();
    assert_eq!(w.discover().config_file, None);
}

#[test]
fn a_named_file_that_does_not_exist_is_an_error_and_a_default_one_is_skipped() {
    let mut w = World::new();
    let missing = w.root.join("nope.yaml");
    let err = w
        .discover_with(&Overrides {
            config_file: Some(missing.clone()),
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Unreadable { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(one_line(&err).contains("--config"), "{err}");
    // find_config_file names the file discovery would try, even when it is missing.
    assert_eq!(
        w.find(&Overrides {
            config_file: Some(missing.clone()),
            ..Overrides::default()
        }),
        Some(missing.clone())
    );

    for var in ["UCTL_CONFIG", "FLYTECTL_CONFIG"] {
        w.env.clear();
        w.set(var, missing.display().to_string());
        let err = w.error();
        assert!(
            matches!(&err, ConfigError::Unreadable { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(one_line(&err).contains(var), "{err}");
    }

    // A directory named by a variable is not a file.
    w.env.clear();
    w.set("UCTL_CONFIG", w.home.display().to_string());
    assert!(matches!(w.error(), ConfigError::Unreadable { .. }));

    // A nearer default file means the variable is never consulted.
    w.write("work/config.yaml", "admin:\n  endpoint: near.test\n");
    assert_eq!(endpoint_of(&w.discover()), "dns:///near.test");
}

#[test]
fn uctl_config_comes_before_flytectl_config() {
    let mut w = World::new();
    let uctl = w.write("u.yaml", "admin:\n  endpoint: uctl.test\n");
    let flytectl = w.write("f.yaml", "admin:\n  endpoint: flytectl.test\n");
    w.set("FLYTECTL_CONFIG", flytectl.display().to_string());
    assert_eq!(endpoint_of(&w.discover()), "dns:///flytectl.test");
    w.set("UCTL_CONFIG", uctl.display().to_string());
    assert_eq!(endpoint_of(&w.discover()), "dns:///uctl.test");
    // Through a redirection, too.
    w.env.remove("UCTL_CONFIG");
    w.set("MY_CONFIG", uctl.display().to_string());
    w.set("UCTL_CONFIG_FROM_ENV_VAR", "MY_CONFIG");
    assert_eq!(endpoint_of(&w.discover()), "dns:///uctl.test");
}

#[test]
fn variables_apply_without_any_file() {
    let mut w = World::new();
    w.set("FLYTE_ADMIN_ENDPOINT", "env.test:8443");
    w.set("FLYTE_ADMIN_INSECURE", "true");
    let s = w.discover();
    assert_eq!(s.config_file, None);
    assert_eq!(endpoint_of(&s), "dns:///env.test:8443");
    assert!(s.insecure);
}

// ---------------------------------------------------------------------------------------------------------------
// Precedence

const FULL_FILE: &str = "\
admin:
  endpoint: dns:///file.test
  insecure: false
  authType: DeviceFlow
  clientId: file-client
task:
  org: file-org
  project: file-project
  domain: file-domain
";

#[test]
fn a_flag_beats_a_variable_which_beats_the_file_which_beats_the_default() {
    let mut w = World::new();
    // Default.
    let s = w.discover();
    assert_eq!(
        (s.endpoint.clone(), s.insecure, s.auth_type),
        (None, false, AuthType::Pkce)
    );
    assert_eq!(s.org, None);

    // File.
    w.write("work/config.yaml", FULL_FILE);
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///file.test");
    assert_eq!(s.auth_type, AuthType::DeviceFlow);
    assert_eq!(s.client_id.as_deref(), Some("file-client"));
    assert_eq!(s.org.as_deref(), Some("file-org"));
    assert_eq!(s.project.as_deref(), Some("file-project"));
    assert_eq!(s.domain.as_deref(), Some("file-domain"));
    assert!(!s.insecure);

    // Variables.
    w.set("FLYTE_ADMIN_ENDPOINT", "env.test")
        .set("FLYTE_ADMIN_INSECURE", "yes")
        .set("FLYTE_AUTH_TYPE", "ExternalCommand")
        .set("FLYTE_ADMIN_CLIENTID", "env-client")
        .set("FLYTE_TASK_ORG", "env-org")
        .set("FLYTE_TASK_PROJECT", "env-project")
        .set("FLYTE_TASK_DOMAIN", "env-domain");
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///env.test");
    assert!(s.insecure);
    assert_eq!(s.auth_type, AuthType::ExternalCommand);
    assert_eq!(s.client_id.as_deref(), Some("env-client"));
    assert_eq!(
        (s.org.as_deref(), s.project.as_deref(), s.domain.as_deref()),
        (Some("env-org"), Some("env-project"), Some("env-domain"))
    );

    // Flags.
    w.set("FLYTE_ADMIN_INSECURE", "false");
    let overrides = Overrides {
        endpoint: Some("https://flag.test/".into()),
        insecure: true,
        auth_type: Some(AuthType::ClientSecret),
        org: Some("flag-org".into()),
        ..Overrides::default()
    };
    let s = w.discover_with(&overrides).unwrap();
    assert_eq!(endpoint_of(&s), "dns:///flag.test");
    assert!(s.insecure);
    assert_eq!(s.auth_type, AuthType::ClientSecret);
    assert_eq!(s.org.as_deref(), Some("flag-org"));
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let mut w = World::new();
    w.write("work/config.yaml", FULL_FILE);
    w.set("FLYTE_ADMIN_ENDPOINT", "").set("FLYTE_AUTH_TYPE", "");
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///file.test");
    assert_eq!(s.auth_type, AuthType::DeviceFlow);
}

#[test]
fn defaults() {
    let s = World::new().discover();
    assert_eq!(s.token_refresh_window, Duration::from_secs(60));
    assert_eq!(s.pkce_timeout, Duration::from_secs(120));
    assert_eq!(s.device_timeout, Duration::from_secs(600));
    assert!(s.scopes.is_empty() && s.command.is_empty() && s.proxy_command.is_empty());
    assert!(!s.disable_keyring && !s.use_audience_from_admin && !s.insecure_skip_verify);
    assert_eq!(s.client_secret, None);
}

/// Each alias of each setting is read, and the earlier alias of a pair wins over the later one.
#[test]
fn every_alias_of_every_setting() {
    type Check = fn(&Settings) -> String;
    let cases: &[(&[&str], &str, &str, Check)] = &[
        (
            &["FLYTE_ADMIN_ENDPOINT", "FLYTE_PLATFORM_URL"],
            "a.test",
            "b.test",
            |s| endpoint_of(s),
        ),
        (
            &["FLYTE_ADMIN_INSECURE", "FLYTE_PLATFORM_INSECURE"],
            "on",
            "off",
            |s| s.insecure.to_string(),
        ),
        (
            &[
                "FLYTE_ADMIN_INSECURESKIPVERIFY",
                "FLYTE_PLATFORM_INSECURE_SKIP_VERIFY",
            ],
            "1",
            "0",
            |s| s.insecure_skip_verify.to_string(),
        ),
        (
            &[
                "FLYTE_ADMIN_CACERTFILEPATH",
                "FLYTE_PLATFORM_CA_CERT_FILE_PATH",
            ],
            "/a.pem",
            "/b.pem",
            |s| format!("{:?}", s.ca_cert_file_path),
        ),
        (
            &["FLYTE_ADMIN_HTTPPROXYURL", "FLYTE_PLATFORM_HTTP_PROXY_URL"],
            "http://a:3128",
            "http://b:3128",
            |s| format!("{:?}", s.http_proxy_url),
        ),
        (
            &[
                "FLYTE_AUTH_TYPE",
                "FLYTE_ADMIN_AUTHTYPE",
                "FLYTE_CREDENTIALS_AUTH_MODE",
            ],
            "headless",
            "external_process",
            |s| format!("{:?}", s.auth_type),
        ),
        (
            &["FLYTE_ADMIN_CLIENTID", "FLYTE_CREDENTIALS_CLIENT_ID"],
            "id-a",
            "id-b",
            |s| format!("{:?}", s.client_id),
        ),
        (
            &["FLYTE_ADMIN_SCOPES", "FLYTE_CREDENTIALS_SCOPES"],
            "a,b",
            "c d",
            |s| s.scopes.join("|"),
        ),
        (
            &["FLYTE_ADMIN_AUDIENCE", "FLYTE_CREDENTIALS_AUDIENCE"],
            "aud-a",
            "aud-b",
            |s| format!("{:?}", s.audience),
        ),
        (
            &["FLYTE_ADMIN_USEAUDIENCEFROMADMIN"],
            "true",
            "false",
            |s| s.use_audience_from_admin.to_string(),
        ),
        (&["FLYTE_ADMIN_TOKENREFRESHWINDOW"], "5m", "1s", |s| {
            format!("{:?}", s.token_refresh_window)
        }),
        (
            &[
                "FLYTE_AUTH_COMMAND",
                "FLYTE_ADMIN_COMMAND",
                "FLYTE_CREDENTIALS_COMMAND",
            ],
            "tok --a",
            "other",
            |s| s.command.join("|"),
        ),
        (
            &[
                "FLYTE_AUTH_PROXY_COMMAND",
                "FLYTE_ADMIN_PROXYCOMMAND",
                "FLYTE_CREDENTIALS_PROXY_COMMAND",
            ],
            "[\"p\", \"q\"]",
            "r",
            |s| s.proxy_command.join("|"),
        ),
        (&["FLYTE_ADMIN_DISABLEKEYRING"], "true", "false", |s| {
            s.disable_keyring.to_string()
        }),
        (&["FLYTE_ADMIN_PKCECONFIG_TIMEOUT"], "3m", "1s", |s| {
            format!("{:?}", s.pkce_timeout)
        }),
        (&["FLYTE_ADMIN_DEVICEFLOWCONFIG_TIMEOUT"], "90", "1s", |s| {
            format!("{:?}", s.device_timeout)
        }),
        (&["FLYTE_TASK_ORG"], "o1", "o2", |s| format!("{:?}", s.org)),
        (&["FLYTE_TASK_PROJECT"], "p1", "p2", |s| {
            format!("{:?}", s.project)
        }),
        (&["FLYTE_TASK_DOMAIN"], "d1", "d2", |s| {
            format!("{:?}", s.domain)
        }),
    ];
    for (names, first, second, check) in cases {
        let default = check(&World::new().discover());
        let mut values = Vec::new();
        for name in *names {
            let mut w = World::new();
            w.set(name, *first);
            let got = check(&w.discover());
            assert_ne!(got, default, "{name} was not read");
            values.push(got);
        }
        assert!(
            values.windows(2).all(|v| v[0] == v[1]),
            "{names:?}: {values:?}"
        );
        for pair in names.windows(2) {
            let mut w = World::new();
            w.set(pair[0], *first).set(pair[1], *second);
            assert_eq!(
                check(&w.discover()),
                values[0],
                "{} should beat {}",
                pair[0],
                pair[1]
            );
        }
    }
}

#[test]
fn every_file_key() {
    let w = World::new();
    w.write(
        "work/config.yaml",
        "\
admin:
  endpoint: https://Flyte.Example.COM:8443/prefix/
  insecure: true
  insecureSkipVerify: true
  caCertFilePath: certs/ca.pem
  httpProxyURL: http://proxy:3128
  authType: client_credentials
  clientId: my-client
  scopes: [offline, all]
  audience: my-aud
  useAudienceFromAdmin: true
  tokenRefreshWindow: 2m30s
  command: [get-token, --json]
  proxyCommand: proxy-token --x
  disableKeyring: true
  pkceConfig:
    timeout: 45s
    refreshTime: 5m
  deviceFlowConfig:
    timeout: 1h
    pollInterval: 5s
  maxRetries: 4
task:
  org: o
  project: p
  domain: d
image:
  builder: remote
local:
  persistence: true
console:
  endpoint: https://console
",
    );
    let s = w.discover();
    let e = s.endpoint.clone().unwrap();
    assert_eq!(e.authority, "flyte.example.com:8443");
    assert_eq!(e.path_prefix, "/prefix");
    assert!(s.insecure && s.insecure_skip_verify && s.use_audience_from_admin && s.disable_keyring);
    assert_eq!(s.ca_cert_file_path, Some(w.cwd.join("certs/ca.pem")));
    assert_eq!(s.http_proxy_url.as_deref(), Some("http://proxy:3128"));
    assert_eq!(s.auth_type, AuthType::ClientSecret);
    assert_eq!(s.client_id.as_deref(), Some("my-client"));
    assert_eq!(s.scopes, ["offline", "all"]);
    assert_eq!(s.audience.as_deref(), Some("my-aud"));
    assert_eq!(s.token_refresh_window, Duration::from_secs(150));
    assert_eq!(s.command, ["get-token", "--json"]);
    assert_eq!(s.proxy_command, ["proxy-token", "--x"]);
    assert_eq!(s.pkce_timeout, Duration::from_secs(45));
    assert_eq!(s.device_timeout, Duration::from_secs(3600));
    assert_eq!(
        (s.org.as_deref(), s.project.as_deref(), s.domain.as_deref()),
        (Some("o"), Some("p"), Some("d"))
    );
}

// ---------------------------------------------------------------------------------------------------------------
// _FROM_FILE and _FROM_ENV_VAR

#[test]
fn from_file_and_from_env_var_redirections() {
    let mut w = World::new();
    let endpoint_file = w.write("endpoint.txt", "file.test\n");
    w.set(
        "FLYTE_ADMIN_ENDPOINT_FROM_FILE",
        endpoint_file.display().to_string(),
    );
    assert_eq!(endpoint_of(&w.discover()), "dns:///file.test");

    // _FROM_FILE beats _FROM_ENV_VAR; X beats both.
    w.set("OTHER", "other.test");
    w.set("FLYTE_ADMIN_ENDPOINT_FROM_ENV_VAR", "OTHER");
    assert_eq!(endpoint_of(&w.discover()), "dns:///file.test");
    w.env.remove("FLYTE_ADMIN_ENDPOINT_FROM_FILE");
    assert_eq!(endpoint_of(&w.discover()), "dns:///other.test");
    w.set("FLYTE_ADMIN_ENDPOINT", "direct.test");
    assert_eq!(endpoint_of(&w.discover()), "dns:///direct.test");

    // A redirection to an unset variable is unset, and the next alias is read.
    let mut w = World::new();
    w.set("FLYTE_ADMIN_ENDPOINT_FROM_ENV_VAR", "NOT_SET");
    w.set("FLYTE_PLATFORM_URL", "platform.test");
    assert_eq!(endpoint_of(&w.discover()), "dns:///platform.test");
}

#[test]
fn from_file_drops_exactly_one_line_ending() {
    for (content, expected) in [
        ("id\n", "id"),
        ("id\r\n", "id"),
        ("id", "id"),
        (" id \n", "id"),
    ] {
        let mut w = World::new();
        let path = w.write("id.txt", content);
        w.set("FLYTE_ADMIN_CLIENTID_FROM_FILE", path.display().to_string());
        assert_eq!(
            w.discover().client_id.as_deref(),
            Some(expected),
            "{content:?}"
        );
    }
    // Secrets are not trimmed: exactly one line ending goes.
    for (content, expected) in [
        (" sec ret \n", " sec ret "),
        ("sec\n\n", "sec\n"),
        ("sec\r\n", "sec"),
    ] {
        let mut w = World::new();
        let path = w.write("s.txt", content);
        w.set(
            "FLYTE_CREDENTIALS_CLIENT_SECRET_FROM_FILE",
            path.display().to_string(),
        );
        assert_eq!(
            w.discover().client_secret.unwrap().expose(),
            expected,
            "{content:?}"
        );
    }
}

#[test]
fn an_unreadable_from_file_names_the_variable_and_the_path_but_not_the_content() {
    let mut w = World::new();
    let missing = w.root.join("missing-secret");
    w.set(
        "FLYTE_CREDENTIALS_CLIENT_SECRET_FROM_FILE",
        missing.display().to_string(),
    );
    let err = w.error();
    let text = one_line(&err);
    assert!(
        matches!(&err, ConfigError::BadValue { setting, .. } if setting == "FLYTE_CREDENTIALS_CLIENT_SECRET_FROM_FILE"),
        "{err:?}"
    );
    assert!(text.contains(&missing.display().to_string()), "{text}");
}

#[test]
fn redirections_work_for_the_api_key_and_secret_variables() {
    let mut w = World::new();
    w.set("CI_KEY", key("ci.example.com", "bot", "s3cret", "None"));
    w.set("FLYTE_API_KEY_FROM_ENV_VAR", "CI_KEY");
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///ci.example.com");
    assert_eq!(s.client_secret.unwrap().expose(), "s3cret");
}

// ---------------------------------------------------------------------------------------------------------------
// Client secret

#[test]
fn the_named_variable_beats_the_location_which_beats_the_inline_secret() {
    let mut w = World::new();
    let secret_file = w.write("secret", "from-file\n");
    w.set("FLYTE_CREDENTIALS_CLIENT_SECRET", "inline");
    let s = w.discover();
    assert_eq!(s.client_secret.as_ref().unwrap().expose(), "inline");
    assert_eq!(s.client_secret_origin, Some(SecretOrigin::Inline));
    // The inline secret does not force the auth type.
    assert_eq!(s.auth_type, AuthType::Pkce);

    w.write(
        "work/config.yaml",
        &format!(
            "admin:\n  authType: Pkce\n  clientSecretLocation: {}\n  clientSecretEnvVar: MY_SECRET\n",
            secret_file.display()
        ),
    );
    let s = w.discover();
    assert_eq!(s.client_secret.as_ref().unwrap().expose(), "from-file");
    assert_eq!(
        s.client_secret_origin,
        Some(SecretOrigin::File(secret_file.clone()))
    );
    assert_eq!(s.auth_type, AuthType::ClientSecret);

    w.set("MY_SECRET", "from-var");
    let s = w.discover();
    assert_eq!(s.client_secret.as_ref().unwrap().expose(), "from-var");
    assert_eq!(
        s.client_secret_origin,
        Some(SecretOrigin::EnvVar("MY_SECRET".into()))
    );
    assert_eq!(s.auth_type, AuthType::ClientSecret);
}

#[test]
fn a_set_secret_variable_forces_client_secret_but_an_unset_one_does_not() {
    let mut w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  authType: DeviceFlow\n  clientSecretEnvVar: MY_SECRET\n",
    );
    let s = w.discover();
    assert_eq!(s.auth_type, AuthType::DeviceFlow);
    assert_eq!(s.client_secret, None);
    w.set("MY_SECRET", "x");
    assert_eq!(w.discover().auth_type, AuthType::ClientSecret);
    // The name of the variable may itself come from a variable, and the variable may be redirected.
    let mut w = World::new();
    let path = w.write("s", "via-file\n");
    w.set("FLYTE_ADMIN_CLIENTSECRETENVVAR", "APP_SECRET");
    w.set("APP_SECRET_FROM_FILE", path.display().to_string());
    let s = w.discover();
    assert_eq!(s.client_secret.unwrap().expose(), "via-file");
    assert_eq!(s.auth_type, AuthType::ClientSecret);
    // flytekit's name for it.
    let mut w = World::new();
    w.set("FLYTE_CREDENTIALS_CLIENT_SECRET_ENV_VAR", "APP_SECRET");
    w.set("APP_SECRET", "v");
    assert_eq!(w.discover().client_secret.unwrap().expose(), "v");
}

#[test]
fn an_explicit_location_forces_client_secret_over_variables_but_not_over_the_flag() {
    let mut w = World::new();
    let path = w.write("secret", "shh\n");
    w.set("FLYTE_AUTH_TYPE", "DeviceFlow");
    w.set(
        "FLYTE_CREDENTIALS_CLIENT_SECRET_LOCATION",
        path.display().to_string(),
    );
    assert_eq!(w.discover().auth_type, AuthType::ClientSecret);
    let s = w
        .discover_with(&Overrides {
            auth_type: Some(AuthType::Pkce),
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(s.auth_type, AuthType::Pkce);
    // The secret is still read; only the flow is the flag's.
    assert_eq!(s.client_secret.unwrap().expose(), "shh");
    // FLYTE_ADMIN_CLIENTSECRETLOCATION, relative to the working directory.
    let mut w = World::new();
    w.write("work/rel-secret", "rel\n");
    w.set("FLYTE_ADMIN_CLIENTSECRETLOCATION", "rel-secret");
    assert_eq!(w.discover().client_secret.unwrap().expose(), "rel");
}

#[test]
fn a_missing_secret_file_is_an_error_naming_the_setting() {
    let mut w = World::new();
    w.set("FLYTE_ADMIN_CLIENTSECRETLOCATION", "/nonexistent/secret");
    let err = w.error();
    assert!(
        matches!(&err, ConfigError::BadValue { setting, .. } if setting == "FLYTE_ADMIN_CLIENTSECRETLOCATION"),
        "{err:?}"
    );
    assert!(one_line(&err).contains("/nonexistent/secret"));

    let w = World::new();
    let config = w.write(
        "work/config.yaml",
        "admin:\n  clientSecretLocation: ~/secret\n",
    );
    let err = w.error();
    let text = one_line(&err);
    assert!(
        matches!(&err, ConfigError::Invalid { path, .. } if *path == config),
        "{err:?}"
    );
    assert!(
        text.contains("admin.clientSecretLocation (line 2)"),
        "{text}"
    );
    assert!(
        text.contains(&w.home.join("secret").display().to_string()),
        "{text}"
    );
    // `~` is the home directory.
    w.write("home/secret", "tilde\n");
    assert_eq!(w.discover().client_secret.unwrap().expose(), "tilde");

    // An empty secret file is refused, too.
    w.write("home/secret", "\n");
    assert!(one_line(&w.error()).contains("is empty"));
}

#[test]
fn a_set_secret_variable_spares_reading_the_location() {
    let mut w = World::new();
    w.set("FLYTE_ADMIN_CLIENTSECRETLOCATION", "/nonexistent/secret");
    w.set("FLYTE_ADMIN_CLIENTSECRETENVVAR", "S");
    w.set("S", "v");
    assert_eq!(w.discover().client_secret.unwrap().expose(), "v");
}

// ---------------------------------------------------------------------------------------------------------------
// API keys

#[test]
fn an_api_key_sets_endpoint_auth_type_client_and_org() {
    let mut w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  endpoint: file.test\n  insecure: true\n  authType: DeviceFlow\n  clientId: file-id\ntask:\n  org: file-org\n",
    );
    w.set("FLYTE_ADMIN_ENDPOINT", "env.test");
    w.set("FLYTE_CREDENTIALS_CLIENT_SECRET", "other");
    w.set(
        "FLYTE_API_KEY",
        key("acme.example.com", "ci-bot", "s3cret", "acme"),
    );
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///acme.example.com");
    assert_eq!(s.auth_type, AuthType::ClientSecret);
    assert_eq!(s.client_id.as_deref(), Some("ci-bot"));
    assert_eq!(s.client_secret.as_ref().unwrap().expose(), "s3cret");
    assert_eq!(s.client_secret_origin, Some(SecretOrigin::ApiKey));
    assert_eq!(s.org.as_deref(), Some("acme"));
    // `insecure` still comes from the configuration.
    assert!(s.insecure);
    assert_eq!(
        s.endpoint.as_ref().unwrap().base_url(s.insecure).as_str(),
        "http://acme.example.com/"
    );
}

#[test]
fn with_an_api_key_the_endpoint_and_org_flags_still_win() {
    let mut w = World::new();
    w.set(
        "FLYTE_API_KEY",
        key("acme.example.com", "ci-bot", "s3cret", "acme"),
    );
    let s = w
        .discover_with(&Overrides {
            endpoint: Some("localhost:8090".into()),
            org: Some("flag-org".into()),
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(endpoint_of(&s), "dns:///localhost:8090");
    assert_eq!(s.org.as_deref(), Some("flag-org"));
    assert_eq!(s.client_id.as_deref(), Some("ci-bot"));
}

#[test]
fn a_key_without_an_org_leaves_the_configured_org() {
    let mut w = World::new();
    w.set("FLYTE_TASK_ORG", "env-org");
    w.set("FLYTE_API_KEY", key("h.example.com", "id", "sec", "None"));
    assert_eq!(w.discover().org.as_deref(), Some("env-org"));
}

#[test]
fn the_api_key_flag_beats_the_variable() {
    let mut w = World::new();
    w.set(
        "FLYTE_API_KEY",
        key("env.example.com", "env-id", "sec", "None"),
    );
    let s = w
        .discover_with(&Overrides {
            api_key: Some(Secret::new(key(
                "flag.example.com",
                "flag-id",
                "sec2",
                "None",
            ))),
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(endpoint_of(&s), "dns:///flag.example.com");
    assert_eq!(s.client_id.as_deref(), Some("flag-id"));
}

#[test]
fn a_malformed_api_key_is_one_line_without_the_secret() {
    let mut w = World::new();
    w.set("FLYTE_API_KEY", STANDARD.encode("host:id:s3cret"));
    let err = w.error();
    assert!(matches!(err, ConfigError::ApiKey(_)), "{err:?}");
    let text = one_line(&err);
    assert!(
        !text.contains("s3cret") && !format!("{err:?}").contains("s3cret"),
        "{text}"
    );
    w.set("FLYTE_API_KEY", "!!not base64!!");
    assert!(matches!(w.error(), ConfigError::ApiKey(_)));
}

// ---------------------------------------------------------------------------------------------------------------
// Values

#[test]
fn endpoint_forms() {
    for (input, authority, prefix) in [
        ("dns:///flyte.example.com", "flyte.example.com", ""),
        ("dns:///flyte.example.com:443", "flyte.example.com:443", ""),
        (
            "DNS:///Flyte.Example.com:8089/",
            "flyte.example.com:8089",
            "",
        ),
        ("flyte.example.com", "flyte.example.com", ""),
        ("localhost:8090", "localhost:8090", ""),
        ("https://flyte.example.com", "flyte.example.com", ""),
        ("https://flyte.example.com/", "flyte.example.com", ""),
        (
            "http://localhost:30080/api/v1/",
            "localhost:30080",
            "/api/v1",
        ),
        ("HTTPS://Host.Test:8443/Prefix", "host.test:8443", "/Prefix"),
        ("  host.test  ", "host.test", ""),
        ("[::1]:8089", "[::1]:8089", ""),
        ("https://[FE80::1]", "[fe80::1]", ""),
        ("127.0.0.1:8080", "127.0.0.1:8080", ""),
        ("flyte_admin.svc:81", "flyte_admin.svc:81", ""),
    ] {
        let e = Endpoint::parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
        assert_eq!(
            (e.authority.as_str(), e.path_prefix.as_str()),
            (authority, prefix),
            "{input}"
        );
    }
    for bad in [
        "",
        "   ",
        "dns:///",
        "https://",
        "grpc://host",
        "dns://host",
        "host:",
        "host:0",
        "host:65536",
        "host:http",
        "::1",
        "[::1",
        "[nope]:80",
        "ho st",
        "host?x=1",
        "user@host",
        "host..test",
        ".host",
        "https://host#frag",
        "hôst.test",
    ] {
        let err = Endpoint::parse(bad).expect_err(bad);
        assert!(
            matches!(&err, ConfigError::BadValue { setting, .. } if setting == "endpoint"),
            "{bad}: {err:?}"
        );
        one_line(&err);
    }
}

#[test]
fn base_url_cache_service_and_config_string() {
    let e = Endpoint::parse("https://Flyte.Example.com:8443/prefix/").unwrap();
    assert_eq!(
        e.base_url(false).as_str(),
        "https://flyte.example.com:8443/prefix"
    );
    assert_eq!(
        e.base_url(true).as_str(),
        "http://flyte.example.com:8443/prefix"
    );
    assert_eq!(e.cache_service(), "flyte.example.com:8443/prefix");
    assert_eq!(e.to_config_string(), "dns:///flyte.example.com:8443/prefix");
    assert_eq!(Endpoint::parse(&e.to_config_string()).unwrap(), e);
    let plain = Endpoint::parse("http://localhost:8090").unwrap();
    // `http://` does not decide TLS: only `insecure` does.
    assert_eq!(plain.base_url(false).as_str(), "https://localhost:8090/");
    assert_eq!(plain.cache_service(), "localhost:8090");
    let v6 = Endpoint::parse("[::1]:8089").unwrap();
    assert_eq!(v6.base_url(true).as_str(), "http://[::1]:8089/");
    // An endpoint built by hand that is no URL does not panic.
    let garbage = Endpoint {
        authority: "not a host".into(),
        path_prefix: String::new(),
    };
    let _ = garbage.base_url(false);
}

#[test]
fn auth_type_spellings() {
    use AuthType::*;
    for (spelling, expected) in [
        // flyte 2.x config literals.
        ("Pkce", Pkce),
        ("ClientSecret", ClientSecret),
        ("DeviceFlow", DeviceFlow),
        ("ExternalCommand", ExternalCommand),
        // flytekit member names, any case.
        ("standard", Pkce),
        ("STANDARD", Pkce),
        ("pkce", Pkce),
        ("basic", ClientSecret),
        ("client_credentials", ClientSecret),
        ("clientsecret", ClientSecret),
        ("external_process", ExternalCommand),
        ("externalcommand", ExternalCommand),
        ("deviceflow", DeviceFlow),
        // flyte CLI --auth-type aliases.
        ("client-secret", ClientSecret),
        ("client_secret", ClientSecret),
        ("app-credential", ClientSecret),
        ("app_credential", ClientSecret),
        ("headless", DeviceFlow),
        ("device-flow", DeviceFlow),
        ("device_flow", DeviceFlow),
        ("external-command", ExternalCommand),
        ("external_command", ExternalCommand),
        ("command", ExternalCommand),
        ("custom", ExternalCommand),
        (" Headless ", DeviceFlow),
    ] {
        assert_eq!(AuthType::parse(spelling), Some(expected), "{spelling}");
        assert_eq!(AuthType::parse(expected.as_config_str()), Some(expected));
    }
    for bad in ["", "oauth", "Passthrough", "pkce2", "device"] {
        assert_eq!(AuthType::parse(bad), None, "{bad}");
    }
}

#[test]
fn an_unknown_auth_type_is_a_one_line_error_naming_the_setting() {
    let mut w = World::new();
    w.set("FLYTE_ADMIN_AUTHTYPE", "Passthrough");
    let err = w.error();
    assert!(
        matches!(&err, ConfigError::BadValue { setting, .. } if setting == "FLYTE_ADMIN_AUTHTYPE")
    );
    assert!(one_line(&err).contains("Passthrough"));
    let w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  endpoint: x.test\n  authType: Oauth\n",
    );
    let text = one_line(&w.error());
    assert!(
        text.contains("config.yaml: admin.authType (line 3): unknown auth type \"Oauth\""),
        "{text}"
    );
}

#[test]
fn booleans() {
    for (value, expected) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("On", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("no", false),
        ("OFF", false),
    ] {
        let mut w = World::new();
        w.set("FLYTE_PLATFORM_INSECURE", value);
        assert_eq!(w.discover().insecure, expected, "{value}");
    }
    for bad in ["maybe", "2", "truthy", "t"] {
        let mut w = World::new();
        w.set("FLYTE_ADMIN_DISABLEKEYRING", bad);
        let err = w.error();
        assert!(
            matches!(&err, ConfigError::BadValue { setting, .. } if setting == "FLYTE_ADMIN_DISABLEKEYRING")
        );
        assert!(one_line(&err).contains(bad));
    }
    // In the file: YAML booleans, and quoted spellings.
    let w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  insecure: 'on'\n  disableKeyring: no\n",
    );
    let s = w.discover();
    assert!(s.insecure && !s.disable_keyring);
}

#[test]
fn durations() {
    for (text, expected) in [
        ("30s", Duration::from_secs(30)),
        ("5m", Duration::from_secs(300)),
        ("1h30m", Duration::from_secs(5400)),
        ("250ms", Duration::from_millis(250)),
        ("1.5h", Duration::from_secs(5400)),
        ("1m0.5s", Duration::from_millis(60_500)),
        ("10us", Duration::from_micros(10)),
        ("7ns", Duration::from_nanos(7)),
        ("45", Duration::from_secs(45)),
        ("0", Duration::ZERO),
        (".5s", Duration::from_millis(500)),
    ] {
        assert_eq!(values::parse_duration(text), Ok(expected), "{text}");
        let formatted = values::format_duration(expected);
        assert_eq!(
            values::parse_duration(&formatted),
            Ok(expected),
            "{formatted}"
        );
    }
    assert_eq!(values::format_duration(Duration::from_secs(5400)), "1h30m");
    assert_eq!(values::format_duration(Duration::from_secs(60)), "1m");
    assert_eq!(values::format_duration(Duration::ZERO), "0s");
    for bad in [
        "",
        "s",
        "5x",
        "-5s",
        "1.5",
        "5m3",
        "1h 2m",
        "99999999999999999999h",
    ] {
        assert!(values::parse_duration(bad).is_err(), "{bad}");
    }
    let mut w = World::new();
    w.set("FLYTE_ADMIN_TOKENREFRESHWINDOW", "soon");
    let err = w.error();
    assert!(
        matches!(&err, ConfigError::BadValue { setting, .. } if setting == "FLYTE_ADMIN_TOKENREFRESHWINDOW")
    );
    one_line(&err);
    // Timeouts must be positive; the refresh window may be zero.
    let w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  tokenRefreshWindow: 0\n  deviceFlowConfig:\n    timeout: 0s\n",
    );
    let text = one_line(&w.error());
    assert!(
        text.contains("admin.deviceFlowConfig.timeout (line 4)"),
        "{text}"
    );
    let w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  tokenRefreshWindow: 0\n  pkceConfig:\n    timeout: 90\n",
    );
    let s = w.discover();
    assert_eq!(
        (s.token_refresh_window, s.pkce_timeout),
        (Duration::ZERO, Duration::from_secs(90))
    );
}

#[test]
fn scopes() {
    for (value, expected) in [
        ("[\"a\", \"b c\"]", vec!["a", "b c"]),
        ("a,b", vec!["a", "b"]),
        ("a b  c", vec!["a", "b", "c"]),
        ("a, b", vec!["a", "b"]),
        ("offline", vec!["offline"]),
    ] {
        let mut w = World::new();
        w.set("FLYTE_ADMIN_SCOPES", value);
        assert_eq!(w.discover().scopes, expected, "{value}");
    }
    let mut w = World::new();
    w.set("FLYTE_CREDENTIALS_SCOPES", "[\"a\", 1]");
    assert!(matches!(w.error(), ConfigError::BadValue { .. }));
    let w = World::new();
    w.write("work/config.yaml", "admin:\n  scopes: all offline\n");
    assert_eq!(w.discover().scopes, ["all", "offline"]);
    let w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  scopes:\n    - all\n    - [nested]\n",
    );
    let text = one_line(&w.error());
    assert!(
        text.contains("admin.scopes (line 3)") && text.contains("item 2"),
        "{text}"
    );
}

#[test]
fn commands() {
    for (value, expected) in [
        ("[\"tok\", \"--a b\"]", vec!["tok", "--a b"]),
        (
            "gcloud,auth,print-access-token",
            vec!["gcloud", "auth", "print-access-token"],
        ),
        (
            "get-token --audience x",
            vec!["get-token", "--audience", "x"],
        ),
        ("sh -c 'echo a, b'", vec!["sh", "-c", "echo a, b"]),
        (
            "say \"hi \\\"there\\\"\" ''",
            vec!["say", "hi \"there\"", ""],
        ),
        ("a\\ b c", vec!["a b", "c"]),
    ] {
        let mut w = World::new();
        w.set("FLYTE_CREDENTIALS_COMMAND", value);
        assert_eq!(w.discover().command, expected, "{value}");
    }
    for bad in ["sh -c 'oops", "say \"unterminated", "[not json"] {
        let mut w = World::new();
        w.set("FLYTE_AUTH_PROXY_COMMAND", bad);
        let err = w.error();
        assert!(
            matches!(&err, ConfigError::BadValue { setting, .. } if setting == "FLYTE_AUTH_PROXY_COMMAND")
        );
        one_line(&err);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The file itself

#[test]
fn yaml_syntax_errors_name_the_file_and_line_in_one_line() {
    let w = World::new();
    let config = w.write("work/config.yaml", "admin:\n  endpoint: [\n");
    let err = w.error();
    let text = one_line(&err);
    assert!(
        matches!(&err, ConfigError::Invalid { path, .. } if *path == config),
        "{err:?}"
    );
    assert!(text.starts_with(&config.display().to_string()), "{text}");
    assert!(text.contains("line 2"), "{text}");

    w.write("work/config.yaml", "admin:\n\tendpoint: x\n");
    assert!(matches!(w.error(), ConfigError::Invalid { .. }));

    w.write("work/config.yaml", "admin: {}\n---\ntask: {}\n");
    let text = one_line(&w.error());
    assert!(
        text.ends_with(
            "not valid YAML: the file holds more than one YAML document (---); keep one"
        ),
        "{text}"
    );
}

#[test]
fn a_key_of_the_wrong_shape_is_named_with_its_line() {
    let w = World::new();
    for (content, expected) in [
        ("admin: [1, 2]\n", "admin (line 1): expected a mapping"),
        ("task: prod\n", "task (line 1): expected a mapping"),
        (
            "admin:\n  pkceConfig: 5m\n",
            "admin.pkceConfig (line 2): expected a mapping",
        ),
        (
            "admin:\n  endpoint:\n    host: x\n",
            "admin.endpoint (line 3): expected a single value, found a mapping",
        ),
        (
            "admin:\n  clientId: [a]\n",
            "admin.clientId (line 2): expected a single value, found a list",
        ),
        (
            "admin:\n  command: {a: 1}\n",
            "admin.command (line 2): expected a list of strings, found a mapping",
        ),
        (
            "admin:\n  insecure: maybe\n",
            "admin.insecure (line 2): expected true or false",
        ),
        ("- a\n- b\n", "the file must be a YAML mapping"),
        ("admin:\n  endpoint: ftp://x\n", "admin.endpoint (line 2)"),
    ] {
        let config = w.write("work/config.yaml", content);
        let err = w.error();
        let text = one_line(&err);
        assert!(
            matches!(&err, ConfigError::Invalid { path, .. } if *path == config),
            "{content:?}: {err:?}"
        );
        assert!(text.contains(expected), "{content:?}: {text}");
    }
}

#[test]
fn unknown_keys_empty_files_and_nulls_are_fine() {
    let w = World::new();
    for content in [
        "",
        "# nothing here\n",
        "admin:\n",
        "admin: ~\ntask:\n",
        "image: [weird]\nlocal: 3\n",
    ] {
        w.write("work/config.yaml", content);
        let s = w.discover();
        assert_eq!(s.endpoint, None, "{content:?}");
        assert!(s.config_file.is_some());
    }
    w.write(
        "work/config.yaml",
        "admin:\n  endpoint: x.test\n  someFutureKey: {a: [1]}\n  clientId:\n  audience: ''\nunknown:\n  - 1\n",
    );
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///x.test");
    assert_eq!((s.client_id, s.audience), (None, None));
}

#[test]
fn repeated_keys_keep_the_last_value_as_pyyaml_does() {
    let w = World::new();
    w.write(
        "work/config.yaml",
        "admin:\n  endpoint: first.test\n  endpoint: second.test\ntask:\n  org: a\ntask:\n  project: p\n",
    );
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///second.test");
    assert_eq!((s.org, s.project.as_deref()), (None, Some("p")));
}

#[test]
fn a_byte_order_mark_and_crlf_line_endings_are_read() {
    let w = World::new();
    w.write(
        "work/config.yaml",
        "\u{feff}admin:\r\n  endpoint: bom.test\r\n",
    );
    assert_eq!(endpoint_of(&w.discover()), "dns:///bom.test");
}

// ---------------------------------------------------------------------------------------------------------------
// describe()

#[test]
fn describe_shows_where_secrets_come_from_never_the_secret() {
    let mut w = World::new();
    let secret_file = w.write("secret", "hunter2-from-file\n");
    w.write(
        "work/config.yaml",
        &format!(
            "admin:\n  endpoint: flyte.example.com\n  clientId: app\n  clientSecretLocation: {}\n  httpProxyURL: http://user:proxypass@proxy:3128\n",
            secret_file.display()
        ),
    );
    let d = w.discover().describe();
    let text = d.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("proxypass"), "{text}");
    assert_eq!(
        d["client_secret"],
        format!("from the file {}", secret_file.display())
    );
    assert_eq!(d["auth_type"], "ClientSecret");
    assert_eq!(d["endpoint"], "dns:///flyte.example.com");
    assert_eq!(d["base_url"], "https://flyte.example.com/");
    assert_eq!(d["client_id"], "app");
    assert_eq!(d["token_refresh_window"], "1m");
    assert_eq!(d["pkce_timeout"], "2m");
    assert_eq!(d["device_timeout"], "10m");
    assert_eq!(d["http_proxy_url"], "http://user:redacted@proxy:3128/");
    assert_eq!(d["org"], serde_json::Value::Null);

    w.set("FLYTE_ADMIN_CLIENTSECRETENVVAR", "APP_SECRET");
    w.set("APP_SECRET", "hunter2-from-var");
    let d = w.discover().describe();
    assert!(!d.to_string().contains("hunter2"));
    assert_eq!(d["client_secret"], "from $APP_SECRET");

    let mut w = World::new();
    w.set("FLYTE_CREDENTIALS_CLIENT_SECRET", "hunter2-inline");
    let d = w.discover().describe();
    assert!(!d.to_string().contains("hunter2"));
    assert_eq!(d["client_secret"], "from $FLYTE_CREDENTIALS_CLIENT_SECRET");

    let mut w = World::new();
    w.set(
        "FLYTE_API_KEY",
        key("k.example.com", "id", "hunter2-key", "org"),
    );
    let s = w.discover();
    let d = s.describe();
    assert!(!d.to_string().contains("hunter2"));
    assert!(!format!("{s:?}").contains("hunter2"));
    assert_eq!(d["client_secret"], "from the API key");
    assert_eq!(d["org"], "org");

    assert_eq!(
        World::new().discover().describe()["client_secret"],
        serde_json::Value::Null
    );
}

// ---------------------------------------------------------------------------------------------------------------
// render_new_config

fn render(config: NewConfig) -> String {
    render_new_config(&config).unwrap()
}

#[test]
fn new_config_matches_the_flyte_cli_examples() {
    assert_eq!(
        render(NewConfig {
            endpoint: Some("my-org.example.com".into()),
            ..NewConfig::default()
        }),
        "admin:\n  endpoint: dns:///my-org.example.com\nimage:\n  builder: remote\ntask:\n  org: my-org\n"
    );
    assert_eq!(
        render(NewConfig {
            endpoint: Some("https://flyte.example.com:443".into()),
            auth_type: AuthType::parse("headless"),
            org: Some("acme".into()),
            project: Some("proj".into()),
            domain: Some("development".into()),
            image_builder: Some("local".into()),
            ..NewConfig::default()
        }),
        "admin:\n  authType: DeviceFlow\n  endpoint: dns:///flyte.example.com:443\nimage:\n  builder: local\ntask:\n  domain: development\n  org: acme\n  project: proj\n"
    );
    assert_eq!(
        render(NewConfig {
            endpoint: Some("http://localhost:8090".into()),
            insecure: true,
            auth_type: AuthType::parse("client-secret"),
            ..NewConfig::default()
        }),
        "admin:\n  authType: ClientSecret\n  endpoint: dns:///localhost:8090\n  insecure: true\nimage:\n  builder: local\n"
    );
}

#[test]
fn new_config_devbox_and_our_additions() {
    assert_eq!(
        render(NewConfig {
            devbox: true,
            ..NewConfig::default()
        }),
        "admin:\n  endpoint: dns:///localhost:30080\n  insecure: true\nimage:\n  builder: local\ntask:\n  domain: development\n  project: flytesnacks\n"
    );
    // --project/--domain still override the devbox's.
    let text = render(NewConfig {
        devbox: true,
        project: Some("mine".into()),
        ..NewConfig::default()
    });
    assert!(
        text.contains("project: mine") && text.contains("domain: development"),
        "{text}"
    );
    let err = render_new_config(&NewConfig {
        devbox: true,
        endpoint: Some("x.test".into()),
        ..NewConfig::default()
    })
    .unwrap_err();
    assert!(one_line(&err).contains("--devbox"));

    assert_eq!(
        render(NewConfig {
            endpoint: Some("10.0.0.7:8089".into()),
            client_id: Some("ci".into()),
            client_secret_location: Some("/etc/secrets/ci".into()),
            client_secret_env_var: Some("CI_SECRET".into()),
            registry: Some("ghcr.io/acme".into()),
            ..NewConfig::default()
        }),
        "admin:\n  clientId: ci\n  clientSecretEnvVar: CI_SECRET\n  clientSecretLocation: /etc/secrets/ci\n  endpoint: dns:///10.0.0.7:8089\nimage:\n  builder: local\n  registry: ghcr.io/acme\n"
    );
}

#[test]
fn new_config_refuses_nonsense() {
    let err = render_new_config(&NewConfig::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Missing(_)));
    let err = render_new_config(&NewConfig {
        endpoint: Some("ftp://x".into()),
        ..NewConfig::default()
    })
    .unwrap_err();
    assert!(matches!(&err, ConfigError::BadValue { setting, .. } if setting == "--endpoint"));
    let err = render_new_config(&NewConfig {
        endpoint: Some("x.test".into()),
        image_builder: Some("kaniko".into()),
        ..NewConfig::default()
    })
    .unwrap_err();
    assert!(matches!(&err, ConfigError::BadValue { setting, .. } if setting == "--image-builder"));
    // An org alone is enough, as in the flyte CLI.
    assert_eq!(
        render(NewConfig {
            org: Some("acme".into()),
            ..NewConfig::default()
        }),
        "image:\n  builder: local\ntask:\n  org: acme\n"
    );
}

/// What `flyte create config` writes, discovery reads back, including values YAML would otherwise retype.
#[test]
fn a_new_config_reads_back() {
    let w = World::new();
    let text = render(NewConfig {
        endpoint: Some("https://Team.Flyte.Example.com/api/".into()),
        auth_type: Some(AuthType::ExternalCommand),
        project: Some("true".into()),
        domain: Some("123".into()),
        client_id: Some("null".into()),
        client_secret_env_var: Some("MY_SECRET".into()),
        ..NewConfig::default()
    });
    w.write("work/.flyte/config.yaml", &text);
    let s = w.discover();
    assert_eq!(endpoint_of(&s), "dns:///team.flyte.example.com/api");
    assert_eq!(s.auth_type, AuthType::ExternalCommand);
    assert_eq!(s.org.as_deref(), Some("team"));
    assert_eq!(s.project.as_deref(), Some("true"), "{text}");
    assert_eq!(s.domain.as_deref(), Some("123"), "{text}");
    assert_eq!(s.client_id.as_deref(), Some("null"), "{text}");
}

#[test]
fn the_org_comes_only_from_names_with_three_labels() {
    for (endpoint, org) in [
        ("a.b.c", Some("a")),
        ("dns:///my-org.example.com:443", Some("my-org")),
        ("example.com", None),
        ("localhost:30080", None),
        ("127.0.0.1", None),
        ("[::1]:80", None),
    ] {
        assert_eq!(
            values::org_from_host(&Endpoint::parse(endpoint).unwrap().authority).as_deref(),
            org,
            "{endpoint}"
        );
    }
}

#[test]
fn paths_and_places_of_the_process() {
    let places = Places::of_process();
    assert!(!places.cwd.as_os_str().is_empty());
    assert_eq!(
        env::expand_path("~", Path::new("/cwd"), Some(Path::new("/home/u"))),
        PathBuf::from("/home/u")
    );
    assert_eq!(
        env::expand_path("~/x", Path::new("/cwd"), Some(Path::new("/home/u"))),
        PathBuf::from("/home/u/x")
    );
    assert_eq!(
        env::expand_path("~x", Path::new("/cwd"), None),
        PathBuf::from("/cwd/~x")
    );
    assert_eq!(
        env::expand_path("/abs", Path::new("/cwd"), None),
        PathBuf::from("/abs")
    );
}
