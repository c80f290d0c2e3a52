//! `FLYTE_API_KEY` decoding in the client types, and the round trip through the encoder the server uses.
#![no_main]

use flyteauth_types::api_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(key) = api_key::decode(text) else {
        return;
    };
    // What decodes must re-encode to the same parts whenever the encoder accepts them.
    let Ok(url) = url::Url::parse(&format!("https://{}", key.host)) else {
        return;
    };
    let org = key.organization.clone().unwrap_or_default();
    if let Ok(encoded) = api_key::encode(&url, &key.client_id, &key.client_secret, &org)
        && let Ok(host) = api_key::key_host(&url)
    {
        let again = api_key::decode(&encoded).expect("an encoded key decodes");
        assert_eq!(again.host, host);
        assert_eq!(again.client_id, key.client_id);
        assert_eq!(again.client_secret, key.client_secret);
        assert_eq!(again.organization, key.organization);
    }
});
