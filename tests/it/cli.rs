//! The binary as an operator runs it: `check-config`, `token mint`, and `serve`
//! on the embedded defaults in an empty directory (the README's first command).

use crate::common;

use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).env_remove("GATEHOUSE_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(dir.path(), &["check-config"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok: embedded defaults"), "{out}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.toml");
    let (code, out, err) = run(dir.path(), &["check-config", "--config", example], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 rule(s)"), "{out}");

    // The Keycloak example, with its client secret from the environment as documented.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/keycloak.toml");
    let (code, out, err) = run(
        dir.path(),
        &["check-config", "--config", example],
        &[(
            "GATEHOUSE_ISSUERS__0__CLIENT_SECRET",
            "from-the-environment",
        )],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 rule(s)"), "{out}");
    assert!(!out.contains("from-the-environment") && !err.contains("from-the-environment"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nowhere\"\n[access]\ndefault_policy = \"allow\"\n[[access.rules]]\npaths = [\"(\"]\npolicy = \"one_factor\"\n[[issuers]]\nissuer = \"https://sso.example.com/realms/main\"\nclient_secret = \"hunter2\"\n",
    )
    .unwrap();
    let (code, out, err) = run(
        dir.path(),
        &["check-config", "--config", bad.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2);
    assert!(out.is_empty());
    for key in [
        "server.listen",
        "access.default_policy",
        "access.rules[0].paths[0]",
        "issuers[0].audiences",
        "server.public_url",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    assert!(
        !err.contains("hunter2"),
        "a secret reached the error output"
    );

    // env overrides apply, and a bad one is named by its variable path
    let (code, _, err) = run(
        dir.path(),
        &["check-config"],
        &[("GATEHOUSE_SERVER__LISTEN", "bad")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("server.listen"), "{err}");
    // a missing explicit file is an error, not a silent fallback
    let (code, _, err) = run(
        dir.path(),
        &["check-config", "--config", "/nonexistent.toml"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--config"), "{err}");
    let (code, _, _) = run(
        dir.path(),
        &["check-config"],
        &[("GATEHOUSE_CONFIG", "/nonexistent.toml")],
    );
    assert_eq!(code, 2);
}

#[test]
fn token_mint_needs_a_local_issuer_and_respects_max_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        "[server]\npublic_url = \"https://auth.example.com\"\n[[issuers]]\nissuer = \"https://sso.example.com\"\naudiences = [\"gatehouse\"]\n",
    )
    .unwrap();
    let (code, out, err) = run(
        dir.path(),
        &[
            "token",
            "mint",
            "--sub",
            "a",
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("local_issuer"), "{err}");

    let (code, out, err) = run(
        dir.path(),
        &[
            "token", "mint", "--sub", "svc", "--roles", "a,b", "--ttl", "5m",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().split('.').count(), 3);
    assert!(
        dir.path().join("gatehouse-local-key.pem").exists(),
        "the key is created on first use"
    );
    let (code, _, err) = run(
        dir.path(),
        &["token", "mint", "--sub", "svc", "--ttl", "48h"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("max_ttl"), "{err}");
    let (code, _, err) = run(
        dir.path(),
        &["token", "mint", "--sub", "svc", "--ttl", "5"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--ttl"), "{err}");
}

#[test]
fn serve_on_embedded_defaults_answers_with_a_minted_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = common::spawn_serve(
        &["serve"],
        dir.path(),
        &[("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0")],
    );
    let (code, token, err) = run(
        dir.path(),
        &["token", "mint", "--sub", "alice", "--roles", "admin"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let c = common::client();
        let base = format!("http://{addr}");
        let ask = |auth: Option<String>| common::forward_to(&c, &base, auth.as_deref()).send();
        let anon = ask(None).await.unwrap().status().as_u16();
        let ok = ask(Some(format!("Bearer {}", token.trim()))).await.unwrap();
        let user = ok
            .headers()
            .get("remote-user")
            .map(|v| v.to_str().unwrap().to_string());
        let health = c
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (anon, ok.status().as_u16(), user, health)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result, (401, 200, Some("alice".into()), 200));
}

/// `kill -HUP`: the [access] section reloads at once; an invalid file changes
/// nothing; both attempts, and the start, are in the audit log.
#[test]
fn sighup_reloads_access_rules_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    let text = |policy: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://auth.example.com\"\n\
             [store]\nurl = \"sqlite://g.db\"\n[local_issuer]\nsigning_key_file = \"k.pem\"\n\
             [audit]\ncheckpoint_key_file = \"audit.key\"\ncheckpoint_file = \"cp.log\"\n\
             [access]\ndefault_policy = \"deny\"\n[[access.rules]]\ndomains = [\"app.example.com\"]\npolicy = \"{policy}\"\n"
        )
    };
    std::fs::write(&cfg, text("one_factor")).unwrap();
    let (mut child, addr) = common::spawn_serve(
        &["serve", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    let mint = |roles: &str| {
        let (code, t, err) = run(
            dir.path(),
            &[
                "token",
                "mint",
                "--sub",
                "alice",
                "--roles",
                roles,
                "--config",
                cfg.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        t.trim().to_string()
    };
    let (user, admin) = (mint("viewer"), mint("admin"));
    let hup = |pid: u32| {
        assert!(Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outcome = rt.block_on(async {
        let c = common::client();
        let status = || async {
            c.get(format!("http://{addr}/authz/forward"))
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "app.example.com")
                .header("X-Forwarded-Uri", "/")
                .header("X-Forwarded-Method", "GET")
                .header("Authorization", format!("Bearer {user}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        let mut seen = vec![status().await];
        std::fs::write(&cfg, text("deny")).unwrap();
        hup(child.id());
        seen.push(
            if common::eventually(Duration::from_secs(10), || async { status().await == 403 }).await
            {
                403
            } else {
                0
            },
        );
        std::fs::write(&cfg, "[access]\ndefault_policy = \"maybe\"\n").unwrap();
        hup(child.id());
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen.push(status().await);
        let audit: serde_json::Value = c
            .get(format!("http://{addr}/api/v1/audit?limit=100"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (seen, audit)
    });
    let _ = child.kill();
    let _ = child.wait();
    let (seen, audit) = outcome;
    assert_eq!(
        seen,
        vec![200, 403, 403],
        "allowed, denied after the reload, unchanged by a bad file"
    );
    let entries = audit["entries"].as_array().unwrap();
    let has = |action: &str, result: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["result"] == result)
    };
    assert!(has("server.start", "ok"), "{audit}");
    assert!(has("config.reload", "ok"), "{audit}");
    assert!(has("config.reload", "failed"), "{audit}");
    let failed = entries
        .iter()
        .find(|e| e["action"] == "config.reload" && e["result"] == "failed")
        .unwrap();
    assert!(
        failed["details"]["errors"]
            .to_string()
            .contains("access.default_policy"),
        "{failed}"
    );
}
