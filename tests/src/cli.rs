//! Running the `flyte` binary as a person would: each [`CliHome`] is its own machine (home directory, config
//! file, token cache file, a `BROWSER` that records every call), with a clean environment and bounded runs.

use crate::{StartOptions, TestServer};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Environment variable naming the `flyte` binary under test (relative paths are from the workspace root).
pub const FLYTE_BIN_VAR: &str = "FLYTE_RS_BIN";

/// How long one `flyte` run may take before the test fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The password of every account these tests sign in with.
pub const PASSWORD: &str = "correct horse battery staple";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `flyte` binary: [`FLYTE_BIN_VAR`], else the workspace's `target/debug/flyte`. Panics when neither exists:
/// these tests are never skipped.
pub fn flyte_bin() -> PathBuf {
    let path = match std::env::var_os(FLYTE_BIN_VAR) {
        Some(path) if !path.is_empty() => workspace().join(path),
        _ => workspace().join("target/debug/flyte"),
    };
    assert!(
        path.is_file(),
        "the flyte binary is not at {} (set {FLYTE_BIN_VAR}, or run `cargo build -p flyteauth-cli` first)",
        path.display()
    );
    path
}

/// The scripted person of the interop tests (`interop/python/scripted_person.py`).
pub fn scripted_person() -> PathBuf {
    let path = workspace().join("interop/python/scripted_person.py");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// A `PATH` without any `flyte` on it, so that hand-over finds nobody (python3 and sh stay reachable).
pub fn clean_path() -> String {
    let dirs = ["/usr/local/bin", "/usr/bin", "/bin"];
    for dir in dirs {
        assert!(
            !Path::new(dir).join("flyte").exists(),
            "{dir}/flyte exists; the CLI tests need a PATH without another flyte"
        );
    }
    dirs.join(":")
}

/// A free port on 127.0.0.1 (bound, then released), for a redirect URI no other test uses.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the server is configured with for the CLI tests.
#[derive(Default)]
pub struct ServerSetup<'a> {
    /// The port of the public client's advertised redirect URI `http://localhost:PORT/callback`.
    pub redirect_port: u16,
    /// `auth.appAuth.selfAuthServer.accessTokenLifespan`, e.g. `"3s"`; the server's default when `None`.
    pub access_token_lifespan: Option<&'a str>,
    /// Lines added to the `flyteauth:` section (see [`TestServer::start_with`]).
    pub flyteauth_extra: &'a str,
}

/// Starts a server whose public client (`flytectl`) advertises `http://localhost:<redirect_port>/callback`.
pub async fn start_server(setup: &ServerSetup<'_>) -> TestServer {
    let redirect = format!(
        "    thirdPartyConfig:\n      flyteClient:\n        redirectUri: http://localhost:{}/callback\n",
        setup.redirect_port
    );
    let lifespan = setup
        .access_token_lifespan
        .map(|l| format!("      accessTokenLifespan: {l}\n"))
        .unwrap_or_default();
    let edit = move |yaml: String| {
        let anchor = "  appAuth:\n    selfAuthServer:\n";
        assert!(yaml.contains(anchor), "harness configuration changed");
        yaml.replace(
            anchor,
            &format!("  appAuth:\n{redirect}    selfAuthServer:\n{lifespan}"),
        )
    };
    TestServer::start_on(&StartOptions {
        flyteauth_extra: setup.flyteauth_extra,
        edit_config: Some(&edit),
        ..StartOptions::default()
    })
    .await
}

/// What one `flyte` run did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command line, for messages.
    pub what: String,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics (showing both streams) unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{} exited with {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the run succeeded.
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// The only non-empty stderr line; panics when there are none or several.
    pub fn one_stderr_line(&self) -> &str {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected exactly one line on stderr, got {}:\n{}",
            self.what,
            lines.len(),
            self.stderr
        );
        lines[0]
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    /// Panics if any of `secrets` (non-empty ones) appears in stdout or stderr, naming which by `label`.
    pub fn assert_no_secret(&self, secrets: &[(&str, &str)]) -> &Self {
        for (label, secret) in secrets {
            if secret.is_empty() {
                continue;
            }
            for (stream, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                assert!(
                    !text.contains(secret),
                    "{}: the {label} appears in {stream}:\n{text}",
                    self.what
                );
            }
        }
        self
    }
}

/// One person's machine for `flyte`: a temporary home with a config file, a token cache file, a recording
/// `BROWSER` and a working directory, all inside one temporary directory.
pub struct CliHome {
    pub dir: tempfile::TempDir,
    /// Extra environment variables for every run.
    pub env: Vec<(String, String)>,
    /// What `BROWSER` is set to (a script path); [`CliHome::recording_browser`] by default.
    pub browser: PathBuf,
    /// Pass `-c <config file>` on every run (else the CLI finds its file by itself).
    pub pass_config: bool,
}

impl Default for CliHome {
    fn default() -> Self {
        Self::new()
    }
}

impl CliHome {
    /// An empty machine whose `BROWSER` only records its calls.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in [
            "home",
            "work",
            "xdg/config",
            "xdg/state",
            "xdg/cache",
            "xdg/data",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let mut home = Self {
            dir,
            env: Vec::new(),
            browser: PathBuf::new(),
            pass_config: true,
        };
        home.browser = home.write_script("record-browser.sh", "exit 0\n");
        home
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The config file passed with `-c`.
    pub fn config_file(&self) -> PathBuf {
        self.path("config.yaml")
    }

    /// The working directory of every run.
    pub fn work_dir(&self) -> PathBuf {
        self.path("work")
    }

    /// `FLYTE_TOKEN_CACHE_FILE`.
    pub fn cache_file(&self) -> PathBuf {
        self.path("tokens.json")
    }

    /// Where every `BROWSER` script of this home records its URL, one line per call.
    pub fn browser_calls_file(&self) -> PathBuf {
        self.path("browser-calls.log")
    }

    /// The URLs `BROWSER` was called with so far.
    pub fn browser_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.browser_calls_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The scripted person's log (appended to by every visit).
    pub fn person_log(&self) -> String {
        std::fs::read_to_string(self.path("person.log")).unwrap_or_default()
    }

    /// Writes an executable `sh` script that first records its arguments in [`CliHome::browser_calls_file`],
    /// then runs `body`.
    pub fn write_script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        let text = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n{body}",
            self.browser_calls_file().display()
        );
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Makes `BROWSER` a scripted person who signs in as `username` (recording the call first).
    pub fn use_person_browser(&mut self, username: &str) {
        let body = format!(
            "SCRIPTED_PERSON_USERNAME='{username}' SCRIPTED_PERSON_PASSWORD='{PASSWORD}' SCRIPTED_PERSON_LOG='{log}' exec python3 '{person}' \"$@\"\n",
            log = self.path("person.log").display(),
            person = scripted_person().display(),
        );
        self.browser = self.write_script("person-browser.sh", &body);
    }

    /// Makes `BROWSER` record its calls and do nothing else.
    pub fn use_recording_browser(&mut self) {
        self.browser = self.write_script("record-browser.sh", "exit 0\n");
    }

    /// Writes the config file: `admin.endpoint` for `server`, `admin.insecure: true`, then `admin_extra` (lines
    /// inside `admin:`, each indented by two spaces).
    pub fn write_config(&self, server: &TestServer, admin_extra: &str) {
        self.write_config_for(&format!("127.0.0.1:{}", server.addr.port()), admin_extra);
    }

    /// [`CliHome::write_config`] for any `authority`.
    pub fn write_config_for(&self, authority: &str, admin_extra: &str) {
        let yaml =
            format!("admin:\n  endpoint: dns:///{authority}\n  insecure: true\n{admin_extra}");
        std::fs::write(self.config_file(), yaml).unwrap();
    }

    /// The token cache file's content (an empty object when there is none).
    pub fn cache(&self) -> serde_json::Value {
        match std::fs::read_to_string(self.cache_file()) {
            Ok(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the token cache file is not JSON ({e}): {text}")),
            Err(_) => serde_json::json!({}),
        }
    }

    /// The cached `(access_token, refresh_token)` of `service` (`host:port`), if any.
    pub fn cached_tokens(&self, service: &str) -> Option<(String, Option<String>)> {
        let cache = self.cache();
        let entry = cache.get(service)?;
        let access = entry["access_token"].as_str()?.to_owned();
        let refresh = entry["refresh_token"].as_str().map(str::to_owned);
        Some((access, refresh))
    }

    /// The command for `args`, with a clean environment pointing into this home.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(flyte_bin());
        if self.pass_config && !args.is_empty() {
            command.arg("-c").arg(self.config_file());
        }
        command
            .args(args)
            .env_clear()
            .env("PATH", clean_path())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("xdg/config"))
            .env("XDG_STATE_HOME", self.path("xdg/state"))
            .env("XDG_CACHE_HOME", self.path("xdg/cache"))
            .env("XDG_DATA_HOME", self.path("xdg/data"))
            .env("FLYTE_TOKEN_CACHE_FILE", self.cache_file())
            .env("FLYTE_ADMIN_DISABLEKEYRING", "true")
            .env("BROWSER", &self.browser)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.work_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `flyte args…` to the end (bounded by [`RUN_TIMEOUT`]).
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_command(self.command(args), args).await
    }

    /// Runs a prepared [`CliHome::command`].
    pub async fn run_command(&self, mut command: tokio::process::Command, args: &[&str]) -> Run {
        let what = format!("flyte {}", args.join(" "));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let output = match tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output()).await {
            Ok(output) => output.unwrap(),
            Err(_) => panic!(
                "{what} did not finish within {}s (killed); person log:\n{}",
                RUN_TIMEOUT.as_secs(),
                self.person_log()
            ),
        };
        Run {
            what,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A `flyte` run in progress whose stderr is read line by line.
pub struct Running {
    pub what: String,
    child: tokio::process::Child,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    /// Every stderr line read so far.
    pub stderr_lines: Vec<String>,
}

impl Running {
    /// Starts `flyte args…` in `home`.
    pub fn start(home: &CliHome, args: &[&str]) -> Self {
        let what = format!("flyte {}", args.join(" "));
        let mut child = home
            .command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        Self {
            what,
            child,
            stderr,
            stderr_lines: Vec::new(),
        }
    }

    /// Reads stderr until a line starts with `prefix`, within `timeout`; returns the rest of that line.
    pub async fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                self.stderr_lines.push(line.clone());
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.to_owned());
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(rest)) => rest,
            Ok(None) => panic!(
                "{}: stderr ended without a line starting with {prefix:?}:\n{}",
                self.what,
                self.stderr_lines.join("\n")
            ),
            Err(_) => panic!(
                "{}: no line starting with {prefix:?} on stderr within {}s:\n{}",
                self.what,
                timeout.as_secs(),
                self.stderr_lines.join("\n")
            ),
        }
    }

    /// Waits for the process to exit (bounded by `timeout`), reading the rest of stderr and all of stdout.
    pub async fn finish(mut self, timeout: Duration) -> Run {
        let mut stdout = self.child.stdout.take().unwrap();
        let result = tokio::time::timeout(timeout, async {
            let mut out = Vec::new();
            let read_out = stdout.read_to_end(&mut out);
            let read_err = async {
                while let Some(line) = self.stderr.next_line().await.unwrap() {
                    self.stderr_lines.push(line);
                }
            };
            let (read, ()) = tokio::join!(read_out, read_err);
            read.unwrap();
            let status = self.child.wait().await.unwrap();
            (status, out)
        })
        .await;
        match result {
            Ok((status, out)) => Run {
                what: self.what,
                code: status.code(),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: self.stderr_lines.join("\n"),
            },
            Err(_) => panic!(
                "{} did not finish within {}s (killed); stderr so far:\n{}",
                self.what,
                timeout.as_secs(),
                self.stderr_lines.join("\n")
            ),
        }
    }
}

/// Approves a device-flow verification link as `username`: the scripted person opens it in the foreground,
/// signs in and presses "approve". Returns the person's exit status and log.
pub async fn approve_device(home: &CliHome, url: &str, username: &str) -> (bool, String) {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(scripted_person())
        .arg("--foreground")
        .arg(url)
        .env("SCRIPTED_PERSON_USERNAME", username)
        .env("SCRIPTED_PERSON_PASSWORD", PASSWORD)
        .env("SCRIPTED_PERSON_DECISION", "approve")
        .env("SCRIPTED_PERSON_LOG", home.path("person.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let status = tokio::time::timeout(RUN_TIMEOUT, command.status())
        .await
        .expect("the scripted person did not finish within 60 s")
        .unwrap();
    (status.success(), home.person_log())
}
