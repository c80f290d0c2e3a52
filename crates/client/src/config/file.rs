//! Which config file is loaded: the search order of the `flyte` 2.x SDK.

use std::path::{Path, PathBuf};

use super::env::{Vars, expand_path};
use super::{ConfigError, Overrides, Places};

/// The file discovery settled on, and who named it (`None` for a default location, which exists).
pub(super) struct Candidate {
    pub path: PathBuf,
    /// `--config`, `UCTL_CONFIG`, … : a named file must exist.
    pub named_by: Option<String>,
}

/// `-c/--config`, `./config.yaml`, `./.flyte/config.yaml`, `<git root>/.flyte/config.yaml`, `$UCTL_CONFIG`,
/// `$FLYTECTL_CONFIG`, `~/.union/config.yaml`, `~/.flyte/config.yaml`: the first that applies. Default locations
/// apply when they are files; a named file applies whether or not it exists (reading it then fails).
pub(super) fn search(
    overrides: &Overrides,
    places: &Places,
    vars: &Vars<'_>,
) -> Result<Option<Candidate>, ConfigError> {
    let home = places.home.as_deref();
    if let Some(path) = &overrides.config_file {
        return Ok(Some(Candidate {
            path: expand_path(&path.to_string_lossy(), &places.cwd, home),
            named_by: Some("--config".into()),
        }));
    }
    let mut near = vec![
        places.cwd.join("config.yaml"),
        places.cwd.join(".flyte").join("config.yaml"),
    ];
    if let Some(root) = git_root(&places.cwd) {
        near.push(root.join(".flyte").join("config.yaml"));
    }
    if let Some(path) = near.into_iter().find(|p| p.is_file()) {
        return Ok(Some(Candidate {
            path,
            named_by: None,
        }));
    }
    for name in ["UCTL_CONFIG", "FLYTECTL_CONFIG"] {
        if let Some(found) = vars.get(name)? {
            return Ok(Some(Candidate {
                path: vars.path(&found.value),
                named_by: Some(found.name),
            }));
        }
    }
    let far = home
        .map(|home| {
            vec![
                home.join(".union").join("config.yaml"),
                home.join(".flyte").join("config.yaml"),
            ]
        })
        .unwrap_or_default();
    Ok(far.into_iter().find(|p| p.is_file()).map(|path| Candidate {
        path,
        named_by: None,
    }))
}

/// The nearest directory at or above `cwd` holding `.git` (a directory, or the file of a worktree).
fn git_root(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .find(|dir| dir.join(".git").exists())
        .map(Path::to_path_buf)
}

/// Confirms a named candidate is a readable file, so the error says who named it.
pub(super) fn check_named(candidate: &Candidate) -> Result<(), ConfigError> {
    let Some(named_by) = &candidate.named_by else {
        return Ok(());
    };
    let unreadable = |reason: String| ConfigError::Unreadable {
        path: candidate.path.clone(),
        reason: format!("{reason} (named by {named_by})"),
    };
    match std::fs::metadata(&candidate.path) {
        Ok(meta) if meta.is_dir() => Err(unreadable("it is a directory".into())),
        Ok(_) => Ok(()),
        Err(e) => Err(unreadable(e.to_string())),
    }
}
