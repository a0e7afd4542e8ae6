//! Application state, the one router every test goes through, and serving with
//! graceful shutdown.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::config::Secret;
use crate::decision::Policy;
use crate::identity::revocation::Revocations;
use crate::identity::seal::{load_or_create_secret, random_token, Sealer};
use crate::identity::session::SessionTable;
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
    /// Live browser sessions, served from memory (see [`reload_sessions`]).
    pub sessions: SessionTable,
    /// The browser login, when an issuer has a `client_id`.
    pub login: Option<LoginSetup>,
    /// Seals the pre-login cookie.
    pub login_sealer: Sealer,
    /// Seals IdP tokens kept in the store.
    pub token_sealer: Sealer,
    /// Back-channel logout token ids already used, with their expiry.
    pub logout_jtis: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// HTTP client for the IdP's token endpoint.
    pub oidc_http: reqwest::Client,
    /// Brute-force regulation: failure counters and the bans in force.
    pub regulation: crate::identity::regulation::Regulation,
    /// The hash-chained audit log.
    pub audit: crate::audit::log::AuditLog,
    /// Decisions counted in memory, flushed to the store in batches.
    pub usage: crate::usage::Usage,
    /// `access.allowlist` as last loaded (it changes with a configuration reload).
    pub static_allowlist: ArcSwap<Vec<IpNet>>,
}

/// The issuer and client the browser login uses.
#[derive(Debug)]
pub struct LoginSetup {
    pub issuer: Arc<IssuerHandle>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// `{public_url}/callback`.
    pub redirect_uri: String,
    /// The issuer is http:// (development only, `allow_insecure_http`).
    pub allow_http: bool,
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
        "no session.secret or session.secret_file: logins in progress and refresh tokens \
         will not survive a restart; set session.secret_file"
    );
    Ok(random_token(32).into_bytes())
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
    let config_static_allowlist = config.access.allowlist.clone();
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
    let audit = crate::audit::log::AuditLog::new(
        store.clone(),
        clock.clone(),
        config.audit.clone(),
        audit_key,
        metrics.clone(),
    );
    let regulation = crate::identity::regulation::Regulation::new(
        config.regulation.clone(),
        &store.live_bans(clock.now()).await?,
    );
    let sessions = SessionTable::default();
    sessions.load(&store.live_sessions(clock.now(), None).await?);
    let validator = Arc::new(TokenValidator::new(
        issuers,
        clock.clone(),
        metrics.clone(),
        TOKEN_CACHE_CAPACITY,
    ));
    let state = Arc::new(Inner {
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
        sessions,
        login,
        login_sealer: Sealer::new(&secret, "pre-login cookie"),
        token_sealer: Sealer::new(&secret, "stored idp token"),
        logout_jtis: Default::default(),
        oidc_http: crate::identity::oidc::http_client(),
        regulation,
        audit,
        usage: Default::default(),
        static_allowlist: ArcSwap::from_pointee(config_static_allowlist),
    });
    reload_allowlist(&state).await?;
    Ok(state)
}

/// The login issuer: `session.login_issuer`, else the first issuer with a `client_id`.
fn login_setup(
    config: &Config,
    issuers: &[Arc<IssuerHandle>],
) -> anyhow::Result<Option<LoginSetup>> {
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
    Ok(Some(LoginSetup {
        issuer,
        client_id: c.client_id.clone().unwrap_or_default(),
        client_secret: c.client_secret.clone(),
        redirect_uri: format!(
            "{}/callback",
            config.server.public_url.as_str().trim_end_matches('/')
        ),
        allow_http: issuer_is_http(&c.issuer),
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

/// Counts a refused credential against the client address (never a trusted
/// proxy's: that would ban everyone behind it) and, when known, the user; a
/// ban that results is in force at once and written to the store in the
/// background.
pub fn note_failure(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    user: Option<&str>,
    reason: &str,
) {
    use crate::identity::regulation::BanKey;
    let now = state.clock.now();
    let mut keys = vec![];
    if let Some(client) = client.map(|c| c.to_canonical()) {
        if !crate::decision::target::in_nets(client, &state.trusted_proxies) {
            keys.push(BanKey::Ip(client));
        }
    }
    if let Some(u) = user {
        keys.push(BanKey::User(u.to_string()));
    }
    for key in keys {
        if let Some(ban) = state.regulation.failure(key, reason, now) {
            tracing::warn!(
                target: "gatehouse::regulation",
                kind = %ban.kind, value = %ban.value, reason, until = ban.expires_at,
                "banned after repeated refused credentials"
            );
            state.metrics.auth_failures.inc(["banned"]);
            let st = state.clone();
            tokio::spawn(async move {
                match st.store.insert_ban(&ban).await {
                    Ok(id) => {
                        st.audit
                            .record(crate::audit::NewEntry::new(
                                "gatehouse",
                                "",
                                "ban.add",
                                &format!("{}:{}", ban.kind, ban.value),
                                "ok",
                                serde_json::json!({"id": id, "reason": ban.reason, "failures": ban.failures, "expires_at": ban.expires_at}),
                            ))
                            .await
                    }
                    Err(e) => tracing::error!(error = %e, "cannot store a ban; it holds in this process only"),
                }
            });
        }
    }
}

/// Whether a refusal reason counts towards a ban: signs of forgery or guessing,
/// not the ordinary end of a credential's life (expired tokens, stale session
/// cookies) nor an IdP outage.
pub fn counts_as_failure(reason: &str) -> bool {
    !matches!(
        reason,
        "expired"
            | "not_yet_valid"
            | "issued_in_future"
            | "keys_unavailable"
            | "session_expired"
            | "session_inactive"
            | "session_unknown"
    )
}

/// Rebuilds the allowlist snapshot from the configuration's static entries and
/// the store's runtime entries, and swaps it into the policy.
pub async fn reload_allowlist(state: &Inner) -> Result<(), crate::store::StoreError> {
    use crate::decision::{AllowEntry, Allowlist};
    let mut entries: Vec<AllowEntry> = state
        .static_allowlist
        .load()
        .iter()
        .map(|n| AllowEntry {
            net: *n,
            expires_at: None,
        })
        .collect();
    for r in state.store.allowlist().await? {
        match r.cidr.parse() {
            Ok(net) => entries.push(AllowEntry {
                net,
                expires_at: r.expires_at,
            }),
            Err(_) => tracing::error!(id = r.id, "a stored allowlist entry is not a CIDR; skipped"),
        }
    }
    let next = state.policy.load().with_allowlist(Allowlist::new(entries));
    state.policy.store(Arc::new(next));
    Ok(())
}

/// How long usage counters are kept in the store.
pub const USAGE_RETENTION_SECS: i64 = 31 * 24 * 3600;

/// Writes the usage counted since the last flush in one batch; on failure the
/// counts are kept for the next flush.
pub async fn flush_usage(state: &Inner) -> Result<(), crate::store::StoreError> {
    let rows = state.usage.drain();
    if rows.is_empty() {
        return Ok(());
    }
    if let Err(e) = state.store.add_usage(&rows).await {
        state.usage.restore(rows);
        return Err(e);
    }
    state
        .store
        .prune_usage(state.clock.now() - USAGE_RETENTION_SECS)
        .await
}

/// What a configuration reload changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadSummary {
    pub rules: usize,
    pub static_allowlist: usize,
    /// Sections that differ from the running ones but only apply after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Reloads the configuration (SIGHUP): the `[access]` section — rules, default
/// policy, the static allowlist, two-factor settings — takes effect at once;
/// other sections that changed are reported as needing a restart. An invalid
/// file changes nothing. Either way the attempt is audited.
pub async fn reload_config(
    state: &AppState,
    source: &crate::config::ConfigSource,
) -> Result<ReloadSummary, String> {
    use crate::audit::NewEntry;
    let new = match Config::load(source) {
        Ok(c) => c,
        Err(errors) => {
            let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
            state
                .audit
                .record(NewEntry::new(
                    "gatehouse",
                    "",
                    "config.reload",
                    &state.config.source,
                    "failed",
                    serde_json::json!({ "errors": keys }),
                ))
                .await;
            return Err(errors.to_string());
        }
    };
    let policy = match Policy::from_config(&new.access) {
        Ok(p) => p,
        Err(e) => return Err(format!("access: {e}")),
    };
    let old = &state.config;
    let mut needs_restart = vec![];
    for (name, a, b) in [
        (
            "server",
            format!("{:?}", old.server),
            format!("{:?}", new.server),
        ),
        (
            "store",
            format!("{:?}", old.store),
            format!("{:?}", new.store),
        ),
        (
            "issuers",
            format!("{:?}", old.issuers),
            format!("{:?}", new.issuers),
        ),
        (
            "local_issuer",
            format!("{:?}", old.local_issuer),
            format!("{:?}", new.local_issuer),
        ),
        (
            "session",
            format!("{:?}", old.session),
            format!("{:?}", new.session),
        ),
        (
            "admin",
            format!("{:?}", old.admin),
            format!("{:?}", new.admin),
        ),
        (
            "audit",
            format!("{:?}", old.audit),
            format!("{:?}", new.audit),
        ),
        (
            "regulation",
            format!("{:?}", old.regulation),
            format!("{:?}", new.regulation),
        ),
    ] {
        if a != b {
            needs_restart.push(name);
        }
    }
    let summary = ReloadSummary {
        rules: new.access.rules.len(),
        static_allowlist: new.access.allowlist.len(),
        needs_restart,
    };
    // Audited before it applies: a reload that cannot be recorded does not happen.
    state
        .audit
        .append(NewEntry::new(
            "gatehouse",
            "",
            "config.reload",
            &new.source,
            "ok",
            serde_json::to_value(&summary).unwrap_or_default(),
        ))
        .await
        .map_err(|e| format!("not reloaded: the audit entry could not be written: {e}"))?;
    state
        .static_allowlist
        .store(Arc::new(new.access.allowlist.clone()));
    state.policy.store(Arc::new(policy));
    reload_allowlist(state)
        .await
        .map_err(|e| format!("reloaded, but the runtime allowlist could not be read: {e}"))?;
    Ok(summary)
}

/// Re-reads live sessions from the store (other processes' logins and
/// terminations) and swaps the table, under the sessions' write gate.
pub async fn reload_sessions(state: &Inner) -> Result<(), crate::store::StoreError> {
    let _gate = state.sessions.write_gate.lock().await;
    let records = state.store.live_sessions(state.clock.now(), None).await?;
    state.sessions.load(&records);
    Ok(())
}

/// Writes the last-seen times that moved since the last flush, in one batch.
pub async fn flush_last_seen(state: &Inner) -> Result<(), crate::store::StoreError> {
    let pending = state.sessions.unflushed();
    if pending.is_empty() {
        return Ok(());
    }
    state.store.touch_sessions(&pending).await?;
    state.sessions.mark_flushed(&pending);
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
            if let Err(e) = flush_last_seen(&st).await {
                tracing::warn!(error = %e, "cannot record session activity; will retry");
            }
            match st.store.live_bans(st.clock.now()).await {
                Ok(bans) => st.regulation.load(&bans),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh bans; keeping the last snapshot")
                }
            }
            if let Err(e) = reload_allowlist(&st).await {
                tracing::warn!(error = %e, "cannot refresh the allowlist; keeping the last snapshot");
            }
            if let Err(e) = reload_sessions(&st).await {
                tracing::warn!(error = %e, "cannot refresh sessions; keeping the last snapshot");
            }
            crate::service::login::refresh_due_sessions(&st).await;
            st.audit.checkpoint_if_due().await;
            if let Err(e) = flush_usage(&st).await {
                tracing::warn!(error = %e, "cannot write usage counters; keeping them for the next try");
            }
        }
    }));
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
