//! The guards' settings in `bot.toml`: deploy windows (`[windows.<environment>]`), approvals, auto-deploy
//! and automatic locks of an app, and the time zone chat times are read in (`[bot] time_zone`). Values
//! only; the rules that use them are `policy`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDateTime, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use super::{Checker, HumanDuration};
use crate::domain::{Environment, GitRef};

/// When deploys to an environment may run: on `days`, from `open` until `close` (local time in
/// `time_zone`), except in the `closed` periods. An environment without a window is always open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub time_zone: Tz,
    pub days: Vec<Weekday>,
    pub open: NaiveTime,
    /// The end, excluded: `17:00` means the last deploy starts before 17:00.
    pub close: NaiveTime,
    pub closed: Vec<ClosedPeriod>,
}

/// A period without deploys (holidays, a release freeze), in the window's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedPeriod {
    pub from: NaiveDateTime,
    pub until: NaiveDateTime,
    pub reason: String,
}

/// Who must approve a deploy to an environment before zbot creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    /// How many different people must approve (default 1).
    pub count: u32,
    /// Slack user ids (`U…`) or user-group handles (`@oncall`, `S…` ids) who may approve; empty means
    /// anyone but the person who asked.
    pub approvers: Vec<String>,
    /// How long a request waits before it expires (default 2 h).
    pub timeout: Duration,
}

/// Deploy the head of `branch` to `environments` when its commit statuses and checks pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoDeploy {
    pub branch: GitRef,
    pub environments: Vec<Environment>,
}

/// The default number of approvals.
pub const DEFAULT_APPROVALS: u32 = 1;
/// How long an approval request waits by default.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    time_zone: Option<String>,
    days: Option<Vec<String>>,
    hours: Option<String>,
    #[serde(default)]
    closed: Vec<RawClosed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClosed {
    from: String,
    until: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    count: Option<u32>,
    #[serde(default)]
    approvers: Vec<String>,
    timeout: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoDeploy {
    branch: String,
    environments: Vec<String>,
}

/// A time zone by its IANA name (`Europe/Berlin`, `UTC`).
pub(super) fn time_zone(c: &mut Checker<'_>, table: &str, key: &str, name: &str) -> Tz {
    name.parse().unwrap_or_else(|_| {
        c.problem(
            table,
            Some(key),
            format!("`{name}` is not a time zone name like \"Europe/Berlin\" or \"UTC\""),
        );
        Tz::UTC
    })
}

fn weekday(name: &str) -> Option<Weekday> {
    match name.to_ascii_lowercase().get(..3)? {
        "mon" => Some(Weekday::Mon),
        "tue" => Some(Weekday::Tue),
        "wed" => Some(Weekday::Wed),
        "thu" => Some(Weekday::Thu),
        "fri" => Some(Weekday::Fri),
        "sat" => Some(Weekday::Sat),
        "sun" => Some(Weekday::Sun),
        _ => None,
    }
}

/// `HH:MM-HH:MM` (an en dash also), the end after the start.
fn hours(text: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (open, close) = text.split_once(['-', '–'])?;
    let open = NaiveTime::parse_from_str(open.trim(), "%H:%M").ok()?;
    let close = match close.trim() {
        "24:00" => NaiveTime::from_hms_opt(23, 59, 59)?,
        close => NaiveTime::parse_from_str(close, "%H:%M").ok()?,
    };
    (open < close).then_some((open, close))
}

/// `YYYY-MM-DD HH:MM` or `YYYY-MM-DD` (midnight).
fn local_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M")
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

pub(super) fn validate_windows(
    c: &mut Checker<'_>,
    raw: BTreeMap<String, RawWindow>,
    default_zone: Tz,
) -> BTreeMap<Environment, Window> {
    let mut windows = BTreeMap::new();
    for (name, raw) in raw {
        let table = format!("windows.{name}");
        let environment: Option<Environment> = c.parse(&table, None, &name);
        let time_zone = match &raw.time_zone {
            Some(zone) => time_zone(c, &table, "time_zone", zone),
            None => default_zone,
        };
        let days = match raw.days {
            None => vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            Some(days) => days
                .iter()
                .filter_map(|day| {
                    let parsed = weekday(day);
                    if parsed.is_none() {
                        c.problem(
                            &table,
                            Some("days"),
                            format!(
                                "`{day}` is not a day: write mon, tue, wed, thu, fri, sat, sun"
                            ),
                        );
                    }
                    parsed
                })
                .collect(),
        };
        let (open, close) = match raw.hours.as_deref() {
            None => (
                NaiveTime::MIN,
                NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN),
            ),
            Some(text) => hours(text).unwrap_or_else(|| {
                c.problem(
                    &table,
                    Some("hours"),
                    format!("`{text}` is not a time span like \"09:00-17:00\""),
                );
                (NaiveTime::MIN, NaiveTime::MIN)
            }),
        };
        let closed = raw
            .closed
            .iter()
            .filter_map(|period| {
                let from = local_time(&period.from);
                let until = local_time(&period.until);
                match (from, until) {
                    (Some(from), Some(until)) if from < until => Some(ClosedPeriod {
                        from,
                        until,
                        reason: period.reason.clone().unwrap_or_default(),
                    }),
                    _ => {
                        c.problem(
                            &table,
                            Some("closed"),
                            format!(
                                "`{}` to `{}` is not a period like \"2026-12-23 18:00\" to \"2027-01-04\"",
                                period.from, period.until
                            ),
                        );
                        None
                    }
                }
            })
            .collect();
        if let Some(environment) = environment {
            windows.insert(
                environment,
                Window {
                    time_zone,
                    days,
                    open,
                    close,
                    closed,
                },
            );
        }
    }
    windows
}

pub(super) fn validate_approvals(
    c: &mut Checker<'_>,
    table: &str,
    environments: &[Environment],
    raw: BTreeMap<String, RawApprovals>,
) -> BTreeMap<Environment, Approvals> {
    let mut approvals = BTreeMap::new();
    for (env, raw) in raw {
        let Some(environment) = environments.iter().find(|e| e.as_str() == env) else {
            c.problem(
                table,
                Some("approvals"),
                format!("`{env}` is not one of this app's environments"),
            );
            continue;
        };
        let count = raw.count.unwrap_or(DEFAULT_APPROVALS);
        if count == 0 {
            c.problem(table, Some("approvals"), "count must be at least 1");
        }
        for approver in &raw.approvers {
            // Slack's ids are upper case (`U…`/`W…` people, `S…` groups): "Sam" is a name, which
            // would be taken for a group nobody is in.
            let ok = approver.strip_prefix('@').is_some_and(|h| !h.is_empty())
                || (approver.len() > 1
                    && approver.starts_with(['U', 'W', 'S'])
                    && approver
                        .chars()
                        .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit()));
            if !ok {
                c.problem(
                    table,
                    Some("approvals"),
                    format!(
                        "`{approver}` is neither a Slack user id (U…) nor a user group (@handle or S…)"
                    ),
                );
            }
        }
        let timeout = raw.timeout.map_or(DEFAULT_APPROVAL_TIMEOUT, |t| t.0);
        if timeout.is_zero() {
            c.problem(table, Some("approvals"), "timeout must be longer than 0s");
        }
        approvals.insert(
            environment.clone(),
            Approvals {
                count: count.max(1),
                approvers: raw.approvers,
                timeout,
            },
        );
    }
    approvals
}

pub(super) fn validate_auto_deploy(
    c: &mut Checker<'_>,
    table: &str,
    environments: &[Environment],
    raw: RawAutoDeploy,
) -> Option<AutoDeploy> {
    let branch = c.parse::<GitRef>(table, Some("auto_deploy"), &raw.branch);
    let targets = raw
        .environments
        .iter()
        .filter_map(|env| {
            let known = environments.iter().find(|e| e.as_str() == env.as_str());
            if known.is_none() {
                c.problem(
                    table,
                    Some("auto_deploy"),
                    format!("`{env}` is not one of this app's environments"),
                );
            }
            known.cloned()
        })
        .collect();
    Some(AutoDeploy {
        branch: branch?,
        environments: targets,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn problems(source: &str) -> Vec<String> {
        match Config::from_source(Path::new("bot.toml"), source) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn windows_are_read_in_their_time_zone() {
        let config = Config::from_source(
            Path::new("bot.toml"),
            "[windows.production]\ntime_zone = \"Europe/Berlin\"\ndays = [\"mon\", \"Friday\"]\nhours = \"09:00-17:00\"\nclosed = [{ from = \"2026-12-23 18:00\", until = \"2027-01-04\", reason = \"Holidays\" }]\n",
        )
        .unwrap();
        let window = &config.windows[&"production".parse::<Environment>().unwrap()];
        assert_eq!(window.time_zone, chrono_tz::Europe::Berlin);
        assert_eq!(window.days, vec![Weekday::Mon, Weekday::Fri]);
        assert_eq!(window.open, NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        assert_eq!(window.closed[0].reason, "Holidays");
    }

    #[test]
    fn zbot_check_names_each_bad_guard_setting() {
        let table = [
            (
                "[bot]\ntime_zone = \"Mars/Olympus\"\n",
                "bot.toml:2: [bot] time_zone: `Mars/Olympus` is not a time zone name like \"Europe/Berlin\" or \"UTC\"",
            ),
            (
                "[windows.production]\nhours = \"17:00-09:00\"\n",
                "bot.toml:2: [windows.production] hours: `17:00-09:00` is not a time span like \"09:00-17:00\"",
            ),
            (
                "[windows.production]\ndays = [\"someday\"]\n",
                "bot.toml:2: [windows.production] days: `someday` is not a day: write mon, tue, wed, thu, fri, sat, sun",
            ),
            (
                "[apps.a]\nrepository = \"o/a\"\napprovals = { qa = { count = 1 } }\n",
                "bot.toml:3: [apps.a] approvals: `qa` is not one of this app's environments",
            ),
            (
                "[apps.a]\nrepository = \"o/a\"\napprovals = { production = { approvers = [\"bob\"] } }\n",
                "bot.toml:3: [apps.a] approvals: `bob` is neither a Slack user id (U…) nor a user group (@handle or S…)",
            ),
            (
                "[apps.a]\nrepository = \"o/a\"\napprovals = { production = { approvers = [\"Sam\"] } }\n",
                "bot.toml:3: [apps.a] approvals: `Sam` is neither a Slack user id (U…) nor a user group (@handle or S…)",
            ),
            (
                "[apps.a]\nrepository = \"o/a\"\napprovals = { production = { approvers = [\"Ursula\"] } }\n",
                "bot.toml:3: [apps.a] approvals: `Ursula` is neither a Slack user id (U…) nor a user group (@handle or S…)",
            ),
            (
                "[apps.a]\nrepository = \"o/a\"\nauto_deploy = { branch = \"main\", environments = [\"staging\"] }\n",
                "bot.toml:3: [apps.a] auto_deploy: `staging` is not one of this app's environments",
            ),
        ];
        for (source, expected) in table {
            assert_eq!(problems(source), vec![expected.to_string()], "{source}");
        }
    }
}
