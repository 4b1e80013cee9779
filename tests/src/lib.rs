//! End-to-end test harness for Tollgate: starts the real processes (control plane,
//! Envoy with the built filter, echo upstreams) on free loopback ports, waits until each
//! is ready, prints their logs when a test fails, and kills them when dropped.

mod envoy;
mod layout;
mod process;

pub mod control_plane;
pub mod http;

pub use control_plane::{ControlPlane, ControlPlaneOptions};
pub use envoy::{Envoy, EnvoyOptions};
pub use layout::Layout;
pub use process::{free_port, Process};

/// An upstream that echoes each request as JSON (`tollgate-echo`).
pub struct Echo {
    pub port: u16,
    _process: Process,
}

impl Echo {
    pub fn start(layout: &Layout, name: &str) -> Self {
        let port = free_port();
        let mut command = std::process::Command::new(&layout.echo_bin);
        command.args(["--listen", &format!("127.0.0.1:{port}"), "--name", name]);
        let mut process = Process::spawn(name, command);
        process.wait_for_log("listening on", std::time::Duration::from_secs(10));
        Self {
            port,
            _process: process,
        }
    }
}

/// A whole gateway: control plane, two echo upstreams and Envoy with the filter.
pub struct Gateway {
    pub envoy: Envoy,
    pub control_plane: ControlPlane,
    pub upstream_a: Echo,
    pub upstream_b: Echo,
    pub layout: Layout,
}

impl Gateway {
    /// Starts everything on the embedded defaults (SQLite in a temporary folder).
    pub fn start() -> Self {
        Self::start_with(ControlPlaneOptions::default())
    }

    pub fn start_with(options: ControlPlaneOptions) -> Self {
        let layout = Layout::discover();
        let upstream_a = Echo::start(&layout, "backend-a");
        let upstream_b = Echo::start(&layout, "backend-b");
        let control_plane = ControlPlane::start(&layout, options);
        let envoy = Envoy::start(
            &layout,
            EnvoyOptions {
                grpc_port: control_plane.grpc_port,
                upstream_ports: [upstream_a.port, upstream_b.port],
                ..EnvoyOptions::default()
            },
        );
        Self {
            envoy,
            control_plane,
            upstream_a,
            upstream_b,
            layout,
        }
    }
}
