//! Fresh databases for tests.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor};

use crate::{Backend, Store, connect};

/// Environment variable naming the PostgreSQL server (a superuser URL) the tests create databases on.
pub(crate) const POSTGRES_URL_VAR: &str = "FLYTEAUTH_TEST_POSTGRES_URL";
/// Set to `1` to skip the PostgreSQL tests explicitly (they fail when the URL is missing otherwise).
pub(crate) const SKIP_POSTGRES_VAR: &str = "FLYTEAUTH_SKIP_POSTGRES";

/// What a suite function gets: a store on an empty database, and the URL to open it again.
pub(crate) struct Ctx {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) url: String,
    pub(crate) backend: Backend,
}

impl Ctx {
    /// A second, independent store on the same database (as another process or replica would open it).
    pub(crate) async fn reopen(&self) -> Arc<dyn Store> {
        connect(&self.url).await.expect("reopen the test database")
    }
}

/// Runs `test` against a store on a new SQLite file in a temporary directory.
pub(crate) async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    // A missing parent directory on purpose: connect must create it.
    let path = dir.path().join("data").join("flyteauth.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = connect(&url).await.expect("open the SQLite test database");
    test(Ctx {
        store,
        url,
        backend: Backend::Sqlite,
    })
    .await;
}

/// Runs `test` against a store on a new PostgreSQL database, dropped afterwards (also when the test panics).
pub(crate) async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_postgres_database(|url| async move {
        let store = connect(&url)
            .await
            .expect("open the PostgreSQL test database");
        test(Ctx {
            store,
            url,
            backend: Backend::Postgres,
        })
        .await;
    })
    .await;
}

/// Runs `test` with the URL of a new, empty PostgreSQL database, dropped afterwards (also when the test panics).
pub(crate) async fn with_postgres_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(server_url) = postgres_server_url() else {
        return;
    };
    let name = unique_database_name();
    let mut admin = sqlx::postgres::PgConnection::connect(&server_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
    create_database(&mut admin, &name).await;
    let url = database_url(&server_url, &name);

    // A panic inside the spawned task comes back as a JoinError, so the database is dropped either way.
    let outcome = tokio::spawn(test(url)).await;

    // FORCE ends the pool connections the dropped store may still be closing.
    let dropped = admin
        .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
        .await;
    match outcome {
        Ok(()) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("test task failed: {e}"),
    }
    dropped.unwrap_or_else(|e| panic!("dropping test database {name}: {e}"));
}

/// The server URL, or `None` after announcing loudly that PostgreSQL tests are skipped on request.
fn postgres_server_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var(SKIP_POSTGRES_VAR).as_deref() == Ok("1") => {
            static ANNOUNCE: Once = Once::new();
            ANNOUNCE.call_once(|| {
                // Straight to the process's stderr: libtest captures eprintln! output of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n********************************************************************\n\
                     SKIPPED postgres store tests ({SKIP_POSTGRES_VAR}=1): tests::postgres::* and\n\
                     postgres::tests::* report `ok` but did NOT run against PostgreSQL.\n\
                     ********************************************************************"
                );
            });
            None
        }
        _ => panic!(
            "{POSTGRES_URL_VAR} is not set, so the PostgreSQL store tests cannot run.\n\
             Start a throwaway server and point the tests at it:\n\
             \n    scripts/pg-throwaway start /tmp/flyteauth-pg 55432\n\
             \x20   export {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:55432/postgres\n\
             \x20   cargo test -p flyteauth-store\n\
             \x20   scripts/pg-throwaway stop /tmp/flyteauth-pg\n\
             \nor set {SKIP_POSTGRES_VAR}=1 to skip them deliberately."
        ),
    }
}

fn unique_database_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "flyteauth_test_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates the database with a linguistic (ICU, en-US) default collation when the server supports it. Production
/// databases usually have one, and it orders "B" after "a": exactly what the apps table's `COLLATE "C"` has to
/// override for keyset pagination to match SQLite.
async fn create_database(admin: &mut sqlx::postgres::PgConnection, name: &str) {
    let icu = format!(
        r#"CREATE DATABASE "{name}" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"#
    );
    if admin.execute(icu.as_str()).await.is_ok() {
        return;
    }
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
}

fn database_url(server_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(server_url)
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is not a URL: {e}"));
    url.set_path(name);
    url.into()
}
