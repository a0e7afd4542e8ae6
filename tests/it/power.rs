//! Power against a real Redfish emulator (sushy-tools' fake driver: power
//! changes land 1–11 s after the request, as on hardware): reading the state,
//! on, graceful off (services first, then GracefulShutdown, then ForceOff only
//! after graceful_timeout), force, confirmation, step-up, one operation per
//! machine; TLS with a private CA, bad credentials, a BMC that never answers.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;
use common::redfish::{Bmc, BmcOptions};
use common::*;
use serde_json::{json, Value};

const SERVICE_SH: &str = r#"#!/bin/sh
pidfile="$STATE/$NAME.pid"
case "$1" in
  start) sleep 1000 >/dev/null 2>&1 & echo $! > "$pidfile"; exit 0 ;;
  stop) [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; rm -f "$pidfile"; exit 0 ;;
  status) [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && exit 0; exit 3 ;;
esac
exit 2
"#;

struct T {
    gh: Server,
    state: tempfile::TempDir,
}

impl T {
    async fn start(machines: &str) -> T {
        let state = tempfile::tempdir().unwrap();
        std::fs::write(state.path().join("svc.sh"), SERVICE_SH).unwrap();
        let d = state.path().display();
        let over = format!(
            r#"
[admin.permissions]
ops = ["control:services", "power:read"]
[access]
two_factor_acr = ["gold"]
[[control.services]]
name = "feed"
start = ["/bin/sh", "{d}/svc.sh", "start"]
stop = ["/bin/sh", "{d}/svc.sh", "stop"]
status = ["/bin/sh", "{d}/svc.sh", "status"]
env = {{ STATE = "{d}", NAME = "feed" }}
{machines}"#
        );
        let gh = Server::start(&config_with(&over)).await;
        T { gh, state }
    }

    fn token(&self, sub: &str, roles: &[&str], two_factor: bool) -> String {
        self.gh.mint_as(sub, roles, two_factor, 0)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.gh.api(method, path, Some(token), body).await
    }

    async fn machines(&self, token: &str) -> Vec<Value> {
        let (s, v) = self.call("GET", "/api/v1/control/power", token, None).await;
        assert_eq!(s, 200, "{v}");
        v["machines"].as_array().unwrap().clone()
    }

    fn feed_running(&self) -> bool {
        std::fs::read_to_string(self.state.path().join("feed.pid"))
            .is_ok_and(|p| Path::new(&format!("/proc/{}", p.trim())).exists())
    }
}

fn machine(name: &str, bmc: &Bmc, extra: &str) -> String {
    format!(
        "[[control.power]]\nname = \"{name}\"\nbackend = \"redfish\"\nurl = \"{}\"\nallow_insecure_http = true\n\
         username = \"admin\"\npassword = \"s3cret-bmc-pw\"\npoll_interval = \"300ms\"\ntimeout = \"3s\"\n{extra}\n",
        bmc.url
    )
}

fn steps(v: &Value) -> Vec<(String, String)> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_then_a_graceful_off_that_stops_the_services_first() {
    let bmc = Bmc::start(BmcOptions {
        auth: Some(("admin", "s3cret-bmc-pw")),
        ..Default::default()
    });
    let t = T::start(&machine(
        "rig",
        &bmc,
        "services = [\"feed\"]\ngraceful_timeout = \"30s\"",
    ))
    .await;
    let admin = t.token("root", &["admin"], true);
    let ops = t.token("olga", &["ops"], false);
    let m = t.machines(&ops).await;
    assert_eq!(m[0]["power_state"], "Off", "{m:?}");
    assert_eq!(m[0]["backend"], "redfish");

    // power:control needs a second factor; `on` needs no phrase.
    let (s, v) = t
        .call("POST", "/api/v1/control/power/rig/on", &ops, None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (s, v) = t
        .call("POST", "/api/v1/control/power/rig/on", &admin, None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome"]["power_state"], "On");
    assert_eq!(
        steps(&v["outcome"]),
        vec![("On".into(), "ok".into()), ("wait On".into(), "ok".into())]
    );
    assert_eq!(
        t.machines(&ops).await[0]["power_state"],
        "On",
        "the BMC says so too"
    );

    let (s, _) = t
        .call("POST", "/api/v1/control/services/feed/start", &admin, None)
        .await;
    assert_eq!(s, 200);
    assert!(t.feed_running());
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/control/power/rig/off",
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("confirmation_required"))
    );
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/control/power/rig/off",
            &admin,
            Some(json!({"confirm": "CONFIRM_POWER_RESET"})),
        )
        .await;
    assert_eq!(s, 400, "the other phrase is not this one: {v}");
    assert!(t.feed_running(), "nothing ran");
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/control/power/rig/off",
            &admin,
            Some(json!({"confirm": "CONFIRM_POWER_OFF"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        steps(&v["outcome"]),
        vec![
            ("stop_services".into(), "ok".into()),
            ("GracefulShutdown".into(), "ok".into()),
            ("wait Off".into(), "ok".into())
        ],
        "no hard off when the graceful one lands in time"
    );
    assert!(
        !t.feed_running(),
        "the machine's services were stopped first"
    );
    let m = t.machines(&ops).await;
    assert_eq!(m[0]["power_state"], "Off");
    assert_eq!(m[0]["last_action"]["op"], "off");
    assert_eq!(m[0]["last_action"]["by"], "root");
    let (_, st) = t.call("GET", "/api/v1/status", &admin, None).await;
    assert_eq!(st["power"][0]["name"], "rig");
    assert_eq!(st["power"][0]["power_state"], "Off", "as last read: {st}");

    let page =
        t.gh.store()
            .await
            .audit_page(&gatehouse::store::AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
    let of = |a: &str| {
        page.iter()
            .rev()
            .filter(|e| e.action == a)
            .map(|e| (e.actor.clone(), e.result.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("control.power.on"),
        vec![
            ("olga".into(), "refused".into()),
            ("root".into(), "requested".into()),
            ("root".into(), "ok".into())
        ]
    );
    assert_eq!(
        of("control.power.off")
            .iter()
            .map(|(_, r)| r.as_str())
            .collect::<Vec<_>>(),
        vec!["refused", "refused", "requested", "ok"]
    );
    let outcome = page
        .iter()
        .find(|e| e.action == "control.power.off" && e.result == "ok")
        .unwrap();
    let logged: Vec<&str> = outcome.details["outcome"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        logged,
        vec!["stop_services", "GracefulShutdown", "wait Off"],
        "each step is in the audit log too"
    );
    assert!(
        page.iter()
            .all(|e| !e.details.to_string().contains("s3cret-bmc-pw")),
        "the BMC password never reaches the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_off_after_the_graceful_timeout_and_force_at_once() {
    let (a, b) = (
        Bmc::start(BmcOptions::default()),
        Bmc::start(BmcOptions::default()),
    );
    let t = T::start(&format!(
        "{}{}",
        machine("slow", &a, "graceful_timeout = \"0s\""),
        machine("quick", &b, "graceful_timeout = \"60s\""),
    ))
    .await;
    let admin = t.token("root", &["admin"], true);
    let on = |m: &'static str| {
        let (t, admin) = (&t, admin.clone());
        async move {
            t.call(
                "POST",
                &format!("/api/v1/control/power/{m}/on"),
                &admin,
                None,
            )
            .await
        }
    };
    let (x, y) = tokio::join!(on("slow"), on("quick"));
    assert_eq!((x.0, y.0), (200, 200), "{x:?} {y:?}");

    // One operation per machine: a second one meanwhile is refused.
    let off = json!({"confirm": "CONFIRM_POWER_OFF"});
    let force = json!({"confirm": "CONFIRM_POWER_OFF", "force": true});
    let started = Instant::now();
    let (slow, busy, quick) = tokio::join!(
        t.call(
            "POST",
            "/api/v1/control/power/slow/off",
            &admin,
            Some(off.clone())
        ),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            t.call(
                "POST",
                "/api/v1/control/power/slow/off",
                &admin,
                Some(off.clone()),
            )
            .await
        },
        t.call(
            "POST",
            "/api/v1/control/power/quick/off",
            &admin,
            Some(force)
        ),
    );
    assert_eq!(
        (busy.0, busy.1["error"]["code"].as_str()),
        (409, Some("busy"))
    );
    assert_eq!(slow.0, 200, "{}", slow.1);
    assert_eq!(
        steps(&slow.1["outcome"]),
        vec![
            ("GracefulShutdown".into(), "ok".into()),
            ("wait Off".into(), "timeout".into()),
            ("ForceOff".into(), "ok".into()),
            ("wait Off".into(), "ok".into())
        ],
        "graceful_timeout passed: the hard off"
    );
    assert_eq!(quick.0, 200, "{}", quick.1);
    assert_eq!(
        steps(&quick.1["outcome"]),
        vec![
            ("ForceOff".into(), "ok".into()),
            ("wait Off".into(), "ok".into())
        ],
        "force: at once, no graceful attempt"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ca_bad_credentials_and_a_bmc_that_never_answers() {
    let tls = Bmc::start(BmcOptions {
        tls: true,
        auth: Some(("admin", "s3cret-bmc-pw")),
    });
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("https://{}", hung.local_addr().unwrap());
    // Accepts connections and never answers.
    let _held = std::thread::spawn(move || {
        let mut conns = vec![];
        for c in hung.incoming() {
            conns.push(c);
        }
    });
    let ca = tls.ca.as_ref().unwrap().display().to_string();
    let hung_machine = format!(
        "[[control.power]]\nname = \"hung\"\nbackend = \"redfish\"\nurl = \"{hung_url}\"\n\
         username = \"admin\"\npassword = \"s3cret-bmc-pw\"\ntimeout = \"1s\"\n"
    );
    let machines = [
        machine("trusted", &tls, &format!("ca_file = \"{ca}\"")),
        machine("untrusted", &tls, ""),
        machine("wrongpw", &tls, &format!("ca_file = \"{ca}\"")).replace("s3cret-bmc-pw", "guess"),
        hung_machine,
    ]
    .concat();
    let t = T::start(&machines).await;
    let ops = t.token("olga", &["ops"], false);
    let started = Instant::now();
    let (s, v) = t.call("GET", "/api/v1/control/power", &ops, None).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a hung BMC is bounded by its timeout"
    );
    let by: std::collections::HashMap<String, Value> = v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    assert_eq!(by["trusted"]["power_state"], "Off", "{v}");
    assert!(by["trusted"]["error"].is_null());
    for (name, why) in [
        ("untrusted", "certificate"),
        ("wrongpw", "HTTP 401"),
        ("hung", "timed out"),
    ] {
        assert_eq!(by[name]["power_state"], "Unknown", "{name}: {v}");
        let e = by[name]["error"].as_str().unwrap();
        assert!(e.contains(why), "{name}: {e}");
    }
    assert!(
        !v.to_string().contains("s3cret-bmc-pw"),
        "no password in answers"
    );
}

fn kvm_machine(name: &str, kvm: &common::nanokvm::Kvm, password: &str, extra: &str) -> String {
    format!(
        "[[control.power]]\nname = \"{name}\"\nbackend = \"nanokvm\"\nurl = \"{}\"\nallow_insecure_http = true\n\
         username = \"admin\"\npassword = \"{password}\"\npoll_interval = \"250ms\"\ntimeout = \"3s\"\n{extra}\n",
        kvm.url
    )
}

/// The simulator against the PyPI `nanokvm` client: what gatehouse is tested
/// against speaks the device's dialect.
#[test]
fn the_nanokvm_simulator_speaks_the_devices_dialect() {
    let kvm = common::nanokvm::Kvm::start("admin", "kvm-secret", "1");
    let out = std::process::Command::new("python3")
        .arg(common::nanokvm::dir().join("check_client.py"))
        .args([&kvm.url, "admin", "kvm-secret"])
        .output()
        .expect("python3 with the nanokvm client (pip install nanokvm)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nanokvm_buttons_short_press_long_press_and_the_led() {
    let obeys = common::nanokvm::Kvm::start("admin", "kvm-secret", "1");
    let ignores = common::nanokvm::Kvm::start("admin", "kvm-secret", "never");
    let machines = [
        kvm_machine("desk", &obeys, "kvm-secret", "graceful_timeout = \"20s\""),
        kvm_machine(
            "stubborn",
            &ignores,
            "kvm-secret",
            "graceful_timeout = \"2s\"",
        ),
        kvm_machine("locked", &obeys, "not-the-password", ""),
    ]
    .concat();
    let t = T::start(&machines).await;
    let admin = t.token("root", &["admin"], true);
    let ops = t.token("olga", &["ops"], false);
    let m = t.machines(&ops).await;
    assert_eq!(
        (m[0]["name"].as_str(), m[0]["power_state"].as_str()),
        (Some("desk"), Some("Off")),
        "{m:?}"
    );
    assert_eq!(m[1]["power_state"], "Unknown");
    assert!(
        m[1]["error"]
            .as_str()
            .unwrap()
            .contains("invalid username or password"),
        "{m:?}"
    );

    let off = json!({"confirm": "CONFIRM_POWER_OFF"});
    for name in ["desk", "stubborn"] {
        let (s, v) = t
            .call(
                "POST",
                &format!("/api/v1/control/power/{name}/on"),
                &admin,
                None,
            )
            .await;
        assert_eq!(
            (s, &v["outcome"]["power_state"]),
            (200, &json!("On")),
            "{name}: {v}"
        );
    }
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/control/power/desk/off",
            &admin,
            Some(off.clone()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        steps(&v["outcome"]),
        vec![
            ("GracefulShutdown".into(), "ok".into()),
            ("wait Off".into(), "ok".into())
        ]
    );
    assert_eq!(
        obeys.presses().await,
        vec![("power".into(), 800), ("power".into(), 800)],
        "short presses"
    );

    let (s, v) = t
        .call(
            "POST",
            "/api/v1/control/power/stubborn/off",
            &admin,
            Some(off),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        steps(&v["outcome"]),
        vec![
            ("GracefulShutdown".into(), "ok".into()),
            ("wait Off".into(), "timeout".into()),
            ("ForceOff".into(), "ok".into()),
            ("wait Off".into(), "ok".into())
        ],
        "the OS ignored the press: held until off"
    );
    assert_eq!(
        ignores.presses().await.last(),
        Some(&("power".to_string(), 6000)),
        "a long press"
    );
}
