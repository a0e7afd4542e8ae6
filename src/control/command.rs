//! Running an argv list: no shell, a cleared environment plus what the caller
//! sets, an optional working directory, stdin closed, stdout and stderr merged
//! and capped at [`OUTPUT_CAP`] bytes (kept with the run), a time limit after
//! which the whole process group is killed.
//!
//! The program runs as the leader of a new process group, so a timeout kills
//! everything it started. A program that exits normally may leave a daemon
//! behind (a `start` command): that daemon is not killed, and the run does not
//! wait for it to close the output pipe.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;

/// Output kept per run.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// How long to keep reading output after the program exited (a daemon it
/// started may hold the pipe open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// Exited with this code.
    Exited(i32),
    /// Killed by a signal it did not ask for.
    Signalled,
    /// Ran past its time limit; its process group was killed.
    TimedOut,
    /// Could not be started (missing program, permissions); the message says why.
    NotStarted(String),
}

/// One run: how it ended, its (capped) output, how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub argv: Vec<String>,
    pub ended: Ended,
    pub output: String,
    /// More output than [`OUTPUT_CAP`] was written; the rest was dropped.
    pub truncated: bool,
    pub millis: u64,
}

impl Run {
    pub fn exit_code(&self) -> Option<i32> {
        match self.ended {
            Ended::Exited(c) => Some(c),
            _ => None,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.ended == Ended::Exited(0)
    }

    /// `ok`, `failed`, `timeout` or `not_started`, for outcomes and the audit log.
    pub fn result(&self) -> &'static str {
        match self.ended {
            Ended::Exited(0) => "ok",
            Ended::Exited(_) | Ended::Signalled => "failed",
            Ended::TimedOut => "timeout",
            Ended::NotStarted(_) => "not_started",
        }
    }
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

async fn capture(mut r: impl tokio::io::AsyncRead + Unpin, into: Arc<Mutex<Captured>>) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut c = into.lock().unwrap_or_else(|e| e.into_inner());
                let room = OUTPUT_CAP.saturating_sub(c.bytes.len());
                c.bytes.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    // Keep reading (and dropping) so the program never blocks on a full pipe.
                    c.truncated = true;
                }
            }
        }
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Runs `spec` to its end or its time limit.
pub async fn run(spec: &Spec) -> Run {
    let started = Instant::now();
    let done = |ended: Ended, c: Captured| Run {
        argv: spec.argv.clone(),
        ended,
        output: String::from_utf8_lossy(&c.bytes).into_owned(),
        truncated: c.truncated,
        millis: started.elapsed().as_millis() as u64,
    };
    let Some((program, args)) = spec.argv.split_first() else {
        return done(Ended::NotStarted("empty argv".into()), Captured::default());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(d) = &spec.working_dir {
        cmd.current_dir(d);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return done(
                Ended::NotStarted(format!("{program}: {e}")),
                Captured::default(),
            )
        }
    };
    let pid = child.id();
    let out = Arc::new(Mutex::new(Captured::default()));
    let readers = [
        child
            .stdout
            .take()
            .map(|r| tokio::spawn(capture(r, out.clone()))),
        child
            .stderr
            .take()
            .map(|r| tokio::spawn(capture(r, out.clone()))),
    ];
    let ended = match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(c) => Ended::Exited(c),
            None => Ended::Signalled,
        },
        Ok(Err(e)) => Ended::NotStarted(format!("{program}: {e}")),
        Err(_) => {
            kill_group(pid);
            let _ = child.wait().await;
            Ended::TimedOut
        }
    };
    for r in readers.into_iter().flatten() {
        let abort = r.abort_handle();
        if tokio::time::timeout(DRAIN_AFTER_EXIT, r).await.is_err() {
            abort.abort();
        }
    }
    let captured = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    done(ended, captured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], timeout_ms: u64) -> Spec {
        Spec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            working_dir: None,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn exit_codes_output_and_a_cleared_environment() {
        let mut s = spec(
            &[
                "/bin/sh",
                "-c",
                "echo out; echo err >&2; echo \"[$HOME][$ONLY]\"; pwd; exit 3",
            ],
            5000,
        );
        s.env.insert("ONLY".into(), "set".into());
        s.working_dir = Some("/tmp".into());
        let r = run(&s).await;
        assert_eq!(r.ended, Ended::Exited(3));
        assert_eq!(r.result(), "failed");
        assert!(
            r.output.contains("out") && r.output.contains("err"),
            "{r:?}"
        );
        assert!(
            r.output.contains("[][set]"),
            "only what the entry sets: {r:?}"
        );
        assert!(r.output.contains("/tmp"), "{r:?}");
        assert!(run(&spec(&["/bin/true"], 5000)).await.succeeded());
    }

    #[tokio::test]
    async fn a_missing_program_is_not_started() {
        let r = run(&spec(&["/nonexistent/prog"], 5000)).await;
        assert!(matches!(r.ended, Ended::NotStarted(_)), "{r:?}");
        assert_eq!(r.result(), "not_started");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let r = run(&spec(&["/bin/sh", "-c", &script], 500)).await;
        assert_eq!(r.ended, Ended::TimedOut);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the group: gone (or a zombie reaped by init).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
                .unwrap_or(false)
        };
        for _ in 0..50 {
            if !alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sleeping grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn output_is_capped_and_the_flood_does_not_block() {
        let r = run(&spec(
            &[
                "/bin/sh",
                "-c",
                "head -c 1000000 /dev/zero | tr '\\0' x; exit 0",
            ],
            10_000,
        ))
        .await;
        assert!(r.succeeded(), "{:?}", r.ended);
        assert_eq!(r.output.len(), OUTPUT_CAP);
        assert!(r.truncated);
    }

    #[tokio::test]
    async fn a_daemon_left_behind_does_not_hold_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("d.pid");
        let script = format!("sleep 30 & echo $! > {}; echo started", pidfile.display());
        let t = Instant::now();
        let r = run(&spec(&["/bin/sh", "-c", &script], 10_000)).await;
        assert!(r.succeeded() && r.output.contains("started"), "{r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "waited for the daemon"
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the daemon keeps running"
        );
        let _ = std::process::Command::new("/bin/kill")
            .arg(pid.to_string())
            .status();
    }
}
