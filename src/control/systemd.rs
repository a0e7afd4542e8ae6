//! systemd units through `systemctl`, run by [`super::command`] (no shell,
//! cleared environment, time limit). `systemctl` rather than the D-Bus API:
//! it is the interface operators already grant (a sudoers line or a polkit
//! rule for `org.freedesktop.systemd1.manage-units` names the same actions),
//! its exit codes and `show` output are stable, and it adds no D-Bus client to
//! the binary. Where systemd is not PID 1 (containers), every call fails and
//! the state is `unknown`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::command::{run, Run, Spec};
use super::ServiceState;

/// Where `systemctl` is looked for (no `PATH` in the cleared environment).
pub fn systemctl() -> &'static str {
    if std::path::Path::new("/usr/bin/systemctl").exists() {
        "/usr/bin/systemctl"
    } else {
        "/bin/systemctl"
    }
}

fn spec(args: &[&str], timeout: Duration) -> Spec {
    let mut argv = vec![systemctl().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Spec {
        argv,
        env: BTreeMap::new(),
        working_dir: None,
        timeout,
    }
}

/// `systemctl start|stop|restart --no-ask-password UNIT`.
pub async fn act(action: &str, unit: &str, timeout: Duration) -> Run {
    run(&spec(&[action, "--no-ask-password", "--", unit], timeout)).await
}

/// The unit's state from `ActiveState` (`active` → running, `failed` →
/// failed, `inactive` → stopped, transitions and anything else → unknown)
/// and the `SubState` for display.
pub async fn state(unit: &str, timeout: Duration) -> (ServiceState, Option<String>) {
    let r = run(&spec(
        &["show", "--property=ActiveState,SubState", "--", unit],
        timeout,
    ))
    .await;
    if !r.succeeded() {
        return (ServiceState::Unknown, None);
    }
    parse_show(&r.output)
}

fn parse_show(out: &str) -> (ServiceState, Option<String>) {
    let mut active = None;
    let mut sub = None;
    for line in out.lines() {
        match line.split_once('=') {
            Some(("ActiveState", v)) => active = Some(v.trim().to_string()),
            Some(("SubState", v)) => sub = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let state = match active.as_deref() {
        Some("active") | Some("reloading") => ServiceState::Running,
        Some("inactive") => ServiceState::Stopped,
        Some("failed") => ServiceState::Failed,
        _ => ServiceState::Unknown,
    };
    (state, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_maps_to_states() {
        assert_eq!(
            parse_show("ActiveState=active\nSubState=running\n"),
            (ServiceState::Running, Some("running".into()))
        );
        assert_eq!(
            parse_show("ActiveState=inactive\nSubState=dead\n").0,
            ServiceState::Stopped
        );
        assert_eq!(
            parse_show("ActiveState=failed\nSubState=failed\n").0,
            ServiceState::Failed
        );
        assert_eq!(
            parse_show("ActiveState=activating\n").0,
            ServiceState::Unknown
        );
        assert_eq!(parse_show("").0, ServiceState::Unknown);
    }
}
