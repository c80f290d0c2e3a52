//! `flyteauth`: the command line over the flyteauth-server library.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use flyteauth_server::apps::cli as apps;
use flyteauth_server::serve::{self, ServeOptions};
use flyteauth_server::{telemetry, tls, users};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The authentication and authorization service of a Flyte control plane.
#[derive(Debug, Parser)]
#[command(name = "flyteauth", version, about, long_about = None)]
struct Cli {
    /// Log format; defaults to the configuration's `flyteauth.logFormat`, else plain.
    #[arg(long, global = true, env = "FLYTEAUTH_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP, gRPC and Connect on one port; with no --config, the embedded default
    /// (SQLite and generated keys in the data directory, 127.0.0.1:8088).
    Serve {
        /// A flyteadmin-compatible YAML configuration file.
        #[arg(long, short = 'c', env = "FLYTEAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory [default: $FLYTEAUTH_DATA_DIR, $XDG_DATA_HOME/flyteauth or ~/.local/share/flyteauth].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8088 (overrides the configuration).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve TLS with a generated local CA; clients trust <data-dir>/tls/ca.pem.
        #[arg(long)]
        self_signed_tls: bool,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Secret tools.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// TLS tools.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Local accounts of the embedded identity provider (the same database `serve` uses with the same flags).
    Users {
        #[command(flatten)]
        target: StoreArgs,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Apps: confidential clients whose id and secret make a FLYTE_API_KEY (the same database `serve` uses).
    Apps {
        #[command(flatten)]
        target: StoreArgs,
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// The audit trail of credential events (the same database `serve` uses).
    Audit {
        #[command(flatten)]
        target: StoreArgs,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app and print its client id, its secret (shown only now) and its API key.
    Create {
        /// The app's name; the client id is its slug (lower case, other characters runs of '-').
        name: String,
        /// The organization the app belongs to.
        #[arg(long, default_value = "")]
        organization: String,
        /// The subject of the person who owns the app [default: operator, which only admins see].
        #[arg(long)]
        owner: Option<String>,
        /// A redirect URI to register (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
    },
    /// List every app.
    List,
    /// Delete an app; its tokens stop working within seconds.
    Delete {
        /// The client id.
        client_id: String,
    },
    /// Replace an app's secret and print the new one and its API key; tokens of the old one stop working.
    RotateSecret {
        /// The client id.
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print events, newest first, one tab-separated line each: time, kind, outcome, client id, subject,
    /// remote address, detail.
    List {
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only events of this kind, e.g. app.created.
        #[arg(long)]
        kind: Option<String>,
        /// Only events of this recent span, e.g. 1h, 30m, 7d.
        #[arg(long)]
        since: Option<String>,
    },
}

/// Which installation a command works on: the same flags `serve` takes.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// A flyteadmin-compatible YAML configuration file.
    #[arg(long, short = 'c', env = "FLYTEAUTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory [default: $FLYTEAUTH_DATA_DIR, $XDG_DATA_HOME/flyteauth or ~/.local/share/flyteauth].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

/// Where a password comes from: never the command line, where other users could read it.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct PasswordArgs {
    /// Read the password from the first line of this file.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArgs {
    fn source(&self) -> users::PasswordSource {
        match &self.password_file {
            Some(file) => users::PasswordSource::File(file.clone()),
            None => users::PasswordSource::Stdin,
        }
    }
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create an account.
    Add {
        /// The user name (letters, digits, '.', '_', '@', '-'; stored in lower case).
        name: String,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Display name [default: the user name].
        #[arg(long)]
        display_name: Option<String>,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List the accounts.
    List,
    /// Disable an account and end its sessions; its tokens stop working within seconds.
    Disable {
        /// The user name.
        name: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The user name.
        name: String,
    },
    /// Replace an account's password (also lifts a lockout).
    SetPassword {
        /// The user name.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file as `serve` would (its secrets, TLS files and settings, without binding a
    /// port or opening the database) and print the effective configuration, secrets redacted.
    Check {
        /// The YAML file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Write a fresh set of flyteadmin-format secrets (0600 files) into a directory.
    Init {
        /// Target directory (created 0700 if missing); existing files are never overwritten.
        #[arg(long)]
        dir: PathBuf,
        /// Kind of token signing key: RS256 (RSA-2048, PKCS#1), ES256 (EC P-256) or EdDSA (Ed25519), both PKCS#8
        /// [default: the --config file's flyteauth.signingAlgorithm, else RS256].
        #[arg(long)]
        signing_algorithm: Option<flyteauth_core::keys::SigningAlgorithm>,
        /// A configuration file whose flyteauth.signingAlgorithm decides the kind of signing key.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Write a local CA (ca.pem) and a server certificate (server.pem, server.key) signed by it.
    SelfSigned {
        /// Target directory.
        #[arg(long)]
        dir: PathBuf,
        /// Host names and IP addresses the certificate is for [default: localhost, 127.0.0.1, ::1].
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flyteauth: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `error` and its causes joined on one line, each cause once.
///
/// Many error types already end their message with their source's (`"cannot read {path}: {source}"`) and also
/// return it from `source()`; anyhow's `{:#}` would then print it twice. A cause whose message is already on
/// the line adds nothing and is left out.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if line.contains(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&message);
    }
    line
}

async fn users_command(target: StoreArgs, command: UsersCommand) -> anyhow::Result<()> {
    let prepared = serve::prepare(&ServeOptions {
        config_file: target.config,
        data_dir: target.data_dir,
        ..ServeOptions::default()
    })?;
    let store = serve::open_store(&prepared).await?;
    let lifetime = users::token_lifetime_secs(&prepared.config);
    let now = flyteauth_core::clock::Clock::unix_now(&flyteauth_core::clock::SystemClock);
    match command {
        UsersCommand::Add {
            name,
            email,
            display_name,
            admin,
            password,
        } => {
            let password = password.source().read()?;
            let account = users::NewAccount {
                username: name,
                email: email.unwrap_or_default(),
                display_name: display_name.unwrap_or_default(),
                is_admin: admin,
            };
            let user = users::add(store.as_ref(), &account, &password, now).await?;
            println!("created user {} (subject {})", user.username, user.subject);
        }
        UsersCommand::List => {
            println!(
                "{:<24} {:<36} {:<8} {:<6} email",
                "name", "subject", "status", "admin"
            );
            for u in users::list(store.as_ref()).await? {
                let status = if u.disabled {
                    "disabled"
                } else if u.locked_until > now {
                    "locked"
                } else {
                    "active"
                };
                let admin = if u.is_admin { "yes" } else { "no" };
                println!(
                    "{:<24} {:<36} {status:<8} {admin:<6} {}",
                    u.username, u.subject, u.email
                );
            }
        }
        UsersCommand::Disable { name } => {
            users::set_disabled(store.as_ref(), &name, true, now, lifetime).await?;
            println!("disabled user {}", name.trim().to_lowercase());
        }
        UsersCommand::Enable { name } => {
            users::set_disabled(store.as_ref(), &name, false, now, lifetime).await?;
            println!("enabled user {}", name.trim().to_lowercase());
        }
        UsersCommand::SetPassword { name, password } => {
            let password = password.source().read()?;
            users::set_password(store.as_ref(), &name, &password, now).await?;
            println!(
                "changed the password of user {}",
                name.trim().to_lowercase()
            );
        }
    }
    Ok(())
}

/// The credential lines of `apps create` and `apps rotate-secret`; the key line says why there is none when the
/// public URL cannot be put in one (the app works with its id and secret all the same).
fn print_credentials(c: &apps::Credentials) {
    println!("client_id: {}", c.client_id);
    println!("client_secret: {}", c.client_secret);
    match &c.api_key {
        Ok(key) => println!("FLYTE_API_KEY={key}"),
        Err(why) => println!("{why}"),
    }
}

async fn apps_command(target: StoreArgs, command: AppsCommand) -> anyhow::Result<()> {
    let prepared = serve::prepare(&ServeOptions {
        config_file: target.config,
        data_dir: target.data_dir,
        ..ServeOptions::default()
    })?;
    let store = serve::open_store(&prepared).await?;
    let clock = flyteauth_core::clock::SystemClock;
    let now = flyteauth_core::clock::Clock::unix_now(&clock);
    let config = &prepared.config;
    match command {
        AppsCommand::Create {
            name,
            organization,
            owner,
            redirect_uris,
        } => {
            let options = apps::CreateOptions {
                name,
                organization,
                owner,
                redirect_uris,
            };
            let created = apps::create(store.as_ref(), config, &options, now).await?;
            print_credentials(&created);
        }
        AppsCommand::List => {
            println!("client_id\tname\torganization\towner\tcreated");
            for app in apps::list(store.as_ref()).await? {
                println!("{}", apps::app_line(&app));
            }
        }
        AppsCommand::Delete { client_id } => {
            apps::delete(store.as_ref(), config, &client_id, &clock).await?;
            println!("deleted app {client_id}; its tokens stop working within seconds");
        }
        AppsCommand::RotateSecret { client_id } => {
            let rotated = apps::rotate_secret(store.as_ref(), config, &client_id, &clock).await?;
            print_credentials(&rotated);
        }
    }
    Ok(())
}

async fn audit_command(target: StoreArgs, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List { limit, kind, since } = command;
    // Checked before the database is opened, so a typo costs nothing.
    if let Some(span) = &since {
        apps::parse_span(span)?;
    }
    let prepared = serve::prepare(&ServeOptions {
        config_file: target.config,
        data_dir: target.data_dir,
        ..ServeOptions::default()
    })?;
    let store = serve::open_store(&prepared).await?;
    let now = flyteauth_core::clock::Clock::unix_now(&flyteauth_core::clock::SystemClock);
    let query = apps::AuditQuery { limit, kind, since };
    for event in apps::audit_list(store.as_ref(), &query, now).await? {
        println!("{}", apps::audit_line(&event));
    }
    Ok(())
}

fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The identity provider's HTTP client (reqwest without a provider of its own) takes rustls's process-wide
    // provider: make it aws-lc-rs, the one every TLS configuration here uses.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            self_signed_tls,
        } => {
            let prepared = serve::prepare(&ServeOptions {
                config_file: config,
                data_dir,
                listen,
                self_signed_tls,
            })?;
            let format = match cli.log_format {
                Some(LogFormatArg::Json) => telemetry::LogFormat::Json,
                Some(LogFormatArg::Plain) => telemetry::LogFormat::Plain,
                None => match prepared.config.flyteauth.log_format {
                    flyteauth_core::config::LogFormat::Json => telemetry::LogFormat::Json,
                    _ => telemetry::LogFormat::Plain,
                },
            };
            telemetry::init(format).context("cannot start logging")?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve::run(prepared))?;
            Ok(())
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let prepared = serve::prepare(&ServeOptions {
                config_file: Some(file.clone()),
                ..ServeOptions::default()
            })?;
            for warning in &prepared.warnings {
                eprintln!("warning: {warning}");
            }
            current_thread_runtime()?.block_on(serve::check(&prepared))?;
            print!("{}", prepared.config.redacted_yaml());
            eprintln!("{}: valid", file.display());
            Ok(())
        }
        Command::Secrets(SecretsCommand::Init {
            dir,
            signing_algorithm,
            config,
        }) => {
            let algorithm = match (signing_algorithm, config) {
                (Some(algorithm), _) => algorithm,
                (None, Some(file)) => {
                    flyteauth_core::config::Config::from_file(&file)?
                        .config
                        .flyteauth
                        .signing_algorithm
                }
                (None, None) => flyteauth_core::keys::SigningAlgorithm::default(),
            };
            let written = flyteauth_core::secrets::write_fresh_set_for(&dir, algorithm)?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Users { target, command } => {
            current_thread_runtime()?.block_on(users_command(target, command))
        }
        Command::Apps { target, command } => {
            current_thread_runtime()?.block_on(apps_command(target, command))
        }
        Command::Audit { target, command } => {
            current_thread_runtime()?.block_on(audit_command(target, command))
        }
        Command::Tls(TlsCommand::SelfSigned { dir, hosts }) => {
            let hosts = if hosts.is_empty() {
                tls::default_hosts()
            } else {
                hosts
            };
            let paths = tls::write_self_signed(&dir, &hosts)?;
            println!(
                "CA certificate (hand to clients): {}",
                paths.ca_cert.display()
            );
            println!("server certificate: {}", paths.server_cert.display());
            println!("server key: {}", paths.server_key.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x.yaml: {source}")]
    struct Read {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_its_errors_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = anyhow::Error::new(Read { source: io }).context("config check");
        assert_eq!(one_line(&error), "config check: cannot read x.yaml: gone");

        let error = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(one_line(&error), "outer: middle: inner");
    }
}
