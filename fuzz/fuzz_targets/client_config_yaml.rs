//! The flyte client library's config file (`~/.flyte/config.yaml`), read and resolved as `flyte` does with
//! no variables set.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use flyteauth_client::config::{MapEnv, Overrides, Places, Settings};
use libfuzzer_sys::fuzz_target;

struct Scratch {
    // Kept so the directory lives as long as the process.
    _dir: tempfile_dir::Dir,
    file: PathBuf,
}

mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A private directory under the system's temporary directory (tmpfs where it is), removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let base = if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let dir = base.join(format!(
                "flyteauth-fuzz-client-config-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("scratch directory");
            Self(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = tempfile_dir::Dir::new();
        let file = dir.path().join("config.yaml");
        Scratch { _dir: dir, file }
    })
}

fuzz_target!(|data: &[u8]| {
    let scratch = scratch();
    std::fs::write(&scratch.file, data).expect("write the scratch config");
    let overrides = Overrides {
        config_file: Some(scratch.file.clone()),
        ..Overrides::default()
    };
    let places = Places {
        cwd: scratch.file.parent().map(PathBuf::from).unwrap_or_default(),
        home: None,
    };
    if let Ok(settings) = Settings::discover(&overrides, &places, &MapEnv::default()) {
        let _ = settings.describe();
        if let Ok(endpoint) = settings.require_endpoint() {
            let _ = endpoint.base_url(settings.insecure);
            let _ = endpoint.to_config_string();
        }
    }
});
