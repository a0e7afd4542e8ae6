//! gatehouse behind the real nginx, Caddy and Traefik, configured with the files
//! shipped in nginx/, caddy/ and traefik/. The same scenarios run through each:
//! login redirects, 401 for API clients, identity headers, spoofed identity and
//! addresses, path tricks, and WebSocket upgrades with ?token=.
//!
//! Requests come from 127.0.0.2 so that the real client is not one of
//! gatehouse's trusted proxies (127.0.0.1).

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::proxies::{self, Proxy};
use common::raw::{echoed, echoed_names, request, EchoBackend, RawResponse};
use common::*;
use serde_json::json;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const HOST: &str = "app.example.com";

fn gatehouse_config(issuer: &str) -> String {
    config_with(&format!(
        r#"
[server]
trusted_proxies = ["127.0.0.1/32"]
[[issuers]]
issuer = "{issuer}"
allow_insecure_http = true
audiences = ["gatehouse"]
client_id = "gatehouse-web"
[access]
default_policy = "deny"
[[access.rules]]
domains = ["app.example.com"]
paths = ["^/public/"]
policy = "bypass"
[[access.rules]]
domains = ["app.example.com"]
paths = ["^/office"]
networks = ["127.0.0.2/32"]
policy = "bypass"
[[access.rules]]
domains = ["app.example.com"]
paths = ["^/lan"]
networks = ["6.6.6.0/24"]
policy = "bypass"
[[access.rules]]
domains = ["app.example.com"]
paths = ["(?i)^/admin"]
subjects = ["role:admin"]
policy = "one_factor"
[[access.rules]]
domains = ["app.example.com"]
paths = ["(?i)^/admin"]
policy = "deny"
[[access.rules]]
domains = ["app.example.com"]
policy = "one_factor"
"#
    ))
}

fn users() -> serde_json::Value {
    json!({
        "alice": {"claims": {"preferred_username": "alice", "email": "alice@example.com",
            "name": "Alice Liddell", "realm_access": {"roles": ["admin"]}, "groups": ["/operators"]}},
        "bob": {"claims": {"preferred_username": "bob", "realm_access": {"roles": ["viewer"]}}},
    })
}

struct World {
    idp: Idp,
    gh: Server,
    _backend: EchoBackend,
    proxy: Proxy,
    alice: String,
    bob: String,
}

async fn world(start: fn(SocketAddr, SocketAddr) -> Proxy) -> World {
    let idp = Idp::start(0, &[gen_key("RSA", "r1")], &users());
    let gh = Server::start(&gatehouse_config(&idp.issuer)).await;
    let backend = EchoBackend::start().await;
    let proxy = start(gh.addr, backend.addr);
    // Traefik listens before its file provider has loaded the routes: wait until
    // the public path answers from the backend.
    let ready = eventually(std::time::Duration::from_secs(20), || async {
        request(
            CLIENT,
            proxy.addr,
            "GET",
            "/public/ready",
            &[("Host", HOST)],
        )
        .await
        .echo()
        .is_some()
    })
    .await;
    assert!(
        ready,
        "{} never routed /public/ready to the backend",
        proxy.name
    );
    let alice = idp.token("alice").await;
    let bob = idp.token("bob").await;
    World {
        idp,
        gh,
        _backend: backend,
        proxy,
        alice,
        bob,
    }
}

impl World {
    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        let mut h = vec![("Host", HOST)];
        h.extend_from_slice(headers);
        request(CLIENT, self.proxy.addr, "GET", target, &h).await
    }
}

/// How a lenient upstream might read a raw target: decode everything (even %2F),
/// treat `\` as `/`, drop `;params`, resolve dot segments, ignore case.
fn lenient_path(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .replace('\\', "/");
    let mut out: Vec<String> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_ascii_lowercase()),
        }
    }
    format!("/{}", out.join("/"))
}

async fn scenarios(w: World) {
    let name = w.proxy.name;
    let alice = format!("Bearer {}", w.alice);
    let bob = format!("Bearer {}", w.bob);

    // Browser navigation without credentials: to the login page, carrying the URL.
    let r = w
        .get(
            "/dashboard?x=1",
            &[("Accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(r.status, 302, "{name}: browser redirect\n{r:?}");
    let loc = r.header("location").unwrap_or("");
    assert!(
        loc.starts_with("https://auth.example.com/login?rd="),
        "{name}: {loc}"
    );
    assert!(
        loc.contains("app.example.com") && loc.contains("%2Fdashboard%3Fx%3D1"),
        "{name}: {loc}"
    );

    // API call without credentials: 401 with a Bearer challenge, nothing upstream.
    let r = w.get("/api/items", &[("Accept", "application/json")]).await;
    assert_eq!(r.status, 401, "{name}: api 401\n{r:?}");
    assert!(r.echo().is_none());
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{name}: {r:?}"
    );
    assert!(
        r.header("location").is_none(),
        "{name}: no redirect for API clients"
    );

    // A valid token: the upstream sees exactly gatehouse's identity headers.
    let r = w.get("/api/items", &[("Authorization", &alice)]).await;
    assert_eq!(r.status, 200, "{name}: {r:?}");
    let e = r.echo().expect("reached the backend");
    assert_eq!(echoed(&e, "remote-user"), vec!["alice"], "{name}");
    assert_eq!(
        echoed(&e, "remote-groups"),
        vec!["admin,operators"],
        "{name}"
    );
    assert_eq!(
        echoed(&e, "remote-email"),
        vec!["alice@example.com"],
        "{name}"
    );
    assert_eq!(echoed(&e, "remote-name"), vec!["Alice Liddell"], "{name}");
    assert_eq!(
        w.get("/admin/users", &[("Authorization", &alice)])
            .await
            .status,
        200,
        "{name}"
    );

    // A token without the needed role: 403, and the upstream is never asked.
    let r = w.get("/admin/users", &[("Authorization", &bob)]).await;
    assert_eq!(r.status, 403, "{name}: {r:?}");
    assert!(r.echo().is_none());

    // A client choosing its own identity gains nothing.
    let spoof = [
        ("Authorization", bob.as_str()),
        ("Remote-User", "admin"),
        ("Remote_User", "admin"),
        ("Remote-Groups", "admin"),
        ("Remote_Groups", "admin"),
        ("Remote-Email", "root@example.com"),
        ("X-Forwarded-For", "6.6.6.6"),
    ];
    let r = w.get("/api/items", &spoof).await;
    assert_eq!(r.status, 200, "{name}: {r:?}");
    let e = r.echo().unwrap();
    assert_eq!(echoed(&e, "remote-user"), vec!["bob"], "{name}");
    assert_eq!(echoed(&e, "remote-groups"), vec!["viewer"], "{name}");
    assert!(echoed(&e, "remote-email").is_empty(), "{name}: {e}");
    for n in echoed_names(&e) {
        assert!(!n.starts_with("remote_"), "{name}: the upstream saw {n}");
    }
    assert_eq!(w.get("/admin/x", &spoof).await.status, 403, "{name}");
    // ... also on a bypassed path, where gatehouse names nobody.
    let r = w
        .get(
            "/public/info",
            &[
                ("Remote-User", "admin"),
                ("Remote-Groups", "admin"),
                ("Remote_User", "admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{name}: {r:?}");
    let e = r.echo().unwrap();
    assert!(echoed(&e, "remote-user").is_empty(), "{name}: {e}");
    assert!(echoed(&e, "remote-groups").is_empty(), "{name}: {e}");
    for n in echoed_names(&e) {
        assert!(!n.starts_with("remote_"), "{name}: the upstream saw {n}");
    }

    // Network rules see the real client address, not a forwarded one.
    assert_eq!(
        w.get("/office", &[]).await.status,
        200,
        "{name}: real address 127.0.0.2"
    );
    for xff in ["6.6.6.6", "6.6.6.6, 6.6.6.7"] {
        let r = w
            .get(
                "/lan",
                &[("X-Forwarded-For", xff), ("Accept", "application/json")],
            )
            .await;
        assert_eq!(
            r.status, 401,
            "{name}: spoofed {xff} must not bypass: {r:?}"
        );
    }
    let r = w
        .get(
            "/lan",
            &[("X-Real-IP", "6.6.6.6"), ("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401, "{name}: X-Real-IP");

    // Path tricks never reach a protected upstream path without the right identity.
    for target in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/%2e%2e/admin",
        "//admin",
        "/ADMIN",
        "/Admin/users",
        "/admin%2F",
        "/admin%2fusers",
        "/admin;x",
        "/admin;jsessionid=1/users",
        "/public/..;/admin",
        "/public%2F..%2Fadmin",
        "/public/..%2Fadmin",
        "/public/%2e%2e%2fadmin",
        "/public%5C..%5Cadmin",
        "/admin%00",
        "/%61dmin",
        "/admin#x",
        "/admin?x=/public/",
        "/public/./../admin",
    ] {
        for auth in [None, Some(bob.as_str())] {
            let mut h = vec![("Accept", "application/json")];
            if let Some(a) = auth {
                h.push(("Authorization", a));
            }
            let r = w.get(target, &h).await;
            if let Some(e) = r.echo() {
                let seen = e["target"].as_str().unwrap_or("").to_string();
                let p = lenient_path(&seen);
                assert!(
                    !p.starts_with("/admin"),
                    "{name}: {target} (auth: {}) reached the upstream as {seen} = {p}",
                    auth.is_some()
                );
            } else {
                assert!(r.status >= 400, "{name}: {target}: {}", r.status);
            }
        }
    }

    // WebSocket: ?token= on the upgrade request identifies the caller; nothing else does.
    let ws = |t: String| async move {
        let target = t;
        request(
            CLIENT,
            w.proxy.addr,
            "GET",
            &target,
            &[
                ("Host", HOST),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
        )
        .await
    };
    let r = ws(format!("/ws?token={}", w.alice)).await;
    assert_eq!(r.status, 101, "{name}: websocket with token: {r:?}");
    assert_eq!(r.header("x-echo-remote-user"), Some("alice"), "{name}");
    let r = ws("/ws".into()).await;
    assert_eq!(r.status, 401, "{name}: websocket without token: {r:?}");
    let r = ws("/ws?token=not-a-token".into()).await;
    assert_eq!(r.status, 401, "{name}: websocket with a bad token");
    let r = ws(format!("/ws?token={}&token={}", w.bob, w.alice)).await;
    assert_eq!(r.status, 401, "{name}: two tokens are ambiguous");
    // a token in the query of an ordinary request is not a credential
    let r = w
        .get(
            &format!("/api/items?token={}", w.alice),
            &[("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401, "{name}: query token without upgrade");

    // gatehouse's own host through the proxy: the login, the API, and the real
    // client address (a spoofed X-Forwarded-For gains nothing).
    let auth = |target: String, headers: Vec<(&'static str, String)>| {
        let addr = w.proxy.addr;
        async move {
            let mut h: Vec<(&str, &str)> = vec![("Host", "auth.example.com")];
            h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            request(CLIENT, addr, "GET", &target, &h).await
        }
    };
    let r = auth("/login?rd=https%3A%2F%2Fapp.example.com%2Fx".into(), vec![]).await;
    assert_eq!(r.status, 302, "{name}: /login through the proxy\n{r:?}");
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with(&format!("{}/auth?", w.idp.issuer))),
        "{name}: {r:?}"
    );
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("gatehouse_session_login_")),
        "{name}: the pre-login cookie reaches the browser"
    );
    let r = auth("/api/v1/me".into(), vec![("Authorization", alice.clone())]).await;
    assert_eq!(r.status, 200, "{name}: the API through the proxy\n{r:?}");
    // The admin socket through the proxy: the upgrade passes, the greeting arrives.
    {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/api/v1/ws?token={}", w.proxy.addr, w.alice)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Host", "auth.example.com".parse().unwrap());
        let (mut sock, _) = tokio_tungstenite::connect_async(req)
            .await
            .unwrap_or_else(|e| panic!("{name}: the WebSocket upgrade through the proxy: {e}"));
        let hello = tokio::time::timeout(std::time::Duration::from_secs(10), sock.next())
            .await
            .expect("a greeting")
            .expect("open")
            .expect("a frame");
        assert!(
            hello.to_text().unwrap().contains("connection_established"),
            "{name}: {hello:?}"
        );
    }
    assert!(r.body.contains("\"alice\""), "{name}: {}", r.body);
    // The admin UI through the proxy, its CSP intact.
    for path in ["/ui/", "/ui/app.js"] {
        let r = auth(path.into(), vec![]).await;
        assert_eq!(r.status, 200, "{name}: {path} through the proxy\n{r:?}");
        assert_eq!(
            r.header("content-security-policy"),
            Some(gatehouse::http::ui::CSP),
            "{name}: {path}"
        );
    }
    let forged = format!(
        "Bearer {}.{}",
        w.alice.rsplit_once('.').unwrap().0,
        "A".repeat(342)
    );
    let now = gatehouse::clock::Clock::now(&gatehouse::clock::SystemClock);
    // Earlier scenarios already refused some credentials from this client.
    let mut banned = false;
    for _ in 0..10 {
        let r = auth(
            "/api/v1/me".into(),
            vec![
                ("Authorization", forged.clone()),
                ("X-Forwarded-For", "6.6.6.6".into()),
            ],
        )
        .await;
        if r.status == 403 {
            assert!(r.body.contains("banned"), "{name}: {r:?}");
            banned = true;
            break;
        }
        assert_eq!(r.status, 401, "{name}: {r:?}");
    }
    assert!(banned, "{name}: ten forged tokens lead to a ban");
    let reg = &w.gh.state.regulation;
    assert!(
        reg.ip_banned(CLIENT, now),
        "{name}: the real client is banned"
    );
    assert!(
        !reg.ip_banned("6.6.6.6".parse().unwrap(), now),
        "{name}: not the spoofed one"
    );
    let r = w.get("/api/items", &[("Authorization", &alice)]).await;
    assert_eq!(
        r.status, 403,
        "{name}: and the ban holds on the decision path: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request() {
    scenarios(world(proxies::nginx).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth() {
    scenarios(world(proxies::caddy).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_forward_auth() {
    scenarios(world(proxies::traefik).await).await;
}
