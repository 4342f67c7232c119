//! A private rsyslogd for tests (Debian's `rsyslog` and `rsyslog-gnutls`, installed by
//! `scripts/test-deps.sh`): started with a test's own configuration in a temporary
//! directory, listening on loopback ports the kernel picks (rsyslog writes each to a
//! file, whose appearance is the readiness signal), killed when dropped.
//!
//! Shared by the `syslog` source's tests (rsyslog forwarding to the source with omfwd)
//! and the `syslog` sink's (rsyslog receiving from it); included with `#[path]`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian installs rsyslogd.
pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Upper bound on waiting for rsyslog; only a broken test ever waits this long.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running rsyslogd, killed when dropped.
pub struct Rsyslogd {
    /// Its directory: configuration, work directory, port files, stderr.
    pub dir: PathBuf,
    child: Child,
}

impl Rsyslogd {
    /// Writes `config` (rsyslog's RainerScript; `{dir}` stands for the directory) to
    /// `dir/rsyslog.conf` and starts rsyslogd in the foreground with it.
    pub fn start(dir: &Path, config: &str) -> Rsyslogd {
        let binary = PathBuf::from(RSYSLOGD);
        assert!(
            binary.is_file(),
            "{RSYSLOGD} is missing: syslog is tested against a real rsyslog; run scripts/test-deps.sh (installs rsyslog and rsyslog-gnutls)"
        );
        std::fs::create_dir_all(dir.join("work")).expect("work dir");
        let config = config.replace("{dir}", &dir.display().to_string());
        let config_file = dir.join("rsyslog.conf");
        std::fs::write(&config_file, config).expect("write rsyslog.conf");
        let stderr = std::fs::File::create(dir.join("rsyslogd.stderr")).expect("stderr file");
        let child = Command::new(binary)
            .arg("-n")
            .arg("-f")
            .arg(&config_file)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start rsyslogd");
        Rsyslogd {
            dir: dir.to_path_buf(),
            child,
        }
    }

    /// The port rsyslog wrote to `file` (an input's `listenPortFileName`), once written.
    pub fn wait_for_port(&mut self, file: &Path) -> u16 {
        for _ in 0..(PATIENCE.as_millis() / 10) {
            if let Ok(text) = std::fs::read_to_string(file)
                && let Ok(port) = text.trim().parse::<u16>()
                && port != 0
            {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "rsyslogd did not open its listener ({}): {}",
            file.display(),
            self.diagnostics()
        );
    }

    /// Its exit status, if it has exited.
    // The file is included by several test crates; the sources' syslog tests never ask.
    #[allow(dead_code)]
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What rsyslogd wrote to stderr.
    pub fn diagnostics(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
    }

    /// SIGKILL, then reap: every listener and connection is gone when this returns.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test CA (`ca.pem`), a certificate for 127.0.0.1 and localhost signed by it
/// (`server.pem`, `server.key`) and a client certificate (`client.pem`, `client.key`).
pub fn write_certificates(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "siemflow test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    for (name, sans, usage) in [
        (
            "server",
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            "client",
            vec!["client.test".to_string()],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ] {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans.clone()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, sans[0].clone());
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write certificate");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
    }
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("ca.pem");
}
