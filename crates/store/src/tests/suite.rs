//! Behaviour every backend must share. Each function starts from an empty database.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use super::harness::Ctx;
use crate::{AppRecord, AppUpdate, AuditEvent, NewApp, Revocation, StoreError};

const T0: i64 = 1_700_000_000;
const HASH: &str = "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";

fn app(id: &str) -> NewApp {
    NewApp {
        client_id: id.to_owned(),
        client_name: format!("App {id}"),
        organization: "acme".to_owned(),
        secret_hash: HASH.to_owned(),
        grant_types: vec!["client_credentials".to_owned()],
        scopes: vec!["all".to_owned()],
        audience: vec![],
        redirect_uris: vec![],
        created_by: "alice".to_owned(),
        created_at: T0,
    }
}

fn revocation(token_id: &str, expires_at: i64) -> Revocation {
    Revocation {
        token_id: token_id.to_owned(),
        expires_at,
        reason: "test".to_owned(),
        revoked_at: T0,
    }
}

fn event(at: i64, kind: &str) -> AuditEvent {
    AuditEvent {
        at,
        kind: kind.to_owned(),
        client_id: "app-1".to_owned(),
        subject: "app-1".to_owned(),
        outcome: "ok".to_owned(),
        remote_addr: "127.0.0.1:5000".to_owned(),
        detail: json!({}),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) async fn ping_and_backend(ctx: Ctx) {
    ctx.store.ping().await.unwrap();
    assert_eq!(ctx.store.backend(), ctx.backend);
    let debug = format!("{:?}", ctx.store);
    assert!(!debug.is_empty());
}

pub(crate) async fn apps_roundtrip(ctx: Ctx) {
    let s = &ctx.store;
    let new = NewApp {
        client_name: "Ünïcode ✓ 'single' \"double\" \\ %_".to_owned(),
        organization: String::new(),
        // Order and duplicates are kept; empty strings are values like any other.
        scopes: strings(&["z", "a", "z", ""]),
        audience: strings(&["https://flyte.example.com", "urn:x"]),
        redirect_uris: strings(&["http://localhost:53593/callback"]),
        grant_types: vec![],
        created_at: i64::MAX - 1,
        ..app("roundtrip")
    };
    let created = s.create_app(&new).await.unwrap();
    let expected = AppRecord {
        client_id: new.client_id.clone(),
        client_name: new.client_name.clone(),
        organization: new.organization.clone(),
        secret_hash: new.secret_hash.clone(),
        grant_types: new.grant_types.clone(),
        scopes: new.scopes.clone(),
        audience: new.audience.clone(),
        redirect_uris: new.redirect_uris.clone(),
        created_by: new.created_by.clone(),
        created_at: new.created_at,
        updated_at: new.created_at,
    };
    assert_eq!(created, expected);
    assert_eq!(s.get_app("roundtrip").await.unwrap(), Some(expected));
    // Keys are exact: no case folding, no trimming.
    assert_eq!(s.get_app("ROUNDTRIP").await.unwrap(), None);
    assert_eq!(s.get_app("roundtrip ").await.unwrap(), None);
}

pub(crate) async fn apps_duplicate_is_already_exists(ctx: Ctx) {
    let s = &ctx.store;
    s.create_app(&app("dup")).await.unwrap();
    let again = NewApp {
        secret_hash: "sha256:SECRET-HASH-MUST-NOT-LEAK".to_owned(),
        client_name: "other".to_owned(),
        ..app("dup")
    };
    let err = s.create_app(&again).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "app", key } if key == "dup"),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SECRET-HASH"), "{text}");
    // The first app is untouched.
    let stored = s.get_app("dup").await.unwrap().unwrap();
    assert_eq!(stored.secret_hash, HASH);
    assert_eq!(stored.client_name, "App dup");
}

pub(crate) async fn apps_concurrent_create_of_one_id(ctx: Ctx) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&ctx.store);
            tokio::spawn(async move {
                let new = NewApp {
                    client_name: format!("racer {i}"),
                    ..app("race")
                };
                s.create_app(&new).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(ctx.store.list_apps(None, 10).await.unwrap().len(), 1);
}

pub(crate) async fn apps_missing(ctx: Ctx) {
    let s = &ctx.store;
    assert_eq!(s.get_app("nope").await.unwrap(), None);
    assert_eq!(
        s.update_app("nope", &AppUpdate::at(T0)).await.unwrap(),
        None
    );
    assert!(!s.delete_app("nope").await.unwrap());
    assert!(s.list_apps(None, 10).await.unwrap().is_empty());
    assert!(s.list_apps(Some("a"), 10).await.unwrap().is_empty());
}

pub(crate) async fn apps_list_keyset_pagination(ctx: Ctx) {
    let s = &ctx.store;
    // Mixed case, punctuation and non-ASCII: orders differ between bytewise and linguistic collations.
    let ids = [
        "b", "a", "B", "A", "a-1", "a_1", "a.b", "a b", "Zeta", "zeta", "ä", "é", "日本", "0", "9",
        "~", "aa", "a", "ab",
    ];
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    for id in &unique {
        s.create_app(&app(id)).await.unwrap();
    }
    // Rust orders strings bytewise (UTF-8), which is the contract for every backend.
    let expected: Vec<String> = unique.iter().map(|s| (*s).to_owned()).collect();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s.list_apps(after.as_deref(), 4).await.unwrap();
        pages += 1;
        assert!(page.len() <= 4);
        seen.extend(page.iter().map(|a| a.client_id.clone()));
        if page.len() < 4 {
            break;
        }
        after = page.last().map(|a| a.client_id.clone());
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, expected.len() / 4 + 1);

    let all = s.list_apps(None, u32::MAX).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.client_id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(all[0], s.get_app(&expected[0]).await.unwrap().unwrap());
    assert!(s.list_apps(None, 0).await.unwrap().is_empty());
    let last = expected.last().unwrap();
    assert!(s.list_apps(Some(last), 10).await.unwrap().is_empty());

    // A cursor need not be an existing id.
    let after_a: Vec<String> = expected
        .iter()
        .filter(|id| id.as_str() > "a")
        .cloned()
        .collect();
    let page = s.list_apps(Some("a"), 100).await.unwrap();
    assert_eq!(
        page.iter().map(|a| a.client_id.clone()).collect::<Vec<_>>(),
        after_a
    );
    // A NUL in a cursor (which no id contains) behaves like the prefix before it.
    let page = s.list_apps(Some("a\0zzz"), 100).await.unwrap();
    assert_eq!(
        page.iter().map(|a| a.client_id.clone()).collect::<Vec<_>>(),
        after_a
    );
}

pub(crate) async fn apps_update(ctx: Ctx) {
    let s = &ctx.store;
    let created = s.create_app(&app("upd")).await.unwrap();

    let touched = s
        .update_app("upd", &AppUpdate::at(T0 + 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        touched,
        AppRecord {
            updated_at: T0 + 10,
            ..created.clone()
        }
    );

    let update = AppUpdate {
        client_name: Some("renamed".to_owned()),
        secret_hash: Some("sha256:rotated".to_owned()),
        scopes: Some(vec![]),
        redirect_uris: Some(strings(&["http://127.0.0.1/cb", "http://localhost/cb"])),
        ..AppUpdate::at(T0 + 20)
    };
    let updated = s.update_app("upd", &update).await.unwrap().unwrap();
    let expected = AppRecord {
        client_name: "renamed".to_owned(),
        secret_hash: "sha256:rotated".to_owned(),
        scopes: vec![],
        redirect_uris: strings(&["http://127.0.0.1/cb", "http://localhost/cb"]),
        updated_at: T0 + 20,
        ..created.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(s.get_app("upd").await.unwrap(), Some(expected.clone()));

    let update = AppUpdate {
        grant_types: Some(strings(&["client_credentials", "refresh_token"])),
        audience: Some(strings(&["aud"])),
        ..AppUpdate::at(T0 + 30)
    };
    let updated = s.update_app("upd", &update).await.unwrap().unwrap();
    assert_eq!(
        updated,
        AppRecord {
            grant_types: strings(&["client_credentials", "refresh_token"]),
            audience: strings(&["aud"]),
            updated_at: T0 + 30,
            ..expected.clone()
        }
    );

    // A rejected update changes nothing.
    let bad = AppUpdate {
        client_name: Some("x".to_owned()),
        scopes: Some(strings(&["ok", "bad\0"])),
        ..AppUpdate::at(T0 + 40)
    };
    let err = s.update_app("upd", &bad).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "scopes",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.get_app("upd").await.unwrap(), Some(updated));
}

pub(crate) async fn apps_delete(ctx: Ctx) {
    let s = &ctx.store;
    s.create_app(&app("keep")).await.unwrap();
    s.create_app(&app("gone")).await.unwrap();
    assert!(s.delete_app("gone").await.unwrap());
    assert_eq!(s.get_app("gone").await.unwrap(), None);
    assert!(!s.delete_app("gone").await.unwrap());
    let ids: Vec<String> = s
        .list_apps(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.client_id)
        .collect();
    assert_eq!(ids, ["keep"]);
    // The id can be reused.
    s.create_app(&app("gone")).await.unwrap();
    assert!(s.get_app("gone").await.unwrap().is_some());
}

pub(crate) async fn apps_nul_characters(ctx: Ctx) {
    let s = &ctx.store;
    let err = s.create_app(&app("a\0b")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "client_id",
                ..
            }
        ),
        "{err:?}"
    );
    let bad_scope = NewApp {
        scopes: strings(&["x\0"]),
        ..app("fine")
    };
    let err = s.create_app(&bad_scope).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "scopes",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.get_app("fine").await.unwrap(), None);

    // Lookups by a key no stored id can have simply find nothing (a client id comes from the network).
    s.create_app(&app("a")).await.unwrap();
    assert_eq!(s.get_app("a\0").await.unwrap(), None);
    assert_eq!(s.update_app("a\0", &AppUpdate::at(T0)).await.unwrap(), None);
    assert!(!s.delete_app("a\0").await.unwrap());
    assert!(s.get_app("a").await.unwrap().is_some());

    let err = s.revoke(&revocation("jti\0", T0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "token_id",
                ..
            }
        ),
        "{err:?}"
    );
}

pub(crate) async fn revocations_are_idempotent(ctx: Ctx) {
    let s = &ctx.store;
    let first = revocation("jti-1", T0 + 100);
    s.revoke(&first).await.unwrap();
    let again = Revocation {
        reason: "again".to_owned(),
        expires_at: T0 + 500,
        revoked_at: T0 + 1,
        ..first.clone()
    };
    s.revoke(&again).await.unwrap();
    let all = s.revocations_since(0).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1, first);
    assert_eq!(s.active_revocations(T0).await.unwrap(), vec![first]);
}

pub(crate) async fn revocations_active_and_purge(ctx: Ctx) {
    let s = &ctx.store;
    // Recorded out of expiry order: results follow recording (sequence) order.
    for (id, exp) in [("late", 300), ("early", 100), ("mid", 200)] {
        s.revoke(&revocation(id, exp)).await.unwrap();
    }
    let ids = |v: Vec<Revocation>| v.into_iter().map(|r| r.token_id).collect::<Vec<_>>();

    assert_eq!(
        ids(s.active_revocations(0).await.unwrap()),
        ["late", "early", "mid"]
    );
    // Still active at exactly its expiry, like a token at exactly its `exp`.
    assert_eq!(
        ids(s.active_revocations(200).await.unwrap()),
        ["late", "mid"]
    );
    assert!(s.active_revocations(301).await.unwrap().is_empty());

    assert_eq!(s.purge_expired(100).await.unwrap(), 0);
    assert_eq!(s.purge_expired(101).await.unwrap(), 1);
    assert_eq!(s.purge_expired(101).await.unwrap(), 0);
    assert_eq!(ids(s.active_revocations(0).await.unwrap()), ["late", "mid"]);
    assert_eq!(s.purge_expired(i64::MAX).await.unwrap(), 2);
    assert!(s.revocations_since(0).await.unwrap().is_empty());
}

pub(crate) async fn revocations_since_is_monotonic(ctx: Ctx) {
    let s = &ctx.store;
    for id in ["a", "b", "c"] {
        s.revoke(&revocation(id, T0)).await.unwrap();
    }
    let all = s.revocations_since(0).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|(_, r)| r.token_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{all:?}");
    assert!(all[0].0 > 0);
    let last = all[2].0;
    assert!(s.revocations_since(last).await.unwrap().is_empty());
    assert_eq!(s.revocations_since(all[0].0).await.unwrap(), all[1..]);

    // Re-revoking does not produce a new sequence number.
    s.revoke(&revocation("b", T0)).await.unwrap();
    assert!(s.revocations_since(last).await.unwrap().is_empty());

    // Even after purging the newest entry, new revocations get numbers above everything handed out before.
    assert_eq!(s.purge_expired(i64::MAX).await.unwrap(), 3);
    s.revoke(&revocation("d", T0)).await.unwrap();
    let new = s.revocations_since(last).await.unwrap();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].0 > last);
    assert_eq!(new[0].1.token_id, "d");
}

/// What a replica does: poll `revocations_since(last seen)` while other replicas revoke concurrently. It must end
/// up with every revocation; a sequence number that commits after a higher one would be skipped for good.
pub(crate) async fn revocations_concurrent_writers_are_never_skipped(ctx: Ctx) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 30;
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = Arc::clone(&ctx.store);
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    s.revoke(&revocation(&format!("w{w}-{i}"), T0))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let poller = {
        let s = ctx.reopen().await;
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut last = 0;
            let mut seen = BTreeSet::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                for (seq, r) in s.revocations_since(last).await.unwrap() {
                    assert!(seq > last, "sequence went backwards: {seq} after {last}");
                    last = seq;
                    assert!(seen.insert(r.token_id), "seen twice");
                }
                // One more poll after the writers finished picks up their last commits.
                if finished {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = poller.await.unwrap();
    assert_eq!(seen.len(), WRITERS * PER_WRITER);
}

pub(crate) async fn audit_recent_newest_first(ctx: Ctx) {
    let s = &ctx.store;
    for (at, kind) in [(10, "a"), (30, "b"), (20, "c"), (30, "d")] {
        s.record(&event(at, kind)).await.unwrap();
    }
    let kinds = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    // By time, and among equal times the later recorded first.
    assert_eq!(kinds(s.recent(10).await.unwrap()), ["d", "b", "c", "a"]);
    assert_eq!(kinds(s.recent(2).await.unwrap()), ["d", "b"]);
    assert!(s.recent(0).await.unwrap().is_empty());
}

pub(crate) async fn audit_detail_roundtrip(ctx: Ctx) {
    let s = &ctx.store;
    let details = [
        json!({
            "scopes": ["all", "offline"],
            "nested": {"int": 1, "neg": -3, "float": 1.5, "big": u64::MAX, "t": true, "none": null},
            "unicode": "ü ✓ 日本",
            "empty": {},
            "list": [],
        }),
        json!(null),
        json!("just a string"),
        json!([1, "two", {"three": 3}]),
    ];
    for (i, detail) in details.iter().enumerate() {
        let e = AuditEvent {
            detail: detail.clone(),
            client_id: String::new(),
            subject: String::new(),
            remote_addr: String::new(),
            ..event(T0 + i as i64, "detail")
        };
        s.record(&e).await.unwrap();
        assert_eq!(s.recent(1).await.unwrap(), vec![e]);
    }
}

pub(crate) async fn audit_scrubs_nul(ctx: Ctx) {
    let s = &ctx.store;
    let e = AuditEvent {
        client_id: "evil\0id".to_owned(),
        subject: "\0".to_owned(),
        detail: json!({"k\0": ["v\0"]}),
        ..event(T0, "client.auth_failed")
    };
    s.record(&e).await.unwrap();
    let got = s.recent(1).await.unwrap().remove(0);
    assert_eq!(got.client_id, "evil\u{FFFD}id");
    assert_eq!(got.subject, "\u{FFFD}");
    assert_eq!(got.detail, json!({"k\u{FFFD}": ["v\u{FFFD}"]}));
    assert_eq!(got.kind, "client.auth_failed");
}

/// Another process opening the same database re-runs the (already applied) migrations and sees the same data.
pub(crate) async fn reopen_keeps_data(ctx: Ctx) {
    let s = &ctx.store;
    let created = s.create_app(&app("persist")).await.unwrap();
    s.revoke(&revocation("jti", T0)).await.unwrap();
    s.record(&event(T0, "app.created")).await.unwrap();

    let other = ctx.reopen().await;
    assert_eq!(other.get_app("persist").await.unwrap(), Some(created));
    assert_eq!(other.revocations_since(0).await.unwrap().len(), 1);
    assert_eq!(other.recent(10).await.unwrap().len(), 1);
    // And writes through one are visible through the other.
    other.create_app(&app("second")).await.unwrap();
    assert!(s.get_app("second").await.unwrap().is_some());
}
