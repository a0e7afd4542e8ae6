//! A real Redfish BMC emulator for the power tests: `sushy-emulator --fake`
//! from PyPI's sushy-tools (its fake driver applies a power change 1–11 s
//! after the request, like hardware), on a free loopback port, optionally
//! with TLS from a private CA made here with openssl, and HTTP Basic
//! authentication from an htpasswd (bcrypt) file. Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Bmc {
    child: Child,
    pub url: String,
    /// The private CA's certificate (PEM), when started with TLS.
    pub ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// How to start the emulator.
#[derive(Default)]
pub struct BmcOptions {
    pub tls: bool,
    /// Username and password required (HTTP Basic).
    pub auth: Option<(&'static str, &'static str)>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, cert, key).
pub fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(f);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args([
            "-keyout",
            p("ca.key").to_str().unwrap(),
            "-out",
            p("ca.pem").to_str().unwrap(),
            "-days",
            "2",
            "-subj",
            "/CN=gatehouse test BMC CA",
        ]));
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(Command::new("openssl").args(["req"]).args(ec).args([
        "-keyout",
        p("bmc.key").to_str().unwrap(),
        "-out",
        p("bmc.csr").to_str().unwrap(),
        "-subj",
        "/CN=127.0.0.1",
    ]));
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        p("bmc.csr").to_str().unwrap(),
        "-CA",
        p("ca.pem").to_str().unwrap(),
        "-CAkey",
        p("ca.key").to_str().unwrap(),
        "-CAcreateserial",
        "-out",
        p("bmc.pem").to_str().unwrap(),
        "-days",
        "2",
        "-extfile",
        p("ext.cnf").to_str().unwrap(),
    ]));
    (p("ca.pem"), p("bmc.pem"), p("bmc.key"))
}

/// sushy-emulator on PATH, or in Python's scripts directory (pip's place).
fn emulator() -> PathBuf {
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("sushy-emulator");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("sushy-emulator")
}

impl Bmc {
    pub fn start(opts: BmcOptions) -> Bmc {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        // The fake driver keeps its machines in an SQLite file: one per emulator.
        let mut config = format!(
            "SUSHY_EMULATOR_STATE_DIR = {:?}\n",
            dir.path().join("state").display().to_string()
        );
        if let Some((user, pass)) = opts.auth {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4)).decode())",
                    pass,
                ])
                .output()
                .expect("python3 with bcrypt (a dependency of sushy-tools)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "SUSHY_EMULATOR_AUTH_FILE = {:?}\n",
                dir.path().join("htpasswd").display().to_string()
            ));
        }
        std::fs::write(dir.path().join("emulator.conf"), config).unwrap();
        let mut cmd = Command::new(emulator());
        cmd.args([
            "--fake",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--config",
        ])
        .arg(dir.path().join("emulator.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("emulator.log")).unwrap(),
        ));
        let mut ca = None;
        if opts.tls {
            let (ca_pem, cert, key) = private_ca(dir.path());
            cmd.arg("--ssl-certificate")
                .arg(cert)
                .arg("--ssl-key")
                .arg(key);
            ca = Some(ca_pem);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("sushy-emulator (pip install sushy-tools): {e}"));
        let scheme = if opts.tls { "https" } else { "http" };
        let bmc = Bmc {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            ca,
            _dir: dir,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "sushy-emulator did not listen: {}",
                std::fs::read_to_string(bmc._dir.path().join("emulator.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        bmc
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
