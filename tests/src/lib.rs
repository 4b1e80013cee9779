//! End-to-end test harness for Tollgate: starts the real processes (control plane,
//! Envoy with the built filter, echo upstreams) on loopback ports reserved for them, waits until each
//! is ready, prints their logs when a test fails, and kills them when dropped.

mod envoy;
mod istio;
mod layout;
mod ports;
mod process;
mod redis;

pub mod control_plane;
pub mod http;
pub mod latency;
pub mod ldap;
pub mod oidc_provider;
pub mod prometheus;

pub use control_plane::{ControlPlane, ControlPlaneOptions};
pub use envoy::{Envoy, EnvoyOptions};
pub use istio::{manifest_documents, IstioGateway, WasmPluginFilter, GATEWAY_WORKERS};
pub use layout::Layout;
pub use ports::Port;
pub use process::Process;
pub use redis::RedisServer;

use std::net::TcpListener;
use std::os::fd::AsRawFd;

use ports::{restarted, start_with_free_ports, PortTaken};

/// An upstream that echoes each request as JSON (`tollgate-echo`).
pub struct Echo {
    pub port: u16,
    name: String,
    echo_bin: std::path::PathBuf,
    /// Certificate and key when it speaks HTTPS.
    tls: Option<[std::path::PathBuf; 2]>,
    process: Option<Process>,
    _reserved: Port,
}

impl Echo {
    pub fn start(layout: &Layout, name: &str) -> Self {
        Self::start_serving(layout, name, None)
    }

    /// An echo that speaks HTTPS with the test certificate for `localhost` and `127.0.0.1`,
    /// signed by the test CA (`tests/fixtures/upstream-tls`).
    pub fn start_https(layout: &Layout, name: &str) -> Self {
        let fixtures = layout.root.join("tests/fixtures/upstream-tls");
        let tls = [
            fixtures.join("localhost.pem"),
            fixtures.join("localhost.key"),
        ];
        Self::start_serving(layout, name, Some(tls))
    }

    fn start_serving(layout: &Layout, name: &str, tls: Option<[std::path::PathBuf; 2]>) -> Self {
        start_with_free_ports(name, |[port]| {
            let mut echo = Self {
                port: port.number(),
                name: name.to_string(),
                echo_bin: layout.echo_bin.clone(),
                tls: tls.clone(),
                process: None,
                _reserved: port,
            };
            echo.listen()?;
            Ok(echo)
        })
    }

    /// Stops answering (connections are refused).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Answers again, on the same port (Envoy knows that one). Its reservation kept the port
    /// from every other start in the meantime.
    pub fn resume(&mut self) {
        let restart = self.listen();
        restarted(&self.name, restart);
    }

    /// Binds the port here and hands the listening socket to a new echo process, so the port
    /// is never free between the two.
    fn listen(&mut self) -> Result<(), PortTaken> {
        let address = format!("127.0.0.1:{}", self.port);
        let listener = match TcpListener::bind(&address) {
            Ok(listener) => listener,
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(PortTaken {
                    line: format!("{address}: {err}"),
                })
            }
            Err(err) => panic!("{}: cannot listen on {address}: {err}", self.name),
        };
        let mut command = std::process::Command::new(&self.echo_bin);
        command.args([
            "--listen-fd",
            &listener.as_raw_fd().to_string(),
            "--name",
            &self.name,
        ]);
        if let Some([cert, key]) = &self.tls {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let mut process = Process::spawn_with_listener(&self.name, command, &listener);
        // The child has its own copy: once it exits, the port refuses connections.
        drop(listener);
        process.wait_for_log("listening on", std::time::Duration::from_secs(10));
        self.process = Some(process);
        Ok(())
    }
}

/// Answers the change-feed service got: one means the filter knows the signing keys.
pub const SYNC_ANSWERS_STAT: &str = "wasmcustom.tollgate.sync.answers";

/// A whole gateway: control plane, two echo upstreams and Envoy with the filter.
pub struct Gateway {
    pub envoy: Envoy,
    pub control_plane: ControlPlane,
    pub upstream_a: Echo,
    pub upstream_b: Echo,
    pub layout: Layout,
    _slot: GatewaySlot,
}

impl Gateway {
    /// Starts everything on the embedded defaults (SQLite in a temporary folder).
    pub fn start() -> Self {
        Self::start_with(ControlPlaneOptions::default())
    }

    pub fn start_with(options: ControlPlaneOptions) -> Self {
        Self::start_configured(options, None)
    }

    /// Starts everything on the embedded defaults, with `filter_config` as the filter's JSON
    /// configuration.
    pub fn start_with_filter_config(filter_config: &str) -> Self {
        Self::start_configured(
            ControlPlaneOptions::default(),
            Some(filter_config.to_string()),
        )
    }

    /// Starts everything, with `filter_config` as the filter's JSON configuration.
    pub fn start_configured(options: ControlPlaneOptions, filter_config: Option<String>) -> Self {
        Self::start_with_envoy(
            options,
            EnvoyOptions {
                filter_config,
                ..EnvoyOptions::default()
            },
        )
    }

    /// Starts everything, Envoy as `envoy` says (its control plane port is filled in).
    pub fn start_with_envoy(options: ControlPlaneOptions, envoy: EnvoyOptions) -> Self {
        let slot = GatewaySlot::acquire();
        let layout = Layout::discover();
        let upstream_a = Echo::start(&layout, "backend-a");
        let upstream_b = Echo::start(&layout, "backend-b");
        let control_plane = ControlPlane::start(&layout, options);
        for (echo, weight) in [(&upstream_a, 70), (&upstream_b, 30)] {
            control_plane.add_backend(echo.port, weight, "default");
        }
        let envoy = Envoy::start(
            &layout,
            EnvoyOptions {
                grpc_port: control_plane.grpc_port,
                ..envoy
            },
        );
        envoy.wait_for_stat(SYNC_ANSWERS_STAT, 1, std::time::Duration::from_secs(10));
        envoy.wait_for_default_pool();
        Self {
            envoy,
            control_plane,
            upstream_a,
            upstream_b,
            layout,
            _slot: slot,
        }
    }

    /// One more Envoy on this gateway's control plane, as `options` says, once it routes to
    /// the default pool's two backends.
    pub fn another_envoy(&self, options: EnvoyOptions) -> Envoy {
        let envoy = Envoy::start(
            &self.layout,
            EnvoyOptions {
                grpc_port: self.control_plane.grpc_port,
                ..options
            },
        );
        envoy.wait_for_default_pool();
        envoy
    }
}

/// How many gateways may run at once (`TOLLGATE_E2E_GATEWAYS`, default 3): each is four
/// processes, and a machine with few cores answers callouts too late when all tests run at once.
pub(crate) struct GatewaySlot;

static RUNNING_GATEWAYS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static SLOT_FREED: std::sync::Condvar = std::sync::Condvar::new();

impl GatewaySlot {
    pub(crate) fn acquire() -> Self {
        let limit = std::env::var("TOLLGATE_E2E_GATEWAYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3usize);
        let mut running = RUNNING_GATEWAYS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *running >= limit {
            running = SLOT_FREED
                .wait(running)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *running += 1;
        Self
    }
}

impl Drop for GatewaySlot {
    fn drop(&mut self) {
        let mut running = RUNNING_GATEWAYS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *running = running.saturating_sub(1);
        SLOT_FREED.notify_one();
    }
}
