//! A real SMTP server on loopback: `aiosmtpd` (installed into `.tools/venv` by
//! `scripts/setup.sh`) keeping every message it receives in a maildir the test reads.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::config::Config;

const AIOSMTPD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/venv/bin/aiosmtpd");

pub struct SmtpServer {
    pub port: u16,
    child: Child,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        assert!(
            std::path::Path::new(AIOSMTPD).exists(),
            "{AIOSMTPD} is missing: run scripts/setup.sh"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let maildir = tempfile::tempdir().expect("maildir");
        let child = Command::new(AIOSMTPD)
            .args(["-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = Self {
            port,
            child,
            maildir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Points `config.mail` at this server.
    pub fn configure(&self, config: &mut Config) {
        config.mail.smtp_host = "127.0.0.1".into();
        config.mail.smtp_port = self.port;
        config.mail.security = "none".into();
        config.mail.from = "Tollgate <no-reply@gateway.test>".into();
    }

    /// Every message received so far, as raw text, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let new: PathBuf = self.maildir.path().join("mail").join("new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(new)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| {
                        let modified = entry.metadata().ok()?.modified().ok()?;
                        Some((modified, entry.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| std::fs::read_to_string(path).ok())
            .collect()
    }

    /// The messages to `recipient`, waiting up to 10 s for there to be `count` of them.
    pub async fn wait_for(&self, recipient: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let to_recipient: Vec<String> = self
                .messages()
                .into_iter()
                .filter(|message| {
                    message
                        .lines()
                        .any(|line| line.eq_ignore_ascii_case(&format!("To: {recipient}")))
                })
                .collect();
            if to_recipient.len() >= count || Instant::now() > deadline {
                return to_recipient;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The token of the link to `page` in `message` (a quoted-printable body may wrap it).
pub fn link_token(message: &str, page: &str) -> String {
    let unwrapped = message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let marker = format!("/{page}?token=");
    let start = unwrapped.find(&marker).expect("a link in the message") + marker.len();
    unwrapped[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}
