//! What each destination's worker reports about itself, for `/health` and `/metrics`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

/// A destination's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Delivering, or nothing to deliver.
    Ok,
    /// Its last delivery failed in a way that is retried (throttling that outlasted a delivery's retries, access
    /// denied, a missing stream): messages wait in the spool.
    Degraded,
    /// Its worker stopped (it panicked and is waiting to be restarted): nothing is being delivered.
    Stopped,
    /// No longer in the config (a reload removed it), with messages still waiting in the spool: they stay there,
    /// and are delivered if it comes back.
    Removed,
    /// In the config with `enabled = false`, with messages still waiting in the spool: delivered if it is enabled
    /// again.
    Disabled,
}

impl State {
    /// Every state, for metrics that show one of them as 1.
    pub const ALL: [State; 5] = [State::Ok, State::Degraded, State::Stopped, State::Removed, State::Disabled];

    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Degraded => "degraded",
            State::Stopped => "stopped",
            State::Removed => "removed",
            State::Disabled => "disabled",
        }
    }
}

/// One destination's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Its state.
    pub state: State,
    /// The last delivery error, if any since the server started.
    pub last_error: Option<String>,
    /// When it happened, in Unix milliseconds.
    pub last_error_at: Option<i64>,
    /// How many times its worker was restarted after a panic.
    pub restarts: u64,
}

impl Default for Report {
    fn default() -> Self {
        Report { state: State::Ok, last_error: None, last_error_at: None, restarts: 0 }
    }
}

/// The reports of every destination.
#[derive(Debug, Default)]
pub struct Health {
    reports: Mutex<HashMap<String, Report>>,
}

impl Health {
    fn update(&self, name: &str, change: impl FnOnce(&mut Report)) {
        change(self.reports.lock().expect("health lock poisoned").entry(name.to_owned()).or_default());
    }

    /// The worker of `name` is running (again).
    pub fn running(&self, name: &str) {
        self.update(name, |r| {
            if r.state == State::Stopped {
                r.state = State::Ok;
            }
        });
    }

    /// A delivery of `name` went through in full.
    pub fn delivered(&self, name: &str) {
        self.update(name, |r| {
            if r.state == State::Degraded {
                r.state = State::Ok;
            }
        });
    }

    /// A delivery of `name` left messages waiting for a retry, for `reason`.
    pub fn failing(&self, name: &str, reason: &str, at: i64) {
        self.update(name, |r| {
            if r.state != State::Stopped {
                r.state = State::Degraded;
            }
            r.last_error = Some(reason.to_owned());
            r.last_error_at = Some(at);
        });
    }

    /// The worker of `name` panicked with `reason` and waits to be restarted.
    pub fn stopped(&self, name: &str, reason: &str, at: i64) {
        self.update(name, |r| {
            r.state = State::Stopped;
            r.restarts += 1;
            r.last_error = Some(reason.to_owned());
            r.last_error_at = Some(at);
        });
    }

    /// The report of `name`.
    pub fn report(&self, name: &str) -> Report {
        self.reports.lock().expect("health lock poisoned").get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_what_workers_report() {
        let health = Health::default();
        assert_eq!(health.report("k").state, State::Ok);
        health.failing("k", "AccessDeniedException: no", 5);
        assert_eq!(
            health.report("k"),
            Report {
                state: State::Degraded,
                last_error: Some("AccessDeniedException: no".into()),
                last_error_at: Some(5),
                restarts: 0
            }
        );
        health.delivered("k");
        assert_eq!(health.report("k").state, State::Ok);
        assert_eq!(health.report("k").last_error.as_deref(), Some("AccessDeniedException: no"));
        health.stopped("k", "panicked", 9);
        // A delivery that was in flight when the worker stopped does not make it look alive.
        health.delivered("k");
        health.failing("k", "x", 10);
        assert_eq!(health.report("k").state, State::Stopped);
        health.running("k");
        assert_eq!((health.report("k").state, health.report("k").restarts), (State::Ok, 1));
    }
}
