//! Control: the services gatehouse may start and stop (`[[control.services]]`,
//! nothing else) and the kill switch. Every request is audited — the intent
//! before anything runs (if it cannot be written, nothing runs), the outcome
//! after, refusals too. The kill switch runs in a task of its own, so a client
//! that hangs up does not stop it half way; a second press while it runs joins
//! the running one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::access::{Admin, Permission, SteppedUp};
use super::audit::{audited, audited_with};
use super::notify::Notifier;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::audit::NewEntry;
use crate::clock::SharedClock;
use crate::config::{ControlConfig, ServiceBackend, ServiceConfig};
use crate::control::command::{self, Run, Spec};
use crate::control::{systemd, ServiceState};
use crate::decision::Policy;
use crate::store::{ControlValue, Store, StoreError};

/// The phrase a kill switch request must carry.
pub const CONFIRM_EMERGENCY_STOP: &str = "CONFIRM_EMERGENCY_STOP";

const ENGAGED: &str = "kill_switch.engaged";
const LAST_RUN: &str = "kill_switch.last_run";

/// What may be done to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
}

impl ServiceAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "restart" => Some(Self::Restart),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }
}

/// One backend call of an action or a kill switch run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The service, for stops; absent for `after` commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(flatten)]
    pub run: Run,
    pub result: &'static str,
}

impl Step {
    fn of(service: Option<&str>, run: Run) -> Step {
        Step {
            service: service.map(str::to_string),
            result: run.result(),
            run,
        }
    }
}

/// The last action on a service, shown with its state.
#[derive(Debug, Clone, Serialize)]
pub struct LastAction {
    pub action: &'static str,
    pub by: String,
    pub at: i64,
    pub result: &'static str,
    pub steps: Vec<Step>,
}

/// A service as listed: configured name and backend, live state, last action.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub backend: &'static str,
    pub state: ServiceState,
    /// systemd's `SubState`, for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_state: Option<String>,
    /// When this process first saw the current state.
    pub since: Option<i64>,
    pub last_action: Option<LastAction>,
}

/// The outcome of an action on a service.
#[derive(Debug, Clone, Serialize)]
pub struct ActionOutcome {
    pub service: String,
    pub action: &'static str,
    /// `ok` when every step exited 0, else `failed`.
    pub result: &'static str,
    pub steps: Vec<Step>,
    pub state: ServiceState,
}

/// One kill switch run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KillRun {
    pub id: String,
    pub by: String,
    pub reason: String,
    pub started_at: i64,
    pub finished_at: i64,
    /// `ok` when every stop and command succeeded, else `failed`.
    pub result: String,
    /// Whether this run engaged the deny (`engage_deny`).
    pub engaged_deny: bool,
    pub services: Vec<Value>,
    pub after: Vec<Value>,
}

/// The kill switch as `GET` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KillSwitchView {
    /// The deny is in force: only bypass rules pass.
    pub engaged: bool,
    pub engaged_by: Option<String>,
    pub engaged_at: Option<i64>,
    pub running: bool,
    pub services: Vec<String>,
    pub engage_deny: bool,
    pub last_run: Option<KillRun>,
}

struct Slot {
    cfg: ServiceConfig,
    /// Held for the length of an action: one at a time per service.
    busy: tokio::sync::Mutex<()>,
    last: Mutex<Option<LastAction>>,
    /// The state last seen and since when.
    seen: Mutex<Option<(ServiceState, i64)>>,
}

type RunResult = Option<Result<Arc<KillRun>, String>>;

#[derive(Default)]
struct KillState {
    /// The run in progress: joiners wait on it.
    running: Mutex<Option<watch::Receiver<RunResult>>>,
}

/// The control service and its handles.
#[derive(Clone)]
pub struct Control {
    cfg: Arc<ControlConfig>,
    store: Store,
    clock: SharedClock,
    audit: Arc<AuditLog>,
    /// The decision path's policy: the kill switch's deny is its `lockdown`.
    policy: Arc<ArcSwap<Policy>>,
    slots: Arc<BTreeMap<String, Arc<Slot>>>,
    kill: Arc<KillState>,
    engaged: Arc<AtomicBool>,
    notify: Notifier,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("services", &self.slots.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Control {
    pub fn new(
        cfg: ControlConfig,
        store: Store,
        clock: SharedClock,
        audit: Arc<AuditLog>,
        policy: Arc<ArcSwap<Policy>>,
        notify: Notifier,
    ) -> Self {
        let slots = cfg
            .services
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    Arc::new(Slot {
                        cfg: s.clone(),
                        busy: Default::default(),
                        last: Default::default(),
                        seen: Default::default(),
                    }),
                )
            })
            .collect();
        Control {
            cfg: Arc::new(cfg),
            store,
            clock,
            audit,
            policy,
            slots: Arc::new(slots),
            kill: Default::default(),
            engaged: Default::default(),
            notify,
        }
    }

    /// Records a refused control request (no permission, no step-up, no
    /// confirmation): who tried what, and why not.
    pub async fn refused(
        &self,
        actor: &str,
        client: &str,
        action: &str,
        target: &str,
        why: &DomainError,
    ) {
        self.audit
            .record(NewEntry::new(
                actor,
                client,
                action,
                target,
                "refused",
                json!({"error": why.code()}),
            ))
            .await;
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, DomainError> {
        self.slots.get(name).ok_or(DomainError::NotFound("service"))
    }

    /// Asks the backend for the service's state (never longer than its timeout).
    async fn probe(&self, slot: &Slot) -> (ServiceState, Option<String>) {
        let timeout = slot.cfg.timeout;
        let (state, sub) = match &slot.cfg.backend {
            ServiceBackend::Command {
                status: Some(argv),
                env,
                working_dir,
                ..
            } => {
                let r = command::run(&Spec {
                    argv: argv.clone(),
                    env: env.clone(),
                    working_dir: working_dir.clone(),
                    timeout,
                })
                .await;
                let s = match r.exit_code() {
                    Some(0) => ServiceState::Running,
                    Some(3) => ServiceState::Stopped,
                    Some(_) => ServiceState::Failed,
                    None => ServiceState::Unknown,
                };
                (s, None)
            }
            ServiceBackend::Command { status: None, .. } => (ServiceState::Unknown, None),
            ServiceBackend::Systemd { unit } => systemd::state(unit, timeout).await,
        };
        let now = self.clock.now();
        let mut seen = slot.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.map(|(s, _)| s) != Some(state) {
            *seen = Some((state, now));
        }
        (state, sub)
    }

    /// Runs one backend action on a service, each call within `timeout`.
    async fn backend(&self, slot: &Slot, action: ServiceAction, timeout: Duration) -> Vec<Step> {
        let name = Some(slot.cfg.name.as_str());
        match &slot.cfg.backend {
            ServiceBackend::Command {
                start,
                stop,
                env,
                working_dir,
                ..
            } => {
                let spec = |argv: &Vec<String>| Spec {
                    argv: argv.clone(),
                    env: env.clone(),
                    working_dir: working_dir.clone(),
                    timeout,
                };
                match action {
                    ServiceAction::Start => vec![Step::of(name, command::run(&spec(start)).await)],
                    ServiceAction::Stop => vec![Step::of(name, command::run(&spec(stop)).await)],
                    ServiceAction::Restart => {
                        let stopped = Step::of(name, command::run(&spec(stop)).await);
                        if stopped.run.succeeded() {
                            vec![stopped, Step::of(name, command::run(&spec(start)).await)]
                        } else {
                            vec![stopped]
                        }
                    }
                }
            }
            ServiceBackend::Systemd { unit } => {
                vec![Step::of(
                    name,
                    systemd::act(action.as_str(), unit, timeout).await,
                )]
            }
        }
    }

    /// Every configured service with its live state (asked in parallel).
    pub async fn services(&self, who: &Admin) -> Result<Vec<ServiceView>, DomainError> {
        who.require(Permission::ControlServices)?;
        self.views().await
    }

    /// Every configured service as listed, in configuration order.
    async fn views(&self) -> Result<Vec<ServiceView>, DomainError> {
        let mut set = tokio::task::JoinSet::new();
        for (i, slot) in self.slots.values().enumerate() {
            let (this, slot) = (self.clone(), slot.clone());
            set.spawn(async move {
                let (state, sub_state) = this.probe(&slot).await;
                let since = slot
                    .seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .map(|(_, t)| t);
                let last_action = slot.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (
                    i,
                    ServiceView {
                        name: slot.cfg.name.clone(),
                        backend: slot.cfg.backend.as_str(),
                        state,
                        sub_state,
                        since,
                        last_action,
                    },
                )
            });
        }
        let mut views: Vec<(usize, ServiceView)> = Vec::new();
        while let Some(r) = set.join_next().await {
            views.push(r.map_err(|e| DomainError::Internal(format!("service probe: {e}")))?);
        }
        views.sort_by_key(|(i, _)| *i);
        Ok(views.into_iter().map(|(_, v)| v).collect())
    }

    /// Starts, stops or restarts a configured service (one action at a time
    /// per service; another gets `Busy`).
    pub async fn service_action(
        &self,
        who: &Admin,
        name: &str,
        action: ServiceAction,
    ) -> Result<ActionOutcome, DomainError> {
        who.require(Permission::ControlServices)?;
        let slot = self.slot(name)?.clone();
        let audit_action = format!("control.service.{}", action.as_str());
        let Ok(_busy) = slot.busy.try_lock() else {
            let e = DomainError::Busy(format!("service {name}"));
            self.refused(
                who.actor(),
                &who.client().to_string(),
                &audit_action,
                name,
                &e,
            )
            .await;
            return Err(e);
        };
        let outcome = audited_with(
            &self.audit,
            who,
            &audit_action,
            name,
            json!({}),
            async {
                let steps = self.backend(&slot, action, slot.cfg.timeout).await;
                let result = if steps.iter().all(|s| s.run.succeeded()) {
                    "ok"
                } else {
                    "failed"
                };
                let (state, _) = self.probe(&slot).await;
                *slot.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastAction {
                    action: action.as_str(),
                    by: who.actor().to_string(),
                    at: self.clock.now(),
                    result,
                    steps: steps.clone(),
                });
                let outcome = ActionOutcome {
                    service: name.to_string(),
                    action: action.as_str(),
                    result,
                    steps,
                    state,
                };
                if result == "ok" {
                    Ok(outcome)
                } else {
                    Err(DomainError::ActionFailed(Box::new(
                        serde_json::to_value(&outcome).unwrap_or_default(),
                    )))
                }
            },
            |o| serde_json::to_value(o).unwrap_or_default(),
        )
        .await;
        tracing::warn!(actor = %who.actor(), service = %name, action = action.as_str(), ok = outcome.is_ok(), "service action");
        if let Err(DomainError::ActionFailed(o)) = &outcome {
            self.notify.notify(
                "service_failed",
                format!("{} of service {name} by {} failed", action.as_str(), who.actor()),
                json!({"service": name, "action": action.as_str(), "by": who.actor(), "state": o["state"]}),
            );
        }
        outcome
    }

    /// The kill switch's state and its last run (from the store, so another
    /// replica's run shows too).
    pub async fn kill_switch(&self, who: &Admin) -> Result<KillSwitchView, DomainError> {
        who.require(Permission::ControlKill)?;
        let engaged = self.store.control_value(ENGAGED).await?;
        let last_run = self
            .store
            .control_value(LAST_RUN)
            .await?
            .and_then(|v| serde_json::from_str(&v.value).ok());
        let running = self
            .kill
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        let on = engaged.as_ref().is_some_and(|v| v.value == "true");
        Ok(KillSwitchView {
            engaged: on,
            engaged_by: engaged
                .as_ref()
                .filter(|_| on)
                .map(|v| v.updated_by.clone()),
            engaged_at: engaged.as_ref().filter(|_| on).map(|v| v.updated_at),
            running,
            services: self.cfg.kill_switch.services.clone(),
            engage_deny: self.cfg.kill_switch.engage_deny,
            last_run,
        })
    }

    /// Presses the kill switch: with the exact confirmation phrase, stops every
    /// `kill_switch.services` in parallel, then runs the `after` commands in
    /// order, each within `kill_switch.timeout`; with `engage_deny`, first
    /// turns every non-bypass rule to deny. A press while a run is in progress
    /// joins it.
    pub async fn press(
        &self,
        who: &SteppedUp,
        confirm: Option<&str>,
        reason: &str,
    ) -> Result<Arc<KillRun>, DomainError> {
        let admin = who.admin();
        admin.require(Permission::ControlKill)?;
        let client = admin.client().to_string();
        if confirm != Some(CONFIRM_EMERGENCY_STOP) {
            let e = DomainError::ConfirmationRequired(CONFIRM_EMERGENCY_STOP);
            self.refused(admin.actor(), &client, "control.kill_switch", "*", &e)
                .await;
            return Err(e);
        }
        if reason.len() > 500 || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(DomainError::Invalid(
                "reason: at most 500 characters, no control characters".into(),
            ));
        }
        let (rx, started) = {
            let mut running = self.kill.running.lock().unwrap_or_else(|e| e.into_inner());
            match running.as_ref() {
                Some(rx) => (rx.clone(), false),
                None => {
                    let (tx, rx) = watch::channel(None);
                    *running = Some(rx.clone());
                    let (this, who, reason) = (self.clone(), admin.clone(), reason.to_string());
                    tokio::spawn(async move {
                        let r = this.run_kill_switch(&who, &reason).await;
                        *this.kill.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        let _ = tx.send(Some(r.map_err(|e| e.to_string())));
                    });
                    (rx, true)
                }
            }
        };
        if !started {
            self.audit
                .record(NewEntry::new(
                    admin.actor(),
                    &client,
                    "control.kill_switch",
                    "*",
                    "joined",
                    json!({"reason": reason}),
                ))
                .await;
        }
        let mut rx = rx;
        let done = rx
            .wait_for(|v| v.is_some())
            .await
            .map_err(|_| DomainError::Internal("the kill switch run was lost".into()))?;
        match done.as_ref() {
            Some(Ok(run)) => Ok(run.clone()),
            Some(Err(e)) => Err(DomainError::Internal(e.clone())),
            None => Err(DomainError::Internal("the kill switch run was lost".into())),
        }
    }

    async fn run_kill_switch(
        &self,
        who: &Admin,
        reason: &str,
    ) -> Result<Arc<KillRun>, DomainError> {
        let ks = &self.cfg.kill_switch;
        let details =
            json!({"reason": reason, "services": ks.services, "engage_deny": ks.engage_deny});
        let run = audited_with(
            &self.audit,
            who,
            "control.kill_switch",
            "*",
            details,
            async {
                let started_at = self.clock.now();
                if ks.engage_deny {
                    self.set_engaged(true, who.actor()).await?;
                }
                // The kill switch's own limit, whatever the services' are.
                let stops = self.stop_all(&ks.services, ks.timeout).await;
                let mut after = Vec::new();
                for argv in &ks.after {
                    let r = command::run(&Spec {
                        argv: argv.clone(),
                        env: BTreeMap::new(),
                        working_dir: None,
                        timeout: ks.timeout,
                    })
                    .await;
                    after.push(Step::of(None, r));
                }
                let ok = stops.iter().all(|(_, s)| s.run.succeeded())
                    && after.iter().all(|s| s.run.succeeded());
                let run = KillRun {
                    id: crate::identity::seal::random_token(9),
                    by: who.actor().to_string(),
                    reason: reason.to_string(),
                    started_at,
                    finished_at: self.clock.now(),
                    result: if ok { "ok" } else { "failed" }.into(),
                    engaged_deny: ks.engage_deny,
                    services: stops
                        .iter()
                        .map(|(_, s)| serde_json::to_value(s).unwrap_or_default())
                        .collect(),
                    after: after
                        .iter()
                        .map(|s| serde_json::to_value(s).unwrap_or_default())
                        .collect(),
                };
                self.store
                    .set_control_value(&ControlValue {
                        name: LAST_RUN.into(),
                        value: serde_json::to_string(&run).unwrap_or_default(),
                        updated_at: run.finished_at,
                        updated_by: run.by.clone(),
                    })
                    .await?;
                if ok {
                    Ok(run)
                } else {
                    Err(DomainError::ActionFailed(Box::new(
                        serde_json::to_value(&run).unwrap_or_default(),
                    )))
                }
            },
            |r| serde_json::to_value(r).unwrap_or_default(),
        )
        .await;
        tracing::error!(actor = %who.actor(), reason, ok = run.is_ok(), "kill switch pressed");
        let outcome = match &run {
            Ok(r) => {
                json!({"result": r.result, "services": r.services.iter().map(|s| json!({"service": s["service"], "result": s["result"]})).collect::<Vec<_>>()})
            }
            Err(DomainError::ActionFailed(v)) => {
                json!({"result": v["result"], "services": v["services"].as_array().map(|a| a.iter().map(|s| json!({"service": s["service"], "result": s["result"]})).collect::<Vec<_>>())})
            }
            Err(e) => json!({"result": "not run", "error": e.code()}),
        };
        self.notify.notify(
            "kill_switch",
            format!("kill switch pressed by {}", who.actor()),
            json!({"reason": reason, "outcome": outcome, "engage_deny": ks.engage_deny}),
        );
        match run {
            Ok(r) => Ok(Arc::new(r)),
            // A run with failed steps is still the run: the caller sees each step.
            Err(DomainError::ActionFailed(v)) => serde_json::from_value(*v)
                .map(Arc::new)
                .map_err(|e| DomainError::Internal(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Stops these configured services in parallel, each within `timeout`
    /// (for a graceful power-off: only a stepped-up caller gets here).
    pub async fn stop_services(
        &self,
        _who: &SteppedUp,
        names: &[String],
        timeout: Duration,
    ) -> Vec<Step> {
        self.stop_all(names, timeout)
            .await
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    /// Stops these services in parallel, each within `timeout`; the stops in
    /// the order of `names`, each with its service's name.
    async fn stop_all(&self, names: &[String], timeout: Duration) -> Vec<(String, Step)> {
        let mut set = tokio::task::JoinSet::new();
        for name in names {
            let Ok(slot) = self.slot(name) else { continue };
            let (this, slot) = (self.clone(), slot.clone());
            set.spawn(async move {
                let mut steps = this.backend(&slot, ServiceAction::Stop, timeout).await;
                steps.pop().map(|s| (slot.cfg.name.clone(), s))
            });
        }
        let mut stops = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(s)) = r {
                stops.push(s);
            }
        }
        stops.sort_by_key(|(n, _)| names.iter().position(|x| x == n));
        stops
    }

    /// Releases the kill switch's deny: rules apply again.
    pub async fn release(&self, who: &SteppedUp) -> Result<bool, DomainError> {
        let admin = who.admin();
        admin.require(Permission::ControlKill)?;
        let was = self.engaged.load(Ordering::Relaxed);
        audited(
            &self.audit,
            admin,
            "control.kill_switch.release",
            "*",
            json!({"was_engaged": was}),
            async { self.set_engaged(false, admin.actor()).await },
        )
        .await?;
        tracing::warn!(actor = %admin.actor(), "kill switch released");
        Ok(was)
    }

    /// Engages or releases the deny: in this process's policy at once, and in
    /// the store for restarts and other replicas.
    async fn set_engaged(&self, on: bool, by: &str) -> Result<(), DomainError> {
        self.apply_engaged(on);
        self.store
            .set_control_value(&ControlValue {
                name: ENGAGED.into(),
                value: on.to_string(),
                updated_at: self.clock.now(),
                updated_by: by.to_string(),
            })
            .await?;
        Ok(())
    }

    fn apply_engaged(&self, on: bool) {
        self.engaged.store(on, Ordering::Relaxed);
        if self.policy.load().lockdown != on {
            self.policy.rcu(|p| Arc::new(p.with_lockdown(on)));
        }
    }

    /// Each service's name, backend and live state (for the status
    /// overview; the last action is the services list's to show).
    pub async fn overview(&self) -> Vec<Value> {
        self.views()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|v| json!({"name": v.name, "backend": v.backend, "state": v.state}))
            .collect()
    }

    /// Whether a kill switch run is in progress here.
    pub fn running(&self) -> bool {
        self.kill
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether the deny is engaged here.
    pub fn engaged(&self) -> bool {
        self.engaged.load(Ordering::Relaxed)
    }

    /// Reads the deny's state from the store (at start and every round, for
    /// another replica's press or release).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let on = self
            .store
            .control_value(ENGAGED)
            .await?
            .is_some_and(|v| v.value == "true");
        self.apply_engaged(on);
        Ok(())
    }
}
