//! The `database:` section (flytestdlib's database config) and the connection URL derived from it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::duration::go;
use super::serde_util::opt_path;

/// The SQLite file used when no database is configured.
pub const DEFAULT_SQLITE_FILE: &str = "flyteauth.db";

/// `database:`. SQLite wins when both are configured (as in flyteadmin); with neither, SQLite in the data
/// directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DatabaseConfig {
    /// `connMaxLifeTime` (1h).
    #[serde(rename = "connMaxLifeTime", with = "go")]
    pub conn_max_life_time: Duration,
    /// `maxIdleConnections` (10).
    pub max_idle_connections: u32,
    /// `maxOpenConnections` (100).
    pub max_open_connections: u32,
    /// `postgres`: PostgreSQL connection settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresConfig>,
    /// `sqlite`: SQLite file.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "sqlite_opt"
    )]
    pub sqlite: Option<SqliteConfig>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            conn_max_life_time: Duration::from_secs(3600),
            max_idle_connections: 10,
            max_open_connections: 100,
            postgres: None,
            sqlite: None,
        }
    }
}

// flytestdlib treats `sqlite: {file: ""}` as "not configured".
fn sqlite_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SqliteConfig>, D::Error> {
    Ok(Option::<SqliteConfig>::deserialize(d)?.filter(|s| !s.file.as_os_str().is_empty()))
}

/// `database.postgres:`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PostgresConfig {
    /// `host` ("localhost").
    pub host: String,
    /// `port` (5432).
    pub port: u16,
    /// `dbname` ("postgres").
    #[serde(rename = "dbname", alias = "dbName")]
    pub dbname: String,
    /// `username` ("postgres").
    pub username: String,
    /// `password` (""): prefer `passwordPath`.
    pub password: String,
    /// `passwordPath`: file holding the password; wins over `password`.
    #[serde(with = "opt_path")]
    pub password_path: Option<PathBuf>,
    /// `options` (""): libpq-style `key=value` pairs separated by spaces, e.g. `sslmode=disable`.
    pub options: String,
    /// `debug` (false).
    pub debug: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 5432,
            dbname: "postgres".to_owned(),
            username: "postgres".to_owned(),
            password: String::new(),
            password_path: None,
            options: String::new(),
            debug: false,
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("password_path", &self.password_path)
            .field("options", &self.options)
            .field("debug", &self.debug)
            .finish()
    }
}

/// `database.sqlite:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SqliteConfig {
    /// `file`: path of the database file.
    pub file: PathBuf,
}

// Characters that would end or escape the path part of a `sqlite://` URL (sqlx percent-decodes it).
const SQLITE_PATH_ESCAPES: &[char] = &['%', '?', '#'];

impl DatabaseConfig {
    /// The connection URL for the store: `sqlite://<file>?mode=rwc`, or
    /// `postgres://user:pass@host:port/dbname?options` with the password read from `passwordPath` when set.
    pub fn url(&self, data_dir: &Path) -> Result<String, ConfigError> {
        if let Some(sqlite) = &self.sqlite {
            return sqlite_url(&sqlite.file, "database.sqlite.file");
        }
        if let Some(pg) = &self.postgres {
            return pg.url();
        }
        sqlite_url(&data_dir.join(DEFAULT_SQLITE_FILE), "flyteauth.dataDir")
    }
}

// `Url::set_username`/`set_password` leave '%' alone (they assume it starts an escape), so user info is fully
// encoded here first; what they then add is a no-op.
fn encode_userinfo(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sqlite_url(file: &Path, key: &str) -> Result<String, ConfigError> {
    let path = file.to_str().ok_or_else(|| ConfigError::Invalid {
        key: key.to_owned(),
        expected: format!("a UTF-8 file path (got {})", file.display()),
    })?;
    let mut encoded = String::with_capacity(path.len());
    for c in path.chars() {
        if SQLITE_PATH_ESCAPES.contains(&c) {
            encoded.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            encoded.push(c);
        }
    }
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}

impl PostgresConfig {
    fn url(&self) -> Result<String, ConfigError> {
        let password = match &self.password_path {
            Some(path) => {
                let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.clone(),
                    source,
                })?;
                raw.trim_end_matches(['\n', '\r']).to_owned()
            }
            None => self.password.clone(),
        };
        let mut url =
            url::Url::parse("postgres://localhost/").map_err(|e| ConfigError::Invalid {
                key: "database.postgres".to_owned(),
                expected: format!("a valid connection URL ({e})"),
            })?;
        let invalid = |key: &str, what: &str| ConfigError::Invalid {
            key: format!("database.postgres.{key}"),
            expected: what.to_owned(),
        };
        url.set_host(Some(&self.host))
            .map_err(|e| invalid("host", &format!("a host name or IP address ({e})")))?;
        url.set_port(Some(self.port))
            .map_err(|()| invalid("port", "a TCP port"))?;
        url.set_username(&encode_userinfo(&self.username))
            .map_err(|()| invalid("username", "a user name"))?;
        if !password.is_empty() {
            url.set_password(Some(&encode_userinfo(&password)))
                .map_err(|()| invalid("password", "a password"))?;
        }
        url.path_segments_mut()
            .map_err(|()| invalid("dbname", "a database name"))?
            .clear()
            .push(&self.dbname);
        let pairs: Vec<(&str, &str)> = self
            .options
            .split(|c: char| c.is_whitespace() || c == '&')
            .filter(|s| !s.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url.into())
    }
}
