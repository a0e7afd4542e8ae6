//! A private PostgreSQL server for one test: initdb into a temp dir, started on a
//! free loopback port with its socket in that dir, stopped when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct Postgres {
    /// Superuser URL of the `postgres` database.
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// The server's options and log, to start it again.
    opts: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("initdb").exists() {
            return p;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .into_iter()
        .rev()
        .find(|p| p.join("initdb").exists())
        .expect(
        "PostgreSQL server binaries not found; apt-get install postgresql (scripts/test.sh does)",
    )
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // initdb refuses to run as root: run the server as the postgres user then.
        let as_postgres = super::is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown to postgres failed");
        }
        let run = |args: &[&str]| {
            let mut c = if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]);
                c.arg(bin.join(args[0]));
                c
            } else {
                Command::new(bin.join(args[0]))
            };
            c.args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{:?}: {}",
                args,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data_s = data.to_str().unwrap().to_string();
        run(&[
            "initdb",
            "-D",
            &data_s,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        let port = super::free_port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.path().display()
        );
        let log = dir.path().join("pg.log");
        run(&[
            "pg_ctl",
            "-D",
            &data_s,
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "30",
            "start",
        ]);
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            data,
            as_postgres,
            opts,
            log,
            _dir: dir,
        }
    }

    fn ctl(&self, args: &[&str]) {
        let ctl = self.bin.join("pg_ctl");
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(ctl);
            c
        } else {
            Command::new(ctl)
        };
        let out = c
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        self.ctl(&["-m", "fast", "-w", "stop"]);
    }

    /// Starts it again on the same port and data.
    pub fn start_again(&self) {
        self.ctl(&[
            "-o",
            &self.opts,
            "-l",
            self.log.to_str().unwrap(),
            "-w",
            "-t",
            "30",
            "start",
        ]);
    }

    /// A fresh database on this server; returns its URL.
    pub async fn database(&self, name: &str) -> String {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let ctl = self.bin.join("pg_ctl");
        let data = self.data.to_str().unwrap().to_string();
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(ctl);
            c
        } else {
            Command::new(ctl)
        };
        let _ = c
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
