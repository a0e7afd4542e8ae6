//! Power: the machines in `[[control.power]]` (nothing else), their power
//! state, and switching them `on`, `off` (graceful: stop the machine's
//! services → soft off → wait for `Off` → hard off only after
//! `graceful_timeout`; `force` for a hard off at once) or `reset`. One
//! operation per machine at a time; each runs in a task of its own (a client
//! that hangs up does not stop it half way) between its audit entries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::access::{Admin, Permission, SteppedUp};
use super::audit::audited_with;
use super::control::Control;
use super::notify::Notifier;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::clock::SharedClock;
use crate::config::{PowerBackend, PowerConfig};
use crate::control::nanokvm::NanoKvm;
use crate::control::redfish::{PowerError, Redfish};

/// The device that switches a machine.
enum Device {
    Redfish(Redfish),
    NanoKvm(NanoKvm),
}

pub const CONFIRM_POWER_OFF: &str = "CONFIRM_POWER_OFF";
pub const CONFIRM_POWER_RESET: &str = "CONFIRM_POWER_RESET";

/// How long a hard off or a power-on may take to show in the state.
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    On,
    Off,
    Reset,
}

impl PowerOp {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on" => Some(Self::On),
            "off" => Some(Self::Off),
            "reset" => Some(Self::Reset),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Reset => "reset",
        }
    }
    /// The phrase the request must carry (`on` needs none).
    pub fn confirmation(self) -> Option<&'static str> {
        match self {
            Self::On => None,
            Self::Off => Some(CONFIRM_POWER_OFF),
            Self::Reset => Some(CONFIRM_POWER_RESET),
        }
    }
}

/// One step of a power operation.
#[derive(Debug, Clone, Serialize)]
pub struct PowerStep {
    pub step: String,
    /// `ok`, `failed`, `timeout`, or `skipped`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    pub millis: u64,
}

/// What a power operation did.
#[derive(Debug, Clone, Serialize)]
pub struct PowerOutcome {
    pub machine: String,
    pub op: &'static str,
    pub force: bool,
    /// `ok` when the machine reached the state asked for.
    pub result: &'static str,
    pub power_state: String,
    pub steps: Vec<PowerStep>,
}

/// A machine as listed.
#[derive(Debug, Clone, Serialize)]
pub struct MachineView {
    pub name: String,
    pub backend: &'static str,
    /// `On`, `Off`, `Unknown` (or the device's own transitional state).
    pub power_state: String,
    pub read_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub services: Vec<String>,
    pub last_action: Option<Value>,
}

struct Machine {
    cfg: PowerConfig,
    device: Result<Device, PowerError>,
    busy: Arc<tokio::sync::Mutex<()>>,
    last: Mutex<Option<Value>>,
    /// The power state last read (and when), for the status overview.
    seen: Mutex<Option<(String, i64)>>,
}

impl Machine {
    fn device(&self) -> Result<&Device, PowerError> {
        self.device.as_ref().map_err(Clone::clone)
    }

    async fn state(&self) -> Result<String, PowerError> {
        match self.device()? {
            Device::Redfish(r) => r.power_state().await,
            Device::NanoKvm(k) => k.power_state().await,
        }
    }

    fn saw(&self, state: &str, at: i64) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((state.to_string(), at));
    }

    async fn reset(&self, kind: &str) -> Result<(), PowerError> {
        match self.device()? {
            Device::Redfish(r) => r.reset(kind).await,
            Device::NanoKvm(k) => k.reset(kind).await,
        }
    }
}

/// The power service and its handles.
#[derive(Clone)]
pub struct Power {
    clock: SharedClock,
    audit: Arc<AuditLog>,
    control: Control,
    machines: Arc<BTreeMap<String, Arc<Machine>>>,
    notify: Notifier,
}

impl std::fmt::Debug for Power {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Power")
            .field("machines", &self.machines.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Power {
    pub fn new(
        machines: &[PowerConfig],
        clock: SharedClock,
        audit: Arc<AuditLog>,
        control: Control,
        notify: Notifier,
    ) -> Self {
        let machines = machines
            .iter()
            .map(|m| {
                let device = match m.backend {
                    PowerBackend::Redfish { .. } => Redfish::new(m).map(Device::Redfish),
                    PowerBackend::NanoKvm => NanoKvm::new(m).map(Device::NanoKvm),
                };
                if let Err(e) = &device {
                    tracing::error!(machine = %m.name, error = %e, "power device unusable");
                }
                (
                    m.name.clone(),
                    Arc::new(Machine {
                        cfg: m.clone(),
                        device,
                        busy: Default::default(),
                        last: Default::default(),
                        seen: Default::default(),
                    }),
                )
            })
            .collect();
        Power {
            clock,
            audit,
            control,
            machines: Arc::new(machines),
            notify,
        }
    }

    /// Every configured machine with its power state as read now.
    pub async fn machines(&self, who: &Admin) -> Result<Vec<MachineView>, DomainError> {
        who.require(Permission::PowerRead)?;
        let mut set = tokio::task::JoinSet::new();
        for (i, m) in self.machines.values().enumerate() {
            let (m, clock) = (m.clone(), self.clock.clone());
            set.spawn(async move {
                let (power_state, error) = match m.state().await {
                    Ok(s) => (s, None),
                    Err(e) => ("Unknown".to_string(), Some(e.to_string())),
                };
                m.saw(&power_state, clock.now());
                let last_action = m.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (
                    i,
                    MachineView {
                        name: m.cfg.name.clone(),
                        backend: m.cfg.backend.as_str(),
                        power_state,
                        read_at: clock.now(),
                        error,
                        services: m.cfg.services.clone(),
                        last_action,
                    },
                )
            });
        }
        let mut out: Vec<(usize, MachineView)> = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.map_err(|e| DomainError::Internal(format!("power read: {e}")))?);
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// Each machine's power state as last read (by a listing or an
    /// operation; the overview does not wait for BMCs).
    pub fn overview(&self) -> Vec<Value> {
        self.machines
            .values()
            .map(|m| {
                let seen = m.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
                json!({
                    "name": m.cfg.name,
                    "backend": m.cfg.backend.as_str(),
                    "power_state": seen.as_ref().map_or("Unknown", |s| s.0.as_str()),
                    "read_at": seen.map(|s| s.1),
                    "busy": m.busy.try_lock().is_err(),
                })
            })
            .collect()
    }

    /// Switches a machine: with the permission, a stepped-up authentication
    /// and (for `off` and `reset`) the exact confirmation phrase.
    pub async fn act(
        &self,
        who: &SteppedUp,
        name: &str,
        op: PowerOp,
        confirm: Option<&str>,
        force: bool,
    ) -> Result<PowerOutcome, DomainError> {
        let admin = who.admin();
        admin.require(Permission::PowerControl)?;
        let machine = self
            .machines
            .get(name)
            .ok_or(DomainError::NotFound("machine"))?
            .clone();
        let action = format!("control.power.{}", op.as_str());
        let client = admin.client().to_string();
        if let Some(phrase) = op.confirmation() {
            if confirm != Some(phrase) {
                let e = DomainError::ConfirmationRequired(phrase);
                self.control
                    .refused(admin.actor(), &client, &action, name, &e)
                    .await;
                return Err(e);
            }
        }
        let Ok(guard) = machine.busy.clone().try_lock_owned() else {
            let e = DomainError::Busy(format!("machine {name}"));
            self.control
                .refused(admin.actor(), &client, &action, name, &e)
                .await;
            return Err(e);
        };
        let (this, who, name) = (self.clone(), who.clone(), name.to_string());
        let task = tokio::spawn(async move {
            let _guard = guard;
            let admin = who.admin();
            let details = json!({"force": force, "services": machine.cfg.services});
            let r = audited_with(
                &this.audit,
                admin,
                &action,
                &name,
                details,
                async {
                    let outcome = this.run(&who, &machine, op, force).await;
                    *machine.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(json!({
                        "op": op.as_str(), "by": admin.actor(), "at": this.clock.now(),
                        "result": outcome.result, "force": force,
                    }));
                    if outcome.result == "ok" {
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
            tracing::warn!(actor = %admin.actor(), machine = %name, op = op.as_str(), force, ok = r.is_ok(), "power operation");
            let (result, state) = match &r {
                Ok(o) => (o.result, json!(o.power_state)),
                Err(DomainError::ActionFailed(v)) => ("failed", v["power_state"].clone()),
                Err(e) => (e.code(), Value::Null),
            };
            this.notify.notify(
                "power",
                format!("power {} of {name} by {}: {result}", op.as_str(), admin.actor()),
                json!({"machine": name, "op": op.as_str(), "force": force, "result": result, "power_state": state}),
            );
            r
        });
        task.await
            .map_err(|e| DomainError::Internal(format!("power task: {e}")))?
    }

    async fn run(&self, who: &SteppedUp, m: &Machine, op: PowerOp, force: bool) -> PowerOutcome {
        let mut steps = Vec::new();
        let want = match op {
            PowerOp::On | PowerOp::Reset => "On",
            PowerOp::Off => "Off",
        };
        match op {
            PowerOp::On => {
                if self.reset_step(m, "On", &mut steps).await {
                    self.wait_for(m, "On", m.cfg.graceful_timeout.max(SETTLE), &mut steps)
                        .await;
                }
            }
            PowerOp::Reset => {
                if self.reset_step(m, "ForceRestart", &mut steps).await {
                    self.wait_for(m, "On", SETTLE, &mut steps).await;
                }
            }
            PowerOp::Off if force => {
                if self.reset_step(m, "ForceOff", &mut steps).await {
                    self.wait_for(m, "Off", SETTLE, &mut steps).await;
                }
            }
            PowerOp::Off => {
                if !m.cfg.services.is_empty() {
                    let t = Instant::now();
                    let stops = self
                        .control
                        .stop_services(who, &m.cfg.services, m.cfg.graceful_timeout)
                        .await;
                    let ok = stops.iter().all(|s| s.run.succeeded());
                    steps.push(PowerStep {
                        step: "stop_services".into(),
                        // A service that would not stop does not keep the machine on.
                        result: if ok { "ok" } else { "failed" },
                        detail: Some(serde_json::to_value(&stops).unwrap_or_default()),
                        millis: t.elapsed().as_millis() as u64,
                    });
                }
                let graceful = self.reset_step(m, "GracefulShutdown", &mut steps).await;
                let off = graceful
                    && self
                        .wait_for(m, "Off", m.cfg.graceful_timeout, &mut steps)
                        .await;
                if !off && self.reset_step(m, "ForceOff", &mut steps).await {
                    self.wait_for(m, "Off", SETTLE, &mut steps).await;
                }
            }
        }
        let power_state = m.state().await.unwrap_or_else(|_| "Unknown".into());
        m.saw(&power_state, self.clock.now());
        PowerOutcome {
            machine: m.cfg.name.clone(),
            op: op.as_str(),
            force,
            result: if power_state == want { "ok" } else { "failed" },
            power_state,
            steps,
        }
    }

    async fn reset_step(&self, m: &Machine, kind: &str, steps: &mut Vec<PowerStep>) -> bool {
        let t = Instant::now();
        let r = m.reset(kind).await;
        steps.push(PowerStep {
            step: kind.to_string(),
            result: if r.is_ok() { "ok" } else { "failed" },
            detail: r.as_ref().err().map(|e| json!(e.to_string())),
            millis: t.elapsed().as_millis() as u64,
        });
        r.is_ok()
    }

    /// Polls the power state every `poll_interval` until it is `want` or
    /// `limit` passed (no poll at all when `limit` is zero).
    async fn wait_for(
        &self,
        m: &Machine,
        want: &str,
        limit: Duration,
        steps: &mut Vec<PowerStep>,
    ) -> bool {
        let t = Instant::now();
        let mut last = None;
        while t.elapsed() < limit {
            tokio::time::sleep(m.cfg.poll_interval.min(limit.saturating_sub(t.elapsed()))).await;
            match m.state().await {
                Ok(s) if s == want => {
                    steps.push(PowerStep {
                        step: format!("wait {want}"),
                        result: "ok",
                        detail: None,
                        millis: t.elapsed().as_millis() as u64,
                    });
                    return true;
                }
                Ok(s) => last = Some(s),
                Err(e) => last = Some(e.to_string()),
            }
        }
        steps.push(PowerStep {
            step: format!("wait {want}"),
            result: "timeout",
            detail: last.map(|s| json!({"last": s})),
            millis: t.elapsed().as_millis() as u64,
        });
        false
    }
}
