//! The Debian package: `cargo deb` builds it (from the binary these tests
//! run), `dpkg -i` installs it into this machine, its files and conffile are
//! where an operator looks, the unit passes `systemd-analyze verify` and
//! scores as hardened in `systemd-analyze security`, and the installed binary
//! serves with the installed configuration — under systemd where systemd is
//! PID 1, started directly (as the unit would) where it is not. Purged after.
//! Needs root (skipped by name otherwise).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use common::*;

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Removes the package and what it and the service made.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("systemctl")
            .args(["stop", "gatehouse"])
            .output();
        let _ = Command::new("dpkg").args(["--purge", "gatehouse"]).output();
        for d in [
            "/var/lib/gatehouse",
            "/var/log/gatehouse",
            "/var/lib/private/gatehouse",
        ] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_and_serves_with_its_configuration() {
    if !is_root() {
        eprintln!("skipped: installing a package needs root");
        return;
    }
    let (ok, text) = run("cargo", &["deb", "--version"]);
    assert!(
        ok,
        "cargo-deb is not installed (scripts/test.sh installs it): {text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("gatehouse.deb");
    // The binary these tests run (the dev profile), not a second release build.
    let bin = Path::new(env!("CARGO_BIN_EXE_gatehouse"));
    assert!(bin.ends_with("debug/gatehouse"), "{}", bin.display());
    let (ok, text) = run(
        "cargo",
        &[
            "deb",
            "--profile",
            "dev",
            "--no-build",
            "-o",
            deb.to_str().unwrap(),
        ],
    );
    assert!(ok, "cargo deb: {text}");

    let (ok, info) = run("dpkg-deb", &["--info", deb.to_str().unwrap()]);
    assert!(
        ok && info.contains("Package: gatehouse") && info.contains("Section: net"),
        "{info}"
    );
    let _cleanup = Installed;
    let (ok, text) = run("dpkg", &["-i", deb.to_str().unwrap()]);
    assert!(ok, "dpkg -i: {text}");

    // The files, and the configuration as a conffile (an upgrade keeps edits).
    let (_, files) = run("dpkg", &["-L", "gatehouse"]);
    for f in [
        "/usr/bin/gatehouse",
        "/etc/gatehouse/gatehouse.toml",
        "/usr/lib/systemd/system/gatehouse.service",
        "/usr/share/doc/gatehouse/README.md",
        "/usr/share/doc/gatehouse/configuration.md",
        "/usr/share/doc/gatehouse/examples/prometheus/gatehouse-rules.yml",
        "/usr/share/doc/gatehouse/examples/grafana/gatehouse.json",
        "/usr/share/doc/gatehouse/examples/nginx/gatehouse-location.conf",
    ] {
        assert!(files.lines().any(|l| l == f), "{f} not installed:\n{files}");
        assert!(Path::new(f).exists(), "{f}");
    }
    let (_, conffiles) = run("dpkg-query", &["-W", "-f=${Conffiles}", "gatehouse"]);
    assert!(
        conffiles.contains("/etc/gatehouse/gatehouse.toml"),
        "{conffiles}"
    );
    let (ok, text) = run(
        "/usr/bin/gatehouse",
        &["check-config", "--config", "/etc/gatehouse/gatehouse.toml"],
    );
    assert!(ok && text.starts_with("ok:"), "{text}");

    // The unit: valid, every directive known, and hardened.
    let unit = "/usr/lib/systemd/system/gatehouse.service";
    let text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "ExecStartPre=/usr/bin/gatehouse check-config --config /etc/gatehouse/gatehouse.toml",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "StateDirectory=gatehouse",
    ] {
        assert!(text.lines().any(|l| l == line), "the unit lacks {line}");
    }
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let (ok, out) = run("systemd-analyze", &["verify", unit]);
        assert!(
            ok && !out.contains("Unknown") && !out.contains("ignoring"),
            "{out}"
        );
        let (_, out) = run("systemd-analyze", &["security", "--offline=true", unit]);
        let level: f64 = out
            .lines()
            .find_map(|l| {
                l.split("Overall exposure level for gatehouse.service: ")
                    .nth(1)
            })
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(level <= 2.0, "exposure {level}:\n{out}");
    } else {
        eprintln!("systemd-analyze is not here: the unit was not verified");
    }

    // Serving with the installed binary and configuration.
    let mut _serving = None;
    let addr = if Path::new("/run/systemd/system").exists() {
        let (ok, text) = run("systemctl", &["start", "gatehouse"]);
        assert!(ok, "systemctl start: {text}");
        "127.0.0.1:9091".to_string()
    } else {
        // What the unit's StateDirectory= and LogsDirectory= would make.
        for d in ["/var/lib/gatehouse", "/var/log/gatehouse"] {
            std::fs::create_dir_all(d).unwrap();
        }
        let (child, addr) = spawn_serve_bin(
            Path::new("/usr/bin/gatehouse"),
            &["serve", "--config", "/etc/gatehouse/gatehouse.toml"],
            Path::new("/"),
            &[("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0")],
        );
        _serving = Some(Reaped(child));
        addr
    };
    let t = Instant::now();
    loop {
        let r = client().get(format!("http://{addr}/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Secrets created on first start, readable only by the service.
    for f in [
        "/var/lib/gatehouse/local-key.pem",
        "/var/lib/gatehouse/session-secret",
        "/var/lib/gatehouse/audit-key",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
    let (ok, token) = run(
        "/usr/bin/gatehouse",
        &[
            "token",
            "mint",
            "--config",
            "/etc/gatehouse/gatehouse.toml",
            "--sub",
            "alice",
        ],
    );
    assert!(ok, "{token}");
    let (c, base) = (client(), format!("http://{addr}"));
    let bearer = format!("Bearer {}", token.trim());
    let r = forward_to(&c, &base, Some(&bearer)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "alice");
    let r = forward_to(&c, &base, None).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let mirror = std::fs::read_to_string("/var/log/gatehouse/audit.jsonl").unwrap();
    assert!(mirror.contains("server.start"), "{mirror}");
}
