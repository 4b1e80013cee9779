//! A real OpenID Connect provider for tests: `tests/fixtures/oidc/provider.mjs` (the npm
//! package `oidc-provider`, installed by `scripts/setup.sh`) on a reserved loopback port, with
//! the accounts a test defines, and a browser that logs in there.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

use crate::layout::Layout;
use crate::ports::Port;
use crate::process::Process;

pub const CLIENT_ID: &str = "tollgate";
pub const CLIENT_SECRET: &str = "test-client-secret";
/// Where the control plane says it is (`auth.oidc.public_url`): the browser stops before a
/// redirect there, and the test makes the callback itself.
pub const PUBLIC_URL: &str = "http://127.0.0.1:9";
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestProvider {
    pub tenant: String,
    process: Option<Process>,
    port: Port,
    settings: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestProvider {
    /// A provider whose issuer is `http://127.0.0.1:PORT/{tenant}/v2.0`, for the control
    /// plane's provider `name`, with `accounts` (`{"id": {claims}}`).
    pub fn start(tenant: &str, name: &str, accounts: Value) -> Self {
        let root = Layout::root();
        let modules = root.join(".tools/oidc-provider/node_modules");
        assert!(
            modules.join("oidc-provider/package.json").exists(),
            "oidc-provider is not installed in {}: run scripts/setup.sh",
            modules.display()
        );
        let dir = tempfile::tempdir().expect("temporary folder");
        let settings = dir.path().join("provider.json");
        let port = Port::reserve();
        let contents = json!({
            "port": port.number(),
            "tenant": tenant,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": format!("{PUBLIC_URL}/api/v1/auth/oidc/{name}/callback"),
            "accounts": accounts,
        });
        std::fs::write(&settings, contents.to_string()).expect("write settings");
        let mut provider = Self {
            tenant: tenant.to_string(),
            process: None,
            port,
            settings,
            _dir: dir,
        };
        provider.resume();
        provider
    }

    /// Starts the stopped provider again on its port, with its accounts and a new signing key.
    pub fn resume(&mut self) {
        let root = Layout::root();
        let mut command = Command::new("node");
        command
            .arg(root.join("tests/fixtures/oidc/provider.mjs"))
            .arg(root.join(".tools/oidc-provider/node_modules"))
            .arg(&self.settings);
        self.process = Some(Process::spawn("oidc-provider", command));
        self.wait_until_listening();
    }

    /// The authority an `entra` provider is configured with.
    pub fn authority(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.number())
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
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port.number())).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = self.process.as_ref().map(Process::log).unwrap_or_default();
        panic!("the OIDC test provider did not start:\n{log}");
    }
}

/// Logs in as `account` at the provider, starting from `authorization_url` (where the control
/// plane sent the browser), and answers where the provider sends the browser back: the
/// callback's path and query. Blocking.
pub fn log_in_at_provider(authorization_url: &str, account: &str) -> String {
    let browser = Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
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
        .expect("the provider takes the login");
    let back = answer
        .headers()
        .get(LOCATION)
        .and_then(|location| location.to_str().ok())
        .unwrap_or_else(|| panic!("the provider sends the browser back: {}", answer.status()));
    let back = reqwest::Url::parse(back).expect("a callback URL");
    format!("{}?{}", back.path(), back.query().unwrap_or_default())
}
