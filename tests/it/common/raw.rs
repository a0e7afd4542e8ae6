//! A raw HTTP/1.1 client (paths exactly as written, duplicate and odd headers,
//! a chosen source address) and an echo backend that reports what it received.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// What came back.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    /// The echo backend's JSON, if this response came from it.
    pub fn echo(&self) -> Option<Value> {
        if self.header("x-echo-backend").is_some() {
            serde_json::from_str(&self.body).ok()
        } else {
            None
        }
    }
}

fn parse_head(head: &str) -> (u16, BTreeMap<String, String>) {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().to_string();
            headers
                .entry(k)
                .and_modify(|e| {
                    e.push_str(", ");
                    e.push_str(&v)
                })
                .or_insert(v);
        }
    }
    (status, headers)
}

/// Sends one request from `from` (e.g. 127.0.0.2) to `to`; `Connection: close`.
pub async fn request(
    from: IpAddr,
    to: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = tokio::time::timeout(Duration::from_secs(10), sock.connect(to))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if response_complete(&buf) {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "response timed out for {method} {target}");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status, headers) = parse_head(head);
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

/// True once a whole response is in `buf`: a 101 head, or a head plus the body
/// its Content-Length or chunked encoding announces (keep-alive never closes).
fn response_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let (status, headers) = parse_head(&head);
    let body = &buf[end + 4..];
    if status == 101 || status == 204 || status == 304 {
        return true;
    }
    if let Some(len) = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An upstream application that answers every request with the request it saw
/// (method, raw target, headers) as JSON, and accepts WebSocket upgrades,
/// echoing `Remote-User` in the 101 answer.
pub struct EchoBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoBackend {
    pub async fn start() -> EchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    break;
                };
                tokio::spawn(async move {
                    // Serve requests on the connection until it closes (keepalive from proxies).
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 8192];
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break Some(i);
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => break None,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let Some(end) = end else { return };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let mut lines = head.split("\r\n");
                        let first = lines.next().unwrap_or("");
                        let mut parts = first.split(' ');
                        let method = parts.next().unwrap_or("").to_string();
                        let target = parts.next().unwrap_or("").to_string();
                        let headers: Vec<(String, String)> = lines
                            .filter_map(|l| l.split_once(':'))
                            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                            .collect();
                        let get = |n: &str| {
                            headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                                .map(|(_, v)| v.clone())
                        };
                        // Bodies are not used by the tests; skip a declared one.
                        if let Some(len) =
                            get("content-length").and_then(|l| l.parse::<usize>().ok())
                        {
                            while buf.len() < len {
                                match s.read(&mut chunk).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                            }
                            buf.drain(..len);
                        }
                        if get("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                            let key = get("sec-websocket-key").unwrap_or_default();
                            let accept = ws_accept(&key);
                            let user = get("remote-user").unwrap_or_default();
                            let resp = format!(
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nX-Echo-Remote-User: {user}\r\nX-Echo-Target: {target}\r\n\r\n"
                            );
                            let _ = s.write_all(resp.as_bytes()).await;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            return;
                        }
                        let body = json!({
                            "method": method,
                            "target": target,
                            "headers": headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                        })
                        .to_string();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Echo-Backend: 1\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        EchoBackend { addr, task }
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ws_accept(key: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// Every value of a header the backend received (case-insensitive name match).
pub fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
                .map(|h| h[1].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The header names the backend received, lower-cased.
pub fn echoed_names(echo: &Value) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| h[0].as_str().unwrap_or("").to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}
