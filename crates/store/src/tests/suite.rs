//! Behaviour every backend must share. Each function starts from an empty database.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use super::harness::Ctx;
use crate::{
    AppFilter, AppRecord, AppUpdate, AuditEvent, AuditFilter, CodeRecord, DeviceApproval,
    DeviceCodeRecord, DevicePoll, DeviceStatus, FederatedUser, LoginThrottle, NewApp, NewCode,
    NewDeviceCode, NewRefreshToken, NewSession, NewUser, RefreshTokenRecord, Revocation,
    RevocationKind, Rotation, SessionRecord, StoreError, UserOrigin, UserRecord,
};

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
        kind: RevocationKind::Token,
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

fn ids(apps: &[AppRecord]) -> Vec<String> {
    apps.iter().map(|a| a.client_id.clone()).collect()
}

fn owned(owner: &str, organization: &str) -> AppFilter {
    AppFilter {
        created_by: (!owner.is_empty()).then(|| owner.to_owned()),
        organization: Some(organization.to_owned()),
    }
}

/// (client_id, created_by, organization) of the apps the filter tests store.
const FILTERED_APPS: &[(&str, &str, &str)] = &[
    ("a1", "alice", "acme"),
    ("a2", "alice", ""),
    ("a3", "alice", "acme"),
    ("B1", "bob", "acme"),
    ("b2", "bob", "globex"),
    ("c1", "alice", "globex"),
    ("c2", "Alice", "acme"),
    ("d1", "alice", "acme"),
    ("é1", "alice", "acme"),
];

async fn create_filtered_apps(ctx: &Ctx) {
    for (id, owner, organization) in FILTERED_APPS {
        let new = NewApp {
            created_by: (*owner).to_owned(),
            organization: (*organization).to_owned(),
            ..app(id)
        };
        ctx.store.create_app(&new).await.unwrap();
    }
}

/// What a filter must select: the stored apps, in bytewise client_id order.
fn expected_ids(owner: Option<&str>, organization: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = FILTERED_APPS
        .iter()
        .filter(|(_, o, org)| {
            owner.is_none_or(|w| w == *o) && organization.is_none_or(|g| g == *org)
        })
        .map(|(id, _, _)| (*id).to_owned())
        .collect();
    v.sort();
    v
}

pub(crate) async fn apps_list_by_owner_and_organization(ctx: Ctx) {
    create_filtered_apps(&ctx).await;
    let s = &ctx.store;

    // The default filter is list_apps.
    let all = s
        .list_apps_by(&AppFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(all, s.list_apps(None, 100).await.unwrap());
    assert_eq!(ids(&all), expected_ids(None, None));

    let by_owner = AppFilter {
        created_by: Some("alice".into()),
        organization: None,
    };
    let got = s.list_apps_by(&by_owner, None, 100).await.unwrap();
    // Exact: "Alice" is someone else.
    assert_eq!(ids(&got), expected_ids(Some("alice"), None));
    assert!(got.iter().all(|a| a.created_by == "alice"));
    // Whole records, as get_app returns them.
    assert_eq!(got[0], s.get_app(&got[0].client_id).await.unwrap().unwrap());

    let by_org = AppFilter {
        created_by: None,
        organization: Some("acme".into()),
    };
    let got = s.list_apps_by(&by_org, None, 100).await.unwrap();
    assert_eq!(ids(&got), expected_ids(None, Some("acme")));

    // Both at once; the empty organization is a value like any other.
    for (owner, organization) in [
        ("alice", "acme"),
        ("alice", ""),
        ("bob", "acme"),
        ("bob", "globex"),
        ("Alice", "acme"),
        ("carol", "acme"),
        ("alice", "initech"),
    ] {
        let got = s
            .list_apps_by(&owned(owner, organization), None, 100)
            .await
            .unwrap();
        assert_eq!(
            ids(&got),
            expected_ids(Some(owner), Some(organization)),
            "{owner}/{organization}"
        );
    }
    assert_eq!(
        ids(&s
            .list_apps_by(&owned("alice", "acme"), None, 100)
            .await
            .unwrap()),
        ["a1", "a3", "d1", "é1"]
    );

    // A cursor applies within the filter; it need not be an id the filter selects (or any id).
    let page = s
        .list_apps_by(&owned("alice", "acme"), Some("a2"), 100)
        .await
        .unwrap();
    assert_eq!(ids(&page), ["a3", "d1", "é1"]);
    let page = s.list_apps_by(&by_owner, Some("b"), 2).await.unwrap();
    assert_eq!(ids(&page), ["c1", "d1"]);
    assert!(s.list_apps_by(&by_owner, None, 0).await.unwrap().is_empty());
    assert!(
        s.list_apps_by(&by_owner, Some("é1"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Values no stored app can have select nothing rather than fail (PostgreSQL cannot compare NUL).
    for filter in [
        AppFilter {
            created_by: Some("alice\0".into()),
            organization: None,
        },
        AppFilter {
            created_by: None,
            organization: Some("\0".into()),
        },
    ] {
        assert!(
            s.list_apps_by(&filter, None, 100).await.unwrap().is_empty(),
            "{filter:?}"
        );
    }
    // A NUL in the cursor behaves like the prefix before it, as for list_apps.
    let page = s
        .list_apps_by(&by_owner, Some("a\0zzz"), 100)
        .await
        .unwrap();
    assert_eq!(ids(&page), expected_ids(Some("alice"), None));
}

pub(crate) async fn apps_list_by_pages_through_a_filter(ctx: Ctx) {
    let s = &ctx.store;
    // Interleaved owners, so pages of one owner skip the other's ids.
    for i in 0..23 {
        let owner = if i % 3 == 0 { "bob" } else { "alice" };
        let new = NewApp {
            created_by: owner.to_owned(),
            organization: if i % 2 == 0 { "acme" } else { "" }.to_owned(),
            ..app(&format!("app-{i:02}"))
        };
        s.create_app(&new).await.unwrap();
    }
    for filter in [
        AppFilter::default(),
        AppFilter {
            created_by: Some("alice".into()),
            organization: None,
        },
        AppFilter {
            created_by: Some("bob".into()),
            organization: None,
        },
        AppFilter {
            created_by: None,
            organization: Some("acme".into()),
        },
        AppFilter {
            created_by: Some("alice".into()),
            organization: Some(String::new()),
        },
    ] {
        let everything = s.list_apps_by(&filter, None, u32::MAX).await.unwrap();
        assert!(
            everything
                .windows(2)
                .all(|w| w[0].client_id < w[1].client_id)
        );
        for limit in [1, 2, 4, 5] {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = s
                    .list_apps_by(&filter, after.as_deref(), limit)
                    .await
                    .unwrap();
                assert!(page.len() <= limit as usize);
                seen.extend(page.iter().cloned());
                if page.len() < limit as usize {
                    break;
                }
                after = page.last().map(|a| a.client_id.clone());
            }
            assert_eq!(seen, everything, "{filter:?} limit {limit}");
        }
    }
    let alice = s
        .list_apps_by(
            &AppFilter {
                created_by: Some("alice".into()),
                organization: None,
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(alice.len(), 15);
    assert!(alice.iter().all(|a| a.created_by == "alice"));
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
    let (first_seq, stored) = all[0].clone();
    // One row with the later cut-off and expiry, under a new sequence number, so pollers see the change.
    assert_eq!(
        stored,
        Revocation {
            revoked_at: T0 + 1,
            expires_at: T0 + 500,
            reason: "again".to_owned(),
            ..first.clone()
        }
    );
    // The same revocation once more changes nothing and is not reported again.
    s.revoke(&again).await.unwrap();
    assert_eq!(s.revocations_since(first_seq).await.unwrap(), vec![]);
    // An older one does not move the cut-off back.
    s.revoke(&first).await.unwrap();
    assert_eq!(s.active_revocations(T0).await.unwrap(), vec![stored]);
}

pub(crate) async fn a_later_revocation_of_the_same_id_gets_a_new_sequence_number(ctx: Ctx) {
    let s = &ctx.store;
    let app = |revoked_at: i64| Revocation {
        kind: RevocationKind::App,
        token_id: "ci-bot".to_owned(),
        expires_at: revoked_at + 3600,
        reason: "app.deleted".to_owned(),
        revoked_at,
    };
    s.revoke(&app(T0)).await.unwrap();
    s.revoke(&revocation("other", T0 + 10)).await.unwrap();
    let seen = s.revocations_since(0).await.unwrap();
    let last = seen.last().unwrap().0;
    // Purging the newest row must not let a later number fall at or below one already handed out.
    s.purge_expired(T0 + 11).await.unwrap();
    s.revoke(&app(T0 + 100)).await.unwrap();
    let fresh = s.revocations_since(last).await.unwrap();
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0].1, app(T0 + 100));
    s.revoke(&app(T0 + 200)).await.unwrap();
    let again = s.revocations_since(fresh[0].0).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.revoked_at, T0 + 200);
    s.revoke(&revocation("third", T0 + 9999)).await.unwrap();
    let after = s.revocations_since(again[0].0).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1.token_id, "third");
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
        ..event(T0, "client.authentication_failed")
    };
    s.record(&e).await.unwrap();
    let got = s.recent(1).await.unwrap().remove(0);
    assert_eq!(got.client_id, "evil\u{FFFD}id");
    assert_eq!(got.subject, "\u{FFFD}");
    assert_eq!(got.detail, json!({"k\u{FFFD}": ["v\u{FFFD}"]}));
    assert_eq!(got.kind, "client.authentication_failed");
}

fn kinds(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

pub(crate) async fn audit_list_filters_by_kind_and_since(ctx: Ctx) {
    let s = &ctx.store;
    for (at, kind) in [
        (10, "app.created"),
        (20, "token.issued"),
        (30, "app.deleted"),
        (30, "app.created"),
        (40, "client.authentication_failed"),
        (50, "app.created"),
        (50, "token.issued"),
    ] {
        s.record(&event(at, kind)).await.unwrap();
    }
    let list = |kind: Option<&str>, since: Option<i64>, limit: u32| {
        let filter = AuditFilter {
            kind: kind.map(str::to_owned),
            since,
        };
        async move { s.list_audit(&filter, limit).await.unwrap() }
    };
    // The default filter is recent(): newest first, later recorded first among equal times.
    assert_eq!(list(None, None, 100).await, s.recent(100).await.unwrap());
    assert_eq!(
        kinds(&list(None, None, 3).await),
        [
            "token.issued",
            "app.created",
            "client.authentication_failed"
        ]
    );

    let created = list(Some("app.created"), None, 100).await;
    assert_eq!(
        created.iter().map(|e| e.at).collect::<Vec<_>>(),
        [50, 30, 10]
    );
    assert_eq!(created[0], event(50, "app.created"));
    // Exact kinds: no prefix matching, no case folding.
    assert!(list(Some("app"), None, 100).await.is_empty());
    assert!(list(Some("APP.CREATED"), None, 100).await.is_empty());

    // since is inclusive.
    assert_eq!(
        kinds(&list(None, Some(30), 100).await),
        [
            "token.issued",
            "app.created",
            "client.authentication_failed",
            "app.created",
            "app.deleted"
        ]
    );
    assert!(list(None, Some(51), 100).await.is_empty());
    assert_eq!(list(None, Some(i64::MIN), 100).await.len(), 7);

    let both = list(Some("app.created"), Some(30), 100).await;
    assert_eq!(both.iter().map(|e| e.at).collect::<Vec<_>>(), [50, 30]);
    assert_eq!(list(Some("app.created"), Some(30), 1).await.len(), 1);
    assert!(list(Some("app.created"), None, 0).await.is_empty());

    // A kind recorded with a NUL is found by the same text (stored with U+FFFD), not by an error.
    s.record(&event(60, "evil\0kind")).await.unwrap();
    assert_eq!(
        kinds(&list(Some("evil\0kind"), None, 100).await),
        ["evil\u{FFFD}kind"]
    );
    assert_eq!(list(Some("evil\u{FFFD}kind"), None, 100).await.len(), 1);
}

pub(crate) async fn audit_prune_in_batches_keeps_newer_rows(ctx: Ctx) {
    let s = &ctx.store;
    // Ten old events, two at the cut-off itself, three newer; recorded out of order.
    for at in [5, 1, 9, 3, 7, 2, 8, 4, 6, 0] {
        s.record(&event(T0 - 100 + at, "old")).await.unwrap();
    }
    for (at, kind) in [(T0 + 5, "new"), (T0, "edge"), (T0 + 1, "new"), (T0, "edge")] {
        s.record(&event(at, kind)).await.unwrap();
    }
    assert_eq!(s.prune_audit(T0, 0).await.unwrap(), 0);
    assert_eq!(s.recent(100).await.unwrap().len(), 14);

    let mut removed = Vec::new();
    loop {
        let n = s.prune_audit(T0, 4).await.unwrap();
        removed.push(n);
        if n < 4 {
            break;
        }
    }
    assert_eq!(removed, [4, 4, 2]);
    let left = s.recent(100).await.unwrap();
    // Events at the cut-off are kept (at < before is what goes).
    assert_eq!(kinds(&left), ["new", "new", "edge", "edge"]);
    assert!(left.iter().all(|e| e.at >= T0));
    assert_eq!(s.prune_audit(T0, 4).await.unwrap(), 0);

    // The oldest go first.
    for at in [30, 10, 20] {
        s.record(&event(at, &format!("t{at}"))).await.unwrap();
    }
    assert_eq!(s.prune_audit(T0, 2).await.unwrap(), 2);
    let left = s
        .list_audit(
            &AuditFilter {
                kind: None,
                since: Some(0),
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(kinds(&left), ["new", "new", "edge", "edge", "t30"]);

    // A second store (another replica) pruning at the same time removes each row once.
    s.record(&event(1, "x")).await.unwrap();
    s.record(&event(2, "x")).await.unwrap();
    let other = ctx.reopen().await;
    let (a, b) = tokio::join!(s.prune_audit(T0, 1000), other.prune_audit(T0, 1000));
    assert_eq!(a.unwrap() + b.unwrap(), 3);
    assert_eq!(s.recent(100).await.unwrap().len(), 4);
}

pub(crate) async fn audit_batch_is_one_ordered_write(ctx: Ctx) {
    let s = &ctx.store;
    s.record_batch(&[]).await.unwrap();
    assert!(s.recent(10).await.unwrap().is_empty());

    // More rows than one INSERT statement carries, all at one time: the order of the slice is the order of
    // recording, as if recorded one by one.
    let n = crate::audit::ROWS_PER_INSERT * 2 + 7;
    let batch: Vec<AuditEvent> = (0..n)
        .map(|i| AuditEvent {
            detail: json!({"i": i}),
            ..event(T0, &format!("batch.{i}"))
        })
        .collect();
    s.record_batch(&batch).await.unwrap();
    let listed = s.recent(u32::try_from(n).unwrap() + 10).await.unwrap();
    assert_eq!(listed.len(), n);
    let mut expected = batch.clone();
    expected.reverse();
    assert_eq!(listed, expected);

    // Scrubbed like record(), and interleaved with it in order.
    s.record(&event(T0 + 1, "single")).await.unwrap();
    let evil = AuditEvent {
        client_id: "evil\0id".to_owned(),
        detail: json!({"k\0": "v\0"}),
        ..event(T0 + 1, "evil\0kind")
    };
    s.record_batch(&[evil, event(T0 + 1, "last")])
        .await
        .unwrap();
    let newest = s.recent(3).await.unwrap();
    assert_eq!(kinds(&newest), ["last", "evil\u{FFFD}kind", "single"]);
    assert_eq!(newest[1].client_id, "evil\u{FFFD}id");
    assert_eq!(newest[1].detail, json!({"k\u{FFFD}": "v\u{FFFD}"}));

    // Concurrent batches from two stores (two replicas, or two writers) each land whole.
    let other = ctx.reopen().await;
    let of = |tag: &str| -> Vec<AuditEvent> {
        (0..50)
            .map(|i| event(T0 + 2, &format!("{tag}.{i}")))
            .collect()
    };
    let (a, b) = (of("a"), of("b"));
    let (ra, rb) = tokio::join!(s.record_batch(&a), other.record_batch(&b));
    ra.unwrap();
    rb.unwrap();
    let since = s
        .list_audit(
            &AuditFilter {
                kind: None,
                since: Some(T0 + 2),
            },
            1000,
        )
        .await
        .unwrap();
    assert_eq!(since.len(), 100);
    for tag in ["a", "b"] {
        // Each batch's rows are in its order relative to each other.
        let mine: Vec<&str> = since
            .iter()
            .rev()
            .map(|e| e.kind.as_str())
            .filter(|k| k.starts_with(&format!("{tag}.")))
            .collect();
        let want: Vec<String> = (0..50).map(|i| format!("{tag}.{i}")).collect();
        assert_eq!(mine, want);
    }
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

// ---------------------------------------------------------------------------------------------------------------
// Revocation kinds

pub(crate) async fn revocations_kinds_are_separate(ctx: Ctx) {
    let s = &ctx.store;
    for kind in RevocationKind::ALL {
        s.revoke(&Revocation {
            kind,
            ..revocation("same-id", T0 + 100)
        })
        .await
        .unwrap();
    }
    // Again per kind, with a later expiry: each kind keeps its own row, extended.
    for kind in RevocationKind::ALL {
        s.revoke(&Revocation {
            kind,
            reason: "again".to_owned(),
            ..revocation("same-id", T0 + 900)
        })
        .await
        .unwrap();
    }
    let all = s.revocations_since(0).await.unwrap();
    assert_eq!(
        all.iter().map(|(_, r)| r.kind).collect::<Vec<_>>(),
        RevocationKind::ALL
    );
    assert!(
        all.iter()
            .all(|(_, r)| r.reason == "again" && r.expires_at == T0 + 900)
    );
    let active = s.active_revocations(T0).await.unwrap();
    assert_eq!(active.len(), 4);
    assert_eq!(
        active[1],
        Revocation {
            kind: RevocationKind::Family,
            reason: "again".to_owned(),
            ..revocation("same-id", T0 + 900)
        }
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Users

const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

fn user(username: &str) -> NewUser {
    NewUser {
        username: username.to_owned(),
        subject: format!("subject-{username}"),
        email: format!("{username}@example.com"),
        display_name: format!("User {username}"),
        password_hash: PASSWORD_HASH.to_owned(),
        is_admin: false,
        created_at: T0,
    }
}

pub(crate) async fn users_roundtrip(ctx: Ctx) {
    let s = &ctx.store;
    assert_eq!(s.count_users().await.unwrap(), 0);
    let new = NewUser {
        display_name: "Ünïcode ✓ 'q' \"d\"".to_owned(),
        email: String::new(),
        is_admin: true,
        ..user("alice")
    };
    let created = s.create_user(&new).await.unwrap();
    let expected = UserRecord {
        username: "alice".to_owned(),
        subject: "subject-alice".to_owned(),
        email: String::new(),
        display_name: new.display_name.clone(),
        password_hash: PASSWORD_HASH.to_owned(),
        is_admin: true,
        disabled: false,
        failed_logins: 0,
        locked_until: 0,
        created_at: T0,
        updated_at: T0,
        last_login_at: None,
        origin: UserOrigin::Local,
        groups: vec![],
    };
    assert_eq!(created, expected);
    assert_eq!(s.get_user("alice").await.unwrap(), Some(expected.clone()));
    assert_eq!(
        s.get_user_by_subject("subject-alice").await.unwrap(),
        Some(expected.clone())
    );
    // Exact comparison: the caller normalizes.
    assert_eq!(s.get_user("Alice").await.unwrap(), None);
    assert_eq!(s.get_user("alice ").await.unwrap(), None);
    assert_eq!(s.get_user_by_subject("SUBJECT-alice").await.unwrap(), None);
    assert_eq!(s.get_user("nobody").await.unwrap(), None);
    s.create_user(&user("Alice")).await.unwrap();
    assert_eq!(s.count_users().await.unwrap(), 2);
    let debug = format!("{:?}", s.get_user("alice").await.unwrap().unwrap());
    assert!(!debug.contains("argon2"), "{debug}");
}

pub(crate) async fn users_duplicates_are_already_exists(ctx: Ctx) {
    let s = &ctx.store;
    s.create_user(&user("bob")).await.unwrap();
    let same_name = NewUser {
        subject: "other-subject".to_owned(),
        password_hash: "SECRET-HASH-MUST-NOT-LEAK".to_owned(),
        ..user("bob")
    };
    let err = s.create_user(&same_name).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user", key } if key == "bob"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("SECRET-HASH"));
    let same_subject = NewUser {
        subject: "subject-bob".to_owned(),
        ..user("carol")
    };
    let err = s.create_user(&same_subject).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user subject", key } if key == "subject-bob"),
        "{err:?}"
    );
    assert_eq!(s.count_users().await.unwrap(), 1);
    assert_eq!(s.get_user("carol").await.unwrap(), None);

    // Concurrent creation of one name: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&ctx.store);
            tokio::spawn(async move {
                let new = NewUser {
                    subject: format!("racer-{i}"),
                    ..user("race")
                };
                s.create_user(&new).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::AlreadyExists { entity: "user", .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(created, 1);
}

pub(crate) async fn users_list_keyset_pagination(ctx: Ctx) {
    let s = &ctx.store;
    let names = [
        "b", "a", "B", "A", "a-1", "a_1", "Zeta", "zeta", "ä", "é", "日本", "0", "~",
    ];
    for name in names {
        s.create_user(&user(name)).await.unwrap();
    }
    let expected: Vec<String> = names
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list_users(after.as_deref(), 3).await.unwrap();
        seen.extend(page.iter().map(|u| u.username.clone()));
        if page.len() < 3 {
            break;
        }
        after = page.last().map(|u| u.username.clone());
    }
    assert_eq!(seen, expected);
    let page = s.list_users(Some("a\0zzz"), 100).await.unwrap();
    assert_eq!(
        page.iter().map(|u| u.username.clone()).collect::<Vec<_>>(),
        expected
            .iter()
            .filter(|n| n.as_str() > "a")
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(s.list_users(None, 0).await.unwrap().is_empty());
    assert_eq!(s.count_users().await.unwrap(), expected.len() as u64);
}

pub(crate) async fn users_password_and_disable(ctx: Ctx) {
    let s = &ctx.store;
    let created = s.create_user(&user("dave")).await.unwrap();
    s.record_login_failure("dave", T0 + 1, 5, 60).await.unwrap();

    assert!(s.set_disabled("dave", true, T0 + 2).await.unwrap());
    let got = s.get_user("dave").await.unwrap().unwrap();
    assert!(got.disabled);
    assert_eq!(got.updated_at, T0 + 2);
    assert!(s.set_disabled("dave", false, T0 + 3).await.unwrap());
    assert!(!s.get_user("dave").await.unwrap().unwrap().disabled);

    assert!(s.set_password("dave", "new-hash", T0 + 4).await.unwrap());
    let got = s.get_user("dave").await.unwrap().unwrap();
    assert_eq!(
        got,
        UserRecord {
            password_hash: "new-hash".to_owned(),
            updated_at: T0 + 4,
            ..created
        }
    );
    assert!(!s.set_password("nobody", "h", T0).await.unwrap());
    assert!(!s.set_disabled("nobody", true, T0).await.unwrap());
    let err = s.set_password("dave", "bad\0", T0).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "password_hash",
                ..
            }
        ),
        "{err:?}"
    );
}

pub(crate) async fn users_login_throttle(ctx: Ctx) {
    let s = &ctx.store;
    s.create_user(&user("erin")).await.unwrap();
    let fail = |now| {
        let s = Arc::clone(&ctx.store);
        async move { s.record_login_failure("erin", now, 3, 300).await.unwrap() }
    };
    let state = |failed_logins, locked_until| {
        Some(LoginThrottle {
            failed_logins,
            locked_until,
        })
    };
    assert_eq!(fail(T0).await, state(1, 0));
    assert_eq!(fail(T0 + 1).await, state(2, 0));
    // The third failure locks and starts counting again.
    assert_eq!(fail(T0 + 2).await, state(0, T0 + 302));
    assert_eq!(fail(T0 + 3).await, state(1, T0 + 302));
    let got = s.get_user("erin").await.unwrap().unwrap();
    assert_eq!((got.failed_logins, got.locked_until), (1, T0 + 302));
    assert_eq!(got.updated_at, T0, "bookkeeping is not an account change");

    // Success clears the count (not the lock) and records the time.
    assert!(s.record_login_success("erin", T0 + 400).await.unwrap());
    let got = s.get_user("erin").await.unwrap().unwrap();
    assert_eq!(
        (got.failed_logins, got.locked_until, got.last_login_at),
        (0, T0 + 302, Some(T0 + 400))
    );
    // A password change clears both.
    fail(T0 + 401).await;
    assert!(s.set_password("erin", "h2", T0 + 402).await.unwrap());
    let got = s.get_user("erin").await.unwrap().unwrap();
    assert_eq!((got.failed_logins, got.locked_until), (0, 0));

    // No lock length overflows.
    let locked = s
        .record_login_failure("erin", i64::MAX - 1, 1, i64::MAX)
        .await
        .unwrap();
    assert_eq!(locked, state(0, i64::MAX));

    assert_eq!(
        s.record_login_failure("nobody", T0, 3, 300).await.unwrap(),
        None
    );
    assert!(!s.record_login_success("nobody", T0).await.unwrap());
    assert_eq!(
        s.record_login_failure("erin\0", T0, 3, 300).await.unwrap(),
        None
    );

    // Concurrent failures are all counted.
    s.create_user(&user("frank")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = Arc::clone(&ctx.store);
            tokio::spawn(async move { s.record_login_failure("frank", T0, 1000, 60).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        s.get_user("frank").await.unwrap().unwrap().failed_logins,
        20
    );
}

pub(crate) async fn users_nul_characters(ctx: Ctx) {
    let s = &ctx.store;
    for (field, bad) in [
        (
            "username",
            NewUser {
                username: "a\0".to_owned(),
                ..user("x")
            },
        ),
        (
            "subject",
            NewUser {
                subject: "\0".to_owned(),
                ..user("x")
            },
        ),
        (
            "email",
            NewUser {
                email: "\0".to_owned(),
                ..user("x")
            },
        ),
        (
            "display_name",
            NewUser {
                display_name: "\0".to_owned(),
                ..user("x")
            },
        ),
    ] {
        let err = s.create_user(&bad).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput { field: f, .. } if f == field),
            "{err:?}"
        );
    }
    assert_eq!(s.count_users().await.unwrap(), 0);
    s.create_user(&user("x")).await.unwrap();
    assert_eq!(s.get_user("x\0").await.unwrap(), None);
    assert_eq!(s.get_user_by_subject("subject-x\0").await.unwrap(), None);
    assert!(!s.set_disabled("x\0", true, T0).await.unwrap());
}

// ---------------------------------------------------------------------------------------------------------------
// Federated accounts

fn federated(sub: &str) -> FederatedUser {
    FederatedUser {
        username: format!("oidc:{sub}"),
        subject: sub.to_owned(),
        email: format!("{sub}@idp.example.com"),
        display_name: format!("Federated {sub}"),
        groups: strings(&["engineers", "flyte-admins"]),
        now: T0,
    }
}

/// Runs one statement on the test database directly, bypassing the store (to plant data it would never write).
async fn execute_raw(ctx: &Ctx, sql: &str) -> Result<u64, sqlx::Error> {
    match ctx.backend {
        crate::Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&ctx.url).await?;
            let done = sqlx::query(sql).execute(&pool).await;
            pool.close().await;
            Ok(done?.rows_affected())
        }
        crate::Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&ctx.url).await?;
            let done = sqlx::query(sql).execute(&pool).await;
            pool.close().await;
            Ok(done?.rows_affected())
        }
    }
}

pub(crate) async fn users_federated_upsert_inserts_then_updates(ctx: Ctx) {
    let s = &ctx.store;
    let first = federated("idp-1");
    let created = s.upsert_federated_user(&first).await.unwrap();
    let expected = UserRecord {
        username: "oidc:idp-1".to_owned(),
        subject: "idp-1".to_owned(),
        email: "idp-1@idp.example.com".to_owned(),
        display_name: "Federated idp-1".to_owned(),
        password_hash: String::new(),
        is_admin: false,
        disabled: false,
        failed_logins: 0,
        locked_until: 0,
        created_at: T0,
        updated_at: T0,
        last_login_at: Some(T0),
        origin: UserOrigin::Oidc,
        groups: strings(&["engineers", "flyte-admins"]),
    };
    assert_eq!(created, expected);
    assert_eq!(
        s.get_user("oidc:idp-1").await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        s.get_user_by_subject("idp-1").await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        s.list_users(None, 10).await.unwrap(),
        vec![expected.clone()]
    );

    // An administrator disables the account; the next sign-in refreshes the profile but never re-enables it.
    assert!(s.set_disabled("oidc:idp-1", true, T0 + 5).await.unwrap());
    let again = FederatedUser {
        email: "new@idp.example.com".to_owned(),
        display_name: "Renamed".to_owned(),
        groups: strings(&["readers"]),
        now: T0 + 100,
        ..first.clone()
    };
    let updated = s.upsert_federated_user(&again).await.unwrap();
    let expected = UserRecord {
        email: "new@idp.example.com".to_owned(),
        display_name: "Renamed".to_owned(),
        groups: strings(&["readers"]),
        disabled: true,
        updated_at: T0 + 100,
        last_login_at: Some(T0 + 100),
        ..expected
    };
    assert_eq!(updated, expected);
    assert_eq!(
        s.get_user("oidc:idp-1").await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(s.count_users().await.unwrap(), 1);

    // Bookkeeping of failed logins is not part of the profile and is left alone.
    s.record_login_failure("oidc:idp-1", T0 + 101, 5, 60)
        .await
        .unwrap();
    let kept = s
        .upsert_federated_user(&FederatedUser {
            now: T0 + 200,
            ..again.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            kept.failed_logins,
            kept.disabled,
            kept.is_admin,
            kept.created_at
        ),
        (1, true, false, T0)
    );
    assert!(s.set_disabled("oidc:idp-1", false, T0 + 201).await.unwrap());
    let enabled = s.upsert_federated_user(&again).await.unwrap();
    assert!(!enabled.disabled);

    // Concurrent first sign-ins of one identity (several tabs) all succeed and make one account. (On PostgreSQL
    // a losing insert can trip over the subject of the winner's row; several rounds give that a chance.)
    for round in 0..40 {
        let sub = format!("racer-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = Arc::clone(&ctx.store);
                let new = FederatedUser {
                    now: T0 + i,
                    ..federated(&sub)
                };
                tokio::spawn(async move { s.upsert_federated_user(&new).await })
            })
            .collect();
        for task in tasks {
            let got = task.await.unwrap().unwrap();
            assert_eq!(
                (got.username, got.origin),
                (format!("oidc:{sub}"), UserOrigin::Oidc)
            );
        }
    }
    assert_eq!(s.count_users().await.unwrap(), 41);
}

pub(crate) async fn users_federated_collides_with_local_username(ctx: Ctx) {
    let s = &ctx.store;
    let local = s.create_user(&user("alice")).await.unwrap();
    let err = s
        .upsert_federated_user(&FederatedUser {
            username: "alice".to_owned(),
            ..federated("idp-alice")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user", key } if key == "alice"),
        "{err:?}"
    );
    // Even with the local account's own subject, a local account is never taken over.
    let err = s
        .upsert_federated_user(&FederatedUser {
            username: "alice".to_owned(),
            ..federated("subject-alice")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user", key } if key == "alice"),
        "{err:?}"
    );
    assert_eq!(s.get_user("alice").await.unwrap(), Some(local));
    assert_eq!(s.get_user_by_subject("idp-alice").await.unwrap(), None);
    assert_eq!(s.count_users().await.unwrap(), 1);

    // A federated user name held by another subject is a clash too, and that account is left as it was.
    let owner = s.upsert_federated_user(&federated("idp-1")).await.unwrap();
    let err = s
        .upsert_federated_user(&FederatedUser {
            username: "oidc:idp-1".to_owned(),
            display_name: "Impostor".to_owned(),
            now: T0 + 1,
            ..federated("idp-2")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user", key } if key == "oidc:idp-1"),
        "{err:?}"
    );
    assert_eq!(s.get_user("oidc:idp-1").await.unwrap(), Some(owner));
    assert_eq!(s.count_users().await.unwrap(), 2);
}

pub(crate) async fn users_federated_subject_owned_by_another_user(ctx: Ctx) {
    let s = &ctx.store;
    let local = s.create_user(&user("bob")).await.unwrap();
    let err = s
        .upsert_federated_user(&FederatedUser {
            username: "oidc:bob".to_owned(),
            ..federated("subject-bob")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user subject", key } if key == "subject-bob"),
        "{err:?}"
    );
    let owner = s.upsert_federated_user(&federated("idp-1")).await.unwrap();
    let err = s
        .upsert_federated_user(&FederatedUser {
            username: "oidc:other-name".to_owned(),
            ..federated("idp-1")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user subject", key } if key == "idp-1"),
        "{err:?}"
    );
    assert_eq!(s.get_user("bob").await.unwrap(), Some(local));
    assert_eq!(s.get_user_by_subject("idp-1").await.unwrap(), Some(owner));
    assert_eq!(s.get_user("oidc:other-name").await.unwrap(), None);
    assert_eq!(s.get_user("oidc:bob").await.unwrap(), None);
    assert_eq!(s.count_users().await.unwrap(), 2);
}

pub(crate) async fn users_groups_roundtrip(ctx: Ctx) {
    let s = &ctx.store;
    // Order and duplicates are kept; empty strings, quotes, backslashes and non-ASCII are values like any other.
    let groups = strings(&[
        "日本語のグループ",
        "Ünïcode ✓",
        "emoji 🚀",
        "\"quoted\" \\ [brackets], {braces}",
        "",
        "dup",
        "dup",
        "\u{7f}\u{1}\n\t",
    ]);
    let got = s
        .upsert_federated_user(&FederatedUser {
            groups: groups.clone(),
            ..federated("g1")
        })
        .await
        .unwrap();
    assert_eq!(got.groups, groups);
    assert_eq!(s.get_user("oidc:g1").await.unwrap().unwrap().groups, groups);
    assert_eq!(
        s.get_user_by_subject("g1").await.unwrap().unwrap().groups,
        groups
    );

    let none = s
        .upsert_federated_user(&FederatedUser {
            groups: vec![],
            ..federated("g2")
        })
        .await
        .unwrap();
    assert!(none.groups.is_empty());
    assert!(
        s.get_user("oidc:g2")
            .await
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );
    // An update to no groups clears them.
    let cleared = s
        .upsert_federated_user(&FederatedUser {
            groups: vec![],
            ..federated("g1")
        })
        .await
        .unwrap();
    assert!(cleared.groups.is_empty());
    let listed = s.list_users(None, 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|u| (u.username.as_str(), u.groups.len()))
            .collect::<Vec<_>>(),
        vec![("oidc:g1", 0), ("oidc:g2", 0)]
    );

    for (field, bad) in [
        (
            "groups",
            FederatedUser {
                groups: strings(&["ok", "bad\0"]),
                ..federated("g3")
            },
        ),
        (
            "username",
            FederatedUser {
                username: "oidc:\0".to_owned(),
                ..federated("g3")
            },
        ),
        (
            "subject",
            FederatedUser {
                subject: "g3\0".to_owned(),
                ..federated("g3")
            },
        ),
        (
            "email",
            FederatedUser {
                email: "\0".to_owned(),
                ..federated("g3")
            },
        ),
        (
            "display_name",
            FederatedUser {
                display_name: "\0".to_owned(),
                ..federated("g3")
            },
        ),
    ] {
        let err = s.upsert_federated_user(&bad).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput { field: f, .. } if f == field),
            "{err:?}"
        );
    }
    assert_eq!(s.count_users().await.unwrap(), 2);
}

pub(crate) async fn users_local_accounts_are_local_without_groups(ctx: Ctx) {
    let s = &ctx.store;
    let created = s.create_user(&user("carol")).await.unwrap();
    assert_eq!(
        (created.origin, created.groups.len()),
        (UserOrigin::Local, 0)
    );
    s.upsert_federated_user(&federated("idp-1")).await.unwrap();
    for got in [
        s.get_user("carol").await.unwrap().unwrap(),
        s.get_user_by_subject("subject-carol")
            .await
            .unwrap()
            .unwrap(),
    ] {
        assert_eq!(got, created);
    }
    let listed = s.list_users(None, 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|u| (u.username.as_str(), u.origin, u.groups.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("carol", UserOrigin::Local, vec![]),
            (
                "oidc:idp-1",
                UserOrigin::Oidc,
                strings(&["engineers", "flyte-admins"])
            ),
        ]
    );
    // Account changes keep the origin and groups.
    assert!(s.set_password("oidc:idp-1", "h", T0 + 1).await.unwrap());
    assert!(s.set_disabled("carol", true, T0 + 1).await.unwrap());
    let fed = s.get_user("oidc:idp-1").await.unwrap().unwrap();
    assert_eq!(
        (fed.origin, fed.groups),
        (UserOrigin::Oidc, strings(&["engineers", "flyte-admins"]))
    );
    assert_eq!(
        s.get_user("carol").await.unwrap().unwrap().origin,
        UserOrigin::Local
    );
}

pub(crate) async fn users_malformed_stored_columns_are_errors(ctx: Ctx) {
    let s = &ctx.store;
    s.create_user(&user("dora")).await.unwrap();
    s.create_user(&user("emil")).await.unwrap();
    for raw in [
        "not json",
        "[1, 2]",
        "{\"a\": 1}",
        "[\"ok\", null]",
        "\"solo\"",
    ] {
        let sql = format!(
            "UPDATE users SET groups = '{}' WHERE username = 'dora'",
            raw.replace('\'', "''")
        );
        assert_eq!(execute_raw(&ctx, &sql).await.unwrap(), 1);
        for err in [
            s.get_user("dora").await.unwrap_err(),
            s.get_user_by_subject("subject-dora").await.unwrap_err(),
            s.list_users(None, 10).await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, StoreError::Database(e) if e.message().contains("users.groups")),
                "{raw}: {err:?}"
            );
        }
        // Other accounts still read fine.
        assert!(s.get_user("emil").await.unwrap().is_some());
    }
    // The database itself refuses an origin the store does not know.
    let refused = execute_raw(
        &ctx,
        "UPDATE users SET origin = 'ldap' WHERE username = 'emil'",
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        s.get_user("emil").await.unwrap().unwrap().origin,
        UserOrigin::Local
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Authorization codes

fn code(hash: &str, expires_at: i64) -> NewCode {
    NewCode {
        code_hash: hash.to_owned(),
        client_id: "flytectl".to_owned(),
        redirect_uri: "http://localhost:53593/callback".to_owned(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        scopes: strings(&["offline", "all"]),
        audience: strings(&["https://flyte.example.com"]),
        subject: "subject-alice".to_owned(),
        username: "alice".to_owned(),
        family_id: "family-1".to_owned(),
        nonce: String::new(),
        auth_time: T0 - 5,
        created_at: T0,
        expires_at,
    }
}

pub(crate) async fn codes_are_single_use(ctx: Ctx) {
    let s = &ctx.store;
    let new = NewCode {
        nonce: "n-0S6_WzA2Mj".to_owned(),
        scopes: vec![],
        ..code("hash-1", T0 + 300)
    };
    s.put_code(&new).await.unwrap();
    let expected = CodeRecord {
        code_hash: new.code_hash.clone(),
        client_id: new.client_id.clone(),
        redirect_uri: new.redirect_uri.clone(),
        code_challenge: new.code_challenge.clone(),
        scopes: vec![],
        audience: new.audience.clone(),
        subject: new.subject.clone(),
        username: new.username.clone(),
        family_id: new.family_id.clone(),
        nonce: new.nonce.clone(),
        auth_time: new.auth_time,
        created_at: new.created_at,
        expires_at: new.expires_at,
        redeemed_at: None,
    };
    assert_eq!(
        s.redeem_code("hash-1", T0 + 10).await.unwrap(),
        Some((expected.clone(), true))
    );
    let replay = CodeRecord {
        redeemed_at: Some(T0 + 10),
        ..expected.clone()
    };
    assert_eq!(
        s.redeem_code("hash-1", T0 + 20).await.unwrap(),
        Some((replay.clone(), false))
    );
    assert_eq!(
        s.redeem_code("hash-1", T0 + 30).await.unwrap(),
        Some((replay, false))
    );
    assert_eq!(s.redeem_code("unknown", T0).await.unwrap(), None);
    assert_eq!(s.redeem_code("hash-1\0", T0).await.unwrap(), None);

    let dup = NewCode {
        client_id: "other".to_owned(),
        ..code("hash-1", T0)
    };
    let err = s.put_code(&dup).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "authorization code", key } if key == "<redacted>"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("hash-1"));

    let err = s
        .put_code(&NewCode {
            scopes: strings(&["\0"]),
            ..code("hash-2", T0)
        })
        .await
        .unwrap_err();
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
    assert_eq!(s.redeem_code("hash-2", T0).await.unwrap(), None);
}

pub(crate) async fn codes_concurrent_redeem_has_one_winner(ctx: Ctx) {
    for round in 0..5 {
        let hash = format!("race-{round}");
        ctx.store.put_code(&code(&hash, T0 + 300)).await.unwrap();
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let s = Arc::clone(&ctx.store);
                let hash = hash.clone();
                tokio::spawn(async move { s.redeem_code(&hash, T0 + i).await })
            })
            .collect();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for task in tasks {
            let (record, won) = task.await.unwrap().unwrap().unwrap();
            if won {
                assert_eq!(record.redeemed_at, None);
                winners.push(record);
            } else {
                losers.push(record.redeemed_at.unwrap());
            }
        }
        assert_eq!(winners.len(), 1);
        assert_eq!(losers.len(), 11);
        // Every loser saw the winner's redemption time.
        let stored = ctx
            .store
            .redeem_code(&hash, T0 + 1000)
            .await
            .unwrap()
            .unwrap();
        assert!(!stored.1);
        assert!(losers.iter().all(|at| Some(*at) == stored.0.redeemed_at));
    }
}

pub(crate) async fn codes_purge(ctx: Ctx) {
    let s = &ctx.store;
    s.put_code(&code("a", T0 + 10)).await.unwrap();
    s.put_code(&code("b", T0 + 20)).await.unwrap();
    s.redeem_code("a", T0).await.unwrap();
    assert_eq!(s.purge_expired_codes(T0 + 10).await.unwrap(), 0);
    assert_eq!(s.purge_expired_codes(T0 + 11).await.unwrap(), 1);
    assert_eq!(s.redeem_code("a", T0).await.unwrap(), None);
    assert!(s.redeem_code("b", T0).await.unwrap().unwrap().1);
    assert_eq!(s.purge_expired_codes(i64::MAX).await.unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Refresh tokens

fn refresh(hash: &str, family: &str, issued_at: i64) -> NewRefreshToken {
    NewRefreshToken {
        token_hash: hash.to_owned(),
        family_id: family.to_owned(),
        client_id: "flytectl".to_owned(),
        subject: "subject-alice".to_owned(),
        username: "alice".to_owned(),
        scopes: strings(&["offline", "all"]),
        audience: strings(&["https://flyte.example.com"]),
        auth_time: T0,
        issued_at,
        expires_at: issued_at + 3600,
    }
}

fn refresh_record(new: &NewRefreshToken) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: new.token_hash.clone(),
        family_id: new.family_id.clone(),
        client_id: new.client_id.clone(),
        subject: new.subject.clone(),
        username: new.username.clone(),
        scopes: new.scopes.clone(),
        audience: new.audience.clone(),
        auth_time: new.auth_time,
        issued_at: new.issued_at,
        expires_at: new.expires_at,
        used_at: None,
        family_revoked_at: None,
    }
}

pub(crate) async fn refresh_rotation_chain(ctx: Ctx) {
    let s = &ctx.store;
    let t1 = refresh("t1", "fam", T0);
    s.create_refresh_token(&t1).await.unwrap();
    assert_eq!(
        s.get_refresh_token("t1").await.unwrap(),
        Some(refresh_record(&t1))
    );

    // The successor joins the presented token's family whatever it says.
    let t2 = NewRefreshToken {
        family_id: "ignored".to_owned(),
        scopes: strings(&["offline"]),
        ..refresh("t2", "fam", T0 + 10)
    };
    assert_eq!(
        s.rotate_refresh_token("t1", &t2, T0 + 10, 0).await.unwrap(),
        Rotation::Rotated(refresh_record(&t1))
    );
    assert_eq!(
        s.get_refresh_token("t1").await.unwrap().unwrap().used_at,
        Some(T0 + 10)
    );
    let stored_t2 = s.get_refresh_token("t2").await.unwrap().unwrap();
    assert_eq!(
        stored_t2,
        RefreshTokenRecord {
            family_id: "fam".to_owned(),
            ..refresh_record(&t2)
        }
    );

    let t3 = refresh("t3", "fam", T0 + 20);
    assert_eq!(
        s.rotate_refresh_token("t2", &t3, T0 + 20, 0).await.unwrap(),
        Rotation::Rotated(stored_t2)
    );
    assert!(s.get_refresh_token("t3").await.unwrap().is_some());

    // Expiry is checked before use: exactly at expires_at the token is expired, and nothing changes.
    let t4 = refresh("t4", "fam", T0 + 30);
    let expired = s
        .rotate_refresh_token("t3", &t4, T0 + 20 + 3600, 0)
        .await
        .unwrap();
    assert_eq!(expired, Rotation::Expired(refresh_record(&t3)));
    assert_eq!(s.get_refresh_token("t4").await.unwrap(), None);
    assert_eq!(
        s.get_refresh_token("t3").await.unwrap().unwrap().used_at,
        None
    );

    assert_eq!(
        s.rotate_refresh_token("nope", &t4, T0, 0).await.unwrap(),
        Rotation::NotFound
    );
    assert_eq!(
        s.rotate_refresh_token("t3\0", &t4, T0, 0).await.unwrap(),
        Rotation::NotFound
    );
    assert_eq!(s.get_refresh_token("nope").await.unwrap(), None);

    // A successor hash already stored changes nothing.
    let err = s
        .rotate_refresh_token("t3", &refresh("t1", "fam", T0), T0 + 30, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "refresh token", key } if key == "<redacted>"),
        "{err:?}"
    );
    assert_eq!(
        s.get_refresh_token("t3").await.unwrap().unwrap().used_at,
        None
    );
}

pub(crate) async fn refresh_grace_then_reuse(ctx: Ctx) {
    let s = &ctx.store;
    let t1 = refresh("t1", "fam", T0);
    s.create_refresh_token(&t1).await.unwrap();
    let grace = 10;
    assert!(matches!(
        s.rotate_refresh_token("t1", &refresh("t2", "fam", T0), T0, grace)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    // A retry within the grace period gets a successor too; the first use time stays.
    let within = s
        .rotate_refresh_token("t1", &refresh("t2b", "fam", T0 + grace), T0 + grace, grace)
        .await
        .unwrap();
    assert_eq!(
        within,
        Rotation::WithinGrace(RefreshTokenRecord {
            used_at: Some(T0),
            ..refresh_record(&t1)
        })
    );
    assert!(s.get_refresh_token("t2b").await.unwrap().is_some());
    assert_eq!(
        s.get_refresh_token("t1").await.unwrap().unwrap().used_at,
        Some(T0)
    );

    // After it, reuse revokes the family and stores nothing.
    let reused = s
        .rotate_refresh_token("t1", &refresh("t2c", "fam", T0 + 11), T0 + grace + 1, grace)
        .await
        .unwrap();
    assert_eq!(
        reused,
        Rotation::Reused(RefreshTokenRecord {
            used_at: Some(T0),
            ..refresh_record(&t1)
        })
    );
    assert_eq!(s.get_refresh_token("t2c").await.unwrap(), None);
    let newest = s.get_refresh_token("t2b").await.unwrap().unwrap();
    assert_eq!(newest.family_revoked_at, Some(T0 + grace + 1));

    // Now even the newest token of the family is refused.
    let refused = s
        .rotate_refresh_token("t2b", &refresh("t3", "fam", T0 + 12), T0 + 12, grace)
        .await
        .unwrap();
    assert_eq!(refused, Rotation::FamilyRevoked(newest));
    assert_eq!(s.get_refresh_token("t3").await.unwrap(), None);
    assert!(!s.revoke_family("fam", T0 + 13).await.unwrap());
    assert_eq!(
        s.get_refresh_token("t1")
            .await
            .unwrap()
            .unwrap()
            .family_revoked_at,
        Some(T0 + grace + 1)
    );
}

/// Two replicas rotating the same token at the same time: exactly one rotates; the other is a retry within the
/// grace period, or a reuse (revoking the family) without one.
pub(crate) async fn refresh_concurrent_rotations_serialize(ctx: Ctx) {
    for (round, grace) in [0, 30, 0, 30, 0, 30].into_iter().enumerate() {
        let family = format!("fam-{round}");
        let old = format!("old-{round}");
        ctx.store
            .create_refresh_token(&refresh(&old, &family, T0))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let s = Arc::clone(&ctx.store);
                let successor = refresh(&format!("new-{round}-{i}"), &family, T0 + 1);
                let old = old.clone();
                tokio::spawn(async move {
                    s.rotate_refresh_token(&old, &successor, T0 + 1, grace)
                        .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        let rotated = outcomes
            .iter()
            .filter(|o| matches!(o, Rotation::Rotated(_)))
            .count();
        assert_eq!(rotated, 1, "{outcomes:?}");
        let other = outcomes
            .iter()
            .find(|o| !matches!(o, Rotation::Rotated(_)))
            .unwrap();
        let revoked_at = ctx
            .store
            .get_refresh_token(&old)
            .await
            .unwrap()
            .unwrap()
            .family_revoked_at;
        if grace > 0 {
            assert!(matches!(other, Rotation::WithinGrace(_)), "{other:?}");
            assert_eq!(revoked_at, None);
        } else {
            assert!(matches!(other, Rotation::Reused(_)), "{other:?}");
            assert_eq!(revoked_at, Some(T0 + 1));
        }
    }
}

pub(crate) async fn refresh_families_revoke_and_purge(ctx: Ctx) {
    let s = &ctx.store;
    s.create_refresh_token(&refresh("a1", "fam-a", T0))
        .await
        .unwrap();
    // A second token may join an existing family of the same owner.
    s.create_refresh_token(&refresh("a2", "fam-a", T0 + 100))
        .await
        .unwrap();
    s.create_refresh_token(&refresh("b1", "fam-b", T0))
        .await
        .unwrap();
    let other_user = NewRefreshToken {
        subject: "subject-bob".to_owned(),
        username: "bob".to_owned(),
        ..refresh("c1", "fam-c", T0)
    };
    s.create_refresh_token(&other_user).await.unwrap();

    // Not into somebody else's family.
    let intruder = NewRefreshToken {
        subject: "subject-bob".to_owned(),
        username: "bob".to_owned(),
        ..refresh("x1", "fam-a", T0)
    };
    let err = s.create_refresh_token(&intruder).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "family_id",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.get_refresh_token("x1").await.unwrap(), None);
    let err = s
        .create_refresh_token(&refresh("a1", "fam-z", T0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                entity: "refresh token",
                ..
            }
        ),
        "{err:?}"
    );
    // The failed attempt left no family behind.
    assert!(!s.revoke_family("fam-z", T0).await.unwrap());

    assert!(s.revoke_family("fam-b", T0 + 1).await.unwrap());
    assert!(!s.revoke_family("fam-b", T0 + 2).await.unwrap());
    assert!(!s.revoke_family("nope", T0).await.unwrap());
    assert_eq!(
        s.get_refresh_token("b1")
            .await
            .unwrap()
            .unwrap()
            .family_revoked_at,
        Some(T0 + 1)
    );
    // Only the families not revoked yet.
    assert_eq!(
        s.revoke_user_families("subject-alice", T0 + 3)
            .await
            .unwrap(),
        ["fam-a"]
    );
    assert!(
        s.revoke_user_families("subject-alice", T0 + 4)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.get_refresh_token("c1")
            .await
            .unwrap()
            .unwrap()
            .family_revoked_at,
        None
    );

    // a1, b1 and c1 expire at T0 + 3600, a2 an hour later.
    assert_eq!(s.purge_expired_refresh_tokens(T0 + 3600).await.unwrap(), 0);
    assert_eq!(s.purge_expired_refresh_tokens(T0 + 3601).await.unwrap(), 3);
    assert_eq!(s.get_refresh_token("a1").await.unwrap(), None);
    assert!(s.get_refresh_token("a2").await.unwrap().is_some());
    // fam-b and fam-c had no tokens left and are gone; fam-a stays with a2.
    assert!(!s.revoke_family("fam-c", T0).await.unwrap());
    s.create_refresh_token(&refresh("b2", "fam-b", T0 + 5000))
        .await
        .unwrap();
    assert_eq!(
        s.get_refresh_token("b2")
            .await
            .unwrap()
            .unwrap()
            .family_revoked_at,
        None,
        "a purged family id starts afresh"
    );
    assert_eq!(
        s.get_refresh_token("a2")
            .await
            .unwrap()
            .unwrap()
            .family_revoked_at,
        Some(T0 + 3)
    );
    assert_eq!(s.purge_expired_refresh_tokens(i64::MAX).await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------------------------
// Sessions

fn session(hash: &str, username: &str, expires_at: i64) -> NewSession {
    NewSession {
        session_hash: hash.to_owned(),
        username: username.to_owned(),
        subject: format!("subject-{username}"),
        auth_time: T0,
        created_at: T0,
        expires_at,
        idp_id_token: None,
    }
}

pub(crate) async fn sessions_lifecycle(ctx: Ctx) {
    let s = &ctx.store;
    let new = session("s1", "alice", T0 + 3600);
    let created = s.create_session(&new).await.unwrap();
    let expected = SessionRecord {
        session_hash: "s1".to_owned(),
        username: "alice".to_owned(),
        subject: "subject-alice".to_owned(),
        auth_time: T0,
        created_at: T0,
        expires_at: T0 + 3600,
        last_seen_at: T0,
        idp_id_token: None,
    };
    assert_eq!(created, expected);
    assert_eq!(s.get_session("s1").await.unwrap(), Some(expected.clone()));
    assert!(s.touch_session("s1", T0 + 60).await.unwrap());
    assert_eq!(
        s.get_session("s1").await.unwrap(),
        Some(SessionRecord {
            last_seen_at: T0 + 60,
            ..expected
        })
    );
    assert!(!s.touch_session("nope", T0).await.unwrap());
    assert_eq!(s.get_session("nope").await.unwrap(), None);
    assert_eq!(s.get_session("s1\0").await.unwrap(), None);

    let err = s.create_session(&new).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "session", key } if key == "<redacted>"),
        "{err:?}"
    );
    let err = s
        .create_session(&session("s\0", "alice", T0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "session_hash",
                ..
            }
        ),
        "{err:?}"
    );

    assert!(s.delete_session("s1").await.unwrap());
    assert!(!s.delete_session("s1").await.unwrap());
    assert_eq!(s.get_session("s1").await.unwrap(), None);
}

pub(crate) async fn sessions_per_user_and_purge(ctx: Ctx) {
    let s = &ctx.store;
    s.create_session(&session("a1", "alice", T0 + 10))
        .await
        .unwrap();
    s.create_session(&session("a2", "alice", T0 + 20))
        .await
        .unwrap();
    s.create_session(&session("A1", "Alice", T0 + 20))
        .await
        .unwrap();
    s.create_session(&session("b1", "bob", T0 + 10))
        .await
        .unwrap();
    s.create_session(&session("b2", "bob", T0 + 30))
        .await
        .unwrap();

    assert_eq!(s.delete_user_sessions("alice").await.unwrap(), 2);
    assert_eq!(s.delete_user_sessions("alice").await.unwrap(), 0);
    assert!(s.get_session("A1").await.unwrap().is_some());

    assert_eq!(s.purge_expired_sessions(T0 + 10).await.unwrap(), 0);
    assert_eq!(s.purge_expired_sessions(T0 + 11).await.unwrap(), 1);
    assert_eq!(s.get_session("b1").await.unwrap(), None);
    assert_eq!(s.purge_expired_sessions(T0 + 21).await.unwrap(), 1);
    assert!(s.get_session("b2").await.unwrap().is_some());
    assert_eq!(s.delete_user_sessions("bob").await.unwrap(), 1);
}

pub(crate) async fn sessions_idp_id_token_roundtrip(ctx: Ctx) {
    let s = &ctx.store;
    // A realistically long token: a few kilobytes of base64url.
    let token = format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.{}.{}",
        "eyJzdWIiOiJpZHAtMSJ9".repeat(100),
        "c2lnbmF0dXJl".repeat(30)
    );
    let federated = NewSession {
        idp_id_token: Some(token.clone()),
        ..session("fed", "oidc:idp-1", T0 + 3600)
    };
    let created = s.create_session(&federated).await.unwrap();
    assert_eq!(created.idp_id_token.as_deref(), Some(token.as_str()));
    let got = s.get_session("fed").await.unwrap().unwrap();
    assert_eq!(got, created);
    assert!(s.touch_session("fed", T0 + 10).await.unwrap());
    assert_eq!(
        s.get_session("fed").await.unwrap().unwrap().idp_id_token,
        Some(token.clone())
    );

    let local = s
        .create_session(&session("loc", "alice", T0 + 3600))
        .await
        .unwrap();
    assert_eq!(local.idp_id_token, None);
    assert_eq!(
        s.get_session("loc").await.unwrap().unwrap().idp_id_token,
        None
    );
    // An empty token is a value, not "none".
    let empty = NewSession {
        idp_id_token: Some(String::new()),
        ..session("empty", "alice", T0 + 3600)
    };
    s.create_session(&empty).await.unwrap();
    assert_eq!(
        s.get_session("empty").await.unwrap().unwrap().idp_id_token,
        Some(String::new())
    );

    for text in [
        format!("{federated:?}"),
        format!("{created:?}"),
        format!("{got:?}"),
    ] {
        assert!(!text.contains("eyJ"), "{text}");
        assert!(!text.contains("c2lnbmF0dXJl"), "{text}");
        assert!(
            text.contains(r#"idp_id_token: Some("<redacted>")"#),
            "{text}"
        );
    }
    assert!(format!("{local:?}").contains("idp_id_token: None"));

    let err = s
        .create_session(&NewSession {
            idp_id_token: Some("a\0b".to_owned()),
            ..session("nul", "alice", T0 + 3600)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput {
                field: "idp_id_token",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.get_session("nul").await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------------------------
// Device codes

fn device(hash: &str, user_code: &str, expires_at: i64) -> NewDeviceCode {
    NewDeviceCode {
        device_code_hash: hash.to_owned(),
        user_code: user_code.to_owned(),
        client_id: "flytectl".to_owned(),
        scopes: strings(&["offline", "all"]),
        audience: strings(&["https://flyte.example.com"]),
        interval_secs: 5,
        created_at: T0,
        expires_at,
    }
}

fn device_record(new: &NewDeviceCode) -> DeviceCodeRecord {
    DeviceCodeRecord {
        device_code_hash: new.device_code_hash.clone(),
        user_code: new.user_code.clone(),
        client_id: new.client_id.clone(),
        scopes: new.scopes.clone(),
        audience: new.audience.clone(),
        interval_secs: new.interval_secs,
        created_at: new.created_at,
        expires_at: new.expires_at,
        status: DeviceStatus::Pending,
        last_polled_at: None,
        subject: String::new(),
        username: String::new(),
        family_id: String::new(),
        auth_time: 0,
        decided_at: None,
    }
}

fn approval(family_id: &str) -> DeviceApproval {
    DeviceApproval {
        subject: "subject-alice".to_owned(),
        username: "alice".to_owned(),
        family_id: family_id.to_owned(),
        auth_time: T0 - 30,
    }
}

pub(crate) async fn devices_create_and_lookup(ctx: Ctx) {
    let s = &ctx.store;
    let new = NewDeviceCode {
        scopes: vec![],
        audience: strings(&["z", "a", ""]),
        ..device("dev-1", "BCDFGHJK", T0 + 600)
    };
    let expected = device_record(&new);
    assert_eq!(s.create_device_code(&new).await.unwrap(), expected);
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJK", T0 + 599)
            .await
            .unwrap(),
        Some(expected.clone())
    );
    // Expired exactly at expires_at; exact, case-sensitive match only.
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJK", T0 + 600)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.get_device_by_user_code("bcdfghjk", T0).await.unwrap(),
        None
    );
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJ", T0).await.unwrap(),
        None
    );
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJK\0", T0).await.unwrap(),
        None
    );

    // The same hash, even with another user code.
    let err = s
        .create_device_code(&device("dev-1", "MNPQRSTV", T0 + 600))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "device code", key } if key == "<redacted>"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("dev-1"));
    assert_eq!(
        s.get_device_by_user_code("MNPQRSTV", T0).await.unwrap(),
        None
    );

    // The same user code while the first code is unexpired (its created_at is before T0 + 600).
    let clash = NewDeviceCode {
        created_at: T0 + 599,
        ..device("dev-2", "BCDFGHJK", T0 + 1200)
    };
    let err = s.create_device_code(&clash).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { entity: "user code", key } if key == "BCDFGHJK"),
        "{err:?}"
    );
    assert_eq!(
        s.poll_device_code("dev-2", T0 + 599).await.unwrap(),
        DevicePoll::NotFound
    );
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJK", T0).await.unwrap(),
        Some(expected.clone()),
        "the failed attempt changed nothing"
    );

    // A hash clash with a new user code leaves an expired holder of that user code alone.
    s.create_device_code(&device("dev-3", "WXZBCDFG", T0 + 10))
        .await
        .unwrap();
    let err = s
        .create_device_code(&NewDeviceCode {
            created_at: T0 + 10,
            ..device("dev-1", "WXZBCDFG", T0 + 700)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                entity: "device code",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        s.poll_device_code("dev-3", T0 + 10).await.unwrap(),
        DevicePoll::Expired(_)
    ));

    // Once the holder expired, its user code can be handed out again; the old code is gone.
    let reuse = NewDeviceCode {
        created_at: T0 + 600,
        ..device("dev-4", "BCDFGHJK", T0 + 1200)
    };
    assert_eq!(
        s.create_device_code(&reuse).await.unwrap(),
        device_record(&reuse)
    );
    assert_eq!(
        s.poll_device_code("dev-1", T0 + 600).await.unwrap(),
        DevicePoll::NotFound
    );
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJK", T0 + 600)
            .await
            .unwrap(),
        Some(device_record(&reuse))
    );

    for (bad, field) in [
        (device("dev\0", "KKKKKKKK", T0 + 600), "device_code_hash"),
        (device("dev-5", "KKKK\0KKK", T0 + 600), "user_code"),
        (
            NewDeviceCode {
                client_id: "c\0".to_owned(),
                ..device("dev-5", "KKKKKKKK", T0 + 600)
            },
            "client_id",
        ),
        (
            NewDeviceCode {
                scopes: strings(&["\0"]),
                ..device("dev-5", "KKKKKKKK", T0 + 600)
            },
            "scopes",
        ),
        (
            NewDeviceCode {
                audience: strings(&["a\0"]),
                ..device("dev-5", "KKKKKKKK", T0 + 600)
            },
            "audience",
        ),
    ] {
        let err = s.create_device_code(&bad).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    assert_eq!(
        s.get_device_by_user_code("KKKKKKKK", T0).await.unwrap(),
        None
    );
}

pub(crate) async fn devices_decide(ctx: Ctx) {
    let s = &ctx.store;
    let a = device("dev-a", "AAAAAAAA", T0 + 600);
    let b = device("dev-b", "BBBBBBBB", T0 + 600);
    let c = device("dev-c", "CCCCCCCC", T0 + 60);
    for new in [&a, &b, &c] {
        s.create_device_code(new).await.unwrap();
    }

    let approved = DeviceCodeRecord {
        status: DeviceStatus::Approved,
        subject: "subject-alice".to_owned(),
        username: "alice".to_owned(),
        family_id: "family-a".to_owned(),
        auth_time: T0 - 30,
        decided_at: Some(T0 + 10),
        ..device_record(&a)
    };
    assert_eq!(
        s.decide_device_code("AAAAAAAA", Some(approval("family-a")), T0 + 10)
            .await
            .unwrap(),
        Some(approved.clone())
    );
    assert_eq!(
        s.get_device_by_user_code("AAAAAAAA", T0 + 11)
            .await
            .unwrap(),
        Some(approved.clone())
    );
    // Decided once: neither a second approval nor a denial changes anything.
    assert_eq!(
        s.decide_device_code("AAAAAAAA", Some(approval("family-x")), T0 + 12)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.decide_device_code("AAAAAAAA", None, T0 + 12)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.get_device_by_user_code("AAAAAAAA", T0 + 13)
            .await
            .unwrap(),
        Some(approved)
    );

    let denied = DeviceCodeRecord {
        status: DeviceStatus::Denied,
        decided_at: Some(T0 + 20),
        ..device_record(&b)
    };
    assert_eq!(
        s.decide_device_code("BBBBBBBB", None, T0 + 20)
            .await
            .unwrap(),
        Some(denied.clone())
    );
    assert_eq!(
        s.decide_device_code("BBBBBBBB", Some(approval("family-b")), T0 + 21)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.get_device_by_user_code("BBBBBBBB", T0).await.unwrap(),
        Some(denied)
    );

    // Expired (exactly at expires_at), unknown or unstorable: nothing to decide.
    assert_eq!(
        s.decide_device_code("CCCCCCCC", Some(approval("family-c")), T0 + 60)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.decide_device_code("ZZZZZZZZ", None, T0).await.unwrap(),
        None
    );
    assert_eq!(
        s.decide_device_code("CCCC\0CCC", None, T0).await.unwrap(),
        None
    );
    assert!(matches!(
        s.poll_device_code("dev-c", T0 + 60).await.unwrap(),
        DevicePoll::Expired(DeviceCodeRecord {
            status: DeviceStatus::Pending,
            decided_at: None,
            ..
        })
    ));

    // An approval that cannot be stored is refused before anything changes.
    let d = device("dev-d", "DDDDDDDD", T0 + 600);
    s.create_device_code(&d).await.unwrap();
    for (bad, field) in [
        (
            DeviceApproval {
                subject: "s\0".to_owned(),
                ..approval("family-d")
            },
            "subject",
        ),
        (
            DeviceApproval {
                username: "u\0".to_owned(),
                ..approval("family-d")
            },
            "username",
        ),
        (approval("family\0"), "family_id"),
    ] {
        let err = s
            .decide_device_code("DDDDDDDD", Some(bad), T0 + 1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    assert_eq!(
        s.get_device_by_user_code("DDDDDDDD", T0 + 1).await.unwrap(),
        Some(device_record(&d))
    );
}

pub(crate) async fn devices_poll_state_machine(ctx: Ctx) {
    let s = &ctx.store;
    assert_eq!(
        s.poll_device_code("nope", T0).await.unwrap(),
        DevicePoll::NotFound
    );
    assert_eq!(
        s.poll_device_code("dev\0", T0).await.unwrap(),
        DevicePoll::NotFound
    );

    let new = device("dev-1", "BCDFGHJK", T0 + 600);
    s.create_device_code(&new).await.unwrap();
    let pending = |last_polled_at, interval_secs| DeviceCodeRecord {
        last_polled_at: Some(last_polled_at),
        interval_secs,
        ..device_record(&new)
    };

    // The first poll is never too soon.
    assert_eq!(
        s.poll_device_code("dev-1", T0).await.unwrap(),
        DevicePoll::Pending(pending(T0, 5))
    );
    // Too soon: the interval grows by 5 s and the poll counts.
    assert_eq!(
        s.poll_device_code("dev-1", T0 + 4).await.unwrap(),
        DevicePoll::SlowDown(pending(T0 + 4, 10))
    );
    assert_eq!(
        s.poll_device_code("dev-1", T0 + 13).await.unwrap(),
        DevicePoll::SlowDown(pending(T0 + 13, 15))
    );
    // Exactly one (grown) interval later is fine, and the interval stays grown.
    assert_eq!(
        s.poll_device_code("dev-1", T0 + 28).await.unwrap(),
        DevicePoll::Pending(pending(T0 + 28, 15))
    );
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJK", T0 + 28)
            .await
            .unwrap(),
        Some(pending(T0 + 28, 15))
    );

    let approved = s
        .decide_device_code("BCDFGHJK", Some(approval("family-1")), T0 + 30)
        .await
        .unwrap()
        .unwrap();
    // Approved, but polled too soon: slow down first, no redemption.
    assert_eq!(
        s.poll_device_code("dev-1", T0 + 31).await.unwrap(),
        DevicePoll::SlowDown(DeviceCodeRecord {
            last_polled_at: Some(T0 + 31),
            interval_secs: 20,
            ..approved.clone()
        })
    );
    let redeemed = DeviceCodeRecord {
        status: DeviceStatus::Redeemed,
        last_polled_at: Some(T0 + 51),
        interval_secs: 20,
        ..approved.clone()
    };
    assert_eq!(
        s.poll_device_code("dev-1", T0 + 51).await.unwrap(),
        DevicePoll::Redeemed(redeemed.clone())
    );
    assert_eq!(redeemed.subject, "subject-alice");
    assert_eq!(redeemed.family_id, "family-1");
    assert_eq!(redeemed.auth_time, T0 - 30);
    assert_eq!(redeemed.decided_at, Some(T0 + 30));
    // Every later poll, soon, late or after expiry, is told it was redeemed, and nothing changes.
    for now in [T0 + 52, T0 + 100, T0 + 600, T0 + 10_000] {
        assert_eq!(
            s.poll_device_code("dev-1", now).await.unwrap(),
            DevicePoll::AlreadyRedeemed(redeemed.clone())
        );
    }
    assert_eq!(
        s.get_device_by_user_code("BCDFGHJK", T0 + 599)
            .await
            .unwrap(),
        Some(redeemed)
    );

    // Denied: each poll (at the interval) says so.
    let denied_new = device("dev-2", "MNPQRSTV", T0 + 600);
    s.create_device_code(&denied_new).await.unwrap();
    s.decide_device_code("MNPQRSTV", None, T0 + 1)
        .await
        .unwrap()
        .unwrap();
    for now in [T0 + 2, T0 + 7] {
        assert_eq!(
            s.poll_device_code("dev-2", now).await.unwrap(),
            DevicePoll::Denied(DeviceCodeRecord {
                status: DeviceStatus::Denied,
                decided_at: Some(T0 + 1),
                last_polled_at: Some(now),
                ..device_record(&denied_new)
            })
        );
    }

    // Expired (at expires_at): reported before the slow-down check, with nothing changed, even if approved.
    let late = device("dev-3", "WXZBCDFG", T0 + 60);
    s.create_device_code(&late).await.unwrap();
    s.poll_device_code("dev-3", T0 + 58).await.unwrap();
    let approved_late = s
        .decide_device_code("WXZBCDFG", Some(approval("family-3")), T0 + 59)
        .await
        .unwrap()
        .unwrap();
    for now in [T0 + 60, T0 + 61, T0 + 1000] {
        assert_eq!(
            s.poll_device_code("dev-3", now).await.unwrap(),
            DevicePoll::Expired(approved_late.clone())
        );
    }
    assert_eq!(approved_late.last_polled_at, Some(T0 + 58));
}

/// Several replicas polling one approved code at once: exactly one redeems it.
pub(crate) async fn devices_concurrent_polls_redeem_once(ctx: Ctx) {
    for round in 0..5 {
        let hash = format!("race-{round}");
        let user_code = format!("RACE{round:04}");
        ctx.store
            .create_device_code(&device(&hash, &user_code, T0 + 600))
            .await
            .unwrap();
        ctx.store
            .decide_device_code(&user_code, Some(approval("family-race")), T0 + 1)
            .await
            .unwrap()
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&ctx.store);
                let hash = hash.clone();
                tokio::spawn(async move { s.poll_device_code(&hash, T0 + 10).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        let redeemed: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                DevicePoll::Redeemed(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(redeemed.len(), 1, "{outcomes:?}");
        assert!(
            outcomes.iter().all(|o| matches!(
                o,
                DevicePoll::Redeemed(_) | DevicePoll::AlreadyRedeemed(_) | DevicePoll::SlowDown(_)
            )),
            "{outcomes:?}"
        );
        // Redeemed is checked before the interval, so no loser sees anything but the redemption.
        for o in &outcomes {
            if let DevicePoll::AlreadyRedeemed(r) = o {
                assert_eq!(r, &redeemed[0]);
            }
        }
        assert_eq!(redeemed[0].family_id, "family-race");
        assert_eq!(redeemed[0].status, DeviceStatus::Redeemed);
    }
}

/// Concurrent decisions of one code, and concurrent creations with one user code: one winner each.
pub(crate) async fn devices_concurrent_decide_and_create(ctx: Ctx) {
    for round in 0..3 {
        let user_code = format!("DECI{round:04}");
        ctx.store
            .create_device_code(&device(&format!("decide-{round}"), &user_code, T0 + 600))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = Arc::clone(&ctx.store);
                let user_code = user_code.clone();
                let decision = (i % 2 == 0).then(|| approval(&format!("family-{i}")));
                tokio::spawn(
                    async move { s.decide_device_code(&user_code, decision, T0 + 1).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(record) = task.await.unwrap().unwrap() {
                winners.push(record);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(
            ctx.store
                .get_device_by_user_code(&user_code, T0 + 2)
                .await
                .unwrap(),
            Some(winners.remove(0))
        );

        // An expired holder of the user code exists, so every creator also tries to delete it.
        let shared = format!("SHAR{round:04}");
        ctx.store
            .create_device_code(&device(&format!("old-{round}"), &shared, T0 + 5))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = Arc::clone(&ctx.store);
                let new = NewDeviceCode {
                    created_at: T0 + 5,
                    ..device(&format!("new-{round}-{i}"), &shared, T0 + 600)
                };
                tokio::spawn(async move { s.create_device_code(&new).await })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => created += 1,
                Err(StoreError::AlreadyExists {
                    entity: "user code",
                    key,
                }) => assert_eq!(key, shared),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(
            ctx.store
                .poll_device_code(&format!("old-{round}"), T0 + 5)
                .await
                .unwrap(),
            DevicePoll::NotFound
        );
    }
}

pub(crate) async fn devices_purge(ctx: Ctx) {
    let s = &ctx.store;
    s.create_device_code(&device("a", "AAAAAAAA", T0 + 10))
        .await
        .unwrap();
    s.create_device_code(&device("b", "BBBBBBBB", T0 + 20))
        .await
        .unwrap();
    s.create_device_code(&device("c", "CCCCCCCC", T0 + 30))
        .await
        .unwrap();
    s.decide_device_code("AAAAAAAA", Some(approval("f")), T0)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        s.poll_device_code("a", T0).await.unwrap(),
        DevicePoll::Redeemed(_)
    ));
    assert_eq!(s.purge_expired_device_codes(T0 + 10).await.unwrap(), 0);
    assert_eq!(s.purge_expired_device_codes(T0 + 11).await.unwrap(), 1);
    assert_eq!(
        s.poll_device_code("a", T0 + 11).await.unwrap(),
        DevicePoll::NotFound
    );
    assert!(matches!(
        s.poll_device_code("b", T0 + 11).await.unwrap(),
        DevicePoll::Pending(_)
    ));
    assert_eq!(s.purge_expired_device_codes(T0 + 21).await.unwrap(), 1);
    assert!(
        s.get_device_by_user_code("CCCCCCCC", T0 + 21)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.purge_expired_device_codes(i64::MAX).await.unwrap(), 1);
    assert_eq!(s.purge_expired_device_codes(i64::MAX).await.unwrap(), 0);
}
