//! The browser login flow against the real OpenID provider (npm oidc-provider):
//! log in through its form, land on `rd` with a session that the decision
//! endpoints and the companion API accept; step-up; logout; back-channel logout
//! (real and crafted tokens); refresh bringing role changes; inactivity; cookie
//! API calls and cross-site refusal; restart — on SQLite and on PostgreSQL.

use crate::common;

use std::sync::Arc;

use common::browser::{Answer, Browser};
use common::*;
use gatehouse::clock::{Clock, ManualClock, SharedClock, SystemClock};
use gatehouse::identity::oidc::PreLogin;
use gatehouse::identity::seal::Sealer;
use gatehouse::identity::MintRequest;
use serde_json::{json, Value};

const SECRET: &str = "test-session-secret-0123456789abcdef";
const CLIENT: &str = "gatehouse-web";
const APP: &str = "https://app.example.test/dash?x=1";

fn accounts(path: &std::path::Path, alice_roles: &[&str], alice_disabled: bool) {
    let acct = |user: &str, roles: &[&str]| {
        json!({
            "password": format!("pw-{user}"),
            "claims": {
                "preferred_username": user,
                "email": format!("{user}@example.test"),
                "name": format!("User {user}"),
                "realm_access": {"roles": roles},
            }
        })
    };
    let mut alice = acct("alice", alice_roles);
    alice["disabled"] = json!(alice_disabled);
    let v = json!({
        "alice": alice,
        "root": acct("root", &["admin"]),
        "bob": acct("bob", &["viewer"]),
        "carol": acct("carol", &["viewer"]),
    });
    std::fs::write(path, v.to_string()).unwrap();
}

fn config(idp: &str, gh_port: u16, store: &str) -> String {
    config_with(&format!(
        r#"
[server]
public_url = "http://127.0.0.1:{gh_port}"
[store]
url = "{store}"
[[issuers]]
issuer = "{idp}"
allow_insecure_http = true
audiences = ["gatehouse"]
client_id = "{CLIENT}"
client_secret = "secret"
[local_issuer]
signing_key_file = "{{dir}}/local.pem"
[session]
insecure_http = true
secret = "{SECRET}"
redirect_domains = ["example.test", "*.example.test"]
default_redirect = "https://app.example.test/"
inactivity = "30m"
lifetime = "12h"
step_up_max_age = "0s"
[access]
default_policy = "deny"
two_factor_acr = ["gold"]
[[access.rules]]
domains = ["app.example.test"]
paths = ["^/admin(/|$)"]
policy = "two_factor"
[[access.rules]]
domains = ["app.example.test"]
policy = "one_factor"
"#
    ))
}

struct World {
    idp: Idp,
    gh: Server,
    port: u16,
    accounts: std::path::PathBuf,
    _acct_dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: String,
    /// Ed25519 private key (PKCS#8 DER) the IdP publishes as kid "ed": for crafted logout tokens.
    ed_pkcs8: Vec<u8>,
}

impl World {
    async fn start(store: &str) -> World {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acct_dir = tempfile::tempdir().unwrap();
        let accounts_path = acct_dir.path().join("accounts.json");
        accounts(&accounts_path, &["viewer"], false);
        let rp = json!({
            "client_id": CLIENT,
            "redirect_uri": format!("http://127.0.0.1:{port}/callback"),
            "backchannel_logout_uri": format!("http://127.0.0.1:{port}/backchannel-logout"),
            "post_logout_redirect_uri": "https://app.example.test/bye",
        });
        let ed = gen_key("OKP", "ed");
        let idp = Idp::start_with_env(
            0,
            &[gen_key("RSA", "rsa"), ed.clone()],
            &json!({}),
            &[
                ("IDP_RP", rp.to_string()),
                ("IDP_ACCOUNTS", accounts_path.to_str().unwrap().to_string()),
            ],
        );
        let clock = ManualClock::new(SystemClock.now());
        let shared: SharedClock = clock.clone();
        let gh = Server::start_bound(
            listener,
            &config(&idp.issuer, port, store),
            Some(shared),
            tempfile::tempdir().unwrap(),
        )
        .await;
        World {
            idp,
            gh,
            port,
            accounts: accounts_path,
            _acct_dir: acct_dir,
            clock,
            store: store.to_string(),
            ed_pkcs8: ed_pkcs8(&ed),
        }
    }

    async fn restart(self) -> World {
        let World {
            idp,
            gh,
            port,
            accounts,
            _acct_dir,
            clock,
            store,
            ed_pkcs8,
        } = self;
        let dir = gh.stop().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let shared: SharedClock = clock.clone();
        let gh = Server::start_bound(
            listener,
            &config(&idp.issuer, port, &store),
            Some(shared),
            dir,
        )
        .await;
        World {
            idp,
            gh,
            port,
            accounts,
            _acct_dir,
            clock,
            store,
            ed_pkcs8,
        }
    }

    fn login_url(&self, rd: &str) -> String {
        let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        self.gh.url(&format!("/login?rd={rd}"))
    }

    /// A full login as `user`; returns the browser (with its cookies) and where it landed.
    async fn login(&self, user: &str, otp: bool) -> (Browser, Answer) {
        let mut b = Browser::new();
        let pw = format!("pw-{user}");
        let a = b
            .walk(
                &self.login_url(APP),
                Some((user, &pw, otp.then_some("123456"))),
            )
            .await;
        (b, a)
    }

    /// `/authz/forward` for `GET https://app.example.test{uri}` with this cookie header.
    async fn decide(&self, cookie: &str, uri: &str, browser: bool) -> reqwest::Response {
        let mut h = vec![("Cookie", cookie)];
        if browser {
            h.push(("Accept", "text/html"));
        }
        self.gh.forward("app.example.test", uri, &h).await
    }

    fn admin_token(&self) -> String {
        let req = MintRequest {
            sub: "ops".into(),
            roles: vec!["admin".into()],
            ttl_secs: 600,
            ..Default::default()
        };
        self.gh
            .state
            .local
            .as_ref()
            .unwrap()
            .mint(&req, self.clock.now())
            .unwrap()
    }

    async fn sessions_of(&self, user: &str) -> Vec<Value> {
        let r = client()
            .get(self.gh.url(&format!("/api/v1/sessions?user={user}")))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["sessions"].as_array().unwrap().clone()
    }

    fn set_accounts(&self, alice_roles: &[&str], alice_disabled: bool) {
        accounts(&self.accounts, alice_roles, alice_disabled);
    }

    /// A logout token signed by the IdP's Ed25519 key (or another one), with
    /// claims adjusted by `edit`.
    fn logout_token(&self, forged: bool, edit: impl FnOnce(&mut Value)) -> String {
        let now = SystemClock.now();
        let mut claims = json!({
            "iss": self.idp.issuer,
            "aud": CLIENT,
            "iat": now,
            "exp": now + 120,
            "jti": gatehouse::identity::seal::random_token(12),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        edit(&mut claims);
        let key = if forged {
            ed_pkcs8(&gen_key("OKP", "ed"))
        } else {
            self.ed_pkcs8.clone()
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("ed".into());
        header.typ = Some("logout+jwt".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&key),
        )
        .unwrap()
    }

    async fn backchannel(&self, token: &str) -> u16 {
        client()
            .post(self.gh.url("/backchannel-logout"))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn session_cookie(b: &Browser) -> String {
    format!(
        "gatehouse_session={}",
        b.get_cookie("gatehouse_session").expect("a session cookie")
    )
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Login, the session on the decision path and the API, termination, restart.
async fn core_flow(w: World) -> World {
    // No credentials: a browser is sent to login with the original URL.
    let r = w.decide("", "/dash?x=1", true).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        header(&r, "location"),
        format!(
            "http://127.0.0.1:{}/login?rd=https%3A%2F%2Fapp.example.test%2Fdash%3Fx%3D1",
            w.port
        )
    );

    // The whole flow through the IdP's login form lands on rd with a session.
    let (alice, landed) = w.login("alice", false).await;
    assert_eq!(landed.status, 302, "{}", landed.body);
    assert_eq!(landed.location.as_deref(), Some(APP));
    let set = landed
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .expect("the callback sets the session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(
        alice
            .jar
            .keys()
            .all(|k| !k.starts_with("gatehouse_session_login")),
        "the pre-login cookie is cleared: {:?}",
        alice.jar
    );
    let cookie = session_cookie(&alice);
    let value = alice.get_cookie("gatehouse_session").unwrap();
    assert!(value.len() >= 22, "at least 128 bits");

    let r = w.decide(&cookie, "/dash", true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "remote-user"), "alice");
    assert_eq!(header(&r, "remote-email"), "alice@example.test");
    assert_eq!(header(&r, "remote-name"), "User alice");
    assert_eq!(
        header(&r, "remote-groups"),
        "viewer",
        "roles from the access token"
    );

    // The session in the API: stored as a hash, never the cookie value.
    let list = w.sessions_of("alice").await;
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert_ne!(s["id"].as_str().unwrap(), value);
    assert_eq!(s["user"], "alice");
    assert_eq!(s["acr"], "pwd");
    assert_eq!(s["amr"], json!(["pwd"]));
    assert!(s["sid"].as_str().is_some_and(|x| !x.is_empty()), "{s}");
    assert!(s["auth_time"].as_i64().is_some(), "{s}");
    assert_eq!(s["user_agent"], "gatehouse-test-browser/1");
    assert_eq!(s["client_addr"], "127.0.0.1");
    let id = s["id"].as_str().unwrap().to_string();

    // The cookie authenticates the companion API too.
    let me: Value = client()
        .get(w.gh.url("/api/v1/me"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["admin"], false);

    // The login is in the audit log, which never holds a token or the cookie.
    let audit: Value = client()
        .get(w.gh.url("/api/v1/audit?action=login"))
        .bearer_auth(w.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "alice" && e["result"] == "ok" && e["details"]["acr"] == "pwd"),
        "{audit}"
    );
    let all = client()
        .get(w.gh.url("/api/v1/audit?limit=1000"))
        .bearer_auth(w.admin_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !all.contains(&value),
        "the session cookie never reaches the audit log"
    );
    assert!(!all.contains("eyJ"), "no JWT in the audit log: {all}");

    // Survives a restart; a terminated one stays terminated.
    let (bob, _) = w.login("bob", false).await;
    let bob_cookie = session_cookie(&bob);
    assert_eq!(w.decide(&bob_cookie, "/", false).await.status(), 200);
    let r = client()
        .delete(w.gh.url(&format!(
            "/api/v1/sessions/{}",
            w.sessions_of("bob").await[0]["id"].as_str().unwrap()
        )))
        .bearer_auth(w.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        w.decide(&bob_cookie, "/", false).await.status(),
        401,
        "the next decision after the API call denies"
    );
    let w = w.restart().await;
    assert_eq!(w.decide(&cookie, "/dash", false).await.status(), 200);
    assert_eq!(w.decide(&bob_cookie, "/", false).await.status(), 401);

    // terminate-all for a user ends alice's session at once.
    let r = client()
        .post(w.gh.url("/api/v1/sessions/terminate-all?user=alice"))
        .bearer_auth(w.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(w.decide(&cookie, "/dash", false).await.status(), 401);
    assert!(w.gh.state.sessions.get_by_id(&id).is_none());
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flow_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let w = World::start(&format!("sqlite://{}/g.db", dir.path().display())).await;
    let w = core_flow(w).await;
    drop(w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flow_postgres() {
    let pg = common::pg::Postgres::start();
    let w = World::start(&pg.url).await;
    let w = core_flow(w).await;
    drop(w);
}

async fn api_call(
    w: &World,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, w.gh.url(path))
        .header("Cookie", cookie);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A gatehouse and the real IdP, on an SQLite store in the server's temp dir.
async fn world() -> World {
    World::start("sqlite://{dir}/g.db").await
}

/// A rule needs two_factor and the session has only a password: browsers go
/// back to the IdP with `step_up=1`, API clients get 403, and the upgraded
/// login replaces the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_up_replaces_the_session_with_a_second_factor() {
    let w = world().await;
    // --- step-up: a rule needs two_factor, the session has only a password.
    let (mut alice, _) = w.login("alice", false).await;
    let old = session_cookie(&alice);
    let r = w.decide(&old, "/admin/x", true).await;
    assert_eq!(r.status(), 302);
    let step = header(&r, "location");
    assert!(step.ends_with("&step_up=1"), "{step}");
    assert_eq!(
        w.decide(&old, "/admin/x", false).await.status(),
        403,
        "API clients get 403"
    );
    let r =
        w.gh.authz(
            "/authz/nginx",
            &[
                ("X-Original-URL", "https://app.example.test/admin/x"),
                ("Accept", "text/html"),
                ("Cookie", &old),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "nginx: 401 + Location, error_page redirects"
    );
    assert!(header(&r, "location").ends_with("&step_up=1"));
    // Back to the IdP with acr_values and max_age=0: it asks again, the OTP is given.
    let landed = alice
        .walk(&step, Some(("alice", "pw-alice", Some("123456"))))
        .await;
    assert_eq!(
        landed.location.as_deref(),
        Some("https://app.example.test/admin/x")
    );
    let upgraded = session_cookie(&alice);
    assert_ne!(upgraded, old, "a new session cookie for new rights");
    assert_eq!(w.decide(&upgraded, "/admin/x", true).await.status(), 200);
    assert_eq!(
        w.decide(&old, "/dash", false).await.status(),
        401,
        "the upgraded session replaced the old one"
    );
    let s = &w.sessions_of("alice").await[0];
    assert_eq!(s["acr"], "gold");
    assert_eq!(s["amr"], json!(["pwd", "otp"]));
}

/// The companion API with a session cookie: writes only from the same origin
/// as JSON; reads need no origin check; a non-admin's cookie is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_takes_the_session_cookie_and_refuses_cross_site_writes() {
    let w = world().await;
    let (alice, _) = w.login("alice", false).await;
    // --- the companion API with the session cookie, and cross-site refusal.
    let (root, _) = w.login("root", false).await;
    let rc = session_cookie(&root);
    let own = format!("http://127.0.0.1:{}", w.port);
    let json_ct = ("Content-Type", "application/json");
    let path = "/api/v1/sessions/terminate-all?user=nobody";
    let post = reqwest::Method::POST;
    for (hdrs, why) in [
        (vec![], "no Origin, no Sec-Fetch-Site"),
        (
            vec![("Origin", "https://evil.example"), json_ct],
            "foreign Origin",
        ),
        (
            vec![
                ("Sec-Fetch-Site", "cross-site"),
                ("Origin", own.as_str()),
                json_ct,
            ],
            "cross-site fetch",
        ),
        (
            vec![("Origin", own.as_str()), ("Content-Type", "text/plain")],
            "not JSON",
        ),
        (
            vec![
                ("Origin", own.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "a form",
        ),
    ] {
        let (status, body) = api_call(&w, post.clone(), path, &rc, &hdrs, Some("{}")).await;
        assert_eq!(status, 403, "{why}");
        assert_eq!(body["error"]["code"], "cross_site_request", "{why}");
    }
    let (status, _) = api_call(
        &w,
        post.clone(),
        path,
        &rc,
        &[("Origin", &own), json_ct],
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "same origin, JSON");
    let (status, _) = api_call(
        &w,
        post.clone(),
        path,
        &rc,
        &[("Sec-Fetch-Site", "same-origin"), json_ct],
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "Sec-Fetch-Site: same-origin");
    let (status, body) =
        api_call(&w, reqwest::Method::GET, "/api/v1/sessions", &rc, &[], None).await;
    assert_eq!(status, 200, "reads need no origin check");
    assert!(body["sessions"].as_array().unwrap().len() >= 2);
    let (status, _) = api_call(
        &w,
        reqwest::Method::GET,
        "/api/v1/sessions",
        &session_cookie(&alice),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 403, "alice is not an admin");
}

/// Logout ends the session here and sends the browser to the IdP's end-session
/// endpoint with the id_token_hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_here_and_at_the_idp() {
    let w = world().await;
    let (root, _) = w.login("root", false).await;
    let rc = session_cookie(&root);
    // --- logout: here and at the IdP, with the id_token_hint.
    let mut root = root;
    let out = root
        .get(&w.gh.url("/logout?rd=https%3A%2F%2Fapp.example.test%2Fbye"))
        .await;
    assert_eq!(out.status, 302);
    let to = url::Url::parse(out.location.as_deref().unwrap()).unwrap();
    assert_eq!(to.path(), "/session/end");
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(
        q["post_logout_redirect_uri"],
        "https://app.example.test/bye"
    );
    assert_eq!(q["id_token_hint"].split('.').count(), 3);
    assert!(
        root.get_cookie("gatehouse_session").is_none(),
        "cookie cleared"
    );
    assert_eq!(w.decide(&rc, "/dash", false).await.status(), 401);
}

/// The real IdP's back-channel logout ends the session of the user who logged
/// out there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idps_backchannel_logout_ends_the_session() {
    let w = world().await;
    // --- back-channel logout from the real IdP: bob logs out at the IdP.
    let (mut bob, _) = w.login("bob", false).await;
    let bc = session_cookie(&bob);
    assert_eq!(w.decide(&bc, "/", false).await.status(), 200);
    let page = bob.get(&format!("{}/session/end", w.idp.issuer)).await;
    let xsrf = page
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the IdP's logout confirmation form")
        .to_string();
    let done = bob
        .request(
            reqwest::Method::POST,
            &format!("{}/session/end/confirm", w.idp.issuer),
            Some(&[("xsrf", xsrf.as_str()), ("logout", "yes")]),
            &[],
        )
        .await;
    assert!(done.status < 400, "{} {}", done.status, done.body);
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            w.decide(&bc, "/", false).await.status() == 401
        })
        .await,
        "the IdP's back-channel logout ended bob's session"
    );
}

/// Crafted logout tokens (forged, malformed, replayed) are refused; the sid
/// form ends one session, the sub form all of the user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_logout_tokens_are_refused_and_sid_or_sub_end_sessions() {
    let w = world().await;
    // --- crafted logout tokens: forged, malformed, replayed; sid and sub forms.
    let (carol1, _) = w.login("carol", false).await;
    let (carol2, _) = w.login("carol", false).await;
    let (c1, c2) = (session_cookie(&carol1), session_cookie(&carol2));
    let sessions = w.sessions_of("carol").await;
    let sid_of = |cookie: &str| {
        let id = gatehouse::identity::session::session_id(cookie.split_once('=').unwrap().1);
        sessions.iter().find(|s| s["id"] == id).unwrap()["sid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let sid1 = sid_of(&c1);
    assert_ne!(sid1, sid_of(&c2));
    let now = SystemClock.now();
    let bad: Vec<(&str, String)> = vec![
        (
            "forged key",
            w.logout_token(true, |c| c["sid"] = json!(sid1)),
        ),
        (
            "nonce",
            w.logout_token(false, |c| {
                c["sid"] = json!(sid1);
                c["nonce"] = json!("n");
            }),
        ),
        (
            "other audience",
            w.logout_token(false, |c| {
                c["sid"] = json!(sid1);
                c["aud"] = json!("someone-else");
            }),
        ),
        (
            "no event",
            w.logout_token(false, |c| {
                c["sid"] = json!(sid1);
                c["events"] = json!({});
            }),
        ),
        (
            "long life",
            w.logout_token(false, |c| {
                c["sid"] = json!(sid1);
                c["exp"] = json!(now + 86400);
            }),
        ),
        (
            "expired",
            w.logout_token(false, |c| {
                c["sid"] = json!(sid1);
                c["iat"] = json!(now - 600);
                c["exp"] = json!(now - 300);
            }),
        ),
        (
            "no jti",
            w.logout_token(false, |c| {
                c["sid"] = json!(sid1);
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        ("neither sid nor sub", w.logout_token(false, |_| {})),
        (
            "other issuer",
            w.logout_token(false, |c| {
                c["sid"] = json!(sid1);
                c["iss"] = json!("https://evil.example");
            }),
        ),
    ];
    for (why, token) in &bad {
        assert_eq!(w.backchannel(token).await, 400, "{why}");
    }
    assert_eq!(w.backchannel("not-a-jwt").await, 400);
    assert_eq!(
        w.decide(&c1, "/", false).await.status(),
        200,
        "nothing ended yet"
    );
    let good = w.logout_token(false, |c| c["sid"] = json!(sid1));
    assert_eq!(w.backchannel(&good).await, 200);
    assert_eq!(
        w.decide(&c1, "/", false).await.status(),
        401,
        "sid form ends that session"
    );
    assert_eq!(
        w.decide(&c2, "/", false).await.status(),
        200,
        "and only that one"
    );
    assert_eq!(w.backchannel(&good).await, 400, "a replayed jti is refused");
    let by_sub = w.logout_token(false, |c| c["sub"] = json!("carol"));
    assert_eq!(w.backchannel(&by_sub).await, 200);
    assert_eq!(
        w.decide(&c2, "/", false).await.status(),
        401,
        "sub form ends all of carol's"
    );
}

/// Callbacks without the pre-login cookie, with another state, a forged nonce
/// or a replayed code are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callbacks_are_refused() {
    let w = world().await;
    // --- hostile callbacks.
    let cb = |q: &str| w.gh.url(&format!("/callback?{q}"));
    let mut stranger = Browser::new();
    let a = stranger
        .get(&cb(
            "code=x&state=0123456789012345678901234567890123456789012",
        ))
        .await;
    assert_eq!(a.status, 400, "no pre-login cookie");
    assert!(a.body.contains("login_expired"), "{}", a.body);
    assert_eq!(stranger.get(&cb("code=x&state=short")).await.status, 400);

    // Stop a real login just before the callback.
    let mut eve = Browser::new();
    let at_cb = eve
        .walk_until(&w.login_url(APP), Some(("bob", "pw-bob", None)), |u| {
            u.contains("/callback")
        })
        .await;
    let cb_url = at_cb.location.unwrap();
    let jar_before = eve.jar.clone();
    let parsed = url::Url::parse(&cb_url).unwrap();
    let state: String = parsed
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    // Same pre-login cookie, a state that differs after its first 10 characters.
    let mut wrong = state.clone();
    wrong.replace_range(20..21, if &state[20..21] == "A" { "B" } else { "A" });
    let a = eve
        .get(&cb_url.replace(&format!("state={state}"), &format!("state={wrong}")))
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("state_mismatch"), "{}", a.body);
    // A forged nonce inside a re-sealed pre-login cookie: the ID token is refused.
    eve.jar = jar_before.clone();
    let (name, sealed) = eve
        .jar
        .iter()
        .find(|(k, _)| k.starts_with("gatehouse_session_login_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let sealer = Sealer::new(SECRET.as_bytes(), "pre-login cookie");
    let mut pre: PreLogin = serde_json::from_slice(&sealer.open(&sealed).unwrap()).unwrap();
    pre.nonce = "some-other-nonce".into();
    eve.jar
        .insert(name, sealer.seal(&serde_json::to_vec(&pre).unwrap()));
    let a = eve.get(&cb_url).await;
    assert_eq!(a.status, 401);
    assert!(a.body.contains("bad_id_token"), "{}", a.body);
    // That spent the code: replaying it, even with the genuine cookie, fails.
    eve.jar = jar_before;
    let a = eve.get(&cb_url).await;
    assert_eq!(a.status, 401);
    assert!(a.body.contains("code_exchange_failed"), "{}", a.body);

    // A fresh login whose callback succeeds cannot be replayed either.
    let mut frank = Browser::new();
    let at_cb = frank
        .walk_until(&w.login_url(APP), Some(("bob", "pw-bob", None)), |u| {
            u.contains("/callback")
        })
        .await;
    let cb_url = at_cb.location.unwrap();
    let jar = frank.jar.clone();
    assert_eq!(frank.get(&cb_url).await.status, 302);
    frank.jar = jar;
    let a = frank.get(&cb_url).await;
    assert_eq!(a.status, 401, "a replayed code is refused");
}

/// An `rd` outside the configured domains falls back to the default redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_outside_the_configured_domains_fall_back() {
    let w = world().await;
    // --- rd that leaves the configured domains falls back to the default.
    for rd in [
        "https://evil.example/x",
        "//evil.example",
        "https://app.example.test.evil.example/",
    ] {
        let mut b = Browser::new();
        let a = b
            .walk(&w.login_url(rd), Some(("bob", "pw-bob", None)))
            .await;
        assert_eq!(
            a.location.as_deref(),
            Some("https://app.example.test/"),
            "{rd}"
        );
    }
}

/// A role change at the IdP reaches the session through the refresh; a refused
/// refresh ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_brings_role_changes_and_a_refused_refresh_ends_the_session() {
    let w = world().await;
    // The clock moves from here on (ID tokens from the IdP use real time).
    // --- refresh: a role change at the IdP reaches the session; a refused refresh ends it.
    let (dave, _) = w.login("alice", false).await;
    let dc = session_cookie(&dave);
    assert_eq!(
        header(&w.decide(&dc, "/", false).await, "remote-groups"),
        "viewer"
    );
    w.set_accounts(&["editor", "viewer"], false);
    w.clock.advance(400);
    w.gh.state.services.login.refresh_due().await;
    let r = w.decide(&dc, "/", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "remote-groups"),
        "editor,viewer",
        "roles refreshed"
    );
    w.set_accounts(&["editor", "viewer"], true);
    w.clock.advance(400);
    w.gh.state.services.login.refresh_due().await;
    assert_eq!(
        w.decide(&dc, "/", false).await.status(),
        401,
        "a failed refresh ends the session"
    );
    w.set_accounts(&["viewer"], false);
}

/// 30 minutes without a request end a session (injected clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactivity_ends_a_session() {
    let w = world().await;
    // --- inactivity (injected clock): 30 minutes without a request end a session.
    let (erin, _) = w.login("bob", false).await;
    let ec = session_cookie(&erin);
    w.clock.advance(29 * 60);
    assert_eq!(
        w.decide(&ec, "/", false).await.status(),
        200,
        "29 minutes: still alive, and touched"
    );
    w.clock.advance(29 * 60);
    assert_eq!(
        w.decide(&ec, "/", false).await.status(),
        200,
        "activity resets the timer"
    );
    w.clock.advance(31 * 60);
    assert_eq!(
        w.decide(&ec, "/", false).await.status(),
        401,
        "31 idle minutes"
    );
    let r = w.decide(&ec, "/", true).await;
    assert_eq!(r.status(), 302, "a browser goes back to login");
}
