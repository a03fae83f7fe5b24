//! What time it is, as a handle that is passed in: rules about time (freezes, deploy windows, lock and
//! approval expiry) take "now" from a [`Clock`], never from the wall clock, so tests set it.
//!
//! [`Clock::system`] reads the wall clock (UTC); [`Clock::manual`] is a clock a test sets and moves.
//! [`instant`] turns a time on a zone's wall clock into one instant, across daylight-saving switches.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

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

/// The instant `local` names on `zone`'s wall clock, always one:
/// - in the hour a spring-forward switch skips (02:30 in Berlin on the last Sunday of March), the
///   first instant after the gap (03:00 summer time): the wall clock never shows 02:30 that night,
///   and 03:00 is the first time it shows that is not before it;
/// - in the hour a fall-back switch repeats, the earlier of the two (summer time), so nothing ends
///   an hour later than the person who typed it meant.
pub fn instant(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => (1..=24 * 60)
            .filter_map(|minutes| local.checked_add_signed(chrono::Duration::minutes(minutes)))
            .find_map(|later| zone.from_local_datetime(&later).earliest())
            .map(|at| at.with_timezone(&Utc))
            // No zone has a gap longer than a day; read as UTC rather than fail.
            .unwrap_or_else(|| local.and_utc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ordinary, skipped and repeated wall-clock times on the switch days of Berlin and New York.
    #[test]
    fn a_wall_clock_time_is_one_instant_across_switches() {
        let berlin = chrono_tz::Europe::Berlin;
        let new_york = chrono_tz::America::New_York;
        for (zone, local, utc) in [
            (berlin, "2027-03-27T02:30:00", "2027-03-27T01:30:00Z"),
            // Spring forward, 28 Mar 2027: 02:00–03:00 does not exist → 03:00 CEST.
            (berlin, "2027-03-28T02:30:00", "2027-03-28T01:00:00Z"),
            (berlin, "2027-03-28T02:00:00", "2027-03-28T01:00:00Z"),
            (berlin, "2027-03-28T03:00:00", "2027-03-28T01:00:00Z"),
            // Fall back, 31 Oct 2027: 02:30 happens twice → the first (CEST).
            (berlin, "2027-10-31T02:30:00", "2027-10-31T00:30:00Z"),
            (berlin, "2027-10-31T03:00:00", "2027-10-31T02:00:00Z"),
            // New York, 14 Mar 2027: 02:00–03:00 skipped → 03:00 EDT.
            (new_york, "2027-03-14T02:15:00", "2027-03-14T07:00:00Z"),
            // 7 Nov 2027: 01:30 twice → EDT.
            (new_york, "2027-11-07T01:30:00", "2027-11-07T05:30:00Z"),
        ] {
            let local: NaiveDateTime = local.parse().unwrap();
            let utc = DateTime::parse_from_rfc3339(utc)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(instant(zone, local), utc, "{zone} {local}");
        }
    }

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
