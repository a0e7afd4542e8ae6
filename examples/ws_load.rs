//! Admin-socket load for `scripts/bench-ws.sh`: opens N admin sockets
//! (`/api/v1/ws?token=`) that read everything (and answer the server's
//! pings), K more with a 4 KiB receive buffer that never read a byte, and
//! sends a trickle of denied decisions so that denial events flow to every
//! socket. Prints `ready` once all are open, runs until SIGTERM, then prints
//! what the reading sockets received.
//!
//! `cargo run --release --example ws_load -- ADDR TOKENS_FILE N K DENIALS_PER_SECOND`
//! (tokens one a line, used in turn: at most 8 sockets per user are allowed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: ws_load ADDR TOKENS_FILE N K DENIALS_PER_SECOND");
        std::process::exit(2);
    }
    let addr: std::net::SocketAddr = args[1].parse().expect("ADDR: host:port");
    let tokens: Vec<String> = std::fs::read_to_string(&args[2])
        .expect("TOKENS_FILE")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    let n: usize = args[3].parse().expect("N");
    let k: usize = args[4].parse().expect("K");
    let rate: f64 = args[5].parse().expect("DENIALS_PER_SECOND");
    let messages = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let mut stalled = vec![];
    for i in 0..n + k {
        let token = &tokens[i % tokens.len()];
        let url = format!("ws://{addr}/api/v1/ws?token={token}");
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        if i >= n {
            sock.set_recv_buffer_size(4096).unwrap();
        }
        let stream = sock.connect(addr).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .unwrap_or_else(|e| panic!("socket {i}: {e}"));
        if i >= n {
            stalled.push(ws); // never read
            continue;
        }
        let (messages, closed) = (messages.clone(), closed.clone());
        tokio::spawn(async move {
            let mut ws = ws;
            // Reading also answers the server's pings.
            while let Some(m) = ws.next().await {
                match m {
                    Ok(m) if m.is_close() => break,
                    Ok(_) => {
                        messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    if rate > 0.0 {
        tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "GET /authz/forward HTTP/1.1\r\nHost: {addr}\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: /denied\r\n\
                 X-Forwarded-Method: GET\r\nAuthorization: Bearer not-a-token\r\n\r\n"
            );
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut buf = vec![0u8; 4096];
            loop {
                tick.tick().await;
                c.write_all(request.as_bytes()).await.unwrap();
                // One small answer: read until its end (headers and body arrive together).
                let got = c.read(&mut buf).await.unwrap();
                assert!(got > 0, "gatehouse closed the denial connection");
            }
        });
    }
    println!("ready");
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    term.recv().await;
    eprintln!(
        "sockets {n} + {k} stalled: {} messages, {} closed",
        messages.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed)
    );
    drop(stalled);
}
