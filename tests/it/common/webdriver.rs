//! A real browser for the UI tests: Debian's headless `chromium`, driven
//! through `chromedriver` with the W3C WebDriver protocol (plain JSON over
//! HTTP, spoken here with reqwest). Host names given to [`Driver::start`]
//! resolve to 127.0.0.1 inside the browser, so a page can be reached as
//! `http://auth.example.com:PORT/` through a proxy on loopback.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::proxies::program;

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    hosts: Vec<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free port; `hosts` resolve to 127.0.0.1.
    pub fn start(hosts: &[&str]) -> Driver {
        let bin = program(
            "chromedriver",
            "apt-get install chromium chromium-driver (scripts/test.sh does)",
        );
        let port = super::free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        super::wait_for_listener(port, "chromedriver", Duration::from_secs(20));
        Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// A new browser (its own profile: no cookies shared with another).
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let rules: Vec<String> = self
            .hosts
            .iter()
            .map(|h| format!("MAP {h} 127.0.0.1"))
            .collect();
        let chromium = program("chromium", "apt-get install chromium");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--disable-features=Translate,MediaRouter",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                    format!("--host-resolver-rules={}", rules.join(", ")),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a browser session: {r}"))
            .to_string();
        Browser {
            base: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
            _profile: profile,
        }
    }
}

pub struct Browser {
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rq = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let v: Value = rq.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        let v = self.post("/url", json!({ "url": url })).await;
        assert!(v.is_null(), "navigating to {url}: {v}");
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The first element matching `css`, if any.
    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        if std::env::var_os("WD_DEBUG").is_some() {
            eprintln!("find {css}: {v}");
        }
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// Waits (at most 15 s) for an element matching `css`; its reference.
    pub async fn wait_for(&self, css: &str) -> String {
        let t = Instant::now();
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "no element {css} at {} in 15 s; the page says: {}",
                self.url().await,
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most 15 s) until `script` (a function body) returns true.
    pub async fn wait_until(&self, what: &str, script: &str, args: Value) {
        let t = Instant::now();
        while self.js(script, args.clone()).await != json!(true) {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{what}: not within 15 s; the page says: {}",
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) {
        self.wait_until(
            &format!("{css} shows {needle:?}"),
            "const e = document.querySelector(arguments[0]); return !!e && e.textContent.includes(arguments[1]);",
            json!([css, needle]),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Does `what` to the element matching `css`, finding it again when the
    /// page re-rendered it in between (a live update).
    async fn on_element(&self, css: &str, what: &str, body: Value) {
        for _ in 0..5 {
            let e = self.wait_for(css).await;
            let v = self
                .post(&format!("/element/{e}/{what}"), body.clone())
                .await;
            if v.is_null() {
                return;
            }
            assert!(
                v["error"] == "stale element reference",
                "{what} on {css}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} kept being replaced");
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", json!({})).await;
    }

    /// Types into a field (after clearing it), as a user would, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "clear", json!({})).await;
        self.on_element(css, "value", json!({ "text": text })).await;
    }

    /// Presses keys on whatever has the focus (e.g. "\u{E00C}" = Escape).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a screenshot"))
            .unwrap()
    }

    /// The browser console's messages since the last call (Chromium's log).
    pub async fn console(&self) -> Vec<String> {
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn quit(self) {
        self.call(reqwest::Method::DELETE, "", None).await;
    }
}
