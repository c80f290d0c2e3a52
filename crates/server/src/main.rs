//! `flyteauth`: the command line over the flyteauth-server library.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
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
    /// Validate a configuration file and print the effective configuration, secrets redacted.
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
            // One clear line; the chain is joined so the cause is not lost.
            eprintln!("flyteauth: {e:#}");
            ExitCode::FAILURE
        }
    }
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

fn run(cli: Cli) -> anyhow::Result<()> {
    // Several crates pull in rustls with different providers; pick one for the process.
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
            let loaded = flyteauth_core::config::Config::from_file(&file)?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", loaded.config.redacted_yaml());
            eprintln!("{}: valid", file.display());
            Ok(())
        }
        Command::Secrets(SecretsCommand::Init { dir }) => {
            let written = flyteauth_core::secrets::write_fresh_set(&dir)?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Users { target, command } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(users_command(target, command))
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
