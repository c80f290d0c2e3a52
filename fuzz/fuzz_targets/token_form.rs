//! The body of `POST /oauth2/token`: the strict form decoder, then the grant it names, then the client
//! authentication read from the form (no `Authorization` header).
#![no_main]

use flyteauth_core::grant::{PresentedClient, TokenRequest};
use flyteauth_server::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(params) = form::parse(body) else {
        return;
    };
    if let Ok(request) = TokenRequest::parse(&params) {
        // The labels feed metrics and logs; they must exist for every grant that parses.
        assert!(!request.grant_type().is_empty());
        assert!(!request.wire_name().is_empty());
    }
    let _ = PresentedClient::from_request(None, &params);
});
