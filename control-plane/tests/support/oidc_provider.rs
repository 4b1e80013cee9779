//! A real OpenID Connect provider for tests: `tests/fixtures/oidc/provider.mjs` (the npm
//! package `oidc-provider`, installed by `scripts/setup.sh`) on a free loopback port, with the
//! accounts a test defines, and a browser that logs in there.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

pub const CLIENT_ID: &str = "tollgate";
pub const CLIENT_SECRET: &str = "test-client-secret";
/// Where the control plane says it is; the browser stops before following a redirect there.
pub const PUBLIC_URL: &str = "http://127.0.0.1:9";

pub struct TestProvider {
    child: Option<Child>,
    pub port: u16,
    pub tenant: String,
    settings: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestProvider {
    /// A provider whose issuer is `http://127.0.0.1:PORT/{tenant}/v2.0`, for the control
    /// plane's provider `name`, with `accounts` (`{"id": {claims}}`).
    pub async fn start(tenant: &str, name: &str, accounts: Value) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let modules = root.join(".tools/oidc-provider/node_modules");
        assert!(
            modules.join("oidc-provider/package.json").exists(),
            "oidc-provider is not installed in {}: run scripts/setup.sh",
            modules.display()
        );
        let port = free_port();
        let dir = tempfile::tempdir().expect("temporary folder");
        let settings = dir.path().join("provider.json");
        let mut provider = Self {
            child: None,
            port,
            tenant: tenant.to_string(),
            settings,
            _dir: dir,
        };
        let redirect_uri = format!("{PUBLIC_URL}/api/v1/auth/oidc/{name}/callback");
        provider.write_settings(&redirect_uri, accounts);
        let child = Command::new("node")
            .arg(root.join("tests/fixtures/oidc/provider.mjs"))
            .arg(&modules)
            .arg(&provider.settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs (scripts/setup.sh installs it)");
        provider.child = Some(child);
        provider.wait_until_up().await;
        provider
    }

    /// The authority an `entra` provider is configured with.
    pub fn authority(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the accounts (their claims show in the next login).
    pub fn set_accounts(&self, accounts: Value) {
        let mut settings: Value =
            serde_json::from_slice(&std::fs::read(&self.settings).expect("settings"))
                .expect("settings JSON");
        settings["accounts"] = accounts;
        std::fs::write(&self.settings, settings.to_string()).expect("write settings");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn write_settings(&self, redirect_uri: &str, accounts: Value) {
        let settings = json!({
            "port": self.port,
            "tenant": self.tenant,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": redirect_uri,
            "accounts": accounts,
        });
        std::fs::write(&self.settings, settings.to_string()).expect("write settings");
    }

    async fn wait_until_up(&self) {
        let discovery = format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            self.authority(),
            self.tenant
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(answer) = reqwest::get(&discovery).await {
                if answer.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the OIDC test provider did not start on port {}", self.port);
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Logs in as `account` at the provider, starting from `authorization_url` (where the control
/// plane sent the browser), and answers where the provider sends the browser back: the
/// callback's path and query.
pub async fn log_in_at_provider(authorization_url: &str, account: &str) -> String {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::custom(|attempt| {
            if attempt.url().path().starts_with("/api/v1/auth/oidc/") {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("browser");
    let login_page = browser
        .get(authorization_url)
        .send()
        .await
        .expect("the provider answers");
    assert!(
        login_page.url().path().starts_with("/interaction/"),
        "the provider asks who logs in: {}",
        login_page.url()
    );
    let answer = browser
        .post(login_page.url().clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("login={account}"))
        .send()
        .await
        .expect("the provider takes the login");
    let back = answer
        .headers()
        .get(LOCATION)
        .and_then(|location| location.to_str().ok())
        .unwrap_or_else(|| panic!("the provider sends the browser back: {}", answer.status()));
    let back = reqwest::Url::parse(back).expect("a callback URL");
    format!("{}?{}", back.path(), back.query().unwrap_or_default())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
