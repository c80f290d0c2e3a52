//! The macOS login keychain through `/usr/bin/security`, as the Python `flyte` SDK reaches it.
//!
//! The SDK avoids the Security framework because the keychain authorizes callers by code signature: items
//! created by the Apple-signed `security` tool read back without a prompt from any program that also uses it.
//! Using the same tool keeps one login usable by both CLIs without "allow access" dialogs. The value travels
//! on the command line of `add-generic-password`, exactly as the SDK sends it.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::KeyringError;
use crate::Secret;

const SECURITY: &str = "/usr/bin/security";
/// `errSecItemNotFound` as `security`'s exit status.
const NOT_FOUND: i32 = 44;

async fn run(args: &[&str]) -> Result<std::process::Output, KeyringError> {
    Command::new(SECURITY)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| KeyringError::Unavailable(format!("{SECURITY}: {e}")))
}

fn failure(action: &str, output: &std::process::Output) -> KeyringError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    KeyringError::Refused(format!(
        "security {action} failed ({}): {}",
        output.status,
        stderr.trim()
    ))
}

/// Whether the tool is there (asking the keychain anything here could raise a prompt for nothing).
pub(super) async fn probe() -> Result<(), KeyringError> {
    if Path::new(SECURITY).is_file() {
        Ok(())
    } else {
        Err(KeyringError::Unavailable(format!("{SECURITY} not found")))
    }
}

/// The password of the item for `service` / `user`.
pub(super) async fn get(service: &str, user: &str) -> Result<Option<Secret>, KeyringError> {
    let output = run(&["find-generic-password", "-a", user, "-s", service, "-w"]).await?;
    let stdout = zeroize::Zeroizing::new(output.stdout.clone());
    match output.status.code() {
        Some(0) => {
            let text = String::from_utf8_lossy(&stdout);
            Ok(Some(Secret::new(text.strip_suffix('\n').unwrap_or(&text))))
        }
        Some(NOT_FOUND) => Ok(None),
        _ => Err(failure("find-generic-password", &output)),
    }
}

/// Creates or updates (`-U`) the item for `service` / `user`.
pub(super) async fn set(service: &str, user: &str, value: &Secret) -> Result<(), KeyringError> {
    let output = run(&[
        "add-generic-password",
        "-U",
        "-a",
        user,
        "-s",
        service,
        "-w",
        value.expose(),
    ])
    .await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failure("add-generic-password", &output))
    }
}

/// Deletes the item for `service` / `user`; whether there was one.
pub(super) async fn delete(service: &str, user: &str) -> Result<bool, KeyringError> {
    let output = run(&["delete-generic-password", "-a", user, "-s", service]).await?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(NOT_FOUND) => Ok(false),
        _ => Err(failure("delete-generic-password", &output)),
    }
}
