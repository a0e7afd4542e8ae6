//! How fast a change made through one replica denies on the others, for
//! `scripts/bench-propagation.sh`: for each of N users (tokens one a line in
//! TOKENS_FILE, subjects `user-0`, `user-1`, ...), alternately bans the user
//! or revokes the user's tokens through replica A, then asks replicas B and C
//! for that user's decision until they deny. Prints one line per change and
//! replica: `kind replica ms-from-A's-answer ms-from-the-request-to-A`.
//!
//! `cargo run --release --example propagation -- A B C ADMIN_TOKEN TOKENS_FILE`

use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: propagation A B C ADMIN_TOKEN TOKENS_FILE");
        std::process::exit(2);
    }
    let (origin, admin) = (&a[1], &a[4]);
    let others: [&'static str; 2] = [a[2].clone().leak(), a[3].clone().leak()];
    let tokens: Vec<String> = std::fs::read_to_string(&a[5])
        .expect("TOKENS_FILE")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let http = gatehouse::crypto::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let decide = |addr: &str, token: &str| {
        http.get(format!("http://{addr}/authz/forward"))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "app.example.com")
            .header("X-Forwarded-Uri", "/")
            .header("X-Forwarded-Method", "GET")
            .bearer_auth(token)
            .send()
    };
    for (i, token) in tokens.iter().enumerate() {
        let user = format!("user-{i}");
        for addr in others {
            let s = decide(addr, token).await.unwrap().status().as_u16();
            assert_eq!(s, 200, "{user} must pass on {addr} before the change");
        }
        let (kind, req) = if i % 2 == 0 {
            (
                "ban",
                http.post(format!("http://{origin}/api/v1/bans"))
                    .json(&serde_json::json!({"kind": "user", "value": user, "duration": "1h"})),
            )
        } else {
            (
                "revocation",
                http.post(format!(
                    "http://{origin}/api/v1/sessions/terminate-all?user={user}"
                )),
            )
        };
        let sent = Instant::now();
        let r = req.bearer_auth(admin).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "the change through A");
        let done = Instant::now();
        let wait = |addr: &'static str| {
            let (decide, user) = (&decide, &user);
            async move {
                loop {
                    let s = decide(addr, token).await.unwrap().status().as_u16();
                    if s != 200 {
                        return (done.elapsed(), sent.elapsed());
                    }
                    assert!(
                        done.elapsed() < Duration::from_secs(30),
                        "{user} still passes on {addr}"
                    );
                }
            }
        };
        let (b, c) = tokio::join!(wait(others[0]), wait(others[1]));
        for (name, (t, from_send)) in [("B", b), ("C", c)] {
            println!(
                "{kind} {name} {:.3} {:.3}",
                t.as_secs_f64() * 1000.0,
                from_send.as_secs_f64() * 1000.0
            );
        }
    }
}
