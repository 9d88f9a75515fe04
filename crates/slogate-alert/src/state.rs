//! The per rule and series alert state machine.

use serde::{Deserialize, Serialize};

/// A change worth notifying about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Fired,
    Resolved,
}

/// Where an alert is. Serialized as `{"state": "firing", "since": 1700000000}` for
/// `/api/v1/alerts`; every variant's time is called `since` there so clients read one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    Inactive,
    /// Condition true since `since`, waiting out `for_seconds`.
    Pending {
        since: u64,
    },
    /// Fired at `since`. `quiet_since` is set while the condition is false but
    /// `keep_firing_for` has not yet elapsed.
    Firing {
        since: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quiet_since: Option<u64>,
    },
    Resolved {
        #[serde(rename = "since")]
        at: u64,
    },
}

/// `Inactive → Pending → Firing → Resolved → (Pending …)` for one rule and series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// How long the condition must hold before firing (0 fires on the first active observation).
    pub for_seconds: u64,
    /// How long to keep firing after the condition clears, so a flapping signal does not page,
    /// resolve and page again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<u64>,
    #[serde(flatten)]
    pub phase: Phase,
}

impl AlertState {
    pub fn new(for_seconds: u64) -> AlertState {
        AlertState {
            for_seconds,
            keep_firing_for: None,
            phase: Phase::Inactive,
        }
    }

    pub fn with_keep_firing_for(mut self, seconds: u64) -> AlertState {
        self.keep_firing_for = Some(seconds).filter(|s| *s > 0);
        self
    }

    /// Feeds one evaluation. Returns a transition exactly when the alert starts firing or stops
    /// firing, so a caller that notifies on every `Some` pages once per incident.
    ///
    /// Times are unix seconds; a clock that steps backwards counts as no time elapsed rather
    /// than firing early or wrapping.
    pub fn observe(&mut self, active: bool, now_unix: u64) -> Option<Transition> {
        let (next, transition) = match (&self.phase, active) {
            (Phase::Inactive | Phase::Resolved { .. }, false) => return None,
            (Phase::Inactive | Phase::Resolved { .. }, true) if self.for_seconds == 0 => (
                Phase::Firing {
                    since: now_unix,
                    quiet_since: None,
                },
                Some(Transition::Fired),
            ),
            (Phase::Inactive | Phase::Resolved { .. }, true) => {
                (Phase::Pending { since: now_unix }, None)
            }
            (Phase::Pending { since }, true) => {
                if now_unix.saturating_sub(*since) >= self.for_seconds {
                    (
                        Phase::Firing {
                            since: now_unix,
                            quiet_since: None,
                        },
                        Some(Transition::Fired),
                    )
                } else {
                    return None;
                }
            }
            // Never fired, so there is nothing to resolve.
            (Phase::Pending { .. }, false) => (Phase::Inactive, None),
            (Phase::Firing { since, .. }, true) => (
                Phase::Firing {
                    since: *since,
                    quiet_since: None,
                },
                None,
            ),
            (Phase::Firing { since, quiet_since }, false) => {
                let quiet = quiet_since.unwrap_or(now_unix);
                match self.keep_firing_for {
                    Some(keep) if now_unix.saturating_sub(quiet) < keep => (
                        Phase::Firing {
                            since: *since,
                            quiet_since: Some(quiet),
                        },
                        None,
                    ),
                    _ => (Phase::Resolved { at: now_unix }, Some(Transition::Resolved)),
                }
            }
        };
        self.phase = next;
        transition
    }

    /// The state's name: `inactive`, `pending`, `firing` or `resolved`.
    pub fn name(&self) -> &'static str {
        match self.phase {
            Phase::Inactive => "inactive",
            Phase::Pending { .. } => "pending",
            Phase::Firing { .. } => "firing",
            Phase::Resolved { .. } => "resolved",
        }
    }

    /// When the current state began (unix seconds), `None` when inactive.
    pub fn since(&self) -> Option<u64> {
        match self.phase {
            Phase::Inactive => None,
            Phase::Pending { since } | Phase::Firing { since, .. } => Some(since),
            Phase::Resolved { at } => Some(at),
        }
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transition::{Fired, Resolved};

    /// Feeds `(active, now)` steps and checks each step's transition and resulting state name.
    /// `(active, now, expected transition, expected state name)`.
    type Step = (bool, u64, Option<Transition>, &'static str);

    fn check(name: &str, mut state: AlertState, steps: &[Step]) {
        for (i, &(active, now, want_t, want_state)) in steps.iter().enumerate() {
            let got = state.observe(active, now);
            assert_eq!(got, want_t, "{name}: step {i} transition");
            assert_eq!(state.name(), want_state, "{name}: step {i} state");
        }
    }

    #[test]
    fn transition_table() {
        let cases: Vec<(&str, AlertState, Vec<Step>)> = vec![
            (
                "fires at once with for 0",
                AlertState::new(0),
                vec![
                    (false, 10, None, "inactive"),
                    (true, 11, Some(Fired), "firing"),
                    (true, 12, None, "firing"),
                    (false, 13, Some(Resolved), "resolved"),
                    (false, 14, None, "resolved"),
                    (true, 15, Some(Fired), "firing"),
                ],
            ),
            (
                "waits out for_seconds",
                AlertState::new(60),
                vec![
                    (true, 100, None, "pending"),
                    (true, 159, None, "pending"),
                    (true, 160, Some(Fired), "firing"),
                    (false, 170, Some(Resolved), "resolved"),
                    (true, 200, None, "pending"),
                    (true, 260, Some(Fired), "firing"),
                ],
            ),
            (
                "pending that clears never pages",
                AlertState::new(60),
                vec![
                    (true, 100, None, "pending"),
                    (false, 150, None, "inactive"),
                    (true, 170, None, "pending"),
                    (true, 200, None, "pending"),
                ],
            ),
            (
                "keep_firing_for bridges a flap",
                AlertState::new(0).with_keep_firing_for(30),
                vec![
                    (true, 100, Some(Fired), "firing"),
                    (false, 110, None, "firing"),
                    (true, 120, None, "firing"),
                    (false, 130, None, "firing"),
                    (false, 159, None, "firing"),
                    (false, 160, Some(Resolved), "resolved"),
                ],
            ),
            (
                "keep_firing_for 0 is off",
                AlertState::new(0).with_keep_firing_for(0),
                vec![
                    (true, 1, Some(Fired), "firing"),
                    (false, 2, Some(Resolved), "resolved"),
                ],
            ),
            (
                "clock going backwards does not fire early",
                AlertState::new(60),
                vec![
                    (true, 1000, None, "pending"),
                    (true, 10, None, "pending"),
                    (true, 1060, Some(Fired), "firing"),
                ],
            ),
        ];
        for (name, state, steps) in cases {
            check(name, state, &steps);
        }
    }

    #[test]
    fn serializes_state_and_since() {
        let mut s = AlertState::new(0);
        let cases: [(Option<(bool, u64)>, serde_json::Value); 3] = [
            (
                None,
                serde_json::json!({"for_seconds": 0, "state": "inactive"}),
            ),
            (
                Some((true, 5)),
                serde_json::json!({"for_seconds": 0, "state": "firing", "since": 5}),
            ),
            (
                Some((false, 9)),
                serde_json::json!({"for_seconds": 0, "state": "resolved", "since": 9}),
            ),
        ];
        for (step, want) in cases {
            if let Some((active, now)) = step {
                s.observe(active, now);
            }
            let got = serde_json::to_value(&s).unwrap();
            assert_eq!(got, want);
            let back: AlertState = serde_json::from_value(got).unwrap();
            assert_eq!(back, s);
        }
    }
}
