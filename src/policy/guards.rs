//! When deploys may run: freezes (`freeze production 2h …`), deploy windows and closed periods
//! (`[windows.<environment>]`), and who may override them (`deploy!` by one of `[bot] admins`). Pure:
//! "now" is given (from the injected [`crate::clock::Clock`]), as are the freezes the store holds.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use chrono_tz::Tz;

use super::Denial;
use crate::command::Until;
use crate::config::{ClosedPeriod, Window};
use crate::domain::{AppName, Environment};
use crate::store::Freeze;

/// Why an environment is closed to deploys now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closure {
    /// Frozen; times are said in `time_zone` (`[bot] time_zone`).
    Frozen { freeze: Freeze, time_zone: Tz },
    /// Outside its window's days or hours; `opens` is when it next opens (within two weeks). Times
    /// are said in the window's zone and, when it differs, in `shown_in` (`[bot] time_zone`).
    OutsideWindow {
        environment: Environment,
        window: Window,
        opens: Option<DateTime<Utc>>,
        shown_in: Tz,
    },
    /// Inside one of its window's closed periods (`time_zone`: the window's, where the period's
    /// times are read); said also in `shown_in` (`[bot] time_zone`) when it differs.
    ClosedPeriod {
        environment: Environment,
        period: ClosedPeriod,
        time_zone: Tz,
        shown_in: Tz,
    },
}

/// Whether `freeze` holds `app`'s `environment` at `now`.
pub fn freeze_holds(
    freeze: &Freeze,
    app: &AppName,
    environment: &Environment,
    now: DateTime<Utc>,
) -> bool {
    freeze.environment.same(environment)
        && freeze
            .app
            .as_ref()
            .is_none_or(|frozen| frozen.as_str().eq_ignore_ascii_case(app.as_str()))
        && freeze.until.is_none_or(|until| now < until)
}

/// The freezes that hold at `now` (ended ones are left out), soonest end first (an open-ended freeze
/// last), then in the order they were taken: the order `freezes` and `where` list them in.
pub fn active_freezes(freezes: &[Freeze], now: DateTime<Utc>) -> Vec<Freeze> {
    let mut active: Vec<Freeze> = freezes
        .iter()
        .filter(|f| f.until.is_none_or(|until| now < until))
        .cloned()
        .collect();
    active.sort_by_key(|f| (f.until.is_none(), f.until, f.id));
    active
}

/// Why `app`'s `environment` is closed at `now`, if it is: a freeze first (it names a person and a
/// reason; of several, the one ending last, as that is when deploys may go again), then a closed
/// period, then the window's days and hours.
pub fn closure(
    now: DateTime<Utc>,
    app: &AppName,
    environment: &Environment,
    freezes: &[Freeze],
    windows: &BTreeMap<Environment, Window>,
    time_zone: Tz,
) -> Option<Closure> {
    deciding(closures(now, app, environment, freezes, windows, time_zone))
}

/// The closure a refusal names, of all that hold: the freeze ending last, else the window.
fn deciding(mut all: Vec<Closure>) -> Option<Closure> {
    let ending_last = all
        .iter()
        .rposition(|c| matches!(c, Closure::Frozen { .. }))
        .unwrap_or(0);
    (ending_last < all.len()).then(|| all.swap_remove(ending_last))
}

/// Everything that closes `app`'s `environment` at `now`: each freeze that holds it (soonest end
/// first, as [`active_freezes`]), then its window's closed period or hours. `where can i deploy`
/// lists them all.
pub fn closures(
    now: DateTime<Utc>,
    app: &AppName,
    environment: &Environment,
    freezes: &[Freeze],
    windows: &BTreeMap<Environment, Window>,
    time_zone: Tz,
) -> Vec<Closure> {
    let mut all: Vec<Closure> = active_freezes(freezes, now)
        .into_iter()
        .filter(|f| freeze_holds(f, app, environment, now))
        .map(|freeze| Closure::Frozen { freeze, time_zone })
        .collect();
    if let Some((_, window)) = windows.iter().find(|(env, _)| env.same(environment)) {
        all.extend(window_closure(window, environment, now, time_zone));
    }
    all
}

/// What `freeze` does where freezes already hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreeze {
    /// The person already froze this very scope: their freeze is extended to `until` (the later of
    /// both ends; `None`, until `unfreeze`, is the latest).
    Extend {
        freeze: Freeze,
        until: Option<DateTime<Utc>>,
    },
    /// A new freeze; `overlapping`: the others that already hold some of its scope, to be named.
    Add { overlapping: Vec<Freeze> },
}

/// What a freeze of `app` (`None`: every app) in `environment` by `holder`, ending at `until`, does
/// given the `active` freezes ([`active_freezes`]).
pub fn refreeze(
    active: &[Freeze],
    app: Option<&AppName>,
    environment: &Environment,
    holder: &str,
    until: Option<DateTime<Utc>>,
) -> Refreeze {
    let same_app = |a: Option<&AppName>, b: Option<&AppName>| match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.as_str().eq_ignore_ascii_case(b.as_str()),
        _ => false,
    };
    let here = active.iter().filter(|f| f.environment.same(environment));
    if let Some(own) = here
        .clone()
        .find(|f| f.holder == holder && same_app(f.app.as_ref(), app))
    {
        let until = match (own.until, until) {
            (Some(old), Some(new)) => Some(old.max(new)),
            _ => None,
        };
        return Refreeze::Extend {
            freeze: own.clone(),
            until,
        };
    }
    let overlapping = here
        .filter(|f| f.app.is_none() || app.is_none() || same_app(f.app.as_ref(), app))
        .cloned()
        .collect();
    Refreeze::Add { overlapping }
}

/// Whether `window` is closed at `now`, and why; `shown_in`: `[bot] time_zone`, for the words.
pub fn window_closure(
    window: &Window,
    environment: &Environment,
    now: DateTime<Utc>,
    shown_in: Tz,
) -> Option<Closure> {
    let local = now.with_timezone(&window.time_zone).naive_local();
    if let Some(period) = window
        .closed
        .iter()
        .find(|p| p.from <= local && local < p.until)
    {
        return Some(Closure::ClosedPeriod {
            environment: environment.clone(),
            period: period.clone(),
            time_zone: window.time_zone,
            shown_in,
        });
    }
    if in_hours(window, now) {
        return None;
    }
    Some(Closure::OutsideWindow {
        environment: environment.clone(),
        window: window.clone(),
        opens: next_open(window, now),
        shown_in,
    })
}

/// On one of the window's days, between its hours, in its time zone.
fn in_hours(window: &Window, now: DateTime<Utc>) -> bool {
    let local = now.with_timezone(&window.time_zone);
    let time = local.time();
    window.days.contains(&local.weekday()) && window.open <= time && time < window.close
}

/// When the window next opens after `now` (outside its closed periods), looking two weeks ahead.
pub fn next_open(window: &Window, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let today = now.with_timezone(&window.time_zone).date_naive();
    (0..15)
        .filter_map(|days| today.checked_add_days(chrono::Days::new(days)))
        .filter(|day| window.days.contains(&day.weekday()))
        .map(|day| crate::clock::instant(window.time_zone, day.and_time(window.open)))
        .filter(|opens| *opens > now)
        .find(|opens| {
            let local = opens.with_timezone(&window.time_zone).naive_local();
            !window
                .closed
                .iter()
                .any(|p| p.from <= local && local < p.until)
        })
}

/// When a freeze or lock typed with `until` ends: after its minutes, or at the next such time of day
/// in `time_zone` (today if still ahead, else tomorrow). A time the clocks skip that night (`until
/// 02:30` on a spring-forward day) ends when the gap does; a time they repeat, at its first passing
/// ([`crate::clock::instant`]).
pub fn end_of(until: Until, now: DateTime<Utc>, time_zone: Tz) -> DateTime<Utc> {
    match until {
        Until::For { minutes } => now + Duration::minutes(i64::from(minutes)),
        Until::At { hour, minute } => {
            let at = NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN);
            let local = now.with_timezone(&time_zone);
            (0..3)
                .filter_map(|days| local.date_naive().checked_add_days(chrono::Days::new(days)))
                .map(|day| crate::clock::instant(time_zone, day.and_time(at)))
                .find(|t| *t > now)
                .unwrap_or(now)
        }
    }
}

/// What a deploy may do about the closures that hold ([`closures`]): go ahead (none), go ahead
/// overriding them all (an admin's `deploy!`: every one is returned so each can be said), or be
/// refused, naming the freeze that ends last (else the window). A `deploy!` by someone who is not
/// an admin is refused the same way, saying only admins override.
pub fn may_pass(
    closures: Vec<Closure>,
    force: bool,
    actor: &str,
    admins: &[String],
) -> Result<Vec<Closure>, Denial> {
    if force && admins.iter().any(|a| a == actor) {
        return Ok(closures);
    }
    match deciding(closures) {
        None => Ok(Vec::new()),
        Some(closure) => Err(Denial::Closed {
            closure: Box::new(closure),
            tried_override: force,
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Weekday;

    use super::*;

    /// A time from its RFC 3339 text.
    pub(crate) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn berlin_office_hours() -> Window {
        Window {
            time_zone: chrono_tz::Europe::Berlin,
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            open: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            close: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
            closed: vec![ClosedPeriod {
                from: "2026-12-24T00:00:00".parse().unwrap(),
                until: "2026-12-28T00:00:00".parse().unwrap(),
                reason: "Holidays".into(),
            }],
        }
    }

    /// Office hours in Berlin are read in Berlin time, summer and winter, and closed periods win.
    #[test]
    fn a_window_is_honoured_in_its_time_zone() {
        let window = berlin_office_hours();
        let production: Environment = "production".parse().unwrap();
        for (now, open, opens) in [
            // Monday 30 Nov 2026, 08:30 UTC = 09:30 in Berlin (CET, UTC+1).
            ("2026-11-30T08:30:00Z", true, None),
            // 07:59 UTC = 08:59 Berlin: opens a minute later.
            ("2026-11-30T07:59:00Z", false, Some("2026-11-30T08:00:00Z")),
            // 16:00 UTC = 17:00 Berlin: closed until Tuesday 09:00 Berlin.
            ("2026-11-30T16:00:00Z", false, Some("2026-12-01T08:00:00Z")),
            // Summer (CEST, UTC+2): 07:30 UTC = 09:30 Berlin.
            ("2026-07-06T07:30:00Z", true, None),
            ("2026-07-06T06:30:00Z", false, Some("2026-07-06T07:00:00Z")),
            // Saturday: closed until Monday.
            ("2026-12-05T10:00:00Z", false, Some("2026-12-07T08:00:00Z")),
            // Thursday 24 Dec, inside office hours but a closed period: opens Monday 28th.
            ("2026-12-24T10:00:00Z", false, Some("2026-12-28T08:00:00Z")),
        ] {
            let now = at(now);
            let closure = window_closure(&window, &production, now, Tz::UTC);
            assert_eq!(closure.is_none(), open, "{now}");
            match closure {
                Some(Closure::OutsideWindow { opens: got, .. }) => {
                    assert_eq!(got, opens.map(at), "{now}")
                }
                Some(Closure::ClosedPeriod { period, .. }) => {
                    assert_eq!(period.reason, "Holidays");
                    assert_eq!(next_open(&window, now), opens.map(at), "{now}");
                }
                _ => {}
            }
        }
    }

    fn freeze(app: Option<&str>, until: Option<&str>) -> Freeze {
        Freeze {
            id: 1,
            app: app.map(|a| a.parse().unwrap()),
            environment: "production".parse().unwrap(),
            holder: "U0BOSS".into(),
            reason: Some("release".into()),
            created_at: at("2026-11-30T08:00:00Z"),
            until: until.map(at),
        }
    }

    #[test]
    fn a_freeze_holds_its_scope_until_it_ends() {
        let now = at("2026-11-30T09:00:00Z");
        let adxstat: AppName = "adxstat".parse().unwrap();
        let other: AppName = "other".parse().unwrap();
        let production: Environment = "PRODUCTION".parse().unwrap();
        let staging: Environment = "staging".parse().unwrap();
        for (f, app, env, holds) in [
            (freeze(None, None), &adxstat, &production, true),
            (freeze(None, None), &other, &production, true),
            (freeze(None, None), &adxstat, &staging, false),
            (freeze(Some("adxstat"), None), &other, &production, false),
            (freeze(Some("ADXSTAT"), None), &adxstat, &production, true),
            (
                freeze(None, Some("2026-11-30T10:00:00Z")),
                &adxstat,
                &production,
                true,
            ),
            (
                freeze(None, Some("2026-11-30T09:00:00Z")),
                &adxstat,
                &production,
                false,
            ),
        ] {
            assert_eq!(freeze_holds(&f, app, env, now), holds, "{f:?} {app} {env}");
        }
    }

    #[test]
    fn only_an_admins_deploy_bang_overrides() {
        let frozen = || Closure::Frozen {
            freeze: freeze(None, None),
            time_zone: Tz::UTC,
        };
        let closure = || vec![frozen()];
        let admins = vec!["U0ADMIN".to_string()];
        assert_eq!(
            may_pass(Vec::new(), false, "U0BOB", &admins),
            Ok(Vec::new())
        );
        assert_eq!(
            may_pass(Vec::new(), true, "U0ADMIN", &admins),
            Ok(Vec::new())
        );
        assert_eq!(may_pass(closure(), true, "U0ADMIN", &admins), Ok(closure()));
        // An override goes through every closure, and names them all.
        let two = || vec![frozen(), frozen()];
        assert_eq!(may_pass(two(), true, "U0ADMIN", &admins), Ok(two()));
        for (force, actor) in [(false, "U0ADMIN"), (true, "U0BOB"), (false, "U0BOB")] {
            assert_eq!(
                may_pass(closure(), force, actor, &admins),
                Err(Denial::Closed {
                    closure: Box::new(frozen()),
                    tried_override: force
                }),
                "{force} {actor}"
            );
        }
    }

    /// `until` is the next such time in the zone, also on the nights the clocks change: a skipped
    /// time ends when the gap does, a repeated one at its first passing.
    #[test]
    fn until_a_time_is_the_next_such_time_in_the_zone() {
        let berlin = chrono_tz::Europe::Berlin;
        let at_six = Until::At {
            hour: 18,
            minute: 0,
        };
        let until = |hour, minute| Until::At { hour, minute };
        for (now, until, end) in [
            ("2026-11-30T09:00:00Z", at_six, "2026-11-30T17:00:00Z"),
            ("2026-11-30T17:30:00Z", at_six, "2026-12-01T17:00:00Z"),
            (
                "2026-11-30T09:00:00Z",
                Until::For { minutes: 120 },
                "2026-11-30T11:00:00Z",
            ),
            // The nights the clocks change. Sat 27 Mar 2027 22:00 CET: Sunday 02:30 does not
            // exist → 03:00 CEST, when the gap ends.
            ("2027-03-27T21:00:00Z", until(2, 30), "2027-03-28T01:00:00Z"),
            // Sunday 28 Mar, 00:30 CET: the same night.
            ("2027-03-27T23:30:00Z", until(2, 30), "2027-03-28T01:00:00Z"),
            // After the switch: the next 02:30 is Monday's (CEST).
            ("2027-03-28T01:30:00Z", until(2, 30), "2027-03-29T00:30:00Z"),
            // Sun 31 Oct 2027: 02:30 happens twice → the first, 02:30 CEST.
            ("2027-10-30T22:00:00Z", until(2, 30), "2027-10-31T00:30:00Z"),
            // `until 24:00` (read as `00:00`) at 20:00 CET: midnight at the end of the day.
            ("2026-11-30T19:00:00Z", until(0, 0), "2026-11-30T23:00:00Z"),
            // A 2h freeze across the spring switch lasts two real hours.
            (
                "2027-03-28T00:30:00Z",
                Until::For { minutes: 120 },
                "2027-03-28T02:30:00Z",
            ),
        ] {
            assert_eq!(end_of(until, at(now), berlin), at(end), "{now} {until}");
        }
    }

    /// A window that opens at a time the spring switch skips opens when the gap ends, and is open
    /// then; a window is read on the wall clock of its zone before and after the switch.
    #[test]
    fn a_window_across_a_daylight_saving_switch() {
        let production: Environment = "production".parse().unwrap();
        let window = Window {
            time_zone: chrono_tz::Europe::Berlin,
            days: vec![Weekday::Sun, Weekday::Mon],
            open: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
            close: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
            closed: vec![],
        };
        for (now, open, opens) in [
            // Sun 28 Mar 2027, 01:30 CET: opens at the end of the gap, 03:00 CEST.
            ("2027-03-28T00:30:00Z", false, Some("2027-03-28T01:00:00Z")),
            ("2027-03-28T01:00:00Z", true, None),
            // 16:30 CEST on Sunday: open; 17:00 CEST: closed until Monday 02:30 CEST.
            ("2027-03-28T14:30:00Z", true, None),
            ("2027-03-28T15:00:00Z", false, Some("2027-03-29T00:30:00Z")),
            // Sat 30 Oct 2027, 20:00 CEST: opens Sunday at the first 02:30 (CEST).
            ("2027-10-30T18:00:00Z", false, Some("2027-10-31T00:30:00Z")),
        ] {
            let now = at(now);
            let closure = window_closure(&window, &production, now, Tz::UTC);
            assert_eq!(closure.is_none(), open, "{now}");
            if let Some(Closure::OutsideWindow { opens: got, .. }) = closure {
                assert_eq!(got, opens.map(at), "{now}");
            }
        }
    }

    /// A freeze of what the same person froze already extends theirs (to the later end); anyone
    /// else's adds one, naming those that overlap it.
    #[test]
    fn a_second_freeze_extends_ones_own_or_adds() {
        let adxstat: AppName = "adxstat".parse().unwrap();
        let other: AppName = "other".parse().unwrap();
        let production: Environment = "production".parse().unwrap();
        let staging: Environment = "staging".parse().unwrap();
        let by = |id, holder: &str, app: Option<&str>, until: Option<&str>| Freeze {
            id,
            holder: holder.into(),
            ..freeze(app, until)
        };
        let boss_all = by(1, "U0BOSS", None, Some("2026-11-30T12:00:00Z"));
        let bob_adxstat = by(2, "U0BOB", Some("adxstat"), None);
        let active = vec![boss_all.clone(), bob_adxstat.clone()];
        let (noon, two) = (
            Some(at("2026-11-30T12:00:00Z")),
            Some(at("2026-11-30T14:00:00Z")),
        );
        let eleven = Some(at("2026-11-30T11:00:00Z"));
        for (app, env, holder, until, expected) in [
            (
                None,
                &production,
                "U0BOSS",
                two,
                Refreeze::Extend {
                    freeze: boss_all.clone(),
                    until: two,
                },
            ),
            (
                None,
                &production,
                "U0BOSS",
                eleven,
                Refreeze::Extend {
                    freeze: boss_all.clone(),
                    until: noon,
                },
            ),
            (
                None,
                &production,
                "U0BOSS",
                None,
                Refreeze::Extend {
                    freeze: boss_all.clone(),
                    until: None,
                },
            ),
            (
                Some(&adxstat),
                &production,
                "U0BOB",
                two,
                Refreeze::Extend {
                    freeze: bob_adxstat.clone(),
                    until: None,
                },
            ),
            (
                None,
                &production,
                "U0ALICE",
                two,
                Refreeze::Add {
                    overlapping: active.clone(),
                },
            ),
            (
                Some(&other),
                &production,
                "U0BOB",
                two,
                Refreeze::Add {
                    overlapping: vec![boss_all.clone()],
                },
            ),
            (
                None,
                &staging,
                "U0BOSS",
                two,
                Refreeze::Add {
                    overlapping: vec![],
                },
            ),
        ] {
            assert_eq!(
                refreeze(&active, app, env, holder, until),
                expected,
                "{app:?} {env} {holder}"
            );
        }
    }

    /// Of several freezes, a deploy's refusal names the one ending last (an open-ended one last of
    /// all); `closures` lists each, soonest end first, then the window.
    #[test]
    fn several_freezes_are_each_listed_and_the_last_to_end_refuses() {
        let now = at("2026-11-30T09:00:00Z");
        let adxstat: AppName = "adxstat".parse().unwrap();
        let production: Environment = "production".parse().unwrap();
        let numbered = |id, until: Option<&str>| Freeze {
            id,
            ..freeze(None, until)
        };
        let ended = numbered(1, Some("2026-11-30T08:30:00Z"));
        let late = numbered(2, Some("2026-11-30T18:00:00Z"));
        let soon = numbered(3, Some("2026-11-30T10:00:00Z"));
        let open = numbered(4, None);
        let ids = |closures: Vec<Closure>| -> Vec<i64> {
            closures
                .into_iter()
                .map(|c| match c {
                    Closure::Frozen { freeze, .. } => freeze.id,
                    _ => 0,
                })
                .collect()
        };
        let windows = BTreeMap::from([(production.clone(), berlin_office_hours())]);
        let saturday = at("2026-12-05T10:00:00Z");
        for (freezes, windows, now, listed, refused) in [
            (
                vec![late.clone(), soon.clone()],
                BTreeMap::new(),
                now,
                vec![3, 2],
                Some(2),
            ),
            (
                vec![open.clone(), late.clone(), soon.clone(), ended.clone()],
                BTreeMap::new(),
                now,
                vec![3, 2, 4],
                Some(4),
            ),
            (vec![ended.clone()], BTreeMap::new(), now, vec![], None),
            (
                vec![soon.clone()],
                windows.clone(),
                saturday,
                vec![0],
                Some(0),
            ),
            (
                vec![open.clone()],
                windows.clone(),
                saturday,
                vec![4, 0],
                Some(4),
            ),
        ] {
            let tz = Tz::UTC;
            let all = closures(now, &adxstat, &production, &freezes, &windows, tz);
            assert_eq!(ids(all), listed, "{freezes:?}");
            let one = closure(now, &adxstat, &production, &freezes, &windows, tz);
            assert_eq!(ids(one.into_iter().collect()), Vec::from_iter(refused));
        }
    }
}
