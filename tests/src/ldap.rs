//! A real OpenLDAP `slapd` for the tests: its configuration, a test CA and a server
//! certificate (made with `openssl`) and its database live in a temporary folder; it listens
//! on two reserved loopback ports, `ldap://` (which also offers StartTLS) and `ldaps://`, and is
//! killed when dropped. The directory is `dc=example,dc=org` with `ou=people`, `ou=groups` and
//! a service account that may search it; the `memberof` overlay keeps each person's `memberOf`
//! to the `groupOfNames` that list them. Needs `slapd`, `ldap-utils` and `openssl`
//! (`scripts/setup.sh` installs them).

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ports::{restarted, start_with_free_ports, PortTaken};
use crate::{Port, Process};

pub const SUFFIX: &str = "dc=example,dc=org";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PASSWORD: &str = "directory-admin-password";
/// The account Tollgate searches with.
pub const SERVICE_DN: &str = "cn=tollgate,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-account-password";
/// Where people are.
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
/// Where groups are.
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";

const SCHEMAS: [&str; 3] = ["core", "cosine", "inetorgperson"];

pub struct Slapd {
    /// `ldap://` and StartTLS.
    pub port: u16,
    /// `ldaps://`.
    pub tls_port: u16,
    dir: tempfile::TempDir,
    process: Option<Process>,
    _ports: [Port; 2],
}

impl Slapd {
    /// A running directory with the base entries and the service account.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("slapd folder");
        write_certificates(dir.path());
        write_config(dir.path());
        std::fs::create_dir(dir.path().join("data")).expect("slapd data folder");
        let (process, ports) = start_with_free_ports("slapd", |[port, tls_port]| {
            let process = launch(dir.path(), port.number(), tls_port.number())?;
            Ok((process, [port, tls_port]))
        });
        let slapd = Self {
            port: ports[0].number(),
            tls_port: ports[1].number(),
            dir,
            process: Some(process),
            _ports: ports,
        };
        slapd.add(&base_entries());
        slapd
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the server's certificate (for `localhost` and `127.0.0.1`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing the server presents.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    pub fn person_dn(uid: &str) -> String {
        format!("uid={uid},{PEOPLE}")
    }

    pub fn group_dn(cn: &str) -> String {
        format!("cn={cn},{GROUPS}")
    }

    /// Adds an `inetOrgPerson` under `ou=people`.
    pub fn add_person(&self, uid: &str, password: &str, mail: &str, name: &str) {
        self.add(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name}\n\
             mail: {mail}\nuserPassword: {password}\n",
            Self::person_dn(uid)
        ));
    }

    /// Adds a `groupOfNames` under `ou=groups` with the people `uids` as members.
    pub fn add_group(&self, cn: &str, uids: &[&str]) {
        let members: String = uids
            .iter()
            .map(|uid| format!("member: {}\n", Self::person_dn(uid)))
            .collect();
        self.add(&format!(
            "dn: {}\nobjectClass: groupOfNames\ncn: {cn}\n{members}",
            Self::group_dn(cn)
        ));
    }

    /// Applies an LDIF change record (`dn: ...\nchangetype: ...`) as the directory's admin.
    pub fn modify(&self, ldif: &str) {
        self.client("ldapmodify", &[], ldif);
    }

    pub fn delete(&self, dn: &str) {
        self.client("ldapdelete", &[dn], "");
    }

    /// Stops answering: connections are refused until [`Slapd::resume`].
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Answers again on the same ports, with the same data.
    pub fn resume(&mut self) {
        let started = launch(self.dir.path(), self.port, self.tls_port);
        restarted("slapd", started.map(|process| self.process = Some(process)));
    }

    fn add(&self, ldif: &str) {
        self.client("ldapadd", &[], ldif);
    }

    /// Runs an `ldap-utils` client bound as the admin, `ldif` on its standard input.
    fn client(&self, program: &str, args: &[&str], ldif: &str) {
        let mut child = Command::new(program)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `{program}` ({e}); run scripts/setup.sh to install ldap-utils")
            });
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write LDIF");
        let output = child.wait_with_output().expect("ldap client");
        assert!(
            output.status.success(),
            "{program} failed: {}\n{ldif}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn write_config(dir: &Path) {
    let path = dir.display();
    let schemas: String = SCHEMAS
        .iter()
        .map(|schema| format!("include /etc/ldap/schema/{schema}.schema\n"))
        .collect();
    let config = format!(
        "{schemas}modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
         pidfile {path}/slapd.pid\n\
         TLSCACertificateFile {path}/ca.pem\nTLSCertificateFile {path}/server.pem\n\
         TLSCertificateKeyFile {path}/server.key\n\
         database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\n\
         rootdn \"{ADMIN_DN}\"\nrootpw {ADMIN_PASSWORD}\ndirectory {path}/data\noverlay memberof\n"
    );
    std::fs::write(dir.join("slapd.conf"), config).expect("slapd.conf");
}

/// Starts slapd on `port` (`ldap://`) and `tls_port` (`ldaps://`) and waits until it accepts
/// connections.
fn launch(dir: &Path, port: u16, tls_port: u16) -> Result<Process, PortTaken> {
    let mut command = Command::new(slapd_binary());
    command
        .arg("-f")
        .arg(dir.join("slapd.conf"))
        .arg("-h")
        .arg(format!(
            "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
        ))
        .args(["-d", "0"]);
    let mut process = Process::spawn("slapd", command);
    process.wait_ready("accepting connections", Duration::from_secs(10), |_| {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok(process)
}

/// `slapd` from the system (Debian installs it in /usr/sbin, often not on a user's PATH).
fn slapd_binary() -> PathBuf {
    let installed = Path::new("/usr/sbin/slapd");
    if installed.exists() {
        return installed.to_path_buf();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("slapd"))
        .find(|candidate| candidate.exists());
    on_path.unwrap_or_else(|| panic!("slapd is not installed; run scripts/setup.sh"))
}

fn base_entries() -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: tollgate\nuserPassword: {SERVICE_PASSWORD}\n"
    )
}

/// A test CA, a certificate it signs for `localhost` and `127.0.0.1`, and a second CA that
/// signs nothing, all P-256 and valid for two days.
fn write_certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=Tollgate test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("certificate extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); run scripts/setup.sh"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
