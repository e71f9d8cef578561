//! A warning logged at most once a second, with how many events it stands
//! for, so that a flood of events cannot flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest time between two warnings.
const INTERVAL: Duration = Duration::from_secs(1);

/// Counts events and says when a warning about them is due.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    /// When the last warning was due, and the events since. A leaf lock:
    /// nothing else is locked while it is held.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// Counts one event; returns how many events to report if a warning is
    /// due now.
    pub(crate) fn event(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < INTERVAL => None,
            _ => {
                let count = state.1;
                *state = (Some(now), 0);
                Some(count)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_first_event_then_holds_for_a_second() {
        let throttle = Throttle::default();
        assert_eq!(throttle.event(), Some(1));
        assert_eq!(throttle.event(), None);
        assert_eq!(throttle.event(), None);
    }

    #[test]
    fn counts_the_events_held_back_in_the_next_warning() {
        let throttle = Throttle::default();
        assert_eq!(throttle.event(), Some(1));
        assert_eq!(throttle.event(), None);
        // As if the first warning had been a second ago.
        throttle.state.lock().unwrap().0 = Instant::now().checked_sub(INTERVAL);
        assert_eq!(throttle.event(), Some(2));
    }
}
