//! The HTTP application in-process, on a real database (SQLite unless a test brings its own),
//! called through its router.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate::accounts::api_key::PlainApiKey;
use tollgate::accounts::bootstrap::AdminBootstrap;
use tollgate::api::app;
use tollgate::config::Config;
use tollgate::filter_service::FilterApi;
use tollgate::identity::envoy_credential::EnvoyCredential;
use tollgate::proto::v1::filter_service_server::FilterService;
use tollgate::proto::v1::{LookupKeyRequest, Principal};
use tollgate::routing::xds::XdsPublisher;
use tollgate::server::services;
use tower::ServiceExt;

use super::TestDatabase;

pub const ADMIN_KEY: &str = "legacy-admin-key-from-an-older-system";

/// The peer every request comes from unless a test names another, as the server's connection
/// info reports it.
pub const LOCAL_PEER: &str = "127.0.0.1:40000";

/// A whole HTTP answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

pub struct Api {
    router: Router,
    /// The gRPC service the filter calls, on the same store.
    pub filter: Arc<FilterApi>,
    /// ADS and what the gRPC port demands, for [`Api::filter_client`].
    pub(super) xds: Arc<XdsPublisher>,
    pub(super) envoy_credential: EnvoyCredential,
    _db: Arc<TestDatabase>,
    _data_dir: tempfile::TempDir,
}

impl Api {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(Arc::new(TestDatabase::sqlite().await), adjust).await
    }

    /// The application on `db`, which other applications (replicas, or this one before a
    /// restart) may use too.
    pub async fn start_on(db: Arc<TestDatabase>, adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            ..Config::default()
        };
        config.database.url = db.url.clone();
        config.bootstrap.admin_api_key = Some(ADMIN_KEY.to_string());
        config.grpc.credential = Some(super::grpc::ENVOY_CREDENTIAL.to_string());
        adjust(&mut config);
        let config = config.validate().expect("valid config");
        let store = Arc::new(db.open().await);
        let services = services(&config, store).await.expect("services");
        assert!(matches!(
            services.admin,
            AdminBootstrap::ImportedKey | AdminBootstrap::Unchanged
        ));
        Self {
            router: app(services.http),
            filter: Arc::new(services.filter),
            xds: services.xds,
            envoy_credential: services.envoy_credential,
            _db: db,
            _data_dir: data_dir,
        }
    }

    /// A request with the key, if any, in `X-API-Key`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let headers: Vec<(&str, &str)> = key.map(|key| ("x-api-key", key)).into_iter().collect();
        self.call_with_headers(method, path, &headers, body).await
    }

    /// A request with the access token of a session in `Authorization: Bearer`.
    pub async fn call_with_session(
        &self,
        method: &str,
        path: &str,
        access_token: &str,
    ) -> (StatusCode, Value) {
        let bearer = format!("Bearer {access_token}");
        self.call_with_headers(method, path, &[("authorization", &bearer)], None)
            .await
    }

    /// A request with exactly these headers (a name may come more than once).
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let answer = self
            .answer_from(LOCAL_PEER, method, path, headers, body)
            .await;
        (answer.status, answer.body)
    }

    /// A request with exactly these headers over a connection from `peer` (`10.0.0.7:5000`);
    /// the whole answer.
    pub async fn answer_from(
        &self,
        peer: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|body| ("application/json", body.to_string()));
        self.exchange(peer, method, path, headers, body).await
    }

    /// A request with the key in `X-API-Key` and `body` of `content_type`; the whole answer.
    pub async fn upload(&self, path: &str, key: &str, content_type: &str, body: String) -> Answer {
        let headers = [("x-api-key", key)];
        self.exchange(
            LOCAL_PEER,
            "POST",
            path,
            &headers,
            Some((content_type, body)),
        )
        .await
    }

    async fn exchange(
        &self,
        peer: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Answer {
        let peer: SocketAddr = peer.parse().expect("a peer address");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .extension(ConnectInfo(peer));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match body {
            Some((content_type, body)) => request
                .header("content-type", content_type)
                .body(Body::from(body)),
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
        let headers = response.headers().clone();
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
        Answer {
            status,
            headers,
            body: value,
        }
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_KEY), body).await
    }

    /// `POST /api/v1/auth/refresh` with `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": refresh_token })),
        )
        .await
    }

    pub async fn create_user(&self, username: &str) -> Value {
        self.create_user_with(json!({"username": username})).await
    }

    /// A new user from a full JSON body, created by the admin.
    pub async fn create_user_with(&self, body: Value) -> Value {
        let (status, user) = self.admin("POST", "/api/v1/users", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        user
    }
}

impl Api {
    /// A new user with a key issued by the admin; returns the user's id and the key.
    pub async fn user_with_key(&self, username: &str) -> (String, String) {
        let user = self.create_user(username).await;
        let id = user["id"].as_str().expect("id").to_string();
        let key = self.issue_key(&id).await;
        (id, key)
    }

    /// A new user with a password, logged in; returns the user's id and the access token.
    pub async fn logged_in_user(&self, username: &str) -> (String, String) {
        self.logged_in_user_with(json!({"username": username}))
            .await
    }

    /// A new user from a JSON body, given a password and logged in; returns the user's id and
    /// the access token.
    pub async fn logged_in_user_with(&self, mut body: Value) -> (String, String) {
        let password = "correct horse battery";
        body["password"] = json!(password);
        let user = self.create_user_with(body.clone()).await;
        let (status, tokens) = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": body["username"], "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let access_token = tokens["access_token"].as_str().expect("access token");
        (
            user["id"].as_str().expect("id").to_string(),
            access_token.to_string(),
        )
    }

    /// A new key of the user, issued by the admin; returns the key itself.
    pub async fn issue_key(&self, user_id: &str) -> String {
        let issued = self
            .issue_key_with(user_id, json!({"name": "issued"}))
            .await;
        issued["key"].as_str().expect("key").to_string()
    }

    /// A new key of the user from a full JSON body, issued by the admin; returns the answer.
    pub async fn issue_key_with(&self, user_id: &str, body: Value) -> Value {
        let (status, issued) = self
            .admin("POST", &format!("/api/v1/users/{user_id}/keys"), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        issued
    }
}

/// The filter service's `LookupKey` answer for a key: who it is, or `None` for a key the
/// filter must refuse as unknown.
pub async fn key_principal(filter: &FilterApi, key: &str) -> Option<Principal> {
    let digest = PlainApiKey::from_client(key.to_string()).digest();
    filter
        .lookup_key(tonic::Request::new(LookupKeyRequest {
            key_digest: digest.0.to_vec(),
        }))
        .await
        .expect("lookup")
        .into_inner()
        .principal
}

/// One quota of a `GET /api/v1/users/{id}/quota` answer, by name.
pub fn quota<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["quotas"]
        .as_array()
        .expect("quotas")
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {answer}"))
}

/// The `Retry-After` of an answer, in seconds.
pub fn retry_after_secs(answer: &Answer) -> u64 {
    answer
        .headers
        .get(axum::http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", answer.headers))
}

/// Password verifications so far in this process, from `/metrics`.
pub async fn password_verifications(api: &Api) -> u64 {
    let (status, metrics) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    metrics
        .as_str()
        .expect("metrics text")
        .lines()
        .find_map(|line| line.strip_prefix("tollgate_password_verifications_total "))
        .map_or(0, |value| value.trim().parse().expect("a count"))
}

/// The JSON of part `index` of a compact JWT (0: header, 1: claims).
pub fn token_part(token: &str, index: usize) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let part = token.split('.').nth(index).expect("segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

pub fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().expect("an error message")
}
