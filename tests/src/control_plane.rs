//! The `tollgate` control plane as a child process.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{client, send, Answer};
use crate::layout::Layout;
use crate::ports::{restarted, start_with_free_ports, Port, PortTaken};
use crate::process::Process;

/// The admin key every test control plane imports at start.
pub const ADMIN_KEY: &str = "test-admin-key-imported-from-an-older-system";
/// What the tests' Envoys present on the control plane's gRPC port.
pub const ENVOY_CREDENTIAL: &str = "test-envoy-credential-of-this-deployment-0123";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a control plane.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    /// `None`: SQLite in the control plane's own temporary data folder.
    pub database_url: Option<String>,
    /// Extra `TOLLGATE_*` variables.
    pub env: Vec<(String, String)>,
}

impl ControlPlaneOptions {
    /// The embedded defaults with these extra `TOLLGATE_*` variables.
    pub fn with_env(pairs: &[(&str, &str)]) -> Self {
        Self {
            env: pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            ..Self::default()
        }
    }
}

/// A running control plane and what a test needs to reach it.
pub struct ControlPlane {
    pub http_port: u16,
    pub grpc_port: u16,
    pub data_dir: PathBuf,
    options: ControlPlaneOptions,
    layout: Layout,
    process: Option<Process>,
    _reserved: Vec<Port>,
    _data: tempfile::TempDir,
}

impl ControlPlane {
    pub fn start(layout: &Layout, options: ControlPlaneOptions) -> Self {
        let data = tempfile::tempdir().expect("data folder");
        Self {
            http_port: 0,
            grpc_port: 0,
            data_dir: data.path().to_path_buf(),
            options,
            layout: layout.clone(),
            process: None,
            _reserved: Vec::new(),
            _data: data,
        }
        .serve_on_free_ports()
    }

    /// A second control plane on `first`'s data (same database, secret and signing keys),
    /// on ports of its own.
    pub fn start_sharing(first: &ControlPlane, options: ControlPlaneOptions) -> Self {
        let unused = tempfile::tempdir().expect("data folder");
        let mut env = first.options.env.clone();
        env.extend(options.env);
        Self {
            http_port: 0,
            grpc_port: 0,
            data_dir: first.data_dir.clone(),
            options: ControlPlaneOptions {
                database_url: first.options.database_url.clone(),
                env,
            },
            layout: first.layout.clone(),
            process: None,
            _reserved: Vec::new(),
            _data: unused,
        }
        .serve_on_free_ports()
    }

    /// The control plane binds the addresses in its configuration (it cannot take sockets
    /// bound here): a start whose port was taken meanwhile is made again on others.
    fn serve_on_free_ports(mut self) -> Self {
        start_with_free_ports("tollgate", |[http, grpc]| {
            self.http_port = http.number();
            self.grpc_port = grpc.number();
            self._reserved = vec![http, grpc];
            self.serve()
        });
        self
    }

    /// A command for the `tollgate` binary with this instance's configuration.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.layout.tollgate_bin);
        command.args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("TOLLGATE_") {
                command.env_remove(name);
            }
        }
        command
            .env("TOLLGATE_DATA_DIR", &self.data_dir)
            .env(
                "TOLLGATE_HTTP__LISTEN",
                format!("127.0.0.1:{}", self.http_port),
            )
            .env(
                "TOLLGATE_GRPC__LISTEN",
                format!("127.0.0.1:{}", self.grpc_port),
            )
            .env("TOLLGATE_BOOTSTRAP__ADMIN_API_KEY", ADMIN_KEY)
            .env("TOLLGATE_GRPC__CREDENTIAL", ENVOY_CREDENTIAL)
            .env("TOLLGATE_LOG", "info")
            // Tests send many refused requests from one address: only the tests of address
            // limits set their own.
            .env("TOLLGATE_LIMITS__IP__REQUESTS_PER_MINUTE", "1000000")
            .env("TOLLGATE_LIMITS__IP__BURST", "1000000");
        if let Some(url) = &self.options.database_url {
            command.env("TOLLGATE_DATABASE__URL", url);
        }
        for (name, value) in &self.options.env {
            command.env(name, value);
        }
        command
    }

    /// Stops the process (SIGTERM); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts the process again on the same ports (Envoy knows the gRPC one) and data, and
    /// waits until ready. The reservations kept the ports from every other start meanwhile.
    pub fn resume(&mut self) {
        restarted("tollgate", self.serve());
    }

    fn serve(&mut self) -> Result<(), PortTaken> {
        let mut process = Process::spawn("tollgate", self.command(&["serve"]));
        process.wait_ready("listening", READY_TIMEOUT, |log| {
            log.contains("tollgate listening")
        })?;
        self.process = Some(process);
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.get("/api/v1/ready", None).status != 200 {
            assert!(Instant::now() < deadline, "control plane not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// Freezes or thaws the process (SIGSTOP / SIGCONT).
    pub fn freeze(&self, frozen: bool) {
        if let Some(process) = &self.process {
            process.freeze(frozen);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Answer {
        let mut request = client().get(self.url(path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        send(request)
    }

    /// `POST` with a JSON body and `bearer` (`Bearer <token>`) as `Authorization`.
    pub fn post_with_token(&self, path: &str, bearer: &str, body: Value) -> Answer {
        send(
            client()
                .post(self.url(path))
                .header("authorization", bearer)
                .json(&body),
        )
    }

    /// An admin request with a JSON body.
    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client()
            .request(method, self.url(path))
            .header("x-api-key", ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request)
    }

    /// Creates a user through the admin API; returns its id.
    pub fn create_user(&self, username: &str) -> String {
        self.create_user_with(json!({"username": username}))
    }

    /// Creates a user from a full JSON body; returns its id.
    pub fn create_user_with(&self, body: Value) -> String {
        let answer = self.admin("POST", "/api/v1/users", Some(body));
        assert_eq!(answer.status, 201, "create user: {}", answer.text);
        answer.body["id"].as_str().expect("user id").to_string()
    }

    /// Creates a user and issues it a key; returns (user id, key).
    pub fn create_user_and_key(&self, username: &str) -> (String, String) {
        self.create_user_and_key_with(json!({"username": username}))
    }

    /// Creates a user from a full JSON body and issues it a key; returns (user id, key).
    pub fn create_user_and_key_with(&self, body: Value) -> (String, String) {
        let user_id = self.create_user_with(body);
        let (_, key) = self.create_key(&user_id);
        (user_id, key)
    }

    /// `PATCH /api/v1/users/{user_id}` with `body`.
    pub fn patch_user(&self, user_id: &str, body: Value) -> Answer {
        self.admin("PATCH", &format!("/api/v1/users/{user_id}"), Some(body))
    }

    /// `DELETE /api/v1/users/{user_id}/keys/{key_id}`.
    pub fn revoke_key(&self, user_id: &str, key_id: &str) -> Answer {
        self.admin(
            "DELETE",
            &format!("/api/v1/users/{user_id}/keys/{key_id}"),
            None,
        )
    }

    /// Creates a group from a full JSON body; returns its id.
    pub fn create_group(&self, body: Value) -> String {
        let answer = self.admin("POST", "/api/v1/groups", Some(body));
        assert_eq!(answer.status, 201, "create group: {}", answer.text);
        answer.body["id"].as_str().expect("group id").to_string()
    }

    /// Makes the user a member of the group.
    pub fn add_group_member(&self, group_id: &str, user_id: &str) {
        let answer = self.admin(
            "POST",
            &format!("/api/v1/groups/{group_id}/members"),
            Some(json!({"user_id": user_id})),
        );
        assert_eq!(answer.status, 201, "add member: {}", answer.text);
    }

    /// Issues a key with a full JSON body; returns (key id, key).
    pub fn create_key_with(&self, user_id: &str, body: Value) -> (String, String) {
        let answer = self.admin("POST", &format!("/api/v1/users/{user_id}/keys"), Some(body));
        assert_eq!(answer.status, 201, "create key: {}", answer.text);
        (
            answer.body["id"].as_str().expect("key id").to_string(),
            answer.body["key"].as_str().expect("key").to_string(),
        )
    }

    /// Registers `127.0.0.1:port` as a backend of `pool`; returns its id.
    pub fn add_backend(&self, port: u16, weight: u32, pool: &str) -> String {
        let answer = self.admin(
            "POST",
            "/api/v1/backends",
            Some(
                json!({"url": format!("http://127.0.0.1:{port}"), "weight": weight, "pool": pool}),
            ),
        );
        assert_eq!(answer.status, 201, "add backend: {}", answer.text);
        answer.body["id"].as_str().expect("backend id").to_string()
    }

    /// `POST /api/v1/auth/login` with a password and a login method (`local`, `ldap`); the
    /// whole answer.
    pub fn login_answer_with(&self, username: &str, password: &str, method: &str) -> Answer {
        send(
            client()
                .post(self.url("/api/v1/auth/login"))
                .json(&json!({"username": username, "password": password, "method": method})),
        )
    }

    /// `POST /api/v1/auth/login` with a local password; the whole answer.
    pub fn login_answer(&self, username: &str, password: &str) -> Answer {
        self.login_answer_with(username, password, "local")
    }

    /// Logs in with a password; returns the access token.
    pub fn login(&self, username: &str, password: &str) -> String {
        self.login_with(username, password, "local")
    }

    /// Logs in with a login method (`local`, `ldap`); returns the access token.
    pub fn login_with(&self, username: &str, password: &str, method: &str) -> String {
        let answer = self.login_answer_with(username, password, method);
        assert_eq!(answer.status, 200, "login: {}", answer.text);
        answer.body["access_token"]
            .as_str()
            .expect("access token")
            .to_string()
    }

    /// Issues a key for the user; returns (key id, key).
    pub fn create_key(&self, user_id: &str) -> (String, String) {
        self.create_key_with(user_id, json!({"name": "test"}))
    }

    /// Waits until the control plane holds change-feed watches from `envoys` Envoys, then
    /// asserts over a second that it holds exactly one from each.
    pub fn assert_one_watch_per_envoy(&self, envoys: usize) {
        let expected = (envoys as f64, envoys as f64);
        let open = || {
            (
                self.metric("tollgate_change_watches", ""),
                self.metric("tollgate_change_watching_envoys", ""),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while open() != expected {
            assert!(
                Instant::now() < deadline,
                "watches and watching Envoys: {:?}, not {expected:?}",
                open()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for _ in 0..10 {
            assert_eq!(open(), expected, "watches and watching Envoys");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A counter from `/metrics`, summed over the series whose labels contain `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.get("/metrics", None).text;
        text.lines()
            .filter(|line| line.starts_with(name) && line.contains(labels))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A Postgres database of its own for one test, dropped afterwards.
pub struct PostgresDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

/// Creates an empty database on the test Postgres (`TOLLGATE_TEST_POSTGRES_URL`,
/// default `postgres://postgres@127.0.0.1:5432/postgres`) with `psql`.
pub fn fresh_postgres_database() -> PostgresDatabase {
    let admin_url = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = unique_database_name();
    psql(&admin_url, &format!("CREATE DATABASE {name}"));
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    PostgresDatabase {
        url: format!("{base}/{name}"),
        admin_url: admin_url.clone(),
        name,
    }
}

/// A name no other database of this run, or of a run before or beside it, has.
fn unique_database_name() -> String {
    static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "tollgate_e2e_{}_{}_{}",
        std::process::id(),
        since_epoch.as_millis(),
        CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin_url,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn psql(url: &str, sql: &str) {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql is needed for Postgres tests (make test installs it)");
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
