//! The HTTP application in-process, on a real SQLite database, called through its router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate::accounts::bootstrap::AdminBootstrap;
use tollgate::api::app;
use tollgate::config::Config;
use tollgate::filter_service::FilterApi;
use tollgate::server::services;
use tower::ServiceExt;

use super::TestDatabase;

pub const ADMIN_KEY: &str = "legacy-admin-key-from-an-older-system";

pub struct Api {
    router: Router,
    /// The gRPC service the filter calls, on the same store.
    pub filter: FilterApi,
    _db: TestDatabase,
    _data_dir: tempfile::TempDir,
}

impl Api {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let db = TestDatabase::sqlite().await;
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            ..Config::default()
        };
        config.database.url = db.url.clone();
        config.bootstrap.admin_api_key = Some(ADMIN_KEY.to_string());
        adjust(&mut config);
        let config = config.validate().expect("valid config");
        let store = Arc::new(db.open().await);
        let services = services(&config, store).await.expect("services");
        assert!(matches!(services.admin, AdminBootstrap::ImportedKey));
        Self {
            router: app(services.http),
            filter: services.filter,
            _db: db,
            _data_dir: data_dir,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_KEY), body).await
    }

    pub async fn create_user(&self, username: &str) -> Value {
        let (status, user) = self
            .admin("POST", "/api/v1/users", Some(json!({"username": username})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        user
    }
}

impl Api {
    /// A new key of the user, issued by the admin; returns the key itself.
    pub async fn issue_key(&self, user_id: &str) -> String {
        let (status, issued) = self
            .admin(
                "POST",
                &format!("/api/v1/users/{user_id}/keys"),
                Some(json!({"name": "issued"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        issued["key"].as_str().expect("key").to_string()
    }
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}
