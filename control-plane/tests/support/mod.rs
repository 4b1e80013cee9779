//! Databases for tests: a SQLite file in a temporary folder, or a fresh Postgres database.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod accounts;
pub mod allowances;
pub mod app;
pub mod grpc;
pub mod mfa;
pub mod oidc;
pub mod records;
pub mod replica;
pub mod smtp;

use sqlx::{Connection, Executor, PgConnection};
use tollgate::changes::audit_chain::AuditChainKey;
use tollgate::store::SqlStore;

/// Keys the audit chain of every store the tests open.
pub const AUDIT_SECRET: &[u8] = b"the tests' server secret";

/// Runs each named `async fn(TestDatabase)` of the calling file as two tests, one on SQLite
/// and one on Postgres.
macro_rules! against_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::TestDatabase::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::TestDatabase::postgres().await).await;
                }
            )*
        }
    };
}
pub(crate) use against_both_databases;

/// Runs each named `async fn(Arc<TestDatabase>)` of the calling file as two tests on a
/// two-thread runtime, one on SQLite and one on Postgres, for tests that share one database
/// among replicas.
macro_rules! against_both_shared_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::TestDatabase::sqlite().await)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::TestDatabase::postgres().await)).await;
                }
            )*
        }
    };
}
pub(crate) use against_both_shared_databases;

/// Where tests may create and drop databases.
pub fn postgres_admin_url() -> String {
    std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A migrated store on its own database, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
        Self {
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    pub async fn postgres() -> Self {
        let admin_url = postgres_admin_url();
        let name = format!("tollgate_test_{}", rand_suffix());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {admin_url} is needed for this test: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            cleanup: Cleanup::Postgres { admin_url, name },
        }
    }

    /// Runs `statements` on the database directly, as another version of the control plane,
    /// or someone with access to the database, would.
    pub async fn run_raw(&self, statements: &[impl AsRef<str>]) {
        if self.url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect");
            for statement in statements {
                let statement = statement.as_ref();
                connection.execute(statement).await.expect(statement);
            }
        } else {
            let mut connection = PgConnection::connect(&self.url).await.expect("connect");
            for statement in statements {
                let statement = statement.as_ref();
                connection.execute(statement).await.expect(statement);
            }
        }
    }

    /// Opens (and migrates) a store on this database; may be called again to reopen.
    pub async fn open(&self) -> SqlStore {
        let store = SqlStore::connect(&self.url, 5, AuditChainKey::new(AUDIT_SECRET))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Dropping runs outside the test's runtime, so use a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                        let _ = admin
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// What became stale after `cursor`, in order.
pub async fn stale_since(
    feed: &dyn tollgate::store::ChangeFeed,
    cursor: u64,
) -> Vec<tollgate::changes::feed::Stale> {
    feed.changes_since(cursor, 100)
        .await
        .expect("changes")
        .into_iter()
        .map(|change| change.stale)
        .collect()
}

pub fn rand_suffix() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric
        .sample_string(&mut rand::rng(), 12)
        .to_ascii_lowercase()
}
