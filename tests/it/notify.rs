//! Notifications to real receivers on loopback: a webhook (signed), the
//! Telegram Bot API's shape (through `api_base`), and e-mail through a real
//! SMTP server (PyPI aiosmtpd) over STARTTLS with a private CA; retries when
//! a receiver fails, counted in /metrics; the event filter; and an action that
//! is never held up by a notification.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request a receiver got: path, headers (lower-case names), body.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// An HTTP/1.1 receiver answering every request with `status` and `answer`.
async fn receiver(status: u16, answer: &'static str) -> (String, Arc<Mutex<Vec<Got>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Got>>> = Default::default();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body_start) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&buf[..i]).into_owned(), i + 4);
                    }
                };
                let mut lines = head.lines();
                let path = lines
                    .next()
                    .unwrap_or("")
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[body_start..]).into_owned();
                g.lock().unwrap().push(Got {
                    path,
                    headers,
                    body,
                });
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, got)
}

struct Smtp {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
    ca: std::path::PathBuf,
}

impl Smtp {
    /// aiosmtpd with STARTTLS (required) from a private CA, delivering to a maildir.
    fn start() -> Smtp {
        let maildir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = common::redfish::private_ca(maildir.path());
        let port = free_port();
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg("--tlscert")
            .arg(&cert)
            .arg("--tlskey")
            .arg(&key)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
        wait_for_listener(port, "aiosmtpd", Duration::from_secs(20));
        Smtp {
            child,
            port,
            maildir,
            ca,
        }
    }

    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail/new");
        let Ok(rd) = std::fs::read_dir(dir) else {
            return vec![];
        };
        rd.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl Smtp {
    /// tests/smtp/server.py: STARTTLS and AUTH required, for `user`/`password`.
    fn start_with_auth(user: &str, password: &str) -> Smtp {
        let maildir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = common::redfish::private_ca(maildir.path());
        let port = free_port();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(maildir.path().join("mail"))
            .args([user, password])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 tests/smtp/server.py (pip install aiosmtpd)");
        wait_for_listener(port, "the SMTP server", Duration::from_secs(20));
        Smtp {
            child,
            port,
            maildir,
            ca,
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "waited for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until_metric(gh: &Server, name: &str, want: u64) {
    let t = Instant::now();
    while gh.metric(name).await != want {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "waited for {name} = {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn overrides(hook: &str, tg: &str, smtp: &Smtp, events: &str) -> String {
    format!(
        r#"
[access]
two_factor_acr = ["gold"]
[control.kill_switch]
after = [["/bin/true"]]
[notify]
{events}
webhook = [{{ url = "{hook}/hook", secret = "hook-secret" }}]
telegram = {{ bot_token = "123:tg-token", chat_id = "-100200", api_base = "{tg}" }}
smtp = {{ host = "127.0.0.1", port = {port}, tls = "starttls", from = "gatehouse@example.com", to = ["ops@example.com"], ca_file = "{ca}" }}
"#,
        port = smtp.port,
        ca = smtp.ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_press_reaches_the_webhook_telegram_and_mail() {
    let (hook, hooks) = receiver(200, "{}").await;
    let (tg, tgs) = receiver(200, r#"{"ok":true,"result":{}}"#).await;
    let smtp = Smtp::start();
    let gh = Server::start(&config_with(&overrides(&hook, &tg, &smtp, ""))).await;
    let admin = gh.mint_as("root", &["admin"], true, 0);
    let (s, v) = gh
        .api(
            "POST",
            "/api/v1/control/kill-switch",
            Some(&admin),
            Some(json!({"confirm": "CONFIRM_EMERGENCY_STOP", "reason": "runaway orders"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    until("the webhook", || !hooks.lock().unwrap().is_empty()).await;
    let h = hooks.lock().unwrap()[0].clone();
    assert_eq!(h.path, "/hook");
    let body: Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(body["event"], "kill_switch");
    assert_eq!(body["title"], "kill switch pressed by root");
    assert_eq!(body["details"]["reason"], "runaway orders");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"hook-secret");
    let tag = aws_lc_rs::hmac::sign(&key, h.body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let sig = h
        .headers
        .iter()
        .find(|(k, _)| k == "x-gatehouse-signature")
        .unwrap()
        .1
        .clone();
    assert_eq!(sig, format!("sha256={hex}"), "the body is signed");

    until("Telegram", || !tgs.lock().unwrap().is_empty()).await;
    let t = tgs.lock().unwrap()[0].clone();
    assert_eq!(t.path, "/bot123:tg-token/sendMessage");
    let msg: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(msg["chat_id"], "-100200");
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .contains("kill switch pressed by root"),
        "{msg}"
    );

    until("the mail", || !smtp.messages().is_empty()).await;
    let mail = smtp.messages().remove(0);
    assert!(
        mail.contains("Subject: gatehouse: kill switch pressed by root"),
        "{mail}"
    );
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(mail.contains("runaway orders"), "{mail}");

    until_metric(
        &gh,
        "gatehouse_notifications_total{channel=\"smtp\",result=\"ok\"}",
        1,
    )
    .await;
    until_metric(
        &gh,
        "gatehouse_notifications_total{channel=\"webhook\",result=\"ok\"}",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_counted_and_holds_nothing_up() {
    let (hook, hooks) = receiver(500, "{}").await;
    let (tg, tgs) = receiver(200, r#"{"ok":false,"description":"chat not found"}"#).await;
    let smtp = Smtp::start();
    let gh = Server::start(&config_with(&overrides(
        &hook,
        &tg,
        &smtp,
        "events = [\"ban\"]",
    )))
    .await;
    let admin = gh.mint_as("root", &["admin"], true, 0);
    let started = Instant::now();
    let (s, _) = gh.ban(&admin, "ip", "198.51.100.9").await;
    assert_eq!(s, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the ban did not wait for delivery"
    );
    // Not asked for: no kill switch notes.
    let (s, _) = gh
        .api(
            "POST",
            "/api/v1/control/kill-switch",
            Some(&admin),
            Some(json!({"confirm": "CONFIRM_EMERGENCY_STOP"})),
        )
        .await;
    assert_eq!(s, 200);
    until("three webhook attempts", || {
        hooks.lock().unwrap().len() >= 3
    })
    .await;
    until_metric(
        &gh,
        "gatehouse_notifications_total{channel=\"webhook\",result=\"failed\"}",
        1,
    )
    .await;
    until_metric(
        &gh,
        "gatehouse_notifications_total{channel=\"telegram\",result=\"failed\"}",
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hooks.lock().unwrap().len(),
        3,
        "three attempts, then given up"
    );
    assert_eq!(tgs.lock().unwrap().len(), 3);
    let events: Vec<String> = hooks
        .lock()
        .unwrap()
        .iter()
        .map(|h| {
            serde_json::from_str::<Value>(&h.body).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        events.iter().all(|e| e == "ban"),
        "only the events asked for: {events:?}"
    );
    until("the mail", || !smtp.messages().is_empty()).await;
    assert!(smtp.messages()[0].contains("banned by root"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_authenticates_after_starttls_and_a_wrong_password_is_counted() {
    let good = Smtp::start_with_auth("gh", "mail-secret");
    let bad = Smtp::start_with_auth("gh", "mail-secret");
    let smtp = |s: &Smtp, pw: &str| {
        format!(
            "smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"starttls\", username = \"gh\", password = \"{pw}\", from = \"gatehouse@example.com\", to = [\"ops@example.com\"], ca_file = \"{}\" }}",
            s.port,
            s.ca.display()
        )
    };
    let a = Server::start(&config_with(&format!(
        "[notify]\n{}",
        smtp(&good, "mail-secret")
    )))
    .await;
    let b = Server::start(&config_with(&format!(
        "[notify]\n{}",
        smtp(&bad, "guessed")
    )))
    .await;
    for gh in [&a, &b] {
        let admin = gh.mint_as("root", &["admin"], false, 0);
        let (s, _) = gh.ban(&admin, "user", "mallory").await;
        assert_eq!(s, 200);
    }
    until("the mail", || !good.messages().is_empty()).await;
    assert!(good.messages()[0].contains("Subject: gatehouse: user mallory banned by root"));
    until_metric(
        &b,
        "gatehouse_notifications_total{channel=\"smtp\",result=\"failed\"}",
        1,
    )
    .await;
    assert!(
        bad.messages().is_empty(),
        "a wrong password delivers nothing"
    );
}
