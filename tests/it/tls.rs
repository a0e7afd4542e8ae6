//! The TLS listener (`server.tls_cert_file`/`tls_key_file`) of a real
//! `gatehouse serve` with certificates from private CAs: decisions and the
//! admin socket (`wss://`) over TLS; plain HTTP on the TLS port gets nothing;
//! on SIGHUP a new certificate serves new connections while an open one goes
//! on with the old; a broken certificate file is refused and the one in use
//! stays; a half-configured listener is refused by check-config.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common;
use common::*;
use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

fn connector(cas: &[&Path]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots
            .add(CertificateDer::from_pem_file(ca).unwrap())
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(addr: &str, cas: &[&Path]) -> Tls {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector(cas)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn peer_cert(s: &Tls) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One keep-alive request on an open TLS connection; the status line.
async fn get(s: &mut Tls, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: gatehouse\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_reloads_on_sighup_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (ca1, cert1, key1) = common::redfish::private_ca(&a);
    let (ca2, cert2, key2) = common::redfish::private_ca(&b);
    std::fs::copy(&cert1, dir.path().join("tls.pem")).unwrap();
    std::fs::copy(&key1, dir.path().join("tls.key")).unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://127.0.0.1\"\n\
         tls_cert_file = \"tls.pem\"\ntls_key_file = \"tls.key\"\n\
         [store]\nurl = \"sqlite://g.db\"\n[local_issuer]\nsigning_key_file = \"k.pem\"\n\
         [admin]\nroles = [\"admin\"]\n[access]\ndefault_policy = \"one_factor\"\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let mint = |sub: &str, roles: &str| {
        let out = std::process::Command::new(BIN)
            .args([
                "token", "mint", "--config", c, "--sub", sub, "--roles", roles,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let admin = mint("ops", "admin");
    let (gh, addr) = spawn_serve(&["serve", "--config", c], dir.path(), &[]);
    let mut gh = Reaped(gh);
    let both = [ca1.as_path(), ca2.as_path()];

    // Decisions over TLS, checked by a client that trusts only the private CA.
    let https = gatehouse::crypto::http_client()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca1).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", addr.split(':').nth(1).unwrap());
    let decide = |token: Option<String>| {
        let r = forward_to(
            &https,
            &base,
            token.map(|t| format!("Bearer {t}")).as_deref(),
        );
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(decide(Some(mint("alice", ""))).await, 200);
    assert_eq!(decide(None).await, 401);

    // Plain HTTP on the TLS port is not answered as HTTP.
    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("HTTP/1.1 200"));

    // The admin socket over wss://.
    let tls = connect(&addr, &both).await;
    let url = format!("wss://127.0.0.1/api/v1/ws?token={admin}");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("wss upgrade");
    let hello = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        hello.to_text().unwrap().contains("\"user\":\"ops\""),
        "{hello:?}"
    );

    // A connection open before the reload keeps going with the old certificate.
    let mut old = connect(&addr, &both).await;
    assert_eq!(peer_cert(&old), der(&cert1));
    assert_eq!(get(&mut old, "/healthz").await, "HTTP/1.1 200 OK");
    std::fs::copy(&cert2, dir.path().join("tls.pem")).unwrap();
    std::fs::copy(&key2, dir.path().join("tls.key")).unwrap();
    let hup = |pid: u32| {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    hup(gh.id());
    assert!(
        eventually(Duration::from_secs(5), || async {
            peer_cert(&connect(&addr, &both).await) == der(&cert2)
        })
        .await,
        "new connections still get the old certificate"
    );
    assert_eq!(get(&mut old, "/healthz").await, "HTTP/1.1 200 OK");
    assert_eq!(peer_cert(&old), der(&cert1));
    // The admin socket opened before the reload answers a ping after it.
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Ping(b"still there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(_)) => continue,
                other => panic!("the admin socket ended with the reload: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&pong[..], b"still there");

    // A broken file: refused, the certificate in use stays.
    std::fs::write(dir.path().join("tls.pem"), "not a certificate\n").unwrap();
    hup(gh.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fresh = connect(&addr, &both).await;
    assert_eq!(peer_cert(&fresh), der(&cert2));
    assert_eq!(get(&mut fresh, "/healthz").await, "HTTP/1.1 200 OK");
    gh.kill();

    // check-config names a half-configured listener and a broken certificate.
    let check = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check-config", "--config", c])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err =
        check("[server]\npublic_url = \"https://a.example\"\ntls_cert_file = \"a/bmc.pem\"\n");
    assert!(err.contains("server.tls_key_file"), "{err}");
    let err = check(
        "[server]\npublic_url = \"https://a.example\"\ntls_cert_file = \"tls.pem\"\ntls_key_file = \"a/bmc.key\"\n",
    );
    assert!(
        err.contains("server.tls_cert_file") && err.contains("tls.pem"),
        "{err}"
    );
}
