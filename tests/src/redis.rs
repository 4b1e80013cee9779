//! A Redis server of the test's own, so a test can restart it.

use std::process::Command;
use std::time::Duration;

use crate::ports::{restarted, start_with_free_ports, Port, PortTaken};
use crate::process::Process;

const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub port: u16,
    process: Option<Process>,
    _reserved: Port,
}

impl RedisServer {
    /// Redis binds the port number it is given (it cannot take a socket bound here): a start
    /// whose port was taken meanwhile is made again on another.
    pub fn start() -> Self {
        start_with_free_ports("redis", |[port]| {
            let mut redis = Self {
                port: port.number(),
                process: None,
                _reserved: port,
            };
            redis.spawn()?;
            Ok(redis)
        })
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

    /// Starts the server again, empty, on the same port (the control plane knows that one).
    /// Its reservation kept the port from every other start in the meantime.
    pub fn resume(&mut self) {
        restarted("redis", self.spawn());
    }

    fn spawn(&mut self) -> Result<(), PortTaken> {
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
        process.wait_ready("accepting connections", READY_TIMEOUT, |log| {
            log.contains("Ready to accept connections")
        })?;
        self.process = Some(process);
        Ok(())
    }
}
