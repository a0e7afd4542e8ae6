//! The admin event stream, `/api/v1/ws`: refusals before the upgrade as JSON,
//! the greeting, ping/pong, stats, audit entries as they commit (by topic),
//! and the close with 1008 when the credential ends.

use std::time::Duration;

use crate::common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(gh: &Server, token: &str) -> Ws {
    let url = format!("ws://{}/api/v1/ws?token={token}", gh.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade")
        .0
}

/// The next text message as JSON (bounded wait).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// The close frame that ends the socket (other messages before it are skipped).
async fn closed(ws: &mut Ws, within: Duration) -> (u16, String) {
    loop {
        match tokio::time::timeout(within, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame: {other:?}"),
        }
    }
}

/// An upgrade request carrying a session cookie, from a page of `origin`.
fn cookie_request(
    gh: &Server,
    cookie: &str,
    origin: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut r = format!("ws://{}/api/v1/ws", gh.addr)
        .into_client_request()
        .unwrap();
    r.headers_mut().insert(
        "Cookie",
        format!("gatehouse_session={cookie}").parse().unwrap(),
    );
    r.headers_mut().insert("Origin", origin.parse().unwrap());
    r
}

async fn say(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_the_upgrade_as_json() {
    let gh = Server::start(&config_with("")).await;
    let url = format!("ws://{}/api/v1/ws", gh.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401 before the upgrade: {other:?}"),
    }
    match tokio_tungstenite::connect_async(format!("{url}?token=not-a-token")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401: {other:?}"),
    }
    let nobody = gh.mint("nina", &[]);
    match tokio_tungstenite::connect_async(format!("{url}?token={nobody}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a caller with no permission: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_ping_stats_and_events_as_they_commit() {
    let gh = Server::start(&config_with("")).await;
    let admin = gh.mint("root", &["admin"]);
    let mut ws = open(&gh, &admin).await;
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "connection_established");
    assert_eq!(hello["user"], "root");
    assert!(hello["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("audit:read")));
    assert!(hello["expires_at"].as_i64().unwrap() > hello["server_time"].as_i64().unwrap());

    say(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await["type"], "pong");
    say(&mut ws, json!({"type": "get_stats"})).await;
    let stats = next(&mut ws).await;
    assert_eq!(stats["type"], "stats_update");
    assert_eq!(stats["kill_switch"]["engaged"], false);
    say(
        &mut ws,
        json!({"type": "subscribe", "topics": ["bans", "weather"]}),
    )
    .await;
    assert_eq!(next(&mut ws).await["code"], "unknown_topic");
    say(&mut ws, json!({"type": "subscribe", "topics": ["denials"]})).await;
    assert_eq!(
        next(&mut ws).await["topics"],
        json!(["denials"]),
        "the contract's topics"
    );
    say(&mut ws, json!({"type": "subscribe", "topics": ["bans"]})).await;
    assert_eq!(next(&mut ws).await["topics"], json!(["bans"]));

    let (s, _) = gh.ban(&admin, "ip", "198.51.100.4").await;
    assert_eq!(s, 200);
    let ev = next(&mut ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["topic"].as_str()),
        (Some("event"), Some("bans"))
    );
    assert_eq!(ev["entry"]["action"], "ban.add");
    assert_eq!(ev["entry"]["result"], "requested", "intent first");
    assert_eq!(next(&mut ws).await["entry"]["result"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_closes_with_1008_when_its_session_ends() {
    let gh = Server::start(&config_with("")).await;
    let req = gatehouse::identity::MintRequest {
        sub: "alice".into(),
        roles: vec!["admin".into()],
        ttl_secs: 3600,
        sid: Some("sid-ws".into()),
        ..Default::default()
    };
    let alice = gh.mint_req(&req);
    let root = gh.mint("root", &["admin"]);
    let mut ws = open(&gh, &alice).await;
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    let started = std::time::Instant::now();
    let (s, _) = gh
        .api(
            "POST",
            "/api/v1/sessions/terminate-all?user=alice",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        closed(&mut ws, Duration::from_secs(5)).await,
        (1008, "session_ended".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within a second or so"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_per_user_are_limited() {
    let gh = Server::start(&config_with("")).await;
    let token = gh.mint("many-sockets", &["admin"]);
    let mut open_ones = vec![];
    for _ in 0..gatehouse::http::ws::MAX_PER_USER {
        let mut ws = open(&gh, &token).await;
        assert_eq!(next(&mut ws).await["type"], "connection_established");
        open_ones.push(ws);
    }
    let url = format!("ws://{}/api/v1/ws?token={token}", gh.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("one socket too many: {other:?}"),
    }
    assert_eq!(gh.metric("gatehouse_ws_refused_total").await, 1);
    let mut first = open_ones.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let t = std::time::Instant::now();
    loop {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await {
            assert_eq!(next(&mut ws).await["type"], "connection_established");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a closed socket gives its place back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_announced_and_refreshed_in_place() {
    let gh = Server::start(&config_with("")).await;
    let mint = |sub: &str, ttl: i64| {
        let req = gatehouse::identity::MintRequest {
            sub: sub.into(),
            roles: vec!["admin".into()],
            ttl_secs: ttl,
            ..Default::default()
        };
        gh.mint_req(&req)
    };
    let mut ws = open(&gh, &mint("erin", 40)).await;
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    let warn = next(&mut ws).await;
    assert_eq!(warn["type"], "token_expiring", "{warn}");
    assert_eq!(warn["call_refresh"], true);
    let left = warn["time_remaining_seconds"].as_i64().unwrap();
    assert!((0..=60).contains(&left), "{warn}");
    say(
        &mut ws,
        json!({"type": "refresh", "token": mint("mallory", 3600)}),
    )
    .await;
    assert_eq!(next(&mut ws).await["code"], "other_subject");
    say(&mut ws, json!({"type": "refresh", "token": "garbage"})).await;
    assert_eq!(next(&mut ws).await["code"], "invalid_token");
    say(
        &mut ws,
        json!({"type": "refresh", "token": mint("erin", 3600)}),
    )
    .await;
    let r = next(&mut ws).await;
    assert_eq!(r["type"], "refreshed");
    assert!(r["expires_at"].as_i64().unwrap() > gh.state.clock.now() + 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_decisions_and_the_state_of_the_moment() {
    let gh = Server::start(&config_with("")).await;
    let admin = gh.mint("root", &["admin"]);
    let mut ws = open(&gh, &admin).await;
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    say(&mut ws, json!({"type": "subscribe", "topics": []})).await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    let user = gh.mint("alice", &[]);
    assert_eq!(gh.forward_status("app.example.com", "/", &user).await, 200);
    assert_eq!(gh.forward_status("app.example.com", "/x", &user).await, 200);
    assert_eq!(
        gh.forward_status("app.example.com", "/", "garbage").await,
        401
    );
    let (s, _) = gh.ban(&admin, "user", "mallory").await;
    assert_eq!(s, 200);
    say(&mut ws, json!({"type": "get_stats"})).await;
    let st = next(&mut ws).await;
    assert_eq!(st["type"], "stats_update");
    assert_eq!(
        st["decisions"],
        json!({"allow": 2, "unauthenticated": 1, "forbidden": 0}),
        "{st}"
    );
    assert_eq!(st["bans"], 1);
    assert_eq!(st["allowlist_entries"], 0);
    say(&mut ws, json!({"type": "get_stats"})).await;
    assert_eq!(
        next(&mut ws).await["decisions"],
        json!({"allow": 0, "unauthenticated": 0, "forbidden": 0}),
        "counts are per interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_opens_a_socket_only_from_gatehouses_own_origin() {
    let gh = Server::start(&config_with("")).await;
    let cookie = gh.stored_session("carol", &["admin"]).await;
    let request = |origin: &str| cookie_request(&gh, &cookie, origin);
    match tokio_tungstenite::connect_async(request("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("another site must not open an admin socket with the cookie: {other:?}"),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request("https://auth.example.com"))
        .await
        .expect("same origin");
    assert_eq!(next(&mut ws).await["user"], "carol");
    // Terminated: the socket closes with session_ended.
    let root = gh.mint("root", &["admin"]);
    let (s, _) = gh
        .api(
            "DELETE",
            &format!(
                "/api/v1/sessions/{}",
                gatehouse::identity::session::session_id(&cookie)
            ),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        closed(&mut ws, Duration::from_secs(5)).await,
        (1008, "session_ended".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_come_sampled_to_those_allowed_to_see_them() {
    let gh = Server::start(&config_with(
        r#"
[admin.live]
denials_per_second = 3

[admin.permissions]
viewer = ["events:read", "status:read"]
watcher = ["events:read", "monitoring:read"]
"#,
    ))
    .await;
    let mut viewer = open(&gh, &gh.mint("vic", &["viewer"])).await;
    let hello = next(&mut viewer).await;
    assert_eq!(hello["topics"], json!(["control"]), "{hello}");
    say(
        &mut viewer,
        json!({"type": "subscribe", "topics": ["denials", "audit"]}),
    )
    .await;
    let sub = next(&mut viewer).await;
    assert_eq!(sub["topics"], json!([]));
    assert_eq!(sub["not_permitted"], json!(["denials", "audit"]));

    let mut watcher = open(&gh, &gh.mint("wendy", &["watcher"])).await;
    assert_eq!(
        next(&mut watcher).await["topics"],
        json!(["denials"]),
        "what the permissions allow, subscribed from the start"
    );
    for i in 0..10 {
        let path = format!("/secret-{i}?token=must-not-appear");
        assert_eq!(
            gh.forward_status("app.example.com", &path, "garbage").await,
            401
        );
    }
    let mut seen = vec![];
    while seen.len() < 3 {
        let ev = next(&mut watcher).await;
        assert_eq!(
            (ev["type"].as_str(), ev["topic"].as_str()),
            (Some("event"), Some("denials")),
            "{ev}"
        );
        assert!(
            !ev.to_string().contains("must-not-appear"),
            "no query string: {ev}"
        );
        assert!(!ev.to_string().contains("garbage"), "no credential: {ev}");
        seen.push(ev["denial"].clone());
    }
    assert_eq!(seen[0]["result"], "unauthenticated");
    assert_eq!(seen[0]["host"], "app.example.com");
    assert_eq!(seen[0]["path"], "/secret-0");
    // The second after, one more: it counts those the rate left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        gh.forward_status("app.example.com", "/late", "garbage")
            .await,
        401
    );
    let mut skipped = 0;
    loop {
        let ev = next(&mut watcher).await;
        if ev["denial"]["path"] == "/late" {
            skipped += ev["denial"]["skipped"].as_u64().unwrap();
            break;
        }
        skipped += ev["denial"]["skipped"].as_u64().unwrap() + 1;
    }
    assert_eq!(skipped, 7, "10 denials, 3 sent in their second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_socket_is_pinged_and_a_silent_one_closed() {
    let gh = Server::start(&config_with(
        "[admin.live]\nping_interval = \"200ms\"\nidle_timeout = \"1s\"\nstats_interval = \"1h\"",
    ))
    .await;
    let token = gh.mint("root", &["admin"]);
    let mut alive = open(&gh, &token).await;
    let mut silent = open(&gh, &token).await;
    assert_eq!(next(&mut silent).await["type"], "connection_established");
    // `alive` reads (and so answers the server's pings) for 2 s.
    let mut pings = 0;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        match tokio::time::timeout(Duration::from_millis(300), alive.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(f)))) => {
                panic!("a socket that answers pings was closed: {f:?}")
            }
            _ => {}
        }
    }
    assert!(pings >= 5, "the server pings every 200ms: {pings}");
    say(&mut alive, json!({"type": "ping"})).await;
    assert_eq!(next(&mut alive).await["type"], "pong");
    // `silent` read nothing (and answered no ping) for 2 s: closed. Reading
    // now, the client first writes the pongs it owes and may find the socket
    // already shut (then the close frame is lost to it): the count is the proof.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), silent.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(
                    (u16::from(f.code), f.reason.as_str()),
                    (1001, "idle_timeout")
                );
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(gh.metric("gatehouse_ws_closed_idle_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_dropped_and_the_others_go_on() {
    let gh = Server::start(&config_with(
        "[admin.live]\ndenials_per_second = 1000000\nsend_timeout = \"300ms\"",
    ))
    .await;
    let token = gh.mint("root", &["admin"]);
    // A client with a small receive buffer that never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(gh.addr).await.unwrap();
    let url = format!("ws://{}/api/v1/ws?token={token}", gh.addr);
    let (stalled, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let mut reader = open(&gh, &token).await;
    assert_eq!(next(&mut reader).await["type"], "connection_established");
    // Denials with long paths: megabytes of events for the stalled socket.
    let long = "x".repeat(3000);
    let t = std::time::Instant::now();
    while gh.metric("gatehouse_ws_closed_slow_total").await == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the stalled socket was never dropped"
        );
        for i in 0..200 {
            let status = gh
                .forward_status("app.example.com", &format!("/{long}/{i}"), "garbage")
                .await;
            assert_eq!(status, 401, "decisions go on");
        }
        // The reading socket keeps up (or is told what it missed).
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(10), reader.next()).await
        {}
    }
    drop(stalled);
    say(&mut reader, json!({"type": "ping"})).await;
    loop {
        let m = next(&mut reader).await;
        if m["type"] == "pong" {
            break;
        }
    }
    assert_eq!(
        gh.metric("gatehouse_ws_open").await,
        1,
        "the stalled one is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_origin_may_use_the_cookie_only_when_configured() {
    let gh = Server::start(&config_with(
        "[server]\nallowed_origins = [\"https://admin.example.net\"]",
    ))
    .await;
    let cookie = gh.stored_session("carol", &["admin"]).await;
    for (origin, ok) in [
        ("https://admin.example.net", true),
        ("https://auth.example.com", true),
        ("https://admin.example.net:8443", false),
        ("http://admin.example.net", false),
        ("null", false),
    ] {
        let r = tokio_tungstenite::connect_async(cookie_request(&gh, &cookie, origin)).await;
        match (r, ok) {
            (Ok((mut ws, _)), true) => assert_eq!(next(&mut ws).await["user"], "carol"),
            (Err(tokio_tungstenite::tungstenite::Error::Http(r)), false) => {
                assert_eq!(r.status(), 403, "{origin}")
            }
            (other, _) => panic!("{origin}: {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_closes_with_1008_when_its_token_expires_or_its_user_is_banned() {
    let gh = Server::start(&config_with("")).await;
    let req = gatehouse::identity::MintRequest {
        sub: "brief".into(),
        roles: vec!["admin".into()],
        ttl_secs: 2,
        ..Default::default()
    };
    let brief = gh.mint_req(&req);
    let mut ws = open(&gh, &brief).await;
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    assert_eq!(
        closed(&mut ws, Duration::from_secs(6)).await,
        (1008, "token_expired".into())
    );

    let mallory = gh.mint("mallory", &["admin"]);
    let mut ws = open(&gh, &mallory).await;
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    let (s, _) = gh
        .ban(&gh.mint("root", &["admin"]), "user", "mallory")
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        closed(&mut ws, Duration::from_secs(3)).await,
        (1008, "banned".into())
    );
}
