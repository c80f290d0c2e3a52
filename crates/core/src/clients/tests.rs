use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::config::{
    Config, FlyteClientConfig, PLACEHOLDER_SECRET_HASH, PLACEHOLDER_SECRET_HASH_B64,
    SelfAuthServerConfig, StaticClient,
};

#[test]
fn sha256_hashes_verify_in_constant_time_and_round_trip() {
    let secret = generate_secret();
    let hash = hash_generated_secret(&secret);
    assert!(hash.verify(&secret));
    assert!(!hash.verify(""));
    assert!(!hash.verify(&format!("{secret}x")));
    let encoded = hash.encode();
    assert!(
        encoded.starts_with("sha256:") && encoded.len() == 7 + 64,
        "{encoded}"
    );
    assert_eq!(SecretHash::parse(&encoded).unwrap(), hash);
}

#[test]
fn bcrypt_hashes_verify_and_round_trip() {
    let hash = SecretHash::Bcrypt(bcrypt::hash("correct horse", 4).unwrap());
    assert!(hash.verify("correct horse"));
    assert!(!hash.verify("correct horse "));
    let encoded = hash.encode();
    assert!(encoded.starts_with("bcrypt:$2"));
    assert_eq!(SecretHash::parse(&encoded).unwrap(), hash);
    // A corrupt hash never verifies (and does not panic).
    assert!(!SecretHash::Bcrypt("$2b$04$short".into()).verify("x"));
}

#[test]
fn parse_refuses_bad_encodings() {
    for bad in [
        "",
        "plain",
        "sha256:",
        "sha256:abcd",
        &format!("sha256:{}", "g".repeat(64)),
        "bcrypt:",
        "bcrypt:$2b$04$tooshort",
        "md5:abc",
        &format!("bcrypt:$2b$99${}", "a".repeat(53)),
    ] {
        assert!(
            matches!(SecretHash::parse(bad), Err(ClientError::InvalidHash(_))),
            "{bad}"
        );
    }
}

#[test]
fn generated_secrets_are_long_random_and_colon_free() {
    let a = generate_secret();
    let b = generate_secret();
    assert_ne!(a, b);
    assert_eq!(a.len(), 43);
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{a}"
    );
}

#[test]
fn debug_never_shows_hashes() {
    let hash = hash_generated_secret("s");
    let debug = format!("{hash:?} {:?}", SecretHash::Bcrypt("$2b$04$abc".into()));
    assert!(
        debug.contains("<redacted>")
            && !debug.contains("$2b$")
            && !debug.contains(&hash.encode()[7..])
    );
}

#[test]
fn the_flyteadmin_format_example_decodes_to_its_bcrypt_hash() {
    // The base64-wrapped hash from flyteadmin's documentation and default configuration.
    assert_eq!(
        decode_config_secret(PLACEHOLDER_SECRET_HASH_B64).unwrap(),
        PLACEHOLDER_SECRET_HASH
    );
    let cfg = SelfAuthServerConfig {
        static_clients: [(
            "flytepropeller".to_owned(),
            StaticClient {
                client_secret: Some(PLACEHOLDER_SECRET_HASH_B64.to_owned()),
                grant_types: vec!["client_credentials".into()],
                ..StaticClient::default()
            },
        )]
        .into(),
        ..SelfAuthServerConfig::default()
    };
    let clients = static_clients(&cfg).unwrap();
    assert_eq!(
        clients[0].secret,
        Some(SecretHash::Bcrypt(PLACEHOLDER_SECRET_HASH.to_owned()))
    );
}

#[test]
fn config_secrets_in_every_accepted_form() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let padded = STANDARD.encode(&hash);
    let forms = [
        padded.clone(),
        padded.trim_end_matches('=').to_owned(),
        format!("  {padded}\n"),
        format!("{}\n{}", &padded[..40], &padded[40..]),
        hash.clone(),
    ];
    for form in forms {
        let decoded = decode_config_secret(&form).unwrap();
        assert_eq!(decoded, hash, "{form:?}");
        assert!(SecretHash::Bcrypt(decoded).verify("s3cret"));
    }
    assert!(decode_config_secret("not base64!").is_err());
    assert!(decode_config_secret(&STANDARD.encode("hello")).is_err());
    assert!(decode_config_secret(&STANDARD.encode([0xff, 0xfe])).is_err());
}

#[test]
fn static_clients_from_config() {
    let hash = bcrypt::hash("propeller-secret", 4).unwrap();
    let yaml = format!(
        "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n        flytepropeller:\n          client_secret: {}\n          grant_types: [refresh_token, client_credentials]\n          scopes: [all, offline]\n          audience: [https://other.example.com]\n          redirect_uris: [http://localhost:3846/callback]\n        flytectl:\n          public: true\n          grant_types: [authorization_code]\n",
        STANDARD.encode(&hash)
    );
    let cfg = Config::from_yaml_str(&yaml).unwrap().config;
    let clients = static_clients(&cfg.auth.app_auth.self_auth_server).unwrap();
    // flytepropeller and flytectl as configured, plus the default flyte-cli.
    assert_eq!(clients.len(), 3);
    let ctl = clients.iter().find(|c| c.id == "flytectl").unwrap();
    assert!(ctl.is_public());
    assert!(ctl.allows_grant("authorization_code") && !ctl.allows_grant("client_credentials"));
    let prop = clients.iter().find(|c| c.id == "flytepropeller").unwrap();
    assert!(!prop.is_public());
    assert_eq!(prop.name, "flytepropeller");
    assert!(prop.allows_grant("client_credentials"));
    assert_eq!(prop.scopes, ["all", "offline"]);
    assert_eq!(prop.audience, ["https://other.example.com"]);
    assert_eq!(prop.redirect_uris, ["http://localhost:3846/callback"]);
    assert!(prop.secret.as_ref().unwrap().verify("propeller-secret"));
    assert!(!prop.secret.as_ref().unwrap().verify("wrong"));

    // The defaults are public clients without secrets.
    let defaults = static_clients(&SelfAuthServerConfig::default()).unwrap();
    assert!(defaults.iter().all(Client::is_public));
}

#[test]
fn static_client_errors() {
    let mut cfg = SelfAuthServerConfig::default();
    cfg.static_clients.insert(
        "ci".into(),
        StaticClient {
            grant_types: vec!["client_credentials".into()],
            ..StaticClient::default()
        },
    );
    assert_eq!(
        static_clients(&cfg).unwrap_err(),
        ClientError::MissingSecret { id: "ci".into() }
    );
    cfg.static_clients.get_mut("ci").unwrap().client_secret = Some("bm90IGEgaGFzaA==".into());
    match static_clients(&cfg).unwrap_err() {
        e @ ClientError::InvalidSecret { .. } => assert!(e.to_string().contains("\"ci\""), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_clients_cost_about_a_bcrypt_check() {
    let real = bcrypt::hash("s", DUMMY_BCRYPT_COST).unwrap();
    // Best of a few runs each, so a busy machine does not decide the outcome.
    let best = |run: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed()
            })
            .min()
            .unwrap()
    };
    let known = best(&|| {
        let _ = bcrypt::verify("wrong", &real);
    });
    let unknown = best(&|| equalize_timing_for_unknown_client("wrong"));
    assert!(
        unknown * 3 > known,
        "unknown {unknown:?} vs known {known:?}"
    );
    assert!(
        known * 3 > unknown,
        "unknown {unknown:?} vs known {known:?}"
    );
    assert!(
        DUMMY_HASH.starts_with("$2b$06$") && DUMMY_HASH.len() == 60,
        "{}",
        *DUMMY_HASH
    );
}

#[test]
fn every_bcrypt_version_prefix_verifies() {
    let parts = bcrypt::hash_with_result("pw", 4).unwrap();
    for version in [
        bcrypt::Version::TwoA,
        bcrypt::Version::TwoB,
        bcrypt::Version::TwoY,
    ] {
        let hash = parts.format_for_version(version);
        let wrapped = STANDARD.encode(&hash);
        let decoded = decode_config_secret(&wrapped).unwrap();
        assert!(SecretHash::Bcrypt(decoded).verify("pw"), "{hash}");
    }
}

#[test]
fn flyte_client_is_made_able_to_log_in() {
    let fc = FlyteClientConfig {
        client_id: "my-cli".into(),
        redirect_uri: "http://localhost:53593/callback".into(),
        scopes: vec!["all".into(), "offline".into()],
        audience: String::new(),
    };
    let mut clients = static_clients(&SelfAuthServerConfig::default()).unwrap();
    assert!(ensure_flyte_client(&mut clients, &fc).is_some());
    let added = clients.iter().find(|c| c.id == "my-cli").unwrap();
    assert!(added.is_public());
    assert!(added.allows_grant("authorization_code") && added.allows_grant("refresh_token"));
    assert_eq!(added.redirect_uris, ["http://localhost:53593/callback"]);
    assert_eq!(ensure_flyte_client(&mut clients, &fc), None, "idempotent");

    let fc = FlyteClientConfig {
        client_id: "flytectl".into(),
        redirect_uri: "http://localhost:8765/cb".into(),
        ..FlyteClientConfig::default()
    };
    assert!(ensure_flyte_client(&mut clients, &fc).is_some());
    let flytectl = clients.iter().find(|c| c.id == "flytectl").unwrap();
    assert!(
        flytectl
            .redirect_uris
            .iter()
            .any(|r| r == "http://localhost:8765/cb")
    );
    assert_eq!(
        ensure_flyte_client(&mut clients, &FlyteClientConfig::default()),
        None
    );
}

#[test]
fn a_bcrypt_secret_longer_than_72_bytes_does_not_pass_on_its_prefix() {
    // bcrypt reads 72 bytes (the secret and a NUL) at most: a truncating check would accept any secret
    // sharing them, so longer ones are refused outright.
    let longest = "k".repeat(71);
    let stored = SecretHash::Bcrypt(bcrypt::hash(&longest, 4).unwrap());
    assert!(stored.verify(&longest));
    let long = "k".repeat(72);
    let truncated = SecretHash::Bcrypt(bcrypt::hash(&long, 4).unwrap());
    assert!(!truncated.verify(&format!("{long}anything")));
    assert!(!truncated.verify(&long));
}
