//! The server's configuration file: YAML parsing, defaults and validation, then the derived values
//! `serve` computes from a configuration that loaded.
#![no_main]

use flyteauth_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = Config::from_yaml_str(text) else {
        return;
    };
    let config = loaded.config;
    let _ = config.public_url();
    let _ = config.issuer();
    let _ = config.accepted_audiences();
    let _ = config.external_audiences();
    let _ = config.listen_addr(true);
    let _ = config.redacted_yaml();
});
