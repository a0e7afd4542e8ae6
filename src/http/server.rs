//! Serving: the one router every test goes through, and the accept loop with
//! graceful shutdown. Each connection starts on the decision fast path
//! ([`super::wire`]) and is handed to hyper and the router at its first request
//! of another kind.

use axum::routing::{any, delete, get, post};
use axum::Router;

use crate::app::AppState;
use crate::http;

/// The one router: decision endpoints, operations, and (later) the companion API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/authz/nginx", any(http::authz::nginx))
        .route("/authz/forward", any(http::authz::forward))
        .route("/healthz", get(http::ops::healthz))
        .route("/readyz", get(http::ops::readyz))
        .route("/metrics", get(http::ops::metrics))
        .route("/.well-known/jwks.json", get(http::ops::local_jwks))
        .route("/login", get(http::login::login))
        .route("/callback", get(http::login::callback))
        .route(
            "/logout",
            get(http::login::logout).post(http::login::logout),
        )
        .route("/backchannel-logout", post(http::login::backchannel_logout))
        .route("/api/v1/me", get(http::api::me))
        .route("/api/v1/sessions", get(http::api::sessions::list))
        .route(
            "/api/v1/sessions/terminate-all",
            post(http::api::sessions::terminate_all),
        )
        .route(
            "/api/v1/sessions/{id}",
            delete(http::api::sessions::terminate_one),
        )
        .route(
            "/api/v1/bans",
            get(http::api::bans::list).post(http::api::bans::create),
        )
        .route("/api/v1/bans/{id}", delete(http::api::bans::lift))
        .route(
            "/api/v1/allowlist",
            get(http::api::allowlist::list).post(http::api::allowlist::add),
        )
        .route(
            "/api/v1/allowlist/import",
            post(http::api::allowlist::import),
        )
        .route(
            "/api/v1/allowlist/{id}",
            delete(http::api::allowlist::remove),
        )
        .route(
            "/api/v1/monitoring/usage",
            get(http::api::monitoring::usage),
        )
        .route(
            "/api/v1/control/services",
            get(http::api::control::services),
        )
        .route(
            "/api/v1/control/services/{name}/{action}",
            post(http::api::control::service_action),
        )
        .route(
            "/api/v1/control/kill-switch",
            get(http::api::control::kill_switch).post(http::api::control::press),
        )
        .route(
            "/api/v1/control/kill-switch/release",
            post(http::api::control::release),
        )
        .route("/api/v1/control/power", get(http::api::control::power))
        .route(
            "/api/v1/control/power/{machine}/{op}",
            post(http::api::control::power_action),
        )
        .route("/api/v1/status", get(http::api::control::status))
        .route("/api/v1/ws", get(http::ws::ws))
        .route("/api/v1/actions", get(http::api::actions::list))
        .route("/api/v1/actions/{name}/run", post(http::api::actions::run))
        .route(
            "/api/v1/actions/runs/{id}",
            get(http::api::actions::get_run),
        )
        .route("/ui", get(http::ui::root))
        .route("/ui/", get(http::ui::index))
        .route("/ui/{file}", get(http::ui::file))
        .route("/api/v1/openapi.json", get(http::api::openapi))
        .route("/api/v1/audit", get(http::api::audit::list))
        .route("/api/v1/audit/verify", get(http::api::audit::verify))
        .route("/api/v1/{*rest}", any(http::api::not_found))
        .fallback(http::ops::not_found)
        .method_not_allowed_fallback(http::api::method_not_allowed)
        .with_state(state)
}

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves on a bound listener until `shutdown` resolves.
///
/// Each connection starts on the decision fast path ([`http::wire`]) and is
/// handed to hyper and the [`router`] at its first request of another kind.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioTimer;
    let app = router(state.clone());
    // Dropping `stop_tx` asks every connection to finish; `close_tx.closed()`
    // resolves once every connection task has dropped its `close_rx`.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http::wire::HEADER_READ_TIMEOUT)
        // A client that shuts its sending side still gets its answers.
        .half_close(true)
        .keep_alive(true);
    let tls = match &state.config.server.tls {
        Some(files) => {
            let t = std::sync::Arc::new(
                http::tls::Tls::load(files)
                    .map_err(|e| std::io::Error::other(format!("server.tls_cert_file: {e}")))?,
            );
            t.reload_on_hangup();
            Some(t)
        }
        None => None,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (st, app, builder, stop) =
            (state.clone(), app.clone(), builder.clone(), stop_rx.clone());
        let close = close_rx.clone();
        match &tls {
            None => {
                tokio::spawn(async move {
                    http::wire::serve_connection(stream, peer, st, app, builder, stop).await;
                    drop(close);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                tokio::spawn(async move {
                    // The handshake is bounded like a request head.
                    let hs = tokio::time::timeout(
                        http::wire::HEADER_READ_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await;
                    match hs {
                        Ok(Ok(s)) => {
                            http::wire::serve_connection(s, peer, st, app, builder, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(close);
                });
            }
        }
    }
    drop(listener);
    drop(stop_tx);
    drop(close_rx);
    if tokio::time::timeout(SHUTDOWN_GRACE, close_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    Ok(())
}
