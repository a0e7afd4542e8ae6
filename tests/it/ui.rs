//! The admin UI in a real browser (Debian's headless Chromium through
//! chromedriver), behind the shipped nginx configuration, logged in through the
//! real OpenID provider's form: two users in two browsers, a termination that
//! closes the other's socket with 1008, the allowlist, the kill switch through
//! its modal, the CSP holding (no console violations), and the README's
//! screenshot.

use crate::common;
use common::raw::EchoBackend;
use common::webdriver::{Browser, Driver};
use common::*;
use serde_json::{json, Value};

const AUTH_HOST: &str = "auth.example.com";
const SECRET: &str = "ui-test-session-secret-0123456789abcdef";

struct World {
    gh: Server,
    idp: Idp,
    proxy: proxies::Proxy,
    _backend: EchoBackend,
    _accounts: tempfile::TempDir,
    /// `http://auth.example.com:PORT`: gatehouse through nginx.
    public: String,
}

async fn world() -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gh_addr = listener.local_addr().unwrap();
    let backend = EchoBackend::start().await;
    let proxy = proxies::nginx(gh_addr, backend.addr);
    let public = format!("http://{AUTH_HOST}:{}", proxy.addr.port());
    let accounts = tempfile::tempdir().unwrap();
    let acct = |user: &str, roles: &[&str]| {
        json!({
            "password": format!("pw-{user}"),
            "claims": {"preferred_username": user, "realm_access": {"roles": roles}},
        })
    };
    let path = accounts.path().join("accounts.json");
    std::fs::write(
        &path,
        json!({"root": acct("root", &["admin"]), "bob": acct("bob", &["ops"])}).to_string(),
    )
    .unwrap();
    let rp = json!({
        "client_id": "gatehouse-web",
        "redirect_uri": format!("{public}/callback"),
        "post_logout_redirect_uri": format!("{public}/ui/"),
    });
    let idp = Idp::start_with_env(
        0,
        &[gen_key("RSA", "rsa")],
        &json!({}),
        &[
            ("IDP_RP", rp.to_string()),
            ("IDP_ACCOUNTS", path.to_str().unwrap().to_string()),
        ],
    );
    let config = config_with(&format!(
        r#"
[server]
public_url = "{public}"
[[issuers]]
issuer = "{issuer}"
allow_insecure_http = true
audiences = ["gatehouse"]
client_id = "gatehouse-web"
client_secret = "secret"
[session]
insecure_http = true
secret = "{SECRET}"
[access]
default_policy = "deny"
two_factor_acr = ["gold"]
[[access.rules]]
domains = ["app.example.com"]
policy = "one_factor"
[admin.permissions]
ops = ["sessions:read", "events:read", "status:read"]
[control.kill_switch]
engage_deny = true
[[actions]]
name = "rotate-logs"
description = "Rotate the feed's logs"
argv = ["/bin/sh", "-c", "echo rotating $1 days, $2", "sh", "{{days}}", "{{mode}}"]
params = {{ days = {{ type = "integer", min = 1, max = 90 }}, mode = {{ type = "enum", values = ["gzip", "plain"] }} }}
"#,
        issuer = idp.issuer
    ));
    let gh = Server::start_bound(listener, &config, None, tempfile::tempdir().unwrap()).await;
    World {
        gh,
        idp,
        proxy,
        _backend: backend,
        _accounts: accounts,
        public,
    }
}

/// Opens the UI and logs in through the IdP's form (`otp`: with a second factor).
async fn log_in(w: &World, b: &Browser, user: &str, otp: bool) {
    b.goto(&format!("{}/ui/", w.public)).await;
    b.type_into("input[name=login]", user).await;
    b.type_into("input[name=password]", &format!("pw-{user}"))
        .await;
    if otp {
        b.type_into("input[name=otp]", "123456").await;
    }
    b.click("button[type=submit]").await;
    b.wait_text("#user", user).await;
    assert!(
        b.url().await.starts_with(&format!("{}/ui/", w.public)),
        "back on the UI: {}",
        b.url().await
    );
    b.wait_text("#live", "live").await;
}

/// `GET path` from the page with its cookie (a synchronous XHR): the status.
async fn page_status(b: &Browser, path: &str) -> u16 {
    let v = b
        .js(
            "const x = new XMLHttpRequest(); x.open('GET', arguments[0], false); x.send(); return x.status;",
            json!([path]),
        )
        .await;
    v.as_u64().unwrap_or(0) as u16
}

async fn allowlist_cidrs(w: &World, token: &str) -> Vec<String> {
    let (_, v) =
        w.gh.api("GET", "/api/v1/allowlist", Some(token), None)
            .await;
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cidr"].as_str().unwrap().to_string())
        .collect()
}

async fn kill_switch(w: &World, token: &str) -> Value {
    w.gh.api("GET", "/api/v1/control/kill-switch", Some(token), None)
        .await
        .1
}

async fn assert_no_csp_violations(b: &Browser, who: &str) {
    let bad: Vec<String> = b
        .console()
        .await
        .into_iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Refused to"))
        .collect();
    assert!(bad.is_empty(), "{who}'s console: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_in_a_real_browser() {
    let w = world().await;
    let driver = Driver::start(&[AUTH_HOST, "app.example.com"]);
    let root_token = w.gh.mint("auditor", &["admin"]);

    // The page's own headers: a strict CSP, no framing.
    let r = client().get(w.gh.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    // root logs in (with a second factor) and sees the overview, live.
    let a = driver.browser(1280, 900).await;
    log_in(&w, &a, "root", true).await;
    a.wait_for("#nav a[data-page=controls]").await;
    a.wait_text("#live-stats", "Decisions / s").await;
    a.click("#nav a[data-page=sessions]").await;
    a.wait_text("main table", "root").await;

    // Every page of root's opens without an error.
    for page in [
        "bans",
        "audit",
        "monitoring",
        "allowlist",
        "controls",
        "overview",
    ] {
        a.click(&format!("#nav a[data-page={page}]")).await;
        a.wait_until(
            &format!("the {page} page loaded"),
            "return document.querySelector('#nav a[aria-current=page]').dataset.page === arguments[0] && !document.querySelector('main').innerText.includes('Loading');",
            json!([page]),
        )
        .await;
        a.wait_for("main .table-wrap, main .card, main p.muted")
            .await;
        let errors = a
            .js(
                "return [...document.querySelectorAll('main .error')].map(e => e.innerText).join('');",
                json!([]),
            )
            .await;
        assert_eq!(errors, json!(""), "{page}");
        match page {
            "audit" => {
                a.wait_text("main table", "login").await;
                a.click("#audit-verify-go").await;
                a.wait_text("#audit-verify", "ok: ").await;
            }
            "monitoring" => {
                a.wait_for("main svg.chart").await;
            }
            _ => {}
        }
    }
    a.click("#nav a[data-page=sessions]").await;

    // bob, on a phone-sized screen, sees only what his permissions allow.
    let b = driver.browser(390, 844).await;
    log_in(&w, &b, "bob", false).await;
    let links = b
        .js(
            "return [...document.querySelectorAll('#nav a')].map(a => a.dataset.page);",
            json!([]),
        )
        .await;
    assert_eq!(links, json!(["overview", "sessions"]), "bob's pages");
    b.click("#menu").await;
    b.click("#nav a[data-page=sessions]").await;
    b.wait_text("main table", "bob").await;
    assert_eq!(
        b.js(
            "return document.querySelectorAll('button[data-session], #terminate-all').length;",
            json!([])
        )
        .await,
        json!(0),
        "no terminate buttons without sessions:terminate"
    );
    assert_eq!(page_status(&b, "/api/v1/me").await, 200);

    // root sees bob's session appear (the socket's event refreshes the list)
    // and terminates it through the modal.
    a.wait_text("main table", "bob").await;
    a.click("button[aria-label^=\"Terminate bob\"]").await;
    a.wait_text("#modal-title", "Terminate bob's session?")
        .await;
    a.click("#modal-ok").await;
    // bob's socket closes with 1008 and his next request is refused.
    b.wait_text("#live", "session_ended (1008)").await;
    assert_eq!(page_status(&b, "/api/v1/me").await, 401);
    b.wait_text("#banner", "Your access has ended").await;
    a.wait_until(
        "bob's row gone",
        "return !document.querySelector('main table') || !document.querySelector('main table').innerText.includes('bob');",
        json!([]),
    )
    .await;

    // The allowlist: add, see, remove; an import with a bad line names it.
    a.click("#nav a[data-page=allowlist]").await;
    a.type_into("#allow-cidr", "198.51.100.0/24").await;
    a.type_into("#allow-desc", "added in the UI").await;
    a.click("#allow-add").await;
    a.wait_text("main table", "198.51.100.0/24").await;
    assert!(allowlist_cidrs(&w, &root_token)
        .await
        .contains(&"198.51.100.0/24".to_string()));
    a.click("button[data-remove=\"198.51.100.0/24\"]").await;
    a.click("#modal-ok").await;
    a.wait_until(
        "the entry gone",
        "return !document.querySelector('main').innerText.includes('198.51.100.0/24');",
        json!([]),
    )
    .await;
    assert!(allowlist_cidrs(&w, &root_token).await.is_empty());
    a.click("details summary").await;
    a.type_into(
        "#allow-import",
        "203.0.113.0/24 # lab\n\n# a comment\nnot-a-network\n",
    )
    .await;
    a.click("#allow-import-go").await;
    a.wait_text("#import-errors", "line 4").await;
    assert!(
        allowlist_cidrs(&w, &root_token).await.is_empty(),
        "all or nothing"
    );

    // The kill switch through its modal: Escape closes it, a wrong phrase is
    // refused by the server, the right one engages it, shown live.
    a.click("#nav a[data-page=controls]").await;
    a.click("#kill-press").await;
    a.wait_text("#modal-title", "Emergency stop").await;
    a.keys("\u{E00C}").await;
    a.wait_until(
        "the modal closed by Escape",
        "return !document.getElementById('modal').open;",
        json!([]),
    )
    .await;
    a.click("#kill-press").await;
    a.type_into("#kill-reason", "UI test").await;
    a.type_into("#modal-phrase", "CONFIRM_STOP").await;
    a.click("#modal-ok").await;
    a.wait_text("#modal-error", "CONFIRM_EMERGENCY_STOP").await;
    let k = kill_switch(&w, &root_token).await;
    assert_eq!(k["engaged"], false, "a wrong phrase changes nothing");
    a.type_into("#modal-phrase", "CONFIRM_EMERGENCY_STOP").await;
    a.click("#modal-ok").await;
    a.wait_text("#kill-state", "ENGAGED").await;
    a.wait_text("#control-outcome", "Result").await;
    let k = kill_switch(&w, &root_token).await;
    assert_eq!(
        (k["engaged"].clone(), k["engaged_by"].clone()),
        (json!(true), json!("root"))
    );
    assert_eq!(
        w.gh.forward_status("app.example.com", "/", &w.gh.mint("carol", &[]))
            .await,
        403,
        "engaged: every request denied"
    );
    a.click("#nav a[data-page=overview]").await;
    a.wait_text("#stat-kill", "ENGAGED").await;
    if std::env::var_os("GATEHOUSE_WRITE_SCREENSHOT").is_some() {
        std::fs::write(proxies::repo("docs/ui-overview.png"), a.screenshot().await).unwrap();
    }
    let png = a.screenshot().await;
    assert_eq!(&png[..4], b"\x89PNG");
    a.click("#nav a[data-page=controls]").await;
    a.click("#kill-release").await;
    a.click("#modal-ok").await;
    a.wait_text("#kill-state", "off").await;

    // An action with typed parameters: a bad one is named, a good one runs
    // and its output is shown.
    a.click("#nav a[data-page=actions]").await;
    a.wait_for("form[aria-label=rotate-logs] input[name=days]")
        .await;
    a.type_into("form[aria-label=rotate-logs] input[name=days]", "900")
        .await;
    a.js(
        "document.querySelector('form[aria-label=rotate-logs] input[name=days]').removeAttribute('max'); return 1;",
        json!([]),
    )
    .await;
    a.click("form[aria-label=rotate-logs] button[type=submit]")
        .await;
    a.wait_text("form[aria-label=rotate-logs] .error", "days")
        .await;
    a.type_into("form[aria-label=rotate-logs] input[name=days]", "7")
        .await;
    a.click("form[aria-label=rotate-logs] button[type=submit]")
        .await;
    a.wait_text("#action-run", "succeeded").await;
    a.wait_text("#action-run pre", "rotating 7 days, gzip")
        .await;

    // Every admin change made in the UI is in the audit log, by root.
    let (_, v) =
        w.gh.api(
            "GET",
            "/api/v1/audit?actor=root&limit=100",
            Some(&root_token),
            None,
        )
        .await;
    let done: Vec<(&str, &str)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["result"].as_str().unwrap()))
        .collect();
    for needed in [
        ("session.terminate", "ok"),
        ("allowlist.add", "ok"),
        ("allowlist.remove", "ok"),
        ("control.kill_switch", "refused"),
        ("control.kill_switch", "ok"),
        ("control.kill_switch.release", "ok"),
        ("action.run", "ok"),
    ] {
        assert!(done.contains(&needed), "{needed:?} in {done:?}");
    }

    assert_no_csp_violations(&a, "root").await;
    assert_no_csp_violations(&b, "bob").await;
    a.quit().await;
    b.quit().await;
    drop(w.proxy);
    w.idp.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_files_are_served_with_their_headers_and_nothing_else() {
    let gh = Server::start(&config_with("")).await;
    let r = client().get(gh.url("/ui")).send().await.unwrap();
    assert_eq!(r.status(), 308, "/ui redirects to /ui/");
    assert_eq!(r.headers()["location"], "/ui/");
    for (file, ctype) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let r = client()
            .get(gh.url(&format!("/ui/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ctype));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let etag = r.headers()["etag"].clone();
        let again = client()
            .get(gh.url(&format!("/ui/{file}")))
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
    }
    for bad in [
        "/ui/../Cargo.toml",
        "/ui/nope.js",
        "/ui/%2e%2e%2fCargo.toml",
    ] {
        let r = client().get(gh.url(bad)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_found");
    }
    // No inline script or style in the page: the CSP would refuse them.
    let page = text_of(gh.url("/ui/")).await;
    assert!(!page.contains("<script>") && !page.contains("style="));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no third-party origins"
    );
}

#[test]
fn the_ui_script_parses_and_builds_no_html_from_strings() {
    let js = proxies::repo("ui/app.js");
    let out = std::process::Command::new("node")
        .arg("--check")
        .arg(&js)
        .output()
        .expect("node (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything shown goes through textContent: no HTML parsing of data.
    let src = std::fs::read_to_string(&js).unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!src.contains(sink), "ui/app.js uses {sink}");
    }
}
