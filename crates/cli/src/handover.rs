//! Commands this `flyte` does not have (`run`, `deploy`, `get project`, …) belong to the Python `flyte` SDK: the
//! process is replaced by the next `flyte` on PATH with the same arguments and environment, so both can be
//! installed and the Rust one can come first.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::exit::CliError;

/// Set in the environment of the `flyte` handed over to. Seeing it means that `flyte` handed back (a wrapper
/// script or a second copy of this one), and handing over again would loop forever.
pub const HANDED_OVER_VAR: &str = "FLYTE_RS_HANDED_OVER";

/// Options of either `flyte` that come before the command and take a value in the next word.
const VALUE_OPTIONS: &[&str] = &[
    "-c",
    "--config",
    "--endpoint",
    "--auth-type",
    "--api-key",
    "--org",
    "-of",
    "--output-format",
];

/// Our commands, and the subjects of those that have some.
const OURS: &[(&str, &[&str])] = &[
    ("whoami", &[]),
    ("login", &[]),
    ("logout", &[]),
    ("completion", &[]),
    ("help", &[]),
    ("create", &["config", "api-key", "help"]),
    ("get", &["config", "api-key", "help"]),
    ("delete", &["api-key", "help"]),
];

/// Replaces this process by the next `flyte` on PATH, given all of `args` (argv, program name first). Returns
/// only when that is impossible, with the error to print; `command` names what was asked for
/// (`flyte get project`).
pub fn hand_over(args: &[OsString], command: &str) -> CliError {
    let needs_python = || {
        CliError::HandOver(format!(
            "'{command}' needs the Python flyte SDK (pip install flyte); put its flyte on PATH after this one"
        ))
    };
    if std::env::var_os(HANDED_OVER_VAR).is_some() {
        tracing::debug!("{HANDED_OVER_VAR} is set: not handing over a second time");
        return needs_python();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return needs_python();
    };
    let current = std::env::current_exe().unwrap_or_else(|_| {
        PathBuf::from(args.first().map(OsString::as_os_str).unwrap_or_default())
    });
    let Some(next) = find_next_flyte(&path, &current) else {
        return needs_python();
    };
    tracing::debug!(program = %next.display(), "handing over");
    let mut child = std::process::Command::new(&next);
    child.args(args.iter().skip(1)).env(HANDED_OVER_VAR, "1");
    let error = run(child);
    CliError::HandOver(format!("cannot run {}: {error}", next.display()))
}

#[cfg(unix)]
fn run(mut command: std::process::Command) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    command.exec()
}

#[cfg(not(unix))]
fn run(mut command: std::process::Command) -> std::io::Error {
    match command.status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(error) => error,
    }
}

/// The first executable `flyte` in the directories of `path` (a PATH value) that is not `current_exe` (compared
/// after resolving symlinks, so a link to this binary is skipped too).
pub fn find_next_flyte(path: &OsStr, current_exe: &Path) -> Option<PathBuf> {
    let current = std::fs::canonicalize(current_exe).unwrap_or_else(|_| current_exe.to_path_buf());
    std::env::split_paths(path)
        // An empty entry means the working directory; a command hand-over must not pick up whatever lies there.
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join("flyte"))
        .find(|candidate| {
            is_executable_file(candidate)
                && std::fs::canonicalize(candidate)
                    .map(|c| c != current)
                    .unwrap_or(false)
        })
}

#[cfg(unix)]
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable_file(path: &Path) -> bool {
    path.is_file()
}

/// Whether a parse error may come from options of the Python `flyte` rather than a mistake in ours.
pub fn may_be_foreign(error: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand | ErrorKind::InvalidValue
    )
}

/// When the command line did not parse: the command it names if that is not one of ours (`flyte -of json get
/// project` carries an option of the Python `flyte` only), as `flyte get project`. `None` when the words name one
/// of our commands, or none at all: then the parse error is ours to report.
pub fn foreign_command(args: &[OsString]) -> Option<String> {
    let mut words = Vec::new();
    let mut rest = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg.starts_with('-') {
            if VALUE_OPTIONS.contains(&arg.as_ref()) {
                rest.next();
            }
            continue;
        }
        words.push(arg.into_owned());
        let Some((_, subjects)) = OURS.iter().find(|(name, _)| *name == words[0]) else {
            return Some(format!("flyte {}", words[0]));
        };
        if words.len() == 1 && subjects.is_empty() {
            return None;
        }
        if words.len() == 2 {
            return (!subjects.contains(&words[1].as_str()))
                .then(|| format!("flyte {} {}", words[0], words[1]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn executable(dir: &Path, mode: u32) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let file = dir.join("flyte");
        fs::write(&file, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    fn path_of(dirs: &[&Path]) -> OsString {
        std::env::join_paths(dirs).unwrap()
    }

    #[test]
    fn skips_the_current_executable() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = executable(&tmp.path().join("rust"), 0o755);
        let python = executable(&tmp.path().join("venv"), 0o755);
        let path = path_of(&[&tmp.path().join("rust"), &tmp.path().join("venv")]);
        assert_eq!(find_next_flyte(&path, &ours), Some(python.clone()));
        // The same PATH from the Python flyte's point of view: the Rust one comes first and is not itself.
        assert_eq!(find_next_flyte(&path, &python), Some(ours));
    }

    #[test]
    fn skips_a_symlink_to_the_current_executable() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = executable(&tmp.path().join("rust"), 0o755);
        let links = tmp.path().join("bin");
        fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink(&ours, links.join("flyte")).unwrap();
        let python = executable(&tmp.path().join("venv"), 0o755);
        let path = path_of(&[&links, &tmp.path().join("rust"), &tmp.path().join("venv")]);
        assert_eq!(find_next_flyte(&path, &ours), Some(python));
    }

    #[test]
    fn skips_non_executables_directories_and_missing_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = executable(&tmp.path().join("rust"), 0o755);
        executable(&tmp.path().join("plain"), 0o644);
        fs::create_dir_all(tmp.path().join("dir/flyte")).unwrap();
        let python = executable(&tmp.path().join("venv"), 0o700);
        let path = path_of(&[
            &tmp.path().join("nowhere"),
            &tmp.path().join("plain"),
            &tmp.path().join("dir"),
            &tmp.path().join("rust"),
            &tmp.path().join("venv"),
        ]);
        assert_eq!(find_next_flyte(&path, &ours), Some(python));
    }

    #[test]
    fn none_when_only_this_one() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = executable(&tmp.path().join("rust"), 0o755);
        let path = path_of(&[&tmp.path().join("rust"), &tmp.path().join("rust")]);
        assert_eq!(find_next_flyte(&path, &ours), None);
        assert_eq!(find_next_flyte(OsStr::new(""), &ours), None);
    }

    fn args(line: &str) -> Vec<OsString> {
        std::iter::once("flyte")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn foreign_commands_behind_python_options() {
        assert_eq!(
            foreign_command(&args("-of json get project")),
            Some("flyte get project".into())
        );
        assert_eq!(
            foreign_command(&args("--output-format json run hello.py main")),
            Some("flyte run".into())
        );
        assert_eq!(
            foreign_command(&args("-c cfg.yaml --bogus deploy x")),
            Some("flyte deploy".into())
        );
        assert_eq!(
            foreign_command(&args("--bogus create cluster")),
            Some("flyte create cluster".into())
        );
    }

    #[test]
    fn our_commands_keep_their_parse_errors() {
        assert_eq!(foreign_command(&args("whoami --bogus")), None);
        assert_eq!(foreign_command(&args("--bogus get config")), None);
        assert_eq!(foreign_command(&args("delete api-key --bogus x")), None);
        assert_eq!(foreign_command(&args("--bogus")), None);
        assert_eq!(foreign_command(&args("get --bogus")), None);
        assert_eq!(foreign_command(&args("--endpoint run whoami")), None);
    }
}
