//! The 0600 JSON file cache: one object, service -> `{"access_token", "refresh_token"}`.
//!
//! Every change is a read-modify-write under an exclusive lock on the sibling `<file>.lock`, because two
//! commands refreshing at once must not drop each other's entries; the new content lands by renaming a 0600
//! temporary file of the same directory over the old one, so a reader (who takes no lock) sees the old or the new
//! file, never half of one, and the mode is never wider than 0600 whatever the old file had.
//!
//! A file that is not a JSON object holds no usable login: reads treat it as empty and leave it alone; the next
//! write moves it aside to `<file>.corrupt` (kept for inspection, same inode so same mode) and starts afresh.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{CacheError, CachedTokens, layout};

/// How long a writer waits for another process's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_POLL: Duration = Duration::from_millis(20);

/// `$FLYTE_TOKEN_CACHE_FILE`, else `$XDG_STATE_HOME/flyte/tokens.json`, else `~/.local/state/flyte/tokens.json`.
/// A relative `XDG_STATE_HOME` is ignored, as the XDG base directory specification asks.
pub(super) fn default_path(env: &dyn Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(file) = set("FLYTE_TOKEN_CACHE_FILE") {
        return Ok(PathBuf::from(file));
    }
    if let Some(state) = set("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(state.join("flyte").join("tokens.json"));
    }
    let home = set("HOME")
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
        .filter(|p| p.is_absolute());
    home.map(|h| {
        h.join(".local")
            .join("state")
            .join("flyte")
            .join("tokens.json")
    })
    .ok_or_else(|| "HOME is not set; set FLYTE_TOKEN_CACHE_FILE or XDG_STATE_HOME".to_owned())
}

/// What the file holds.
enum Contents {
    Missing,
    Entries(Map<String, Value>),
    Corrupt,
}

/// The cache file.
#[derive(Debug, Clone)]
pub(super) struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn load(&self, service: &str) -> Result<Option<CachedTokens>, CacheError> {
        match self.read()? {
            Contents::Entries(entries) => Ok(entries.get(service).and_then(layout::from_value)),
            Contents::Missing => Ok(None),
            Contents::Corrupt => {
                tracing::warn!(path = %self.path.display(), "token cache file is not a JSON object; ignoring it");
                Ok(None)
            }
        }
    }

    pub(super) fn store(&self, service: &str, tokens: &CachedTokens) -> Result<(), CacheError> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        let mut entries = match self.read()? {
            Contents::Entries(entries) => entries,
            Contents::Missing => Map::new(),
            Contents::Corrupt => {
                self.move_aside()?;
                Map::new()
            }
        };
        entries.insert(service.to_owned(), layout::to_value(tokens));
        self.write(&entries)
    }

    pub(super) fn remove(&self, service: &str) -> Result<bool, CacheError> {
        if !self.path.exists() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        let Contents::Entries(mut entries) = self.read()? else {
            return Ok(false);
        };
        if entries.remove(service).is_none() {
            return Ok(false);
        }
        self.write(&entries)?;
        Ok(true)
    }

    fn error(&self, what: &str, err: impl std::fmt::Display) -> CacheError {
        CacheError::File {
            path: self.path.clone(),
            reason: format!("{what}: {err}"),
        }
    }

    fn read(&self) -> Result<Contents, CacheError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::Missing),
            Err(e) => return Err(self.error("cannot open", e)),
        };
        if let Ok(meta) = file.metadata()
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %self.path.display(), "token cache file is accessible to other users; the next write makes it 0600");
        }
        let mut bytes = Zeroizing::new(Vec::new());
        file.read_to_end(&mut bytes)
            .map_err(|e| self.error("cannot read", e))?;
        Ok(match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(entries)) => Contents::Entries(entries),
            _ => Contents::Corrupt,
        })
    }

    fn ensure_dir(&self) -> Result<(), CacheError> {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| self.error("cannot create its directory", e)),
            _ => Ok(()),
        }
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| OsString::from("tokens.json"));
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// The exclusive lock of writers; released when the returned file is dropped.
    fn lock(&self) -> Result<File, CacheError> {
        let lock_path = self.sibling(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| self.error("cannot open its lock file", e))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(LOCK_POLL)
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(self.error(
                        "locked by another process",
                        format!("{}s", LOCK_WAIT.as_secs()),
                    ));
                }
                Err(TryLockError::Error(e)) => return Err(self.error("cannot lock", e)),
            }
        }
    }

    fn move_aside(&self) -> Result<(), CacheError> {
        let aside = self.sibling(".corrupt");
        tracing::warn!(path = %self.path.display(), kept = %aside.display(), "token cache file is not a JSON object; moving it aside");
        fs::rename(&self.path, &aside)
            .map_err(|e| self.error("cannot move the unreadable file aside", e))
    }

    fn write(&self, entries: &Map<String, Value>) -> Result<(), CacheError> {
        let mut bytes = Zeroizing::new(
            serde_json::to_vec_pretty(entries).map_err(|e| self.error("cannot encode", e))?,
        );
        bytes.push(b'\n');
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = self
            .path
            .with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        let written = (|| -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(self.error("cannot write", e));
        }
        // The rename is durable only once the directory is; a failure here loses nothing already visible.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}
