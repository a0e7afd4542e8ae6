//! The NanoKVM simulator (`tests/nanokvm/sim.py`, the firmware's routes and
//! dialect; checked against the PyPI `nanokvm` client by
//! `tests/nanokvm/check_client.py`) on a free loopback port. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for_listener};

pub struct Kvm {
    child: Child,
    pub url: String,
}

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nanokvm")
}

impl Kvm {
    /// `graceful`: seconds until the machine's OS obeys a short power press, or "never".
    pub fn start(user: &str, password: &str, graceful: &str) -> Kvm {
        let port = free_port();
        let child = Command::new("python3")
            .arg(dir().join("sim.py"))
            .args([&port.to_string(), user, password])
            .env("SIM_ON_SECS", "1")
            .env("SIM_GRACEFUL_SECS", graceful)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 tests/nanokvm/sim.py (needs flask and cryptography: pip install nanokvm sushy-tools)");
        wait_for_listener(port, "the NanoKVM simulator", Duration::from_secs(20));
        Kvm {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The button presses the simulator saw: (button, milliseconds).
    pub async fn presses(&self) -> Vec<(String, u64)> {
        let v: serde_json::Value = reqwest::get(format!("{}/sim/presses", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["type"].as_str().unwrap().to_string(),
                    p["duration"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Kvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
