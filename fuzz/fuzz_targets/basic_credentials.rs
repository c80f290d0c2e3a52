//! The `Authorization` header of the token endpoint: `Basic base64(form(id):form(secret))`, combined with
//! the form body's `client_id` / `client_secret`.
//!
//! Input: the header value, then optionally a NUL byte and a form body.
#![no_main]

use flyteauth_core::grant::PresentedClient;
use flyteauth_server::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let params = form::parse(body).unwrap_or_default();
    if let Ok(Some(client)) = PresentedClient::from_request(Some(header), &params) {
        assert!(
            client.via_basic,
            "a parsed Authorization header is Basic authentication"
        );
        assert!(!client.id.is_empty(), "an empty client id must be refused");
        assert!(
            client.secret.as_deref() != Some(""),
            "an empty secret is reported as no secret"
        );
    }
});
