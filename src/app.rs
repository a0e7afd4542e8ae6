//! Application state, the one router every test goes through, and serving with
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::routing::{any, delete, get, post};
use axum::Router;
use ipnet::IpNet;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::decision::Policy;
use crate::http;
use crate::identity::revocation::Revocations;
use crate::identity::{IssuerHandle, LocalSigner, TokenValidator};
use crate::metrics::Metrics;
use crate::store::Store;

/// Validated-token cache size (entries); 100k tokens fit in a few tens of MB.
pub const TOKEN_CACHE_CAPACITY: u64 = 200_000;

/// Shared state: cheap to clone, swapped piecewise at runtime.
pub type AppState = Arc<Inner>;

#[derive(Debug)]
pub struct Inner {
    pub config: Arc<Config>,
    pub policy: ArcSwap<Policy>,
    pub validator: Arc<TokenValidator>,
    pub local: Option<Arc<LocalSigner>>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Revoked tokens; replaced as a whole from the store (see [`reload_revocations`]).
    pub revocations: ArcSwap<Revocations>,
    pub clock: SharedClock,
    pub trusted_proxies: Arc<[IpNet]>,
    /// `server.public_url` without a trailing slash.
    pub public_base: String,
}

/// Builds the state from a validated configuration: connects to the store and
/// applies pending migrations, creates the local signing key if it is configured
/// and missing. Does not fetch keys (see [`start_key_loading`]).
pub async fn build_state(config: Config, clock: Option<SharedClock>) -> anyhow::Result<AppState> {
    let store = Store::connect(&config.store.url).await?;
    let applied = store.migrate().await?;
    if applied > 0 {
        tracing::info!(
            applied,
            backend = store.backend().as_str(),
            "applied store migrations"
        );
    }
    let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
    let metrics = Arc::new(Metrics::default());
    let policy = Policy::from_config(&config.access).map_err(|e| anyhow::anyhow!(e))?;
    let local = match &config.local_issuer {
        Some(l) => Some(Arc::new(
            LocalSigner::load(l, true).map_err(|e| anyhow::anyhow!(e))?,
        )),
        None => None,
    };
    let mut issuers: Vec<Arc<IssuerHandle>> = config
        .issuers
        .iter()
        .map(|c| Arc::new(IssuerHandle::from_config(c, issuer_is_http(&c.issuer))))
        .collect();
    if let Some(l) = &local {
        issuers.push(Arc::new(l.issuer_handle()));
    }
    let revocations = Revocations::from_records(&store.live_revocations(clock.now()).await?);
    let validator = Arc::new(TokenValidator::new(
        issuers,
        clock.clone(),
        metrics.clone(),
        TOKEN_CACHE_CAPACITY,
    ));
    Ok(Arc::new(Inner {
        trusted_proxies: config.server.trusted_proxies.clone().into(),
        public_base: config
            .server
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        config: Arc::new(config),
        policy: ArcSwap::from_pointee(policy),
        validator,
        local,
        metrics,
        store,
        revocations: ArcSwap::from_pointee(revocations),
        clock,
    }))
}

/// Validation lets an http:// issuer through only with `allow_insecure_http = true`;
/// its jwks_uri may then be http too.
fn issuer_is_http(issuer: &str) -> bool {
    issuer.starts_with("http://")
}

/// How often the revocation snapshot is re-read, for changes made by other
/// gatehouse processes sharing the store (local changes apply at once).
pub const REVOCATION_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Re-reads live revocations from the store and swaps the snapshot. On a store
/// error the previous snapshot stays (it only ever loses entries by expiring).
pub async fn reload_revocations(state: &Inner) -> Result<(), crate::store::StoreError> {
    let records = state.store.live_revocations(state.clock.now()).await?;
    state
        .revocations
        .store(Arc::new(Revocations::from_records(&records)));
    Ok(())
}

/// Fetches every issuer's keys once, then keeps keys and revocations fresh in
/// the background.
pub async fn start_background(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    state.validator.load_all().await;
    let mut tasks = state.validator.spawn_refreshers();
    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(REVOCATION_REFRESH).await;
            if let Err(e) = reload_revocations(&st).await {
                tracing::warn!(error = %e, "cannot refresh revocations; keeping the last snapshot");
            }
        }
    }));
    tasks
}

/// The one router: decision endpoints, operations, and (later) the companion API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/authz/nginx", any(http::authz::nginx))
        .route("/authz/forward", any(http::authz::forward))
        .route("/healthz", get(http::ops::healthz))
        .route("/readyz", get(http::ops::readyz))
        .route("/metrics", get(http::ops::metrics))
        .route("/.well-known/jwks.json", get(http::ops::local_jwks))
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
        .route("/api/v1/{*rest}", any(http::api::not_found))
        .fallback(http::ops::not_found)
        .with_state(state)
}

/// Serves on a bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
