//! What the control plane writes to disk is readable by its own user only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tollgate::config::Config;
use tollgate::server::{open_store, services};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_data_dir_database_and_secret_are_private() {
    let parent = tempfile::tempdir().expect("temporary folder");
    let data_dir = parent.path().join("fresh").join("tollgate-data");
    let config = Config {
        data_dir: data_dir.clone(),
        ..Config::default()
    }
    .validate()
    .expect("valid config");

    let store = open_store(&config).await.expect("store");
    services(&config, Arc::new(store)).await.expect("services");

    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("tollgate.db")), 0o600);
    assert_eq!(mode(&data_dir.join("key-hash.secret")), 0o600);
    for journal in ["tollgate.db-wal", "tollgate.db-shm", "tollgate.db-journal"] {
        let path = data_dir.join(journal);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{journal}");
        }
    }
}
