//! The `gatehouse` binary: parse the command line, load the configuration, set up
//! logging, and call into the library. Nothing else lives here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::config::{parse_duration, Config, ConfigSource, LogFormat};
use gatehouse::identity::{LocalSigner, MintRequest};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "ForwardAuth sidecar for nginx, Caddy and Traefik"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Config file (else $GATEHOUSE_CONFIG, else ./gatehouse.toml, else embedded defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print a one-line summary.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Apply pending migrations to the configured store and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Tokens from the local signing key.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and the signed checkpoints: exit 0 with
    /// `ok: N entries, head <hex>`, exit 1 with the first bad entry and why.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Verify an exported JSON-lines file (with its rotated `.1`, `.2`...)
        /// instead of the live store.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Checkpoints to check against (default: audit.checkpoint_file).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a JWT signed by the configured local signing key.
    Mint {
        #[arg(long)]
        sub: String,
        /// Comma-separated roles (realm_access.roles).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        #[arg(long, default_value = "10m")]
        ttl: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Authentication context class (e.g. a value listed in access.two_factor_acr).
        #[arg(long)]
        acr: Option<String>,
        /// Comma-separated authentication methods (e.g. pwd,otp).
        #[arg(long, value_delimiter = ',')]
        amr: Vec<String>,
        #[arg(long)]
        sid: Option<String>,
        /// Print this many distinct tokens, one per line (load tests).
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// A current-thread runtime for the one-shot commands.
fn small_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("cannot start the runtime: {e}"))
        .ok()
}

fn load(config: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(&ConfigSource::resolve(config)).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(config) {
            Ok(c) => {
                println!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Migrate { config } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(rt) = small_runtime() else {
                return ExitCode::FAILURE;
            };
            let url = cfg.store.url.clone();
            match rt.block_on(async {
                let store = gatehouse::store::Store::connect(&url).await?;
                let applied = store.migrate().await?;
                let versions = store.applied_versions().await?;
                Ok::<_, gatehouse::store::StoreError>((store.backend(), applied, versions))
            }) {
                Ok((backend, applied, versions)) => {
                    println!(
                        "ok: {} {} — applied {applied} migration(s), now at version {}",
                        backend.as_str(),
                        gatehouse::config::redact_url(&url),
                        versions.last().copied().unwrap_or(0)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token {
            command:
                TokenCommand::Mint {
                    sub,
                    roles,
                    ttl,
                    email,
                    name,
                    acr,
                    amr,
                    sid,
                    count,
                    config,
                },
        } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(local) = &cfg.local_issuer else {
                eprintln!(
                    "local_issuer: not configured; add a [local_issuer] section to mint tokens"
                );
                return ExitCode::from(2);
            };
            let ttl = match parse_duration(&ttl) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => {
                    eprintln!("--ttl: {e}");
                    return ExitCode::from(2);
                }
            };
            let signer = match LocalSigner::load(local, true) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let req = MintRequest {
                sub,
                roles: roles.into_iter().filter(|r| !r.is_empty()).collect(),
                ttl_secs: ttl,
                email,
                name,
                acr,
                amr: amr.into_iter().filter(|r| !r.is_empty()).collect(),
                sid,
            };
            let now = SystemClock.now();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for _ in 0..count.max(1) {
                match signer.mint(&req, now) {
                    Ok(t) => {
                        if writeln!(out, "{t}").is_err() {
                            return ExitCode::FAILURE;
                        }
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    file,
                    checkpoints,
                },
        } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            audit_verify(&cfg, file, checkpoints)
        }
        Command::Serve { config } => {
            let source = ConfigSource::resolve(config.clone());
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_tracing(cfg.server.log_format);
            // On one CPU a current-thread runtime avoids the work-stealing machinery
            // (see docs/benchmarks.md); otherwise one worker per CPU.
            let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
            let mut builder = if one_cpu {
                tokio::runtime::Builder::new_current_thread()
            } else {
                tokio::runtime::Builder::new_multi_thread()
            };
            let rt = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(cfg, source)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "gatehouse stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn audit_verify(cfg: &Config, file: Option<PathBuf>, checkpoints: Option<PathBuf>) -> ExitCode {
    use gatehouse::audit::{chain, log};
    let key = match (&cfg.audit.checkpoint_key, &cfg.audit.checkpoint_key_file) {
        (Some(k), _) => Some(k.expose().as_bytes().to_vec()),
        (None, Some(p)) => match gatehouse::identity::seal::read_secret(p) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("audit.checkpoint_key_file: {e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => None,
    };
    let cp_path = checkpoints.or_else(|| cfg.audit.checkpoint_file.clone());
    let cps = match cp_path.as_deref().map(log::read_checkpoints).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            println!("broken: the checkpoint file cannot be read: {e}");
            return ExitCode::from(1);
        }
    };
    if !cps.is_empty() && key.is_none() {
        eprintln!("audit.checkpoint_key_file: needed to check the checkpoints");
        return ExitCode::from(2);
    }
    let entries = match &file {
        Some(f) => match log::read_jsonl(&log::mirror_files(f)) {
            Ok(e) if !e.is_empty() || f.exists() => e,
            Ok(_) => {
                eprintln!("--file: {} does not exist", f.display());
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("--file: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            let Some(rt) = small_runtime() else {
                return ExitCode::FAILURE;
            };
            let url = cfg.store.url.clone();
            match rt.block_on(async {
                let store = gatehouse::store::Store::connect(&url).await?;
                store.audit_entries().await
            }) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let report = chain::verify(entries, &cps, key.as_deref());
    match &report.error {
        None => {
            println!("ok: {} entries, head {}", report.entries, report.head);
            if report.unanchored > 0 || cps.is_empty() {
                println!(
                    "{} entries after the last checkpoint ({} checkpoints checked)",
                    report.unanchored, report.checkpoints
                );
            }
            ExitCode::SUCCESS
        }
        Some(b) => {
            match b.seq() {
                Some(seq) => println!("broken at entry {seq}: {b}"),
                None => println!("broken: {b}"),
            }
            ExitCode::from(1)
        }
    }
}

async fn serve(cfg: Config, source: ConfigSource) -> anyhow::Result<()> {
    let listen = cfg.server.listen;
    tracing::info!(source = %cfg.source, "{}", cfg.summary());
    let state = gatehouse::app::build_state(cfg, None).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("server.listen: cannot bind {listen}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    let _refreshers = gatehouse::app::start_background(&state).await;
    state
        .services
        .audit
        .record_system(
            "server.start",
            &state.config.source,
            "ok",
            serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "listen": listen.to_string()}),
        )
        .await;
    #[cfg(unix)]
    {
        let st = state.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                match st.services.reload.reload(&source).await {
                    Ok(s) => tracing::info!(
                        rules = s.rules,
                        needs_restart = ?s.needs_restart,
                        "configuration reloaded ([access] applied)"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "configuration not reloaded; the running one stays")
                    }
                }
            }
        });
    }
    gatehouse::http::server::serve_on(listener, state, gatehouse::app::shutdown_signal()).await?;
    Ok(())
}
