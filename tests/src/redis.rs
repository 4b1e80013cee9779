//! A Redis server of the test's own, so a test can restart it.

use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, Process};

pub struct RedisServer {
    pub port: u16,
    process: Option<Process>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            process: None,
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server; nothing it held survives (it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts the server again, empty, on the same port.
    pub fn resume(&mut self) {
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let mut process = Process::spawn("redis", command);
        process.wait_for_log("Ready to accept connections", Duration::from_secs(10));
        self.process = Some(process);
    }
}
