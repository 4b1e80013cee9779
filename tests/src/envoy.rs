//! Real Envoy, from the project's own install, with the built filter.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::control_plane::ENVOY_CREDENTIAL;
use crate::http::{client, send, Answer};
use crate::layout::Layout;
use crate::ports::{start_with_free_ports, Port, PortTaken};
use crate::process::Process;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub grpc_port: u16,
    pub workers: u32,
    /// Replaces the filter's JSON configuration when set.
    pub filter_config: Option<String>,
    /// This Envoy's node id; `envoy-<admin port>` when unset.
    pub node_id: Option<String>,
    /// Lets header names with underscores through, as Envoys without the shipped bootstrap's
    /// `headers_with_underscores_action: REJECT_REQUEST` do (Istio's by default).
    pub allow_header_underscores: bool,
    /// Speaks delta ADS (`api_type: DELTA_GRPC`) instead of the bootstrap's state of the world.
    pub delta_xds: bool,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        Self {
            grpc_port: 0,
            workers: 2,
            filter_config: None,
            node_id: None,
            allow_header_underscores: false,
            delta_xds: false,
        }
    }
}

/// A running Envoy.
pub struct Envoy {
    pub listen_port: u16,
    pub admin_port: u16,
    process: Process,
    _config_dir: tempfile::TempDir,
    _reserved: [Port; 2],
}

impl Envoy {
    /// Envoy binds the port numbers of its bootstrap (it takes no sockets bound here): a start
    /// whose port was taken meanwhile is made again on others.
    pub fn start(layout: &Layout, options: EnvoyOptions) -> Self {
        start_with_free_ports("envoy", |ports| Self::start_on(layout, &options, ports))
    }

    fn start_on(
        layout: &Layout,
        options: &EnvoyOptions,
        [listen, admin]: [Port; 2],
    ) -> Result<Self, PortTaken> {
        let bootstrap = render(layout, options, listen.number(), admin.number());
        Self::run(layout, &bootstrap, options.workers, &[], [listen, admin])
    }

    /// Starts Envoy with `workers` workers and these environment variables on a bootstrap of
    /// the caller's, rendered by `bootstrap(listen_port, admin_port)`.
    pub fn start_with_bootstrap(
        layout: &Layout,
        workers: u32,
        environment: &[(String, String)],
        bootstrap: impl Fn(u16, u16) -> String,
    ) -> Self {
        start_with_free_ports("envoy", |[listen, admin]| {
            let rendered = bootstrap(listen.number(), admin.number());
            Self::run(layout, &rendered, workers, environment, [listen, admin])
        })
    }

    fn run(
        layout: &Layout,
        bootstrap: &str,
        workers: u32,
        environment: &[(String, String)],
        [listen, admin]: [Port; 2],
    ) -> Result<Self, PortTaken> {
        let (listen_port, admin_port) = (listen.number(), admin.number());
        let (config_dir, mut command) = command(layout, bootstrap, workers, admin_port, &[]);
        command.envs(environment.iter().map(|(name, value)| (name, value)));
        let mut process = Process::spawn("envoy", command);
        let ready_url = format!("http://127.0.0.1:{admin_port}/ready");
        process.wait_ready("ready", READY_TIMEOUT, |_| {
            client()
                .get(&ready_url)
                .send()
                .is_ok_and(|answer| answer.status().is_success())
        })?;
        Ok(Self {
            listen_port,
            admin_port,
            process,
            _config_dir: config_dir,
            _reserved: [listen, admin],
        })
    }

    /// An Envoy command that only checks the bootstrap and the filter's configuration
    /// (`--mode validate`) and exits, with the folder of its rendered bootstrap.
    pub fn validation_command(
        layout: &Layout,
        options: &EnvoyOptions,
    ) -> (tempfile::TempDir, Command) {
        // Validation binds nothing; reserved ports still give it a base id of its own.
        let [listen, admin] = [Port::reserve(), Port::reserve()];
        let bootstrap = render(layout, options, listen.number(), admin.number());
        command(
            layout,
            &bootstrap,
            options.workers,
            admin.number(),
            &["--mode", "validate"],
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listen_port)
    }

    /// A GET through Envoy with the given request headers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = client().get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request)
    }

    /// A GET through Envoy with the API key in `X-API-Key`.
    pub fn get_with_key(&self, path: &str, key: &str) -> Answer {
        self.get(path, &[("x-api-key", key)])
    }

    /// Sends `count` GETs of `/` with the API key; returns their statuses in order.
    pub fn statuses_with_key(&self, key: &str, count: usize) -> Vec<u16> {
        (0..count)
            .map(|_| self.get_with_key("/", key).status)
            .collect()
    }

    /// The value of a counter or gauge in Envoy's `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        let text = client()
            .get(format!(
                "http://127.0.0.1:{}/stats?filter=^{name}$",
                self.admin_port
            ))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .filter_map(|line| line.strip_prefix(&format!("{name}: ")))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits until the stat reaches `at_least`; panics after `limit`.
    pub fn wait_for_stat(&self, name: &str, at_least: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.stat(name) < at_least {
            assert!(
                Instant::now() < deadline,
                "{name} stayed below {at_least} for {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the stat reaches `value`, then asserts it went no further (nothing was
    /// counted twice); panics after `limit`.
    pub fn wait_for_stat_exactly(&self, name: &str, value: u64, limit: Duration) {
        self.wait_for_stat(name, value, limit);
        let seen = self.stat(name);
        assert_eq!(seen, value, "{name} is {seen}, not {value}");
    }

    /// Waits until the default pool's two backends reached Envoy over xDS.
    pub fn wait_for_default_pool(&self) {
        self.wait_for_stat(
            "cluster.tollgate_pool_default.membership_total",
            2,
            Duration::from_secs(10),
        );
    }

    /// Requests Envoy sent to the upstream pool so far.
    pub fn upstream_requests(&self) -> u64 {
        self.stat("cluster.tollgate_pool_default.upstream_rq_total")
    }

    /// Waits past the filter's 100 ms tick: what one worker already acts on (a revocation, an
    /// address's failures) other workers read from shared data on their next tick.
    pub fn wait_for_worker_ticks(&self) {
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Repeats a GET of `/` with the API key until `done` holds for its answer; returns how
    /// long that took. Panics after `limit`.
    pub fn until_with_key(
        &self,
        key: &str,
        limit: Duration,
        done: impl Fn(&Answer) -> bool,
    ) -> Duration {
        self.until(limit, || self.get_with_key("/", key), done)
    }

    /// Repeats `request` until `done` holds for its answer; returns how long that took.
    /// Panics after `limit`.
    pub fn until(
        &self,
        limit: Duration,
        mut request: impl FnMut() -> Answer,
        done: impl Fn(&Answer) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let answer = request();
            if done(&answer) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "still {} after {limit:?}: {}",
                answer.status,
                answer.text
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The shipped bootstrap, rendered as `options` say.
fn render(layout: &Layout, options: &EnvoyOptions, listen_port: u16, admin_port: u16) -> String {
    let template = std::fs::read_to_string(&layout.bootstrap_template).expect("bootstrap");
    let mut rendered = template
        .replace("${ENVOY_LISTEN_ADDRESS}", "127.0.0.1")
        .replace("${ENVOY_LISTEN_PORT}", &listen_port.to_string())
        .replace("${ENVOY_ADMIN_PORT}", &admin_port.to_string())
        .replace(
            "${ENVOY_FILTER_WASM}",
            &layout.filter_wasm.display().to_string(),
        )
        .replace("${ENVOY_CONTROL_PLANE_HOST}", "127.0.0.1")
        .replace(
            "${ENVOY_CONTROL_PLANE_PORT}",
            &options.grpc_port.to_string(),
        )
        .replace(
            "${ENVOY_NODE_ID}",
            &options
                .node_id
                .clone()
                .unwrap_or_else(|| format!("envoy-{admin_port}")),
        );
    if let Some(config) = &options.filter_config {
        let default = r#"'{"control_plane_cluster":"tollgate_control_plane","control_plane_credential":"${ENVOY_CONTROL_PLANE_CREDENTIAL}","callout_timeout_ms":1000}'"#;
        assert!(
            rendered.contains(default),
            "bootstrap filter configuration moved"
        );
        let config = config
            .strip_prefix('{')
            .expect("a filter configuration is a JSON object");
        rendered = rendered.replace(
            default,
            &format!(
                r#"'{{"control_plane_credential":"${{ENVOY_CONTROL_PLANE_CREDENTIAL}}",{config}'"#
            ),
        );
    }
    if options.allow_header_underscores {
        rendered = swapped(
            &rendered,
            "headers_with_underscores_action: REJECT_REQUEST",
            "headers_with_underscores_action: ALLOW",
        );
    }
    if options.delta_xds {
        rendered = swapped(&rendered, "api_type: GRPC", "api_type: DELTA_GRPC");
    }
    rendered.replace("${ENVOY_CONTROL_PLANE_CREDENTIAL}", ENVOY_CREDENTIAL)
}

/// An Envoy command for `bootstrap`, written into the returned folder; `extra_args` are
/// appended.
fn command(
    layout: &Layout,
    bootstrap: &str,
    workers: u32,
    admin_port: u16,
    extra_args: &[&str],
) -> (tempfile::TempDir, Command) {
    assert!(
        !bootstrap.contains("${"),
        "unrendered placeholder in the bootstrap"
    );
    let dir = tempfile::tempdir().expect("config folder");
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, bootstrap).expect("write bootstrap");
    let mut command = Command::new(&layout.envoy_bin);
    command
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", &workers.to_string()])
        .args(["--base-id", &admin_port.to_string()])
        .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
        .args(extra_args);
    (dir, command)
}

/// `bootstrap` with the setting `shipped` replaced by `wanted`; panics if the shipped bootstrap
/// no longer says `shipped`.
fn swapped(bootstrap: &str, shipped: &str, wanted: &str) -> String {
    assert!(
        bootstrap.contains(shipped),
        "the bootstrap no longer says {shipped}"
    );
    bootstrap.replace(shipped, wanted)
}
