//! Always-served operational endpoints: `/healthz`, `/readyz`, `/metrics`, and the
//! local issuer's public keys.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::AppState;
use crate::http::api::error_response;

/// The process is up and serving.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
}

/// Every issuer has signing keys loaded and the store answers within a second.
pub async fn readyz(State(st): State<AppState>) -> Response {
    let issuers: Vec<_> = st
        .validator
        .issuers()
        .map(|i| json!({"issuer": i.issuer, "keys_loaded": i.is_loaded()}))
        .collect();
    let (backend, store_ok) = st
        .services
        .status
        .store_health(std::time::Duration::from_secs(1))
        .await;
    let replicas = &st.services.replicas;
    let ready = st.validator.ready() && store_ok && replicas.in_sync();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready {"ready"} else {"not_ready"},
            "issuers": issuers,
            "store": {"backend": backend, "reachable": store_ok},
            "replicas": {"shared_store": replicas.shared(), "in_sync": replicas.in_sync()},
        })),
    )
        .into_response()
}

/// Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let alive = st.sessions.count_alive(
        st.clock.now(),
        st.config.session.inactivity.as_secs() as i64,
    );
    st.metrics
        .active_sessions
        .store(alive as u64, std::sync::atomic::Ordering::Relaxed);
    let (_, store_ok) = st
        .services
        .status
        .store_health(std::time::Duration::from_secs(1))
        .await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render()
            + &format!(
                "# HELP gatehouse_clock_steps_total System clock steps gatehouse did not follow for its own deadlines.\n# TYPE gatehouse_clock_steps_total counter\ngatehouse_clock_steps_total {}\n\
                 # HELP gatehouse_store_up Whether the store answered this scrape within a second.\n# TYPE gatehouse_store_up gauge\ngatehouse_store_up {}\n\
                 # HELP gatehouse_ready Whether /readyz would answer 200 (keys loaded, store answering, replicas caught up).\n# TYPE gatehouse_ready gauge\ngatehouse_ready {}\n",
                st.clock.steps(),
                u8::from(store_ok),
                u8::from(st.validator.ready() && store_ok && st.services.replicas.in_sync()),
            ),
    )
        .into_response()
}

/// The local issuer's public keys, so other services can verify minted tokens.
pub async fn local_jwks(State(st): State<AppState>) -> Response {
    match &st.local {
        Some(l) => Json(l.jwks()).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no local issuer is configured".into(),
        ),
    }
}

/// Unknown paths: a JSON 404, never a fallthrough to anything else.
pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint".into(),
    )
}
