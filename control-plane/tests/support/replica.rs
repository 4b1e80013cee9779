//! The `tollgate` binary as a separate process (a replica of the control plane), and upstream
//! backends that count the health checks they receive and from which replica.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::app::ADMIN_KEY;
use super::grpc::ENVOY_CREDENTIAL;

/// What every replica of a test deployment hashes keys and seals secrets with.
const KEY_HASH_SECRET: &str = "the-key-hash-secret-every-test-replica-shares";

/// One `tollgate serve` process; killed (SIGKILL) when dropped, its log printed if the test
/// failed.
pub struct Replica {
    child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    log: tempfile::NamedTempFile,
    _data_dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Replica {
    /// Starts a replica on `database_url` with `settings` (`TOLLGATE_` variables without the
    /// prefix) and waits until it is ready.
    pub async fn start(database_url: &str, settings: &[(&str, &str)]) -> Self {
        Self::start_with_file(database_url, None, settings).await
    }

    /// Like [`Self::start`], reading the configuration file `file` too, when given.
    pub async fn start_with_file(
        database_url: &str,
        file: Option<&std::path::Path>,
        settings: &[(&str, &str)],
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let log = tempfile::NamedTempFile::new().expect("log file");
        let (http, grpc) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        if let Some(file) = file {
            command.arg("--config").arg(file);
        }
        command
            .arg("serve")
            .current_dir(data_dir.path())
            .env("TOLLGATE_DATA_DIR", data_dir.path())
            .env("TOLLGATE_DATABASE__URL", database_url)
            .env("TOLLGATE_HTTP__LISTEN", http.to_string())
            .env("TOLLGATE_GRPC__LISTEN", grpc.to_string())
            .env("TOLLGATE_GRPC__CREDENTIAL", ENVOY_CREDENTIAL)
            .env("TOLLGATE_BOOTSTRAP__ADMIN_API_KEY", ADMIN_KEY)
            .env("TOLLGATE_SECURITY__KEY_HASH_SECRET", KEY_HASH_SECRET)
            .env("TOLLGATE_LOG", "info")
            .stdout(Stdio::from(log.reopen().expect("log")))
            .stderr(Stdio::from(log.reopen().expect("log")));
        for (name, value) in settings {
            command.env(format!("TOLLGATE_{name}"), value);
        }
        let mut replica = Self {
            child: command.spawn().expect("start tollgate"),
            http,
            grpc,
            log,
            _data_dir: data_dir,
            client: reqwest::Client::new(),
        };
        replica.wait_until_ready().await;
        replica
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("the replica stopped ({exit}):\n{}", self.log());
            }
            let ready = self
                .client
                .get(format!("http://{}/api/v1/ready", self.http))
                .send()
                .await
                .is_ok_and(|answer| answer.status().is_success());
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the replica did not become ready:\n{}", self.log());
    }

    /// An admin API call with the admin's key.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.http))
            .header("x-api-key", ADMIN_KEY);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let answer = request.send().await.expect("answer");
        let status = answer.status();
        let bytes = answer.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The value of an unlabelled counter or gauge on `/metrics`; 0 while it has none.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter_map(|line| line.strip_prefix(name))
            .filter_map(|rest| rest.strip_prefix(' '))
            .find_map(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends the process SIGHUP.
    pub fn hang_up(&self) {
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Kills the process at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- replica on {} ---\n{}", self.http, self.log());
        }
    }
}

fn free_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("address")
}

/// One health check as a backend received it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub backend: u32,
    /// Names the replica that checked.
    pub user_agent: String,
    pub at: Instant,
}

#[derive(Default)]
struct Upstream {
    hits: Vec<Hit>,
    failing: std::collections::HashSet<u32>,
}

/// Upstream backends on one port: backend `n` answers its health check on `/b/{n}`, 200
/// unless it is made to fail.
#[derive(Clone)]
pub struct Upstreams {
    pub address: SocketAddr,
    state: Arc<Mutex<Upstream>>,
}

impl Upstreams {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Upstream::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let address = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/b/{n}", get(check))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, state }
    }

    /// The URL and health-check path of backend `n`, as the admin API takes them.
    pub fn backend(&self, n: u32) -> Value {
        serde_json::json!({
            "url": format!("http://{}", self.address),
            "health_check_path": format!("/b/{n}"),
        })
    }

    pub fn set_failing(&self, n: u32, failing: bool) {
        let mut state = self.state.lock().expect("upstream state");
        if failing {
            state.failing.insert(n);
        } else {
            state.failing.remove(&n);
        }
    }

    /// Every check received so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.lock().expect("upstream state").hits.clone()
    }

    /// Checks received since `since`, per backend.
    pub fn hits_since(&self, since: Instant) -> HashMap<u32, Vec<Hit>> {
        let mut per_backend: HashMap<u32, Vec<Hit>> = HashMap::new();
        for hit in self.hits().into_iter().filter(|hit| hit.at >= since) {
            per_backend.entry(hit.backend).or_default().push(hit);
        }
        per_backend
    }
}

async fn check(
    State(state): State<Arc<Mutex<Upstream>>>,
    Path(n): Path<u32>,
    headers: HeaderMap,
) -> StatusCode {
    let user_agent = headers
        .get("user-agent")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut state = state.lock().expect("upstream state");
    state.hits.push(Hit {
        backend: n,
        user_agent,
        at: Instant::now(),
    });
    if state.failing.contains(&n) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}
