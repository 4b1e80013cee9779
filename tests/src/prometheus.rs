//! A real Prometheus (Debian's `prometheus` package, installed by `scripts/setup.sh`) in a
//! temporary folder, scraping the targets a test names every second, queried over its HTTP API.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http::{client, send};
use crate::ports::{start_with_free_ports, Port, PortTaken};
use crate::process::Process;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A target to scrape: the job's name, `host:port`, and the path of its metrics.
pub struct ScrapeTarget {
    pub job: &'static str,
    pub address: String,
    pub metrics_path: &'static str,
}

pub struct Prometheus {
    pub port: u16,
    _process: Process,
    _data: tempfile::TempDir,
    _reserved: Port,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second; returns once it serves queries.
    pub fn start(targets: &[ScrapeTarget]) -> Self {
        let data = tempfile::tempdir().expect("prometheus folder");
        let config = data.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets)).expect("write prometheus.yml");
        let (port, process) = start_with_free_ports("prometheus", |[port]| {
            let mut command = Command::new("prometheus");
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    data.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", port.number()));
            let mut process = Process::spawn("prometheus", command);
            let ready = format!("http://127.0.0.1:{}/-/ready", port.number());
            process.wait_ready("ready", READY_TIMEOUT, |_| {
                client()
                    .get(&ready)
                    .send()
                    .is_ok_and(|answer| answer.status().is_success())
            })?;
            Ok::<_, PortTaken>((port, process))
        });
        Self {
            port: port.number(),
            _process: process,
            _data: data,
            _reserved: port,
        }
    }

    /// The result of an instant query (`/api/v1/query`): its series, each with its labels
    /// and value. Panics when Prometheus refuses the query.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let answer = send(
            client()
                .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
                .query(&[("query", expr)]),
        );
        assert_eq!(answer.status, 200, "{expr}: {}", answer.text);
        assert_eq!(answer.body["status"], "success", "{expr}: {}", answer.text);
        answer.body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn scrape_config(targets: &[ScrapeTarget]) -> String {
    let jobs: String = targets
        .iter()
        .map(|target| {
            format!(
                "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: ['{}']\n",
                target.job, target.metrics_path, target.address
            )
        })
        .collect();
    format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}")
}
