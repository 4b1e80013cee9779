//! Child processes that die with the test: killed on drop (also while panicking), and
//! killed by the kernel if the test process itself dies.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::PortTaken;

const LOG_LINES_SHOWN_ON_FAILURE: usize = 80;

/// A running child whose stdout and stderr go to a log file.
pub struct Process {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let log_dir = tempfile::tempdir().expect("log folder");
        let log_path = log_dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path).expect("log file");
        let log_err = log.try_clone().expect("log file");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            log_path,
            _log_dir: log_dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Like `spawn`, with `listener` open in the child under the same descriptor number (for
    /// an option such as `--listen-fd`); the caller closes its own copy when it likes.
    pub fn spawn_with_listener(name: &str, mut command: Command, listener: &TcpListener) -> Self {
        use std::os::unix::process::CommandExt;
        let fd = listener.as_raw_fd();
        // SAFETY: fcntl is async-signal-safe; it clears close-on-exec on a descriptor the
        // parent keeps open until `spawn` returns, in the child's own descriptor table.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::spawn(name, command)
    }

    /// Waits until the log contains `needle`; panics (showing the log) after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_ready(&format!("printing {needle:?}"), timeout, |log| {
            log.contains(needle)
        })
        .unwrap_or_else(|taken| panic!("{}: {}", self.name, taken.line));
    }

    /// Waits until `ready` holds for the log so far. A child that exits first because a port
    /// it was given is in use is a `PortTaken` (a start on other ports can fix that); any
    /// other early exit, or `timeout` passing, panics (showing the log).
    pub fn wait_ready(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&str) -> bool,
    ) -> Result<(), PortTaken> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if ready(&log) {
                return Ok(());
            }
            if self.has_exited() {
                return Err(PortTaken::in_log(&self.log())
                    .unwrap_or_else(|| panic!("{} exited before {what}", self.name)));
            }
            assert!(
                Instant::now() < deadline,
                "{} did not get to {what} within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process: it keeps its sockets but answers nothing.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            signal(child, if frozen { libc::SIGSTOP } else { libc::SIGCONT });
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok().and_then(|s| s.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a process expected to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let shown = &lines[lines.len().saturating_sub(LOG_LINES_SHOWN_ON_FAILURE)..];
            eprintln!("----- last {} lines of {} -----", shown.len(), self.name);
            for line in shown {
                eprintln!("{line}");
            }
        }
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we own and a valid signal has no memory effects.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
