//! Configured actions: the commands of `[[actions]]`, run with typed,
//! checked parameters that each fill one whole argv element (no shell, a
//! cleared environment, a time limit that kills the process group, capped
//! output). A run is accepted at once (its id comes back) and runs in a task of
//! its own; its intent is audited before it starts (if that cannot be
//! written, it does not start) and its outcome when it ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::access::Admin;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::audit::NewEntry;
use crate::clock::SharedClock;
use crate::config::{placeholder, ActionConfig, ParamKind};
use crate::control::command::{self, Ended, Spec};

/// Runs kept in memory for `GET /api/v1/actions/runs/{id}` (the audit log
/// keeps every one).
const KEPT_RUNS: usize = 200;

/// One run of an action.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed`, `timed_out` or `not_started`.
    pub state: &'static str,
    pub exit_code: Option<i32>,
    pub output: String,
    pub truncated: bool,
}

#[derive(Clone)]
pub struct Actions {
    actions: Arc<BTreeMap<String, ActionConfig>>,
    clock: SharedClock,
    audit: Arc<AuditLog>,
    runs: Arc<Mutex<VecDeque<Arc<Mutex<RunRecord>>>>>,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn describe(a: &ActionConfig) -> Value {
    let params: Map<String, Value> = a
        .params
        .iter()
        .map(|(n, p)| {
            let mut d = json!({"type": p.kind.as_str(), "description": p.description});
            match &p.kind {
                ParamKind::Integer { min, max } => {
                    d["min"] = json!(min);
                    d["max"] = json!(max);
                }
                ParamKind::String { pattern, max_len } => {
                    let full = pattern.as_str();
                    let inner = full
                        .strip_prefix("^(?:")
                        .and_then(|s| s.strip_suffix(")$"))
                        .unwrap_or(full);
                    d["pattern"] = json!(inner);
                    d["max_len"] = json!(max_len);
                }
                ParamKind::Enum { values } => d["values"] = json!(values),
            }
            (n.clone(), d)
        })
        .collect();
    json!({
        "name": a.name,
        "description": a.description,
        "params": params,
        "timeout_secs": a.timeout.as_secs_f64(),
        "permission": a.permission.as_str(),
    })
}

/// Checks every parameter (all are required, none unknown); each error names its parameter.
fn checked(
    a: &ActionConfig,
    given: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, DomainError> {
    let mut bad = Vec::new();
    let mut out = BTreeMap::new();
    for k in given.keys() {
        if !a.params.contains_key(k) {
            bad.push((k.clone(), "is not a parameter of this action".to_string()));
        }
    }
    for (name, spec) in &a.params {
        let Some(v) = given.get(name) else {
            bad.push((name.clone(), "is required".into()));
            continue;
        };
        let r = match (&spec.kind, v) {
            (ParamKind::Integer { min, max }, Value::Number(n)) => match n.as_i64() {
                Some(i) if i >= *min && i <= *max => Ok(i.to_string()),
                _ => Err(format!("must be an integer from {min} to {max}")),
            },
            (ParamKind::Integer { .. }, _) => Err("must be an integer".into()),
            (ParamKind::String { pattern, max_len }, Value::String(s)) => {
                if s.chars().count() > *max_len {
                    Err(format!("is longer than {max_len} characters"))
                } else if s.chars().any(char::is_control) {
                    Err("must not contain control characters".into())
                } else if !pattern.is_match(s) {
                    Err("does not match the configured pattern".into())
                } else {
                    Ok(s.clone())
                }
            }
            (ParamKind::String { .. }, _) => Err("must be a string".into()),
            (ParamKind::Enum { values }, Value::String(s)) if values.contains(s) => Ok(s.clone()),
            (ParamKind::Enum { values }, _) => Err(format!("must be one of {}", values.join(", "))),
        };
        match r {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(m) => bad.push((name.clone(), m)),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(DomainError::InvalidParams(bad))
    }
}

impl Actions {
    pub fn new(actions: &[ActionConfig], clock: SharedClock, audit: Arc<AuditLog>) -> Self {
        Actions {
            actions: Arc::new(
                actions
                    .iter()
                    .map(|a| (a.name.clone(), a.clone()))
                    .collect(),
            ),
            clock,
            audit,
            runs: Default::default(),
        }
    }

    /// The actions this admin may run, with their parameters.
    pub fn list(&self, who: &Admin) -> Vec<Value> {
        self.actions
            .values()
            .filter(|a| who.grants().has(a.permission))
            .map(describe)
            .collect()
    }

    /// Starts a run: checks the permission and every parameter, writes the
    /// intent, then runs in the background. Answers the run as it starts.
    pub async fn run(
        &self,
        who: &Admin,
        name: &str,
        params: &Map<String, Value>,
    ) -> Result<RunRecord, DomainError> {
        let a = self
            .actions
            .get(name)
            .ok_or(DomainError::NotFound("action"))?;
        let client = who.client().to_string();
        let refuse = |e: DomainError| async {
            self.audit
                .record(NewEntry::new(
                    who.actor(),
                    &client,
                    "action.run",
                    name,
                    "refused",
                    json!({"error": e.code()}),
                ))
                .await;
            e
        };
        if let Err(e) = who.require(a.permission) {
            return Err(refuse(e).await);
        }
        let values = match checked(a, params) {
            Ok(v) => v,
            Err(e) => return Err(refuse(e).await),
        };
        let argv: Vec<String> = a
            .argv
            .iter()
            .map(|arg| match placeholder(arg) {
                Some(p) => values[p].clone(),
                None => arg.clone(),
            })
            .collect();
        let id = crate::identity::seal::random_token(12);
        let details = json!({"run": id, "params": values});
        self.audit
            .append(NewEntry::new(
                who.actor(),
                &client,
                "action.run",
                name,
                "requested",
                details,
            ))
            .await
            .map_err(|e| {
                DomainError::Internal(format!("audit intent not written, not run: {e}"))
            })?;
        let record = RunRecord {
            id: id.clone(),
            action: name.to_string(),
            params: values,
            by: who.actor().to_string(),
            started_at: self.clock.now(),
            finished_at: None,
            state: "running",
            exit_code: None,
            output: String::new(),
            truncated: false,
        };
        let shared = Arc::new(Mutex::new(record.clone()));
        {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            runs.push_back(shared.clone());
            while runs.len() > KEPT_RUNS {
                runs.pop_front();
            }
        }
        let (this, spec, who, name) = (
            self.clone(),
            Spec {
                argv,
                env: BTreeMap::new(),
                working_dir: None,
                timeout: a.timeout,
            },
            who.clone(),
            name.to_string(),
        );
        tokio::spawn(async move {
            let r = command::run(&spec).await;
            let state = match &r.ended {
                Ended::Exited(0) => "succeeded",
                Ended::Exited(_) | Ended::Signalled => "failed",
                Ended::TimedOut => "timed_out",
                Ended::NotStarted(_) => "not_started",
            };
            let done = {
                let mut rec = shared.lock().unwrap_or_else(|e| e.into_inner());
                rec.finished_at = Some(this.clock.now());
                rec.state = state;
                rec.exit_code = r.exit_code();
                rec.output = r.output.clone();
                rec.truncated = r.truncated;
                rec.clone()
            };
            let result = if state == "succeeded" { "ok" } else { "failed" };
            this.audit
                .record(NewEntry::new(
                    who.actor(),
                    &who.client().to_string(),
                    "action.run",
                    &name,
                    result,
                    json!({"run": done.id, "state": state, "exit_code": done.exit_code, "millis": r.millis}),
                ))
                .await;
            tracing::info!(actor = %who.actor(), action = %name, run = %done.id, state, "action run");
        });
        Ok(record)
    }

    /// A run by id, for an admin who may run its action.
    pub fn get_run(&self, who: &Admin, id: &str) -> Result<RunRecord, DomainError> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let rec = runs
            .iter()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .find(|r| r.id == id)
            .ok_or(DomainError::NotFound("run"))?;
        let permission = self
            .actions
            .get(&rec.action)
            .map(|a| a.permission)
            .ok_or(DomainError::NotFound("run"))?;
        who.require(permission)?;
        Ok(rec)
    }
}
