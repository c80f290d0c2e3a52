//! The behavioural suite, written once and run against every backend.
//!
//! Each suite function gets a fresh, empty database. `tests::sqlite::*` use a temporary file;
//! `tests::postgres::*` create a database of their own on the server named by `FLYTEAUTH_TEST_POSTGRES_URL`.

pub(crate) mod harness;
mod suite;

/// Instantiates every suite function once per backend.
macro_rules! suite_per_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::tests::harness::with_sqlite(crate::tests::suite::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::tests::harness::with_postgres(crate::tests::suite::$name).await;
                }
            )*
        }
    };
}

suite_per_backend!(
    ping_and_backend,
    apps_roundtrip,
    apps_duplicate_is_already_exists,
    apps_concurrent_create_of_one_id,
    apps_missing,
    apps_list_keyset_pagination,
    apps_list_by_owner_and_organization,
    apps_list_by_pages_through_a_filter,
    apps_update,
    apps_delete,
    apps_nul_characters,
    revocations_are_idempotent,
    a_later_revocation_of_the_same_id_gets_a_new_sequence_number,
    revocations_active_and_purge,
    revocations_since_is_monotonic,
    revocations_concurrent_writers_are_never_skipped,
    audit_recent_newest_first,
    audit_detail_roundtrip,
    audit_scrubs_nul,
    audit_list_filters_by_kind_and_since,
    audit_prune_in_batches_keeps_newer_rows,
    audit_batch_is_one_ordered_write,
    reopen_keeps_data,
    revocations_kinds_are_separate,
    users_roundtrip,
    users_duplicates_are_already_exists,
    users_list_keyset_pagination,
    users_password_and_disable,
    users_login_throttle,
    users_nul_characters,
    users_federated_upsert_inserts_then_updates,
    users_federated_collides_with_local_username,
    users_federated_subject_owned_by_another_user,
    users_groups_roundtrip,
    users_local_accounts_are_local_without_groups,
    users_malformed_stored_columns_are_errors,
    codes_are_single_use,
    codes_concurrent_redeem_has_one_winner,
    codes_purge,
    refresh_rotation_chain,
    refresh_grace_then_reuse,
    refresh_concurrent_rotations_serialize,
    refresh_families_revoke_and_purge,
    sessions_lifecycle,
    sessions_per_user_and_purge,
    sessions_idp_id_token_roundtrip,
    devices_create_and_lookup,
    devices_decide,
    devices_poll_state_machine,
    devices_concurrent_polls_redeem_once,
    devices_concurrent_decide_and_create,
    devices_purge,
);

mod urls {
    use crate::{StoreError, connect};

    fn invalid(result: Result<std::sync::Arc<dyn crate::Store>, StoreError>) -> String {
        match result {
            Err(StoreError::InvalidUrl(msg)) => msg,
            other => panic!("expected InvalidUrl, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unknown_scheme_is_named_without_echoing_credentials() {
        let msg = invalid(connect("mysql://root:hunter2@localhost/db").await);
        assert!(msg.contains("mysql"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[tokio::test]
    async fn garbage_is_not_echoed() {
        for url in [
            "",
            "hunter2",
            "user:hunter2@host/db",
            "/var/lib/flyteauth.db",
        ] {
            let msg = invalid(connect(url).await);
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }

    #[tokio::test]
    async fn bad_postgres_url_does_not_echo_the_password() {
        let msg = invalid(connect("postgres://u:hunter2@127.0.0.1:notaport/db").await);
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[tokio::test]
    async fn unreachable_postgres_is_a_connect_error_without_the_password() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let started = std::time::Instant::now();
        let err = connect("postgres://u:hunter2@127.0.0.1:1/db")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Connect(_)), "{err:?}");
        // The real reason, at once, not a pool timeout after retrying for seconds.
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        assert!(err.to_string().contains("refused"), "{err}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[tokio::test]
    async fn unknown_sqlite_parameter_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?bogus=1", dir.path().join("x.db").display());
        invalid(connect(&url).await);
        assert!(!dir.path().join("x.db").exists());
    }
}
