//! The decision fast path (`http::wire`) against hyper: the same bytes sent on a
//! fresh connection (fast path) and on a connection already handed to hyper
//! (by a `/healthz` request first) must get the same answers, byte for byte but
//! for `Date`: for a corpus of decision requests, for requests the fast path
//! must hand over (bodies, HTTP/1.0, upgrades, odd framing), and for thousands
//! of mutated requests. Plus what only the fast path does: pipelining, close,
//! hand-off mid-connection, and graceful shutdown of idle connections.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What these tests change in the base test configuration.
const OVERRIDES: &str = r#"
[access]
default_policy = "deny"
[[access.rules]]
domains = ["app.example.com"]
paths = ["^/admin"]
subjects = ["role:admin"]
policy = "one_factor"
[[access.rules]]
domains = ["app.example.com"]
paths = ["^/admin"]
policy = "deny"
[[access.rules]]
domains = ["app.example.com"]
policy = "one_factor"
"#;

fn config() -> String {
    config_with(OVERRIDES)
}

/// One response as read off the wire: status line, headers in order with
/// lower-cased names (without `date`), body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wire {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

/// Everything the server sent until it closed (or went quiet), as responses,
/// and whether it closed.
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    responses: Vec<Wire>,
    /// Bytes that did not parse as a response (must be empty).
    rest: Vec<u8>,
    closed: bool,
}

fn parse_all(mut bytes: &[u8]) -> (Vec<Wire>, Vec<u8>) {
    let mut out = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(bytes) else {
            return (out, bytes.to_vec());
        };
        let len: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap_or(0);
        if bytes.len() < n + len {
            return (out, bytes.to_vec());
        }
        let w = Wire {
            status_line: format!(
                "HTTP/1.{} {} {}",
                resp.version.unwrap(),
                resp.code.unwrap(),
                resp.reason.unwrap_or("")
            ),
            headers: resp
                .headers
                .iter()
                .filter(|h| !h.name.eq_ignore_ascii_case("date"))
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: bytes[n..n + len].to_vec(),
        };
        out.push(w);
        bytes = &bytes[n + len..];
    }
}

/// Opens a connection; with `via_hyper`, first sends `GET /healthz` and reads its
/// answer, so that the connection belongs to hyper from then on.
async fn open(addr: SocketAddr, via_hyper: bool) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if via_hyper {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .expect("healthz answer")
                .unwrap();
            assert!(n > 0, "closed before answering /healthz");
            buf.extend_from_slice(&chunk[..n]);
            let (r, rest) = parse_all(&buf);
            if r.len() == 1 && rest.is_empty() {
                assert_eq!(r[0].status(), 200);
                break;
            }
        }
    }
    s
}

/// Sends `bytes`, half-closes, and reads until the server closes or is quiet
/// for `quiet`.
async fn exchange(mut s: TcpStream, bytes: &[u8], quiet: Duration) -> Transcript {
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(quiet, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    let (responses, rest) = parse_all(&buf);
    Transcript {
        responses,
        rest,
        closed,
    }
}

async fn both(addr: SocketAddr, bytes: &[u8]) -> (Transcript, Transcript) {
    let quiet = Duration::from_secs(5);
    let fast = exchange(open(addr, false).await, bytes, quiet).await;
    let hyper = exchange(open(addr, true).await, bytes, quiet).await;
    (fast, hyper)
}

fn forward(token: Option<&str>, uri: &str, extra: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "GET /authz/forward HTTP/1.1\r\nHost: gatehouse\r\nX-Forwarded-Proto: https\r\n\
         X-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: {uri}\r\n\
         X-Forwarded-Method: GET\r\n{auth}{extra}\r\n"
    )
}

fn nginx(token: Option<&str>, url: &str, extra: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "GET /authz/nginx HTTP/1.1\r\nHost: gatehouse\r\nX-Original-URL: {url}\r\n\
         X-Original-Method: GET\r\n{auth}{extra}\r\n"
    )
}

#[tokio::test]
async fn fast_path_and_hyper_answer_alike() {
    let gh = Server::start(&config()).await;
    let alice = gh.mint("alice", &["viewer"]);
    let root = gh.mint("root", &["admin"]);
    let nav = "Accept: text/html\r\nSec-Fetch-Mode: navigate\r\n";
    // (request, expected status on both paths); first what the fast path takes...
    let fast: Vec<(String, u16)> = vec![
        (forward(Some(&alice), "/d/abc?orgId=1", ""), 200),
        (forward(Some(&root), "/admin/x", ""), 200),
        (forward(Some(&alice), "/admin/x", ""), 403),
        (forward(None, "/d", nav), 302),
        (forward(None, "/d", "Accept: application/json\r\n"), 401),
        (forward(Some("not.a.token"), "/d", ""), 401),
        // a credential, even a bad one, makes it an API call: no redirect
        (forward(Some("x.y.z"), "/d", nav), 401),
        (
            forward(Some(&alice), "/d", "X-Forwarded-Host: evil.example.com\r\n"),
            403,
        ),
        (
            forward(
                Some(&alice),
                "/d",
                &format!("Authorization: Bearer {root}\r\n"),
            ),
            401,
        ),
        (forward(Some(&alice), "/d", "Connection: close\r\n"), 200),
        (
            forward(Some(&alice), "/d", "Connection: keep-alive\r\n"),
            200,
        ),
        (forward(Some(&alice), "/d", "Content-Length: 0\r\n"), 200),
        (
            forward(
                None,
                "/d",
                "Cookie: a=1\r\nCookie: b=2\r\nAccept: text/html\r\n",
            ),
            302,
        ),
        (
            forward(
                Some(&alice),
                "/d",
                &"X-Forwarded-For: 203.0.113.9\r\n".repeat(3),
            ),
            200,
        ),
        (
            forward(
                Some(&alice),
                "/d",
                &"X-Forwarded-For: 203.0.113.9\r\n".repeat(9),
            ),
            403,
        ),
        (nginx(Some(&alice), "https://app.example.com/d", ""), 200),
        (nginx(None, "https://app.example.com/d", nav), 401),
        (nginx(None, "https://app.example.com/d", ""), 401),
        (
            nginx(Some(&alice), "https://app.example.com/admin", ""),
            403,
        ),
        // header names in any case
        (
            forward(None, "/d", "").replace("X-Forwarded-Host", "x-FORWARDED-host") + "",
            401,
        ),
        // a query on the endpoint itself
        (
            forward(Some(&alice), "/d", "").replacen(
                "/authz/forward",
                "/authz/forward?rd=https%3A%2F%2Fapp.example.com%2F",
                1,
            ),
            200,
        ),
    ];
    // ...then framing it leaves to hyper.
    let handed: Vec<(String, u16)> = vec![
        (
            forward(Some(&alice), "/d", "Content-Length: 5\r\n") + "hello",
            200,
        ),
        (
            forward(Some(&alice), "/d", "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n",
            200,
        ),
        (
            forward(Some(&alice), "/d", "").replacen("HTTP/1.1", "HTTP/1.0", 1),
            200,
        ),
        (
            forward(Some(&alice), "/d", "").replacen("GET", "HEAD", 1),
            200,
        ),
        (
            forward(Some(&alice), "/d", "").replacen(
                "/authz/forward",
                "http://gatehouse/authz/forward",
                1,
            ),
            200,
        ),
        (forward(Some(&alice), "/d", "Expect: 100-continue\r\n"), 200),
        (
            forward(
                Some(&alice),
                "/d",
                "Connection: upgrade\r\nUpgrade: websocket\r\n",
            ),
            200,
        ),
        (
            forward(Some(&alice), "/d", "").replacen("/authz/forward", "/authz/forward?{x}", 1),
            200,
        ),
        (forward(Some(&alice), "/d", "Bad Header: x\r\n"), 400),
    ];
    let before = gh.metric("gatehouse_connections_general_total").await;
    for (req, status) in fast.iter().chain(&handed) {
        let (fast, hyper) = both(gh.addr, req.as_bytes()).await;
        assert_eq!(fast, hyper, "fast path and hyper differ for\n{req}");
        assert!(fast.rest.is_empty(), "unparsed bytes for\n{req}");
        assert_eq!(fast.responses.len(), 1, "{req}\n{fast:?}");
        assert_eq!(fast.responses[0].status(), *status, "{req}\n{fast:?}");
    }
    // What the answers carry, so that alike cannot mean alike and wrong.
    let (ok, _) = both(gh.addr, forward(Some(&alice), "/d", "").as_bytes()).await;
    assert_eq!(ok.responses[0].header("remote-user"), Some("alice"));
    assert_eq!(ok.responses[0].header("remote-groups"), Some("viewer"));
    let (login, _) = both(gh.addr, forward(None, "/d?x=1", nav).as_bytes()).await;
    assert_eq!(
        login.responses[0].header("location"),
        Some("https://auth.example.com/login?rd=https%3A%2F%2Fapp.example.com%2Fd%3Fx%3D1")
    );
    let (api, _) = both(gh.addr, forward(None, "/d", "").as_bytes()).await;
    assert_eq!(
        api.responses[0].header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    assert!(String::from_utf8_lossy(&api.responses[0].body).contains("\"unauthenticated\""));
    let (close, _) = both(
        gh.addr,
        forward(Some(&alice), "/d", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(close.responses[0].header("connection"), Some("close"));
    assert!(close.closed);
    // Each `both` opened one connection that went to hyper on purpose (via
    // /healthz); of the others only the `handed` ones did, plus this metric read.
    let general = gh.metric("gatehouse_connections_general_total").await - before;
    let boths = (fast.len() + handed.len() + 4) as u64;
    assert_eq!(
        general,
        boths + handed.len() as u64 + 1,
        "connections handed to hyper"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_hand_off_keeps_the_connection() {
    let gh = Server::start(&config()).await;
    let alice = gh.mint("alice", &["viewer"]);
    let bob = gh.mint("bob", &["viewer"]);
    let mut bytes = forward(Some(&alice), "/a", "");
    bytes += &forward(Some(&bob), "/b", "");
    bytes += &forward(None, "/c", "");
    // then a request of another kind: hyper takes over mid-connection...
    bytes += "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    // ...and still answers decisions after it.
    bytes += &forward(Some(&bob), "/d", "");
    let (fast, hyper) = both(gh.addr, bytes.as_bytes()).await;
    assert_eq!(fast, hyper);
    let users: Vec<_> = fast
        .responses
        .iter()
        .map(|r| {
            (
                r.status(),
                r.header("remote-user").unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert_eq!(
        users,
        [
            (200, "alice".to_string()),
            (200, "bob".into()),
            (401, "-".into()),
            (200, "-".into()),
            (200, "bob".into())
        ]
    );
    // Pieces arriving one byte at a time make the same answers.
    let mut s = open(gh.addr, false).await;
    let req = forward(Some(&alice), "/slow", "");
    for b in req.as_bytes() {
        s.write_all(&[*b]).await.unwrap();
    }
    let t = exchange(s, b"", Duration::from_secs(5)).await;
    assert_eq!(t.responses.len(), 1);
    assert_eq!(t.responses[0].header("remote-user"), Some("alice"));
}

/// A small deterministic generator (no dependency, same cases every run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test]
async fn mutated_requests_get_the_same_answer_on_both_paths() {
    let gh = Server::start(&config()).await;
    let alice = gh.mint("alice", &["viewer"]);
    let seeds = [
        forward(Some(&alice), "/d?x=1", ""),
        forward(None, "/d", "Accept: text/html\r\n"),
        nginx(Some(&alice), "https://app.example.com/admin", ""),
        forward(
            Some(&alice),
            "/d",
            "Content-Length: 0\r\nConnection: close\r\n",
        ),
    ];
    let alphabet: &[u8] = b" \t\r\n:;,?/%.\x00\x7f\x80\xffAz09-_=\"";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cases = 600;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..cases {
        let mut b = seeds[i % seeds.len()].clone().into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(b.len());
            match rng.below(6) {
                0 => b[at] = alphabet[rng.below(alphabet.len())],
                1 => b.insert(at, alphabet[rng.below(alphabet.len())]),
                2 => {
                    b.remove(at);
                }
                3 => b.truncate(at),
                4 => {
                    // duplicate a header line
                    let text = String::from_utf8_lossy(&b).into_owned();
                    let lines: Vec<&str> = text.split("\r\n").collect();
                    let pick = 1 + rng.below(lines.len().saturating_sub(2).max(1));
                    let line = format!("{}\r\n", lines[pick.min(lines.len() - 1)]);
                    let pos = text.find("\r\n").map_or(0, |p| p + 2);
                    b.splice(pos..pos, line.into_bytes());
                }
                _ => {
                    // flip the case of a byte
                    b[at] = if b[at].is_ascii_lowercase() {
                        b[at].to_ascii_uppercase()
                    } else {
                        b[at].to_ascii_lowercase()
                    }
                }
            }
        }
        let quiet = Duration::from_millis(1500);
        let fast = exchange(open(gh.addr, false).await, &b, quiet).await;
        let hyper = exchange(open(gh.addr, true).await, &b, quiet).await;
        assert_eq!(
            fast,
            hyper,
            "case {i} differs:\n{}",
            String::from_utf8_lossy(&b).escape_debug()
        );
        for r in &fast.responses {
            *statuses.entry(r.status()).or_insert(0) += 1;
            assert!(
                r.status() != 200 || r.header("remote-user") == Some("alice"),
                "case {i}: allowed without the token's identity"
            );
        }
    }
    // The mutations reached every kind of answer, not only parse errors.
    for s in [200, 400, 401, 403] {
        assert!(statuses.contains_key(&s), "no {s} among {statuses:?}");
    }
}

#[tokio::test]
async fn idle_fast_connections_close_on_shutdown() {
    let gh = Server::start(&config()).await;
    let alice = gh.mint("alice", &["viewer"]);
    let mut idle = open(gh.addr, false).await;
    idle.write_all(forward(Some(&alice), "/d", "").as_bytes())
        .await
        .unwrap();
    let mut chunk = [0u8; 4096];
    let n = idle.read(&mut chunk).await.unwrap();
    assert!(n > 0);
    let started = std::time::Instant::now();
    let _dir = gh.stop().await;
    // The server let go of the idle connection at once, not after the grace period.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut chunk))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "idle connection closed");
}
