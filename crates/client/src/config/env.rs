//! Environment variables, with the `_FROM_FILE` / `_FROM_ENV_VAR` redirections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// Environment variables, injectable for tests.
pub trait Env: Send + Sync {
    /// The raw value of `name`, if set.
    fn raw(&self, name: &str) -> Option<String>;
}

/// The process's environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn raw(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables.
#[derive(Debug, Default, Clone)]
pub struct MapEnv(pub HashMap<String, String>);

impl Env for MapEnv {
    fn raw(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// A variable's value and the name to blame when it is wrong.
pub(super) struct Found {
    /// The value (a file's content for `_FROM_FILE`).
    pub value: String,
    /// The variable actually read: `X`, `X_FROM_FILE`, or `Y (via X_FROM_ENV_VAR)`.
    pub name: String,
}

/// Reads variables the way every setting does: `X`, else `X_FROM_FILE`, else `X_FROM_ENV_VAR`. An empty value
/// counts as unset, so `FLYTE_ADMIN_ENDPOINT= flyte …` falls back to the file as a shell user expects.
pub(super) struct Vars<'a> {
    env: &'a dyn Env,
    cwd: &'a Path,
    home: Option<&'a Path>,
}

impl<'a> Vars<'a> {
    pub(super) fn new(env: &'a dyn Env, cwd: &'a Path, home: Option<&'a Path>) -> Self {
        Self { env, cwd, home }
    }

    fn plain(&self, name: &str) -> Option<String> {
        self.env.raw(name).filter(|v| !v.is_empty())
    }

    /// The value of `name` through its redirections.
    pub(super) fn get(&self, name: &str) -> Result<Option<Found>, ConfigError> {
        if let Some(value) = self.plain(name) {
            return Ok(Some(Found {
                value,
                name: name.to_owned(),
            }));
        }
        let from_file = format!("{name}_FROM_FILE");
        if let Some(path) = self.plain(&from_file) {
            let path = self.path(&path);
            let content = std::fs::read_to_string(&path).map_err(|e| ConfigError::BadValue {
                setting: from_file.clone(),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            let value = strip_one_newline(content);
            if !value.is_empty() {
                return Ok(Some(Found {
                    value,
                    name: from_file,
                }));
            }
        }
        let from_var = format!("{name}_FROM_ENV_VAR");
        if let Some(other) = self.plain(&from_var) {
            let other = other.trim();
            if let Some(value) = self.plain(other) {
                return Ok(Some(Found {
                    value,
                    name: format!("{other} (via {from_var})"),
                }));
            }
        }
        Ok(None)
    }

    /// The first of `names` that is set.
    pub(super) fn first(&self, names: &[&str]) -> Result<Option<Found>, ConfigError> {
        for name in names {
            if let Some(found) = self.get(name)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// A path given in a variable or file: `~/` is the home directory, a relative path is relative to the
    /// working directory.
    pub(super) fn path(&self, value: &str) -> PathBuf {
        expand_path(value.trim(), self.cwd, self.home)
    }
}

/// `~` and `~/…` expanded (quoted in a shell or written in YAML, nothing else expands them), then joined to `cwd`.
pub(super) fn expand_path(value: &str, cwd: &Path, home: Option<&Path>) -> PathBuf {
    let expanded = match (value.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(value),
    };
    cwd.join(expanded)
}

/// A file's content without the one line ending editors and `echo` add.
pub(super) fn strip_one_newline(mut content: String) -> String {
    if content.ends_with("\r\n") {
        content.truncate(content.len() - 2);
    } else if content.ends_with('\n') {
        content.truncate(content.len() - 1);
    }
    content
}
