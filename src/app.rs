//! Wiring: builds the state (store, keys, snapshots, services) from a
//! validated configuration, starts the background tasks, and waits for the
//! shutdown signal. The router and the accept loop are `http::server`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::audit::log::AuditLog;
use crate::clock::{SharedClock, SteadyClock};
use crate::config::Config;
use crate::decision::Policy;
use crate::identity::regulation::Regulation;
use crate::identity::revocation::Revocations;
use crate::identity::seal::{load_or_create_secret, random_token, Sealer};
use crate::identity::session::SessionTable;
use crate::identity::{IssuerHandle, LocalSigner, TokenValidator};
use crate::metrics::Metrics;
use crate::service::login::LoginSetup;
use crate::service::{self, Services};
use crate::snapshot::Sparse;
use crate::store::Store;
use crate::usage::Usage;

/// Validated-token cache size (entries); 100k tokens fit in a few tens of MB.
/// The validated-token cache holds at most this many bytes (each token weighed
/// by what it holds: about 1.6 KiB for a typical token, so some 160,000).
pub const TOKEN_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Shared state: cheap to clone, swapped piecewise at runtime.
pub type AppState = Arc<Inner>;

/// What the HTTP adapters hold: the snapshots the decision path reads (each
/// shared with the service that changes it) and the services for everything
/// else. The store is reachable only through the services.
#[derive(Debug)]
pub struct Inner {
    pub config: Arc<Config>,
    pub policy: Arc<ArcSwap<Policy>>,
    pub validator: Arc<TokenValidator>,
    pub local: Option<Arc<LocalSigner>>,
    pub metrics: Arc<Metrics>,
    /// Revoked tokens; replaced as a whole by `service::sessions`.
    pub revocations: Arc<Sparse<Revocations>>,
    pub clock: SharedClock,
    pub trusted_proxies: Arc<[IpNet]>,
    /// `server.public_url` without a trailing slash.
    pub public_base: String,
    /// Live browser sessions, served from memory; `service::sessions` keeps it.
    pub sessions: Arc<SessionTable>,
    /// Seals the pre-login cookie.
    pub login_sealer: Sealer,
    /// Brute-force regulation: failure counters and the bans in force.
    pub regulation: Arc<Regulation>,
    /// Decisions counted in memory, flushed to the store in batches.
    pub usage: Arc<Usage>,
    /// The domain operations (see `crate::service`).
    pub services: Services,
    /// Open admin sockets by user (`http::ws` keeps it).
    pub sockets: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Denials offered to the admin sockets (`crate::live`).
    pub denials: Arc<crate::live::DenialFeed>,
    /// This process's claim on its SQLite database (one process per file).
    pub sqlite_claim: Option<std::fs::File>,
}

/// The session secret: inline, from `session.secret_file` (created when
/// missing), or, with neither, a random one for this process only.
fn session_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &config.session.secret {
        return Ok(s.expose().as_bytes().to_vec());
    }
    if let Some(p) = &config.session.secret_file {
        return load_or_create_secret(p).map_err(|e| anyhow::anyhow!("session.secret_file: {e}"));
    }
    tracing::warn!(
        "session.per_process_secret: logins in progress and stored refresh tokens \
         will not survive a restart"
    );
    Ok(random_token(32).into_bytes())
}

/// Builds the state from a validated configuration: connects to the store and
/// applies pending migrations, creates the local signing key if it is configured
/// and missing. Does not fetch keys (see [`start_key_loading`]).
pub async fn build_state(config: Config, clock: Option<SharedClock>) -> anyhow::Result<AppState> {
    let sqlite_claim = crate::store::claim_sqlite(&config.store.url)?;
    let store = Store::connect(&config.store.url).await?;
    let applied = store.migrate().await?;
    if applied > 0 {
        tracing::info!(
            applied,
            backend = store.backend().as_str(),
            "applied store migrations"
        );
    }
    let clock = clock.unwrap_or_else(|| Arc::new(SteadyClock::system()));
    let metrics = Arc::new(Metrics::default());
    let policy = config.access.policy().map_err(|e| anyhow::anyhow!(e))?;
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
    let revocations = Revocations::from_records(&store.live_revocations(clock.wall()).await?);
    let secret = session_secret(&config)?;
    let login = login_setup(&config, &issuers)?;
    let audit_key = match (
        &config.audit.checkpoint_key,
        &config.audit.checkpoint_key_file,
    ) {
        (Some(k), _) => Some(k.expose().as_bytes().to_vec()),
        (None, Some(p)) => Some(
            load_or_create_secret(p)
                .map_err(|e| anyhow::anyhow!("audit.checkpoint_key_file: {e}"))?,
        ),
        (None, None) => {
            tracing::warn!(
                "no audit.checkpoint_key_file: the audit chain is not anchored by signed \
                 checkpoints, so a deleted tail or a rolled-back database cannot be detected"
            );
            None
        }
    };
    let audit = Arc::new(AuditLog::new(
        store.clone(),
        clock.clone(),
        config.audit.clone(),
        audit_key,
        metrics.clone(),
    ));
    let regulation = Arc::new(Regulation::new(
        config.regulation.clone(),
        &store.live_bans(clock.now()).await?,
    ));
    let table = Arc::new(SessionTable::default());
    crate::service::sessions::load_table(&store, &table, clock.now()).await?;
    let validator = Arc::new(TokenValidator::new(
        issuers,
        clock.clone(),
        metrics.clone(),
        TOKEN_CACHE_BYTES,
    ));
    let config = Arc::new(config);
    let policy = Arc::new(ArcSwap::from_pointee(policy));
    let revocations = Arc::new(Sparse::new(revocations));
    let usage = Arc::new(Usage::default());
    let trusted_proxies: Arc<[IpNet]> = config.server.trusted_proxies.clone().into();
    let secs = |d: std::time::Duration| d.as_secs() as i64;
    let notify = service::notify::Notifier::new(&config.notify, clock.clone(), metrics.clone());

    let sessions = service::sessions::Sessions::new(
        store.clone(),
        clock.clone(),
        audit.clone(),
        table.clone(),
        revocations.clone(),
        secs(config.session.inactivity),
        local.as_ref().map_or(0, |l| l.max_ttl_secs),
    );
    let allowlist = service::allowlist::Allowlist::new(
        store.clone(),
        clock.clone(),
        audit.clone(),
        policy.clone(),
        config.access.allowlist.clone(),
    );
    let bans = service::bans::Bans::new(service::bans::BansParts {
        store: store.clone(),
        clock: clock.clone(),
        audit: audit.clone(),
        metrics: metrics.clone(),
        regulation: regulation.clone(),
        trusted_proxies: trusted_proxies.clone(),
        default_ban_secs: secs(config.regulation.ban_time),
        notify: notify.clone(),
    });
    let control = service::control::Control::new(
        config.control.clone(),
        store.clone(),
        clock.clone(),
        audit.clone(),
        policy.clone(),
        notify.clone(),
    );
    let power = service::power::Power::new(
        &config.control.power,
        clock.clone(),
        audit.clone(),
        control.clone(),
        notify.clone(),
    );
    let services = Services {
        login: service::login::Login::new(service::login::LoginParts {
            setup: login,
            validator: validator.clone(),
            store: store.clone(),
            clock: clock.clone(),
            audit: audit.clone(),
            sessions: sessions.clone(),
            bans: bans.clone(),
            table: table.clone(),
            token_sealer: Sealer::new(&secret, "stored idp token"),
            http: crate::identity::oidc::http_client(),
            lifetime: secs(config.session.lifetime),
            inactivity: secs(config.session.inactivity),
        }),
        usage: service::usage::UsageReports::new(
            store.clone(),
            clock.clone(),
            usage.clone(),
            sessions.clone(),
        ),
        audit: service::audit::Audit::new(audit.clone(), store.clone(), notify.clone()),
        power: power.clone(),
        actions: service::actions::Actions::new(&config.actions, clock.clone(), audit.clone()),
        status: service::status::Status::new(service::status::StatusParts {
            store: store.clone(),
            clock: clock.clone(),
            validator: validator.clone(),
            audit: audit.clone(),
            control: control.clone(),
            power: power.clone(),
            table: table.clone(),
            inactivity: secs(config.session.inactivity),
        }),
        control,
        reload: service::reload::Reload::new(
            config.clone(),
            audit,
            allowlist.clone(),
            notify.clone(),
        ),
        notify,
        replicas: service::replicas::Replicas::new(
            store.clone(),
            clock.clone(),
            config.store.max_staleness,
        ),
        retention: service::retention::Retention::new(
            store.clone(),
            clock.clone(),
            config.store.retention,
        ),
        sessions,
        allowlist,
        bans,
    };
    services.allowlist.reload().await?;
    // A kill switch engaged before this start (or on another replica) holds.
    services.control.reload().await?;
    let denials = crate::live::DenialFeed::new(config.admin.live.denials_per_second);
    Ok(Arc::new(Inner {
        trusted_proxies,
        public_base: config
            .server
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        config,
        policy,
        validator,
        local,
        metrics,
        revocations,
        clock,
        sessions: table,
        login_sealer: Sealer::new(&secret, "pre-login cookie"),
        regulation,
        usage,
        services,
        sockets: Default::default(),
        denials,
        sqlite_claim,
    }))
}

/// The login issuer: `session.login_issuer`, else the first issuer with a `client_id`.
fn login_setup(
    config: &Config,
    issuers: &[Arc<IssuerHandle>],
) -> anyhow::Result<Option<Arc<LoginSetup>>> {
    let chosen = match &config.session.login_issuer {
        Some(iss) => Some(
            config
                .issuers
                .iter()
                .find(|c| &c.issuer == iss && c.client_id.is_some())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "session.login_issuer: {iss} is not an [[issuers]] entry with a client_id"
                    )
                })?,
        ),
        None => config.issuers.iter().find(|c| c.client_id.is_some()),
    };
    let Some(c) = chosen else {
        return Ok(None);
    };
    let issuer = issuers
        .iter()
        .find(|h| h.issuer == c.issuer)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("login issuer {} has no handle", c.issuer))?;
    Ok(Some(Arc::new(LoginSetup {
        issuer,
        client_id: c.client_id.clone().unwrap_or_default(),
        client_secret: c.client_secret.clone(),
        redirect_uri: format!(
            "{}/callback",
            config.server.public_url.as_str().trim_end_matches('/')
        ),
        allow_http: issuer_is_http(&c.issuer),
    })))
}

/// Validation lets an http:// issuer through only with `allow_insecure_http = true`;
/// its jwks_uri may then be http too.
fn issuer_is_http(issuer: &str) -> bool {
    issuer.starts_with("http://")
}

/// Fetches every issuer's keys once, then keeps keys and revocations fresh in
/// the background.
pub async fn start_background(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    state.validator.load_all().await;
    let mut tasks = state.validator.spawn_refreshers();
    // The audit mirror repaired and filled from the store before anything else
    // is appended (the first appends wait for it; a long fill goes on in batches).
    let audit = state.services.audit.log().clone();
    tasks.push(tokio::spawn(async move { audit.catch_up_mirror().await }));
    tasks.push(service::jobs::spawn(
        state.services.clone(),
        state.config.store.reload_interval,
    ));
    if let Some(t) = state.services.replicas.spawn(state.services.clone()) {
        tasks.push(t);
    }
    tasks
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
