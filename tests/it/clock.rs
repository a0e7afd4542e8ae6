//! Clock steps: the wall clock jumps forward and back (a manual clock under
//! gatehouse's production `SteadyClock`, no time passing). Nothing gatehouse
//! ended comes back; nothing it granted (sessions, bans) ends early; tokens
//! keep the identity provider's wall-clock meaning and never live longer.

use std::sync::Arc;

use crate::common;
use common::*;
use gatehouse::clock::{Clock, ManualClock, SharedClock, SteadyClock, SystemClock};
use gatehouse::identity::MintRequest;

const OVERRIDES: &str = r#"
[session]
inactivity = "10m"
lifetime = "12h"
"#;

/// The decision for `https://app.example.com/` with these headers.
async fn decide(gh: &Server, headers: &[(&str, &str)]) -> u16 {
    gh.forward("app.example.com", "/", headers)
        .await
        .status()
        .as_u16()
}

async fn with_token(gh: &Server, token: &str) -> u16 {
    decide(gh, &[("Authorization", &format!("Bearer {token}"))]).await
}

async fn with_cookie(gh: &Server, cookie: &str) -> u16 {
    decide(gh, &[("Cookie", &format!("gatehouse_session={cookie}"))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_neither_resurrect_nor_end_early() {
    let manual = ManualClock::new(SystemClock.now());
    let steady = Arc::new(SteadyClock::over(manual.clone()));
    let shared: SharedClock = steady.clone();
    let gh = Server::start_with_clock(&config_with(OVERRIDES), Some(shared)).await;
    let admin = gh.mint("ops", &["admin"]);
    let minute = |sub: &str| {
        gh.mint_req(&MintRequest {
            sub: sub.into(),
            ttl_secs: 60,
            ..Default::default()
        })
    };
    let short = minute("alice");
    let hour = gh.mint("bob", &[]);
    let cookie = gh.stored_session("carol", &[]).await;
    let (s, _) = gh.ban(&admin, "user", "mallory").await;
    assert_eq!(s, 200);
    let mallory = gh.mint("mallory", &[]);
    assert_eq!(with_token(&gh, &short).await, 200);
    assert_eq!(with_token(&gh, &hour).await, 200);
    assert_eq!(with_cookie(&gh, &cookie).await, 200);
    assert_eq!(with_token(&gh, &mallory).await, 403);

    // The clock steps two hours forward. Tokens are the IdP's instants: the
    // wall clock says they ran out. What gatehouse granted goes on: the
    // session (10 minutes of inactivity allowed, last seen just now) and
    // the one-hour ban.
    manual.step(2 * 3600);
    manual.advance(1); // gatehouse looks at the wall clock once a second
    assert_eq!(with_token(&gh, &short).await, 401);
    assert_eq!(with_token(&gh, &hour).await, 401);
    assert_eq!(
        with_cookie(&gh, &cookie).await,
        200,
        "a session must not end early"
    );
    let mallory = gh.mint("mallory", &[]);
    assert_eq!(
        with_token(&gh, &mallory).await,
        403,
        "a ban must not end early"
    );
    assert_eq!(gh.metric("gatehouse_clock_steps_total ").await, 1);

    // Time passes: the session's inactivity and the ban run their real course.
    manual.advance(11 * 60);
    assert_ne!(with_cookie(&gh, &cookie).await, 200, "inactive 11 minutes");
    let mallory = gh.mint("mallory", &[]);
    assert_eq!(
        with_token(&gh, &mallory).await,
        403,
        "banned 49 more minutes"
    );
    manual.advance(50 * 60);
    assert_eq!(with_token(&gh, &mallory).await, 200, "the hour is over");

    // Three hours back: nothing ended comes back.
    let fresh = minute("dave");
    manual.step(-3 * 3600);
    manual.advance(1);
    assert_eq!(with_token(&gh, &short).await, 401);
    assert_eq!(with_token(&gh, &hour).await, 401);
    assert_ne!(with_cookie(&gh, &cookie).await, 200);
    assert_eq!(
        with_token(&gh, &mallory).await,
        200,
        "a lifted ban stays lifted"
    );
    // A token about to run out does not live longer for the step back.
    assert_eq!(with_token(&gh, &fresh).await, 200);
    manual.advance(60 + 30);
    assert_eq!(
        with_token(&gh, &fresh).await,
        401,
        "exp plus the 30 s leeway"
    );
    assert_eq!(gh.metric("gatehouse_clock_steps_total ").await, 2);
    // And new things work on the clock that went on.
    let (s, _) = gh.ban(&gh.mint("ops", &["admin"]), "user", "eve").await;
    assert_eq!(s, 200);
    assert_eq!(with_token(&gh, &gh.mint("eve", &[])).await, 403);
    assert_eq!(with_token(&gh, &gh.mint("frank", &[])).await, 200);
    let t = steady.now();
    assert_eq!(
        steady.wall() - t,
        2 * 3600,
        "the wall followed the step forward only"
    );
}
