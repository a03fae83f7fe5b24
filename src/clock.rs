//! What time it is, as a handle that is passed in: rules about time (freezes, deploy windows, lock and
//! approval expiry) take "now" from a [`Clock`], never from the wall clock, so tests set it.
//!
//! [`Clock::system`] reads the wall clock (UTC); [`Clock::manual`] is a clock a test sets and moves.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// A cheap-to-clone source of "now".
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => write!(f, "Clock::system"),
            Source::Manual(_) => write!(f, "Clock::manual({})", self.now()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that shows `start` until it is [`Clock::set`] or [`Clock::advance`]d (tests).
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock(Source::Manual(Arc::new(Mutex::new(start))))
    }

    /// Now, in UTC.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Source::System => Utc::now(),
            Source::Manual(at) => *at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Sets a manual clock to `at`; the system clock is not changed.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Source::Manual(now) = &self.0 {
            *now.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
        }
    }

    /// Moves a manual clock forward by `by`; the system clock is not changed.
    pub fn advance(&self, by: chrono::Duration) {
        self.set(self.now() + by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2020-11-30T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        let copy = clock.clone();
        assert_eq!(clock.now(), start);
        copy.advance(chrono::Duration::hours(2));
        assert_eq!(clock.now(), start + chrono::Duration::hours(2));
        Clock::system().set(start);
        assert!(Clock::system().now() > start);
    }
}
