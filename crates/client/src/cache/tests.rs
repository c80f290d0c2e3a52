//! Tests of the file cache and the JSON layout, and (with a D-Bus session) of the Secret Service store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::file::{FileStore, default_path};
use super::*;

fn tokens(access: &str, refresh: Option<&str>) -> CachedTokens {
    CachedTokens {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + Sync + use<> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    move |name| map.get(name).cloned()
}

// ---------------------------------------------------------------------------------------------------------
// The value layout shared with the Python SDK.

#[test]
fn encodes_as_python_json_dumps() {
    // Expected strings are what `json.dumps({...})` of Python 3 prints for the same dict.
    assert_eq!(
        layout::encode(&tokens("at", Some("rt"))).expose(),
        r#"{"access_token": "at", "refresh_token": "rt"}"#
    );
    assert_eq!(
        layout::encode(&tokens("at", None)).expose(),
        r#"{"access_token": "at", "refresh_token": null}"#
    );
    assert_eq!(
        layout::encode(&tokens("a\u{e9}\u{1F600}\u{7f}\u{1f}\"/", None)).expose(),
        r#"{"access_token": "a\u00e9\ud83d\ude00\u007f\u001f\"/", "refresh_token": null}"#
    );
}

#[test]
fn decodes_what_the_sdk_accepts() {
    assert_eq!(
        layout::decode(r#"{"access_token": "at", "refresh_token": "rt"}"#),
        Some(tokens("at", Some("rt")))
    );
    assert_eq!(
        layout::decode(r#"{"access_token":"at"}"#),
        Some(tokens("at", None))
    );
    assert_eq!(
        layout::decode(r#"{"access_token":"at","refresh_token":null,"id_token":"x","n":1}"#),
        Some(tokens("at", None))
    );
    // Only a refresh token: the SDK keeps it with an empty access token.
    assert_eq!(
        layout::decode(r#"{"refresh_token":"rt"}"#),
        Some(tokens("", Some("rt")))
    );
    assert_eq!(
        layout::decode(r#"{"access_token":"","refresh_token":"rt"}"#),
        Some(tokens("", Some("rt")))
    );
    assert_eq!(
        layout::decode(r#"{"access_token":"a\u00e9"}"#),
        Some(tokens("a\u{e9}", None))
    );
}

#[test]
fn anything_else_is_no_login() {
    for value in [
        "",
        "not json",
        "[]",
        r#""at""#,
        "{}",
        r#"{"access_token":null,"refresh_token":null}"#,
        r#"{"access_token":"","refresh_token":""}"#,
        r#"{"access_token":5}"#,
        r#"{"access_token":"at","refresh_token":["rt"]}"#,
    ] {
        assert_eq!(layout::decode(value), None, "{value:?}");
    }
}

#[test]
fn round_trips_through_the_layout() {
    for t in [
        tokens("at", Some("rt")),
        tokens("at", None),
        tokens("", Some("rt")),
    ] {
        assert_eq!(layout::decode(layout::encode(&t).expose()), Some(t.clone()));
        assert_eq!(layout::from_value(&layout::to_value(&t)), Some(t));
    }
}

// ---------------------------------------------------------------------------------------------------------
// The file cache.

fn store_in(dir: &Path) -> (FileStore, PathBuf) {
    let path = dir.join("state").join("flyte").join("tokens.json");
    (FileStore::new(path.clone()), path)
}

#[test]
fn file_is_created_0600_in_a_0700_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    assert_eq!(store.load("h:1").unwrap(), None);
    store.store("h:1", &tokens("at", Some("rt"))).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(store.load("h:1").unwrap(), Some(tokens("at", Some("rt"))));
}

#[test]
fn file_holds_several_services_in_the_sdk_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    store
        .store("a.example.com", &tokens("at-a", Some("rt-a")))
        .unwrap();
    store
        .store("localhost:8080/prefix", &tokens("at-b", None))
        .unwrap();
    store
        .store("a.example.com", &tokens("at-a2", Some("rt-a2")))
        .unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "a.example.com": {"access_token": "at-a2", "refresh_token": "rt-a2"},
            "localhost:8080/prefix": {"access_token": "at-b", "refresh_token": null},
        })
    );
    assert_eq!(
        store.load("a.example.com").unwrap(),
        Some(tokens("at-a2", Some("rt-a2")))
    );
    assert_eq!(
        store.load("localhost:8080/prefix").unwrap(),
        Some(tokens("at-b", None))
    );
    assert_eq!(store.load("other").unwrap(), None);
}

#[test]
fn remove_takes_out_one_service_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    assert!(
        !store.remove("a").unwrap(),
        "nothing to remove in a missing file"
    );
    assert!(
        !path.exists(),
        "removing from a missing file creates nothing"
    );
    store.store("a", &tokens("at-a", None)).unwrap();
    store.store("b", &tokens("at-b", None)).unwrap();
    assert!(store.remove("a").unwrap());
    assert!(!store.remove("a").unwrap());
    assert_eq!(store.load("a").unwrap(), None);
    assert_eq!(store.load("b").unwrap(), Some(tokens("at-b", None)));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn writes_replace_the_file_atomically_and_never_widen_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    store.store("a", &tokens("one", None)).unwrap();
    // A file someone made readable by everybody, with an entry of another tool's making.
    fs::write(
        &path,
        r#"{"kept": {"access_token": "k", "refresh_token": null, "extra": true}}"#,
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let before = fs::metadata(&path).unwrap().ino();

    store.store("a", &tokens("two", Some("rt"))).unwrap();
    assert_ne!(
        fs::metadata(&path).unwrap().ino(),
        before,
        "the file is replaced by a rename, not rewritten in place"
    );
    assert_eq!(mode(&path), 0o600);
    assert_eq!(store.load("kept").unwrap(), Some(tokens("k", None)));
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        json["kept"]["extra"],
        serde_json::json!(true),
        "other members of other entries are kept"
    );
    let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_corrupt_file_reads_as_empty_and_is_kept_aside_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    for corrupt in ["{not json", "[1, 2]", "\u{0}\u{1}"] {
        fs::write(&path, corrupt).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(store.load("a").unwrap(), None);
        assert!(!store.remove("a").unwrap());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            corrupt,
            "reads and removes leave the file alone"
        );

        store.store("a", &tokens("at", None)).unwrap();
        assert_eq!(store.load("a").unwrap(), Some(tokens("at", None)));
        let aside = path.with_file_name("tokens.json.corrupt");
        assert_eq!(
            fs::read_to_string(&aside).unwrap(),
            corrupt,
            "the unreadable content is kept for inspection"
        );
        assert_eq!(mode(&aside), 0o600);
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn an_entry_that_is_not_tokens_is_none_but_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, r#"{"a": "garbage", "b": {"access_token": 3}}"#).unwrap();
    assert_eq!(store.load("a").unwrap(), None);
    assert_eq!(store.load("b").unwrap(), None);
    store.store("c", &tokens("at", None)).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["a"], serde_json::json!("garbage"));
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: neither readable as a file nor replaceable by a rename.
    let path = dir.path().join("tokens.json");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("x"), "").unwrap();
    let store = FileStore::new(path.clone());
    let err = store.store("a", &tokens("at", None)).unwrap_err();
    let CacheError::File { path: named, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(named, &path);
    assert!(!err.to_string().contains("at\""), "{err}");
}

#[test]
fn default_path_follows_the_environment() {
    let path = |pairs: &[(&str, &str)]| default_path(&env_of(pairs));
    assert_eq!(
        path(&[
            ("FLYTE_TOKEN_CACHE_FILE", "/x/t.json"),
            ("XDG_STATE_HOME", "/s"),
            ("HOME", "/h")
        ])
        .unwrap(),
        PathBuf::from("/x/t.json")
    );
    assert_eq!(
        path(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")]).unwrap(),
        PathBuf::from("/s/flyte/tokens.json")
    );
    assert_eq!(
        path(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")]).unwrap(),
        PathBuf::from("/h/.local/state/flyte/tokens.json")
    );
    assert_eq!(
        path(&[
            ("FLYTE_TOKEN_CACHE_FILE", ""),
            ("XDG_STATE_HOME", ""),
            ("HOME", "/h")
        ])
        .unwrap(),
        PathBuf::from("/h/.local/state/flyte/tokens.json")
    );
}

#[tokio::test]
async fn disabled_keyring_uses_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    let options = CacheOptions {
        disable_keyring: true,
        file: Some(file.clone()),
    };
    let cache = TokenCache::open_with(
        &options,
        &env_of(&[("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")]),
    )
    .await;
    assert_eq!(cache.kind(), CacheKind::File);
    assert_eq!(cache.file_path(), Some(file.as_path()));
    assert_eq!(cache.load("h").await.unwrap(), None);
    cache.store("h", &tokens("at", Some("rt"))).await.unwrap();
    assert_eq!(
        cache.load("h").await.unwrap(),
        Some(tokens("at", Some("rt")))
    );
    assert!(cache.remove("h").await.unwrap());
    assert!(!cache.remove("h").await.unwrap());
    assert_eq!(mode(&file), 0o600);
}

#[tokio::test]
async fn without_a_session_bus_the_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_of(&[("XDG_STATE_HOME", dir.path().to_str().unwrap())]);
    let cache = TokenCache::open_with(&CacheOptions::default(), &env).await;
    assert_eq!(cache.kind(), CacheKind::File);
    assert_eq!(
        cache.file_path(),
        Some(dir.path().join("flyte/tokens.json").as_path())
    );
    cache.store("h", &tokens("at", None)).await.unwrap();
    assert_eq!(cache.load("h").await.unwrap(), Some(tokens("at", None)));
}

#[test]
fn cache_futures_can_move_between_threads() {
    fn send<T: Send>(_: &T) {}
    let cache = TokenCache {
        keyring: AtomicBool::new(false),
        file: Err(String::new()),
    };
    let t = tokens("a", None);
    send(&cache.load("s"));
    send(&cache.store("s", &t));
    send(&cache.remove("s"));
    send(&TokenCache::open(&CacheOptions::default()));
}

// ---------------------------------------------------------------------------------------------------------
// A real Secret Service: runs with FLYTE_TEST_SECRET_SERVICE=1, which scripts/with-secret-service sets next to
// the throwaway keyring it starts (the test command runs the Rust tests under it). Without the variable the tests
// do not touch a developer's own keyring; with it, a missing bus or keyring is a failure, not a skip.

#[cfg(target_os = "linux")]
mod secret_service_store {
    use super::*;
    use ::secret_service::{EncryptionType, SecretService};

    /// Whether to run; panics when asked to run (FLYTE_TEST_SECRET_SERVICE=1) without a bus.
    fn wanted() -> bool {
        let required = std::env::var("FLYTE_TEST_SECRET_SERVICE").is_ok_and(|v| v == "1");
        let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
        assert!(
            bus || !required,
            "FLYTE_TEST_SECRET_SERVICE=1 but DBUS_SESSION_BUS_ADDRESS is not set: run under scripts/with-secret-service"
        );
        if !required {
            eprintln!(
                "Secret Service test not run: set FLYTE_TEST_SECRET_SERVICE=1 (scripts/with-secret-service does)"
            );
        }
        required
    }

    /// A service name no real login uses, so a developer's keyring only ever sees (and loses) test items.
    fn test_service(name: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!(
            "flyteauth-test-{name}-{}-{nanos}.invalid:1",
            std::process::id()
        )
    }

    async fn open() -> (TokenCache, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            disable_keyring: false,
            file: Some(dir.path().join("tokens.json")),
        };
        let cache = TokenCache::open(&options).await;
        assert_eq!(
            cache.kind(),
            CacheKind::Keyring,
            "a session bus is present but no usable Secret Service answered"
        );
        (cache, dir)
    }

    /// (label, attributes, secret) of every item for `service` in the default collection.
    async fn items(service: &str) -> Vec<(String, HashMap<String, String>, String)> {
        let ss = SecretService::connect(EncryptionType::Dh).await.unwrap();
        let collection = ss.get_default_collection().await.unwrap();
        let mut found = Vec::new();
        for item in collection
            .search_items(HashMap::from([("service", service)]))
            .await
            .unwrap()
        {
            let secret = String::from_utf8(item.get_secret().await.unwrap()).unwrap();
            found.push((
                item.get_label().await.unwrap(),
                item.get_attributes().await.unwrap(),
                secret,
            ));
        }
        found
    }

    #[tokio::test]
    async fn items_are_the_ones_python_keyring_writes() {
        if !wanted() {
            return;
        }
        let (cache, dir) = open().await;
        let service = test_service("layout");
        assert_eq!(cache.load(&service).await.unwrap(), None);
        cache.store(&service, &tokens("at-1", None)).await.unwrap();
        cache
            .store(&service, &tokens("at-2", Some("rt-2")))
            .await
            .unwrap();
        assert_eq!(cache.kind(), CacheKind::Keyring);
        assert_eq!(
            cache.load(&service).await.unwrap(),
            Some(tokens("at-2", Some("rt-2")))
        );

        let found = items(&service).await;
        assert_eq!(
            found.len(),
            1,
            "store replaces the item: {:?}",
            found.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        let (label, attributes, secret) = &found[0];
        assert_eq!(label, &format!("Password for 'tokens' on '{service}'"));
        let expected: HashMap<String, String> = [
            ("application", "Python keyring library"),
            ("service", service.as_str()),
            ("username", "tokens"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // gnome-keyring adds `xdg:schema`; every attribute Python writes must be there with its value.
        for (k, v) in &expected {
            assert_eq!(
                attributes.get(k),
                Some(v),
                "attribute {k} in {attributes:?}"
            );
        }
        assert_eq!(
            secret,
            r#"{"access_token": "at-2", "refresh_token": "rt-2"}"#
        );
        assert!(
            !dir.path().join("tokens.json").exists(),
            "nothing went to the file"
        );

        assert!(cache.remove(&service).await.unwrap());
        assert!(items(&service).await.is_empty());
        assert!(!cache.remove(&service).await.unwrap());
        assert_eq!(cache.load(&service).await.unwrap(), None);
    }

    #[tokio::test]
    async fn remove_also_takes_the_legacy_items() {
        if !wanted() {
            return;
        }
        let (cache, _dir) = open().await;
        let service = test_service("legacy");
        for user in ["access_token", "refresh_token"] {
            os_keyring::set(&service, user, &Secret::new("old"))
                .await
                .unwrap();
        }
        assert_eq!(items(&service).await.len(), 2);
        assert!(
            cache.remove(&service).await.unwrap(),
            "legacy items count as something removed"
        );
        assert!(items(&service).await.is_empty());
    }

    #[tokio::test]
    async fn a_value_that_is_not_the_sdk_json_is_no_login() {
        if !wanted() {
            return;
        }
        let (cache, _dir) = open().await;
        let service = test_service("garbage");
        os_keyring::set(&service, "tokens", &Secret::new("not json"))
            .await
            .unwrap();
        assert_eq!(cache.load(&service).await.unwrap(), None);
        assert!(cache.remove(&service).await.unwrap());
    }

    /// With FLYTE_TEST_PYTHON_KEYRING=<python with `keyring`>: values cross between this store and Python's
    /// `keyring` in both directions.
    #[tokio::test]
    async fn python_keyring_reads_and_writes_the_same_items() {
        let Some(python) = std::env::var_os("FLYTE_TEST_PYTHON_KEYRING") else {
            eprintln!(
                "FLYTE_TEST_PYTHON_KEYRING not set: the Python keyring cross-check is not run"
            );
            return;
        };
        assert!(
            wanted(),
            "FLYTE_TEST_PYTHON_KEYRING is set but there is no D-Bus session"
        );
        let (cache, _dir) = open().await;
        let service = test_service("python");
        let python = |code: &str| {
            let out = std::process::Command::new(&python)
                .args(["-c", code, &service])
                .env(
                    "PYTHON_KEYRING_BACKEND",
                    "keyring.backends.SecretService.Keyring",
                )
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "python failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };

        python(
            r#"import sys, json, keyring
keyring.set_password(sys.argv[1], "tokens", json.dumps({"access_token": "py-at", "refresh_token": "py-rt"}))"#,
        );
        assert_eq!(
            cache.load(&service).await.unwrap(),
            Some(tokens("py-at", Some("py-rt")))
        );

        cache.store(&service, &tokens("rs-at", None)).await.unwrap();
        let read =
            python(r#"import sys, keyring; print(keyring.get_password(sys.argv[1], "tokens"))"#);
        assert_eq!(
            read.trim_end(),
            r#"{"access_token": "rs-at", "refresh_token": null}"#
        );
        assert_eq!(
            items(&service).await.len(),
            1,
            "Python's item was replaced, not duplicated"
        );

        assert!(cache.remove(&service).await.unwrap());
        let gone =
            python(r#"import sys, keyring; print(keyring.get_password(sys.argv[1], "tokens"))"#);
        assert_eq!(gone.trim_end(), "None");
    }
}
