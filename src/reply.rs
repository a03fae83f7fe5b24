//! Every sentence zbot says to a person, in one place, so chat, the shell and GitHub statuses speak
//! the same language. Chat texts are Slack mrkdwn: anything from outside is escaped with
//! [`escape`], users are written as mentions.

use chrono::Utc;

use crate::command::ParseError;
use crate::domain::{AppName, Environment, GitRef};
use crate::events::DeploymentEvent;
use crate::forge::{DeploymentSummary, ForgeError, Refused, StatusState};
use crate::mrkdwn::{Message, escape, log_link};
use crate::policy::{Closure, Denial, Refusal, Why};
use crate::recipe::syntax::Unrepresentable;
use crate::recipe::{Placeholder, RenderError};
use crate::store::{ApprovalRequest, Freeze, Lock, RequestState};

/// "12s", "3m 05s", "1h 02m".
pub fn human_duration(elapsed: std::time::Duration) -> String {
    let s = elapsed.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A time span in its largest whole unit: "45s", "12m", "3h" (for "created 3h ago").
pub fn coarse_duration(span: std::time::Duration) -> String {
    let s = span.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// `text` ended as a sentence: a period is added unless it already ends with `.`, `!`, `?` or `…`.
/// Text from outside (GitHub's messages, git's errors, a deploy's description) often brings its own
/// period, and a reply must not end a sentence with `..`.
pub fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.ends_with(['.', '!', '?', '…']) {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

/// A user as chat shows them: a Slack user id becomes a mention, anything else is shown as is.
pub fn user(id: &str) -> String {
    let slack_id = id.len() > 2
        && id.starts_with(['U', 'W'])
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if slack_id {
        format!("<@{id}>")
    } else {
        escape(id)
    }
}

/// When a lock was taken, as [`when`] says it (in `[bot] time_zone`, the zone named).
fn since(lock: &Lock, now: chrono::DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    when(lock.created_at, now, zone)
}

/// A lock's reason after the rest of a sentence: ": testing", or " because testing" when the reason
/// already starts with "because" (`lock adxstat because testing`), so it is not said twice.
fn lock_reason(reason: &str, chat: bool) -> String {
    let reason = if chat {
        escape(reason)
    } else {
        reason.to_string()
    };
    let starts_with_because = reason
        .get(..8)
        .is_some_and(|start| start.eq_ignore_ascii_case("because "));
    if starts_with_because {
        format!(" {reason}")
    } else {
        format!(": {reason}")
    }
}

/// "adxstat is locked on production by U0BOB since Mon Nov 30 10:42 CET: testing the migration" (plain,
/// for GitHub); times in `zone`, with the date (a refusal is read later, in a status or a thread).
pub fn locked(lock: &Lock, zone: chrono_tz::Tz) -> String {
    let mut text = format!(
        "{} is locked on {} by {} since {}",
        lock.app,
        lock.environment,
        lock.holder,
        dated(lock.created_at, zone)
    );
    if let Some(reason) = &lock.reason {
        text.push_str(&lock_reason(reason, false));
    }
    text
}

/// The same for chat, with the holder as a mention.
pub fn locked_in_chat(lock: &Lock, zone: chrono_tz::Tz) -> String {
    let mut text = format!(
        "{} is locked on *{}* by {} since {}",
        lock.app,
        lock.environment,
        user(&lock.holder),
        dated(lock.created_at, zone)
    );
    if let Some(reason) = &lock.reason {
        text.push_str(&lock_reason(reason, true));
    }
    text
}

/// [`lock_task_done`] for chat, with the user as a mention.
fn lock_task_done_in_chat(e: &DeploymentEvent) -> String {
    let done = if e.task.is_lock() {
        "locked"
    } else {
        "unlocked"
    };
    format!(
        "{} {done} on *{}* by {}",
        e.app,
        escape(e.environment.as_str()),
        user(&e.actor)
    )
}

/// What a deployment event says, as chat shows it: a denial in chat's words (a lock's holder as a
/// mention, as in every chat reply), a lock task as who locked what, else its description, escaped.
fn description_in_chat(e: &DeploymentEvent) -> String {
    match &e.denial {
        Some(d) => denial(d),
        None if e.state == StatusState::Success && (e.task.is_lock() || e.task.is_unlock()) => {
            lock_task_done_in_chat(e)
        }
        None => escape(&e.description),
    }
}

/// The line under a deployment's status in the default channel when it was asked for in a room zbot
/// cannot answer in: another chat adapter's (hubot-deploy's shell, Campfire, HipChat, …), or a Slack
/// room it cannot post to (`unreachable`: Slack's reason). `None` when `notify` names no room.
pub fn asked_elsewhere(
    notify: &crate::domain::Notify,
    unreachable: Option<&str>,
) -> Option<String> {
    let room = escape(notify.room.as_ref()?.as_str());
    // The payload's user is whatever its writer put there: text, never a mention, said to be the
    // payload's word.
    let by = match &notify.user {
        Some(user) => format!(" by {} (per payload)", escape(user.as_str())),
        None => String::new(),
    };
    Some(match unreachable {
        Some(why) => format!(
            "Asked for in Slack room `{room}`{by}, where I can't post ({}), so I answer here.",
            escape(why)
        ),
        None => {
            let adapter = notify
                .adapter
                .as_ref()
                .map_or("another chat", |a| a.as_str());
            format!(
                "Asked for in {} room `{room}`{by}, where I can't answer, so I answer here.",
                escape(adapter)
            )
        }
    })
}

/// A parse error as chat shows it: what is wrong, then how to put it right.
pub fn parse_error(error: &ParseError) -> String {
    let (message, hint) = parse_error_text(error);
    format!("{} {}", sentence(&escape(&message)), escape(&hint))
}

/// `zbot parse`'s answer for a message: (exit code, JSON) — 0 and the command, 1 and `{error, hint}`,
/// 3 and `null` when the message is not for the bot. The JSON is a contract shared with other tools.
pub fn parse_outcome(
    parsed: Option<Result<crate::command::Command, ParseError>>,
) -> (u8, serde_json::Value) {
    match parsed {
        Some(Ok(command)) => (0, command.to_json()),
        Some(Err(error)) => {
            let (message, hint) = parse_error_text(&error);
            (1, serde_json::json!({"error": message, "hint": hint}))
        }
        None => (3, serde_json::Value::Null),
    }
}

/// A parse error as (what is wrong, how to put it right), plain: also `zbot parse`'s `error` and `hint`.
pub fn parse_error_text(error: &ParseError) -> (String, String) {
    use crate::command::grammar::{VERBS, usage};
    let usage_of = |verb: &str| usage(verb).to_string();
    match error {
        ParseError::NoCommand => ("there is no command".into(), "try `help`".into()),
        ParseError::Unexpected { word, verb } => {
            (format!("I did not expect `{word}` there"), usage_of(verb))
        }
        ParseError::UnknownVerb { verb, suggestion } => (
            format!("I don't know the command `{verb}`"),
            match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => "try `help`".into(),
            },
        ),
        ParseError::TakesNoArguments { verb, got } => (
            format!("`{verb}` takes no arguments, but I got `{got}`"),
            usage_of(verb),
        ),
        ParseError::Invalid { verb, invalid } => (invalid.to_string(), usage_of(verb)),
        ParseError::NeedsApp { verb } => (format!("`{verb}` needs an app name"), usage_of(verb)),
        ParseError::CharacterInApp { verb, character } => (
            format!("`{character}` is not allowed in an app name"),
            usage_of(verb),
        ),
        ParseError::ExpectedEnvironment { verb, keyword } => (
            format!("I expected an environment after `{keyword}`"),
            usage_of(verb),
        ),
        ParseError::TakesNoHosts { verb } => (format!("`{verb}` takes no hosts"), usage_of(verb)),
        ParseError::DidYouMeanKeyword { word, keyword } => (
            format!("I don't understand `{word}`"),
            format!("did you mean `{keyword}`? {}", usage("deploy")),
        ),
        ParseError::EnvironmentNeedsKeyword { word } => (
            format!("I don't understand `{word}`"),
            format!("to name an environment, write `to {word}`"),
        ),
        ParseError::NotOneTimePassword { word } => (
            format!("`{word}` is not a one-time password"),
            "a one-time password is 6 digits or a 32–64 character yubikey code".into(),
        ),
        ParseError::WhereOnly => (
            "I only know `where can i deploy <app>`".into(),
            usage_of("where"),
        ),
        ParseError::ControlInReason => (
            "a lock reason cannot contain control characters".into(),
            usage_of("lock"),
        ),
        ParseError::RefNotAllowed { verb } => (
            format!("`{verb}` works on an environment, not a ref"),
            usage_of(verb),
        ),
        ParseError::NotADeploymentNumber { digits } => (
            format!("`{digits}` is not a deployment number"),
            usage_of("cancel"),
        ),
        ParseError::NoHelpOn { topic, suggestion } => (
            format!("I have no help on `{topic}`"),
            match suggestion {
                Some(verb) => format!("did you mean `help {verb}`?"),
                None => format!("I have help on: {}", VERBS.join(", ")),
            },
        ),
        ParseError::NotATime { word } => (
            format!("`{word}` is not a time of day"),
            "write `until 18:00` (24-hour clock, `00:00` to `24:00`, the end of the day), or a duration like `2h`".into(),
        ),
        ParseError::DurationOutOfRange { word } => (
            format!(
                "`{word}` is out of range: a freeze or lock lasts from 1m to {}d, zbot's own limit",
                crate::command::grammar::MAX_MINUTES / (24 * 60)
            ),
            "for longer, add a closed period to the environment's `[windows.<env>]` in bot.toml".into(),
        ),
        ParseError::NotADuration { word } => (
            format!("`{word}` is not a duration I know"),
            "write days, hours and minutes as `1d`, `2h`, `30m` or `1h30m`".into(),
        ),
        ParseError::NeedsRequestNumber { verb } => (
            format!("`{verb}` needs the number of a waiting request"),
            usage_of(verb),
        ),
        ParseError::NotifyOnly => (
            "I only know `notify me when <env> is free`".into(),
            usage_of("notify"),
        ),
    }
}

pub fn denial(denial: &Denial) -> String {
    match denial {
        Denial::UnknownApp { typed, suggestion } => match suggestion {
            Some(s) => format!(
                "`{}`? Never heard of it. Did you mean `{s}`?",
                escape(typed)
            ),
            None => format!(
                "`{}`? Never heard of it. `where can i deploy <app>` needs an app from bot.toml.",
                escape(typed)
            ),
        },
        Denial::UnknownEnvironment {
            app,
            typed,
            known,
            suggestion,
        } => {
            let mut text = format!(
                "{app} doesn't have a `{}` environment. It has: {}",
                escape(typed.as_str()),
                sentence(&names(known))
            );
            if let Some(s) = suggestion {
                text.push_str(&format!(" Did you mean `{s}`?"));
            }
            text
        }
        Denial::NoSuchEnvironment {
            typed,
            known,
            suggestion,
            app,
        } => {
            let mut text = format!(
                "No app has a `{}` environment. There are: {}",
                escape(typed.as_str()),
                sentence(&names(known))
            );
            if let Some(s) = suggestion {
                text.push_str(&format!(" Did you mean `{s}`?"));
            }
            if let Some(app) = app {
                text.push_str(&format!(
                    " `{app}` is an app: name its environment, as in `{app} in {}`.",
                    suggestion
                        .as_ref()
                        .or(known.first())
                        .map_or("production", Environment::as_str)
                ));
            }
            text
        }
        Denial::FreezesUnreadable => {
            "I could not read the freezes, so I can't tell whether that environment is frozen and did nothing. Try again in a moment.".to_string()
        }
        Denial::UnknownRepository { repository } => format!(
            "No app in bot.toml deploys {}: add an `[apps.<name>]` with `repository = \"{}\"`.",
            escape(repository.as_str()),
            escape(repository.as_str())
        ),
        Denial::LocksUnreadable => {
            "I couldn't read the locks, so I can't tell whether that environment is locked. Try again in a moment.".to_string()
        }
        Denial::ChannelNotAllowed { app } => {
            format!("{app} is not allowed to be deployed from this channel.")
        }
        Denial::UserNotAllowed { app, environment } => {
            format!("You are not allowed to deploy {app} to *{environment}*.")
        }
        Denial::Locked { lock, time_zone } => locked_in_chat(lock, *time_zone),
        Denial::NotLockHolder(lock) => unlock_denied(lock),
        Denial::Closed {
            closure,
            tried_override,
        } => {
            let mut text = sentence(&closure_text(closure, true));
            if *tried_override {
                text.push_str(" Only an admin can deploy through it with `deploy!`.");
            } else {
                text.push_str(" An admin can deploy through it with `deploy!`.");
            }
            text
        }
        Denial::NotAdmin { what } => format!("Only an admin can `{what}`."),
        Denial::RequestDecided(request) => match request.state {
            RequestState::Expired => format!("Deploy request #{} expired; nothing was deployed.", request.id),
            state => format!(
                "Deploy request #{} was already {} by {}.",
                request.id,
                state.as_str(),
                request.decided_by.as_deref().map_or_else(|| "someone".into(), user)
            ),
        },
        Denial::RequestExpired { id } => {
            format!("Deploy request #{id} has expired; nothing was deployed.")
        }
        Denial::OwnRequest { id } => format!(
            "You asked for deploy request #{id}, so you can't approve it yourself: someone else has to."
        ),
        Denial::NotApprover { id, approvers } => format!(
            "You are not one of the approvers of deploy request #{id}: {}.",
            approvers.iter().map(|a| user(a)).collect::<Vec<_>>().join(", ")
        ),
        Denial::NeedsApproval => {
            "This deploy needs approval first: ask for it in chat (`deploy …`), and someone approves it.".into()
        }
        Denial::GrantNotValid => "This deployment carries a zbot grant that is not its own (used by another deployment, expired, or made for another commit): ask again in chat.".into(),
        Denial::ApprovedAnotherSha { approved } => format!(
            "The approval was for commit `{}`, not this one: a new commit needs a new approval.",
            short(approved.as_str())
        ),
        Denial::NotFreezeHolder(freeze) => format!(
            "Only {} or an admin can lift that freeze of {}.",
            user(&freeze.holder),
            freeze_scope(freeze)
        ),
        Denial::HerokuHosts { .. } | Denial::HerokuTask { .. } | Denial::NoDryRun { .. } => {
            sentence(&denial_plain(denial))
        }
    }
}

/// A time for people with its date, in `zone`, with the zone's name: "Mon Nov 30 18:00 CET".
pub fn dated(at: chrono::DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    at.with_timezone(&zone)
        .format("%a %b %-d %H:%M %Z")
        .to_string()
}

/// A time for people: "18:00" today, "Dec 1 18:00" otherwise, in `zone`, with the zone's name.
pub fn when(at: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    let local = at.with_timezone(&zone);
    let time = if local.date_naive() == now.with_timezone(&zone).date_naive() {
        local.format("%H:%M").to_string()
    } else {
        local.format("%a %b %-d %H:%M").to_string()
    };
    format!("{time} {}", local.format("%Z"))
}

/// "adxstat in production" or "production (every app)".
fn freeze_scope(freeze: &Freeze) -> String {
    match &freeze.app {
        Some(app) => format!("{app} in {}", freeze.environment),
        None => format!("{} (every app)", freeze.environment),
    }
}

/// Why an environment is closed: who froze it, why and until when, or its window. `chat`: mentions
/// and mrkdwn; otherwise plain (a GitHub status).
pub fn closure_text(closure: &Closure, chat: bool) -> String {
    let who = |id: &str| if chat { user(id) } else { id.to_string() };
    let text = |t: &str| if chat { escape(t) } else { t.to_string() };
    match closure {
        Closure::Frozen {
            freeze,
            time_zone: zone,
        } => {
            let zone = *zone;
            let mut line = format!(
                "{} is frozen by {}",
                freeze_scope(freeze),
                who(&freeze.holder)
            );
            match freeze.until {
                Some(until) => {
                    line.push_str(&format!(" until {}", when(until, freeze.created_at, zone)))
                }
                None => line.push_str(" until someone unfreezes it"),
            }
            if let Some(reason) = &freeze.reason {
                line.push_str(&format!(": {}", text(reason)));
            }
            line
        }
        Closure::OutsideWindow {
            environment,
            window,
            opens,
            shown_in,
        } => {
            let mut line = format!(
                "{environment} is outside its deploy window ({} {}–{} {})",
                days(&window.days),
                window.open.format("%H:%M"),
                window.close.format("%H:%M"),
                window.time_zone.name()
            );
            if let Some(opens) = opens {
                line.push_str(&format!(
                    "; it opens {}",
                    in_both(*opens, window.time_zone, *shown_in)
                ));
            }
            line
        }
        Closure::ClosedPeriod {
            environment,
            period,
            time_zone,
            shown_in,
        } => {
            let until = crate::clock::instant(*time_zone, period.until);
            let mut line = format!(
                "{environment} is closed until {}",
                in_both(until, *time_zone, *shown_in)
            );
            if !period.reason.is_empty() {
                line.push_str(&format!(": {}", text(&period.reason)));
            }
            line
        }
    }
}

/// A time in the zone a rule was written in, and in `[bot] time_zone` too when that shows another
/// clock: "Mon Nov 30 09:00 EST (15:00 CET)".
fn in_both(at: chrono::DateTime<Utc>, zone: chrono_tz::Tz, shown_in: chrono_tz::Tz) -> String {
    let there = dated(at, zone);
    let here = at.with_timezone(&shown_in);
    if here.naive_local() == at.with_timezone(&zone).naive_local() {
        return there;
    }
    let here = if here.date_naive() == at.with_timezone(&zone).date_naive() {
        here.format("%H:%M %Z").to_string()
    } else {
        dated(at, shown_in)
    };
    format!("{there} ({here})")
}

/// "Mon–Fri", or the days listed.
fn days(days: &[chrono::Weekday]) -> String {
    use chrono::Weekday::*;
    if days == [Mon, Tue, Wed, Thu, Fri] {
        return "Mon–Fri".into();
    }
    days.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A freeze taken; `overlapping`: others' freezes that already hold some of its scope, each named
/// (who, until when, why), as each holds until it ends or is lifted.
pub fn frozen(
    freeze: &Freeze,
    overlapping: &[Freeze],
    now: chrono::DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> String {
    let mut text = format!(":snowflake: Froze {} for deploys", freeze_scope(freeze));
    text.push_str(&freeze_end(freeze, now, zone));
    if let Some(reason) = &freeze.reason {
        text.push_str(&format!(": {}", escape(reason)));
    }
    let mut text = sentence(&text);
    for other in overlapping {
        let mut also = format!(
            " Also frozen: {} by {}{}",
            freeze_scope(other),
            user(&other.holder),
            freeze_end(other, now, zone)
        );
        if let Some(reason) = &other.reason {
            also.push_str(&format!(": {}", escape(reason)));
        }
        text.push_str(&sentence(&also));
    }
    text
}

/// " until 18:00 CET", or " until `unfreeze`".
fn freeze_end(freeze: &Freeze, now: chrono::DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    match freeze.until {
        Some(until) => format!(" until {}", when(until, now, zone)),
        None => " until `unfreeze`".into(),
    }
}

/// `freeze` of what the person had frozen already: their freeze now ends at the later end.
pub fn freeze_extended(
    freeze: &Freeze,
    before: &Freeze,
    now: chrono::DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> String {
    let mut text = if freeze.until == before.until {
        format!(
            ":snowflake: You had frozen {} already; it stays frozen{}",
            freeze_scope(freeze),
            freeze_end(freeze, now, zone)
        )
    } else {
        format!(
            ":snowflake: Extended your freeze of {}{} (it was{})",
            freeze_scope(freeze),
            freeze_end(freeze, now, zone),
            freeze_end(before, now, zone)
        )
    };
    if let Some(reason) = &freeze.reason {
        text.push_str(&format!(": {}", escape(reason)));
    }
    sentence(&text)
}

/// A freeze to extend was lifted in the meantime.
pub fn freeze_gone(freeze: &Freeze) -> String {
    format!(
        "Your freeze of {} was lifted just now, so I did not extend it: freeze again if you still want it.",
        freeze_scope(freeze)
    )
}

/// Freezes lifted from `app` (`None`: every app) in `environment`; `still`: freezes that still hold
/// there, of a wider scope (`unfreeze adxstat in production` leaves a freeze of all of production).
pub fn unfrozen(
    lifted: &[Freeze],
    still: &[Freeze],
    app: Option<&AppName>,
    environment: &Environment,
) -> String {
    let mut text = match lifted {
        [] => format!(
            "{} was not frozen: there was nothing to unfreeze.",
            scope_text(app, environment)
        ),
        many => format!(
            "Unfroze {}.",
            many.iter().map(freeze_scope).collect::<Vec<_>>().join(", ")
        ),
    };
    for other in still {
        text.push_str(&format!(
            " {} is still frozen by {}: `unfreeze {}` lifts it.",
            freeze_scope(other),
            user(&other.holder),
            other.environment
        ));
    }
    text
}

/// What an admin's `deploy!` overrides, said in the thread before the deploy: every closure that
/// holds, each named.
pub fn overriding(closures: &[Closure], admin: &str) -> String {
    match closures {
        [one] => format!(
            ":warning: {} is deploying through this: {}",
            user(admin),
            sentence(&closure_text(one, true))
        ),
        many => format!(
            ":warning: {} is deploying through all of these:\n{}",
            user(admin),
            many.iter()
                .map(|c| format!("• {}", sentence(&closure_text(c, true))))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The same for the GitHub status description (within `room` characters: whole closures while they
/// fit, then "+N more"; the first is cut to fit if it must) and the log (`usize::MAX`).
pub fn overridden_plain(closures: &[Closure], admin: &str, room: usize) -> String {
    let texts: Vec<String> = closures.iter().map(|c| closure_text(c, false)).collect();
    let said = |shown: &[String], left: usize| {
        let more = if left > 0 {
            format!("; +{left} more")
        } else {
            String::new()
        };
        format!("override by {admin} ({}{more})", shown.join("; "))
    };
    for shown in (1..=texts.len()).rev() {
        let text = said(&texts[..shown], texts.len() - shown);
        if text.chars().count() <= room {
            return text;
        }
    }
    // Not even the first fits whole: it is cut, and what follows is still counted.
    let Some((first, rest)) = texts.split_first() else {
        return said(&[], 0);
    };
    let frame = said(&[String::new()], rest.len()).chars().count();
    let cut = crate::forge::truncate(first, room.saturating_sub(frame).max(1));
    said(&[cut], rest.len())
}

fn names<T: std::fmt::Display>(list: &[T]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The message a slash command's thread hangs under: "<@U0BOB> ran `/deploy adxstat`".
pub fn slash_command_ran(user_id: &str, command: &str, text: &str) -> String {
    format!(
        "{} ran `{command} {}`",
        user(user_id),
        escape(text.trim_matches(crate::domain::is_space))
    )
}

/// The store could not be read or written: say so without its internals, and what to do.
pub fn store_unavailable() -> String {
    "I couldn't reach my database just now, so I did nothing. Try again in a moment.".to_string()
}

/// `cancel` found nothing to stop.
pub fn nothing_to_cancel(app: &AppName, environment: &Environment) -> String {
    format!("Nothing of {app} is queued or running on *{environment}*.")
}

/// The reason a cancelled deployment ends with (its status description).
pub fn cancelled_by(who: &str) -> String {
    format!("Cancelled by {who}")
}

/// `cancel` stopped a deployment that was waiting.
pub fn cancelled_queued(id: crate::domain::DeploymentId) -> String {
    format!("Deployment #{id} was waiting; it will not run.")
}

/// `cancel` is stopping a running deployment.
pub fn cancelled_running(id: crate::domain::DeploymentId) -> String {
    format!("Stopping deployment #{id}.")
}

/// `cancel` named a deployment that is not queued or running.
pub fn not_cancellable(id: crate::domain::DeploymentId) -> String {
    format!("Deployment #{id} is not queued or running.")
}

/// `rollback` with fewer than two successful deploys.
pub fn nothing_to_roll_back_to(app: &AppName, environment: &Environment) -> String {
    format!("There is no earlier successful deploy of {app} to *{environment}* to roll back to.")
}

/// What `rollback` is about to do.
pub fn rolling_back(
    app: &AppName,
    environment: &Environment,
    from: &GitRef,
    to: &GitRef,
) -> String {
    format!(
        "Rolling {app} on *{environment}* back from `{}` to `{}`.",
        escape(from.as_str()),
        escape(to.as_str())
    )
}

/// `deploys` when the forge cannot list them.
pub fn deployments_unlisted(app: &AppName, error: &impl std::fmt::Display) -> String {
    format!(
        "I couldn't list the deployments of {app}: {}",
        escape(&error.to_string())
    )
}

/// The `in_progress` status: "Deploying v0.0.1 (f95f852) to production" ("Dry run of … on …" for
/// `deploy:noop`).
pub fn deploying(d: &crate::store::Deployment) -> String {
    let (git_ref, sha, environment) = (&d.git_ref, d.sha.short(), &d.environment);
    if d.task.is_noop() {
        format!("Dry run of {git_ref} ({sha}) on {environment}")
    } else {
        format!("Deploying {git_ref} ({sha}) to {environment}")
    }
}

/// The `success` status: "Deployed v0.0.1 (f95f852) to production in 12s" (a dry run says that
/// nothing was deployed).
pub fn deployed(d: &crate::store::Deployment, took: &str) -> String {
    let (git_ref, sha, environment) = (&d.git_ref, d.sha.short(), &d.environment);
    if d.task.is_noop() {
        format!(
            "Dry run of {git_ref} ({sha}) on {environment} passed in {took}; nothing was deployed"
        )
    } else {
        format!("Deployed {git_ref} ({sha}) to {environment} in {took}")
    }
}

/// `failure`: the deploy program exited with an error code.
pub fn exited(program: &str, code: i32, took: &str) -> String {
    format!("{program} exited with code {code} after {took}")
}

/// `failure`: the deploy program was killed by a signal it did not get from zbot.
pub fn killed(program: &str, signal: i32, took: &str) -> String {
    format!("{program} was killed by signal {signal} after {took}")
}

/// `error`: zbot was restarted (or stopped) while running the deploy; its processes were stopped.
pub const RESTARTED: &str = "zbot restarted during this deploy";

/// `error`, said by another instance: the instance running the deploy stopped renewing its lease
/// (dead, paused, cut off). Its processes are stopped when that instance notices (a paused one, as it
/// continues) or dies; on the same machine the instance taking over stops them itself.
pub fn instance_stopped(instance: Option<&crate::domain::InstanceId>) -> String {
    match instance {
        Some(instance) => format!(
            "the zbot instance running this deploy stopped ({instance}); its processes may still run on its machine"
        ),
        None => "the zbot instance running this deploy stopped".to_string(),
    }
}

/// `error`, said by the instance that ran the deploy: it could not record the deploy's end while the
/// store did not answer, so the outcome was never reported.
pub const STORE_LOST: &str =
    "this zbot instance could not reach the store to record how the deploy ended";

/// `error`, said by the instance that claimed the deploy: the store did not answer before it could
/// start, so it never ran.
pub const STORE_LOST_BEFORE_START: &str =
    "this zbot instance could not reach the store before starting the deploy; it did not run";

/// `error`: the deploy's guard killed it because this instance did not renew its lease in time
/// (starved, or cut off from the store); not the deploy's failure, so nothing is locked.
pub const STOPPED_BY_GUARD: &str = "stopped by its guard (lease not renewed in time)";

/// `error`: a deploy on a store shared by several instances does not run without its guard, which
/// kills it if this instance stops holding its lease; `why` it could not be started.
pub fn guard_not_started(why: &str) -> String {
    format!(
        "not run: its guard (which stops it if this zbot instance loses its lease) could not be started: {why}"
    )
}

/// `error`: this instance stops a deploy whose lease it lost (it was paused, or cut off from the
/// store, past its lease, and another instance may have ended it already).
pub const LEASE_LOST: &str = "this zbot instance lost its claim on the deploy (paused or cut off from the store past its lease)";

/// `error`: zbot itself failed while running the deploy (a bug); the deploy was stopped.
pub fn zbot_failed() -> &'static str {
    "zbot failed while running this deploy (a bug: see zbot's log); it was stopped"
}

/// `error`: the deploy ran past its timeout and was stopped.
pub fn timed_out(limit: std::time::Duration) -> String {
    format!(
        "Timed out after {}: the deploy was stopped",
        human_duration(limit)
    )
}

/// Deploy log: a process the deploy left outside its process group (`process` is "pid 4242 (sleep
/// 600)"), and what zbot did with it once the deploy's program had ended. `grace` is how long it had
/// between SIGTERM and SIGKILL.
pub fn left_behind(process: &str, ending: LeftBehind, grace: std::time::Duration) -> String {
    let what = match ending {
        LeftBehind::Stopped => "stopped (SIGTERM)".to_string(),
        LeftBehind::Killed => format!(
            "killed (SIGKILL): still running {} after SIGTERM",
            human_duration(grace)
        ),
        LeftBehind::StillRunning => "still running after SIGKILL".to_string(),
        LeftBehind::Kept => {
            "left running: the recipe keeps the processes it starts (keep_children = true)"
                .to_string()
        }
    };
    format!("{process} left the deploy's process group and outlived its program: {what}")
}

/// Deploy log: a process still running in the deploy's own process group when its program ended.
pub fn left_in_group(process: &str) -> String {
    format!(
        "{process} was still running in the deploy's process group when its program ended: stopped (SIGKILL)"
    )
}

/// What zbot did with a process a deploy left behind ([`left_behind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftBehind {
    Stopped,
    Killed,
    StillRunning,
    Kept,
}

/// Deploy log: output that went on arriving after the program ended was not written.
pub fn output_dropped(grace: std::time::Duration) -> String {
    format!(
        "output still arriving {} after the deploy's program ended was dropped: a process it left running holds it open",
        human_duration(grace)
    )
}

/// `error`: zbot could not create the deploy's log file.
pub fn log_unwritable(path: &std::path::Path, error: &std::io::Error) -> String {
    format!("zbot cannot write the log {}: {error}", path.display())
}

/// `error`: the working tree could not be prepared.
pub fn checkout_failed(error: &impl std::fmt::Display) -> String {
    format!("Checkout failed: {error}")
}

/// `error`: a recipe would not render for this deployment, so nothing ran: a value its tool cannot be
/// given as typed, a placeholder without a value, or a host limit the recipe cannot pass on.
pub fn recipe_refused(recipe: &str, error: &RenderError) -> String {
    let why = match error {
        RenderError::NoValue { placeholder } => format!(
            "it uses {{{}}}, which this deploy has no value for",
            placeholder.name()
        ),
        RenderError::NoDryRun => format!(
            "it declares no dry run (`noop_task`), and a `deploy:noop` must not deploy for real: give \
             {recipe}.toml in the recipes directory (`recipes_dir`, or commands/ beside bot.toml, which \
             replaces a stock recipe of that name) a `noop_task`, or deploy without `:noop`"
        ),
        RenderError::HostsNotTaken => format!(
            "it cannot limit a deploy to some hosts (the recipe has no {{hosts}}): deploy to the whole \
             environment, or add {{hosts}} to {recipe}.toml in the recipes directory (`recipes_dir`, or \
             commands/ beside bot.toml, which replaces a stock recipe of that name)"
        ),
        RenderError::Unrepresentable {
            placeholder,
            value,
            quote,
            why,
        } => {
            let value: String = value
                .chars()
                .take(60)
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
            let tool = quote.tool();
            let why = match why {
                Unrepresentable::Empty => "it is empty".to_string(),
                Unrepresentable::List => format!("{tool} takes one name there, not a list"),
                Unrepresentable::Dot => format!("{tool} reads `.` in a task name as a namespace"),
                Unrepresentable::TrailingBackslash { before } => {
                    format!("{tool} would read its last `\\` as escaping the `{before}` after it")
                }
                Unrepresentable::Separator(c) => {
                    format!("`{c}` separates the names of that list for {tool}")
                }
                Unrepresentable::Character(c) => {
                    format!(
                        "{tool} reads `{}` there as its own syntax",
                        c.escape_default()
                    )
                }
                Unrepresentable::Reserved(word) => {
                    format!("{tool} reads `{word}` as a group of hosts, not as one host")
                }
            };
            format!(
                "{} `{value}` cannot be given to {tool} as typed: {why}",
                placeholder_noun(*placeholder)
            )
        }
    };
    format!("Refused to run recipe {recipe}: {why}")
}

/// "the ref", "the hosts", … for sentences about a recipe's values.
fn placeholder_noun(placeholder: Placeholder) -> &'static str {
    match placeholder {
        Placeholder::Environment => "the environment",
        Placeholder::Ref => "the ref",
        Placeholder::Sha => "the sha",
        Placeholder::Task => "the task",
        Placeholder::Hosts => "the hosts",
        Placeholder::App => "the app",
        Placeholder::Repository => "the repository",
        Placeholder::DeploymentId => "the deployment id",
    }
}

/// `success` of Heaven's `deploy:lock` / `deploy:unlock` tasks: "adxstat locked on production by
/// U0ALICE" (plain, for GitHub; chat says it with a mention).
pub fn lock_task_done(d: &crate::store::Deployment, locked: bool) -> String {
    let what = if locked { "locked" } else { "unlocked" };
    format!("{} {what} on {} by {}", d.app, d.environment, d.actor)
}

/// `error`: the store would not change a lock.
pub fn lock_unchangeable() -> String {
    "zbot cannot change the lock just now: try again in a moment".to_string()
}

/// A deployment whose app is no longer in bot.toml.
pub fn no_app_for(repository: &crate::domain::Repository) -> String {
    format!("zbot has no app for {repository}: add it to bot.toml")
}

/// The `queued` status of a waiting deployment (plain, for GitHub and the status message).
pub fn queued(d: &crate::store::Deployment, ahead: i64, concurrency: usize) -> String {
    if ahead > 0 {
        format!(
            "Queued: {ahead} deploy(s) of {} to {} ahead",
            d.repository, d.environment
        )
    } else {
        format!("Queued: waiting for a free slot ({concurrency} deploys running)")
    }
}

/// A denial in plain text, for a GitHub status description (no mrkdwn, no mentions).
pub fn denial_plain(denial: &Denial) -> String {
    match denial {
        Denial::UnknownApp { typed, .. } => format!("no app named `{typed}` in bot.toml"),
        Denial::UnknownEnvironment {
            app, typed, known, ..
        } => format!(
            "`{typed}` is not one of {app}'s environments: {}",
            names(known)
        ),
        Denial::NoSuchEnvironment { typed, known, .. } => {
            format!("no app has a `{typed}` environment: {}", names(known))
        }
        Denial::FreezesUnreadable => {
            "zbot could not read its freezes, so it does not deploy: try again".to_string()
        }
        Denial::UnknownRepository { repository } => {
            format!("no app in zbot's bot.toml deploys {repository}: add one")
        }
        Denial::ChannelNotAllowed { app } => {
            format!("{app} may not be deployed from that channel")
        }
        Denial::UserNotAllowed { app, environment } => {
            format!("that user may not deploy {app} to {environment}")
        }
        Denial::Locked { lock, time_zone } => locked(lock, *time_zone),
        Denial::Closed { closure, .. } => closure_text(closure, false),
        Denial::NotFreezeHolder(freeze) => {
            format!("only {} or an admin can lift that freeze", freeze.holder)
        }
        Denial::NotAdmin { what } => format!("only an admin can {what}"),
        Denial::RequestDecided(request) => {
            format!("request #{} is {}", request.id, request.state.as_str())
        }
        Denial::RequestExpired { id } => format!("request #{id} expired"),
        Denial::OwnRequest { id } => format!("the requester cannot approve request #{id}"),
        Denial::NotApprover { id, .. } => format!("not an approver of request #{id}"),
        Denial::NeedsApproval => {
            "this environment needs an approval given in zbot's chat before a deploy runs".into()
        }
        Denial::GrantNotValid => "its zbot grant was used by another deployment, expired or is for another commit: ask again in chat".into(),
        Denial::ApprovedAnotherSha { approved } => format!(
            "the approval was for {}, not this commit: a new commit needs a new approval",
            short(approved.as_str())
        ),
        Denial::NotLockHolder(lock) => format!(
            "only {} or an admin can unlock {} on {}",
            lock.holder, lock.app, lock.environment
        ),
        Denial::LocksUnreadable => {
            "zbot cannot read its locks, so it does not deploy: try again".to_string()
        }
        Denial::HerokuHosts { app } => format!(
            "{app} is built by Heroku, which deploys the whole app: it takes no host limit (`to <env>/<hosts>`)"
        ),
        Denial::HerokuTask { app, task } => format!(
            "{app} is built by Heroku, which only builds and releases: it takes no `{task}` task, only `deploy`"
        ),
        Denial::NoDryRun { recipe: None, .. } => HEROKU_NO_DRY_RUN.to_string(),
        Denial::NoDryRun {
            recipe: Some(recipe),
            ..
        } => recipe_refused(recipe, &RenderError::NoDryRun),
    }
}

/// Why a dry run of an app Heroku builds is refused, in chat before it is created and by the
/// runner for one made elsewhere.
pub const HEROKU_NO_DRY_RUN: &str = "Heroku's Platform API has no dry run, and a build would deploy for real: deploy without `:noop`";

/// Why a deployment from GitHub was refused, in plain text (the GitHub status, logs, the webhook answer).
pub fn refusal_plain(refusal: &Refusal) -> String {
    match &refusal.why {
        Why::Invalid(invalid) => format!("zbot refused this deployment: {invalid}"),
        Why::Denied(denial) => denial_plain(denial),
        Why::NoCloneUrl => format!(
            "zbot does not know where to fetch {} from: set clone_url in bot.toml",
            refusal.repository_text
        ),
        Why::TooOld { age, max_age } => format!(
            "created {} ago, older than [github] poll_max_age = {}; deploy again",
            coarse_duration(*age),
            crate::config::HumanDuration(*max_age)
        ),
    }
}

/// The same for chat (the default channel), with everything from outside escaped.
pub fn refusal_in_chat(refusal: &Refusal) -> Message {
    Message::text(format!(
        ":warning: I did not run deployment #{} of {}: {}",
        refusal.deployment_id,
        escape(&refusal.repository_text),
        sentence(&escape(&refusal_plain(refusal)))
    ))
}

pub fn refused(refusal: &Refused, app: &str, repository: &str) -> String {
    match refusal {
        Refused::FailedContexts { contexts } if contexts.is_empty() => {
            format!(
                "Commit status checks failed for {app}. Fix them, or use `deploy!` to skip them."
            )
        }
        Refused::FailedContexts { contexts } => {
            let failing: Vec<String> = contexts
                .iter()
                .filter(|(_, state)| state != "success")
                .map(|(context, state)| format!("{} ({})", escape(context), escape(state)))
                .collect();
            format!(
                "Unmet required commit status contexts for {app}: {} Fix them, or use `deploy!` to skip them.",
                sentence(&failing.join(", "))
            )
        }
        Refused::MergeConflict(message) => format!(
            "GitHub could not merge the default branch into this ref: {} Merge it yourself, or deploy with `deploy!` (no auto-merge).",
            sentence(&escape(message))
        ),
        Refused::Validation(message) => {
            format!(
                "GitHub refused the deployment: {}",
                sentence(&escape(message))
            )
        }
        Refused::NotFound => format!(
            "I can't create deployments on {repository}: the token needs the `repo_deployment` scope (classic token) \
             or \"Deployments: write\" (fine-grained token or GitHub App) on that repository."
        ),
        Refused::Unauthorized(message) => {
            format!(
                "GitHub rejected zbot's token ({}): check `[github] token` in bot.toml.",
                escape(message)
            )
        }
        Refused::Other { status, message } => {
            format!("GitHub answered {status}: {}", sentence(&escape(message)))
        }
        Refused::UnknownRef {
            git_ref,
            repository,
        } => format!(
            "`{}` is not a branch, a tag or a commit of {repository}.",
            escape(git_ref.as_str())
        ),
        Refused::ShortSha {
            prefix,
            repository,
            matches: 0,
        } => format!(
            "`{prefix}` looks like an abbreviated sha, but no branch or tag of {repository} is at a commit \
             that starts with it, and I can only look those up: use the full sha, or a branch or tag."
        ),
        Refused::ShortSha {
            prefix,
            repository,
            matches,
        } => format!(
            "`{prefix}` is the start of {matches} commits of {repository}: use the full sha, or a branch or tag."
        ),
        Refused::UnknownCommit { sha, repository } => {
            format!("{repository} has no commit `{sha}`: check the sha, or deploy a branch or tag.")
        }
        Refused::Unreachable(reason) => format!(
            "I couldn't reach GitHub, even after retrying: {}",
            sentence(&escape(reason))
        ),
        Refused::NoRepository { url, reason } => format!(
            "I can't read the repository at `{}`: {} Make it (for the example app: `zbot shell` makes it when it \
             starts, or `examples/adxstat/make-repo {}`), or point the app's `clone_url` at your repository.",
            escape(url),
            sentence(&escape(reason)),
            escape(url)
        ),
        Refused::Store(reason) => format!(
            "I couldn't record the deployment: {}",
            sentence(&escape(reason))
        ),
        Refused::Unanswered(error) => format!(
            "{}, so I can't tell whether it made the deployment. If it did, the deploy will show up in this thread; if nothing does, try again.",
            escape(&no_answer(error))
        ),
    }
}

/// Why a deploy ended without running: GitHub could not be told it started (the `in_progress`
/// status, or the log gist before it). For the GitHub status and the thread.
pub fn github_unanswered(error: &ForgeError) -> String {
    format!("{}, so zbot did not start the deploy", no_answer(error))
}

/// GitHub's silence, plain: "GitHub did not answer within 30s".
fn no_answer(error: &ForgeError) -> String {
    match error {
        ForgeError::Timeout { after } => {
            format!("GitHub did not answer within {}", human_duration(*after))
        }
        ForgeError::Network(reason) => format!("GitHub could not be reached ({reason})"),
        other => other.to_string(),
    }
}

pub fn merged(message: &str) -> String {
    format!(
        "GitHub merged the default branch into the ref first (“{}”). Deploying the merged ref now.",
        escape(message)
    )
}

pub fn merged_again(message: &str) -> String {
    format!(
        "GitHub merged again (“{}”) instead of deploying. Try again in a moment.",
        escape(message)
    )
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn what(e: &DeploymentEvent) -> String {
    // A task other than a plain deploy is named: `deploy:migrate` adxstat `v1` (`f95f852`).
    let task = if e.task == crate::domain::Task::deploy() {
        String::new()
    } else {
        format!("`{}` ", e.task)
    };
    format!(
        "{task}{} `{}` (`{}`)",
        e.app,
        escape(e.git_ref.as_str()),
        e.sha.short()
    )
}

/// Where a deployment goes, as chat shows it: the environment, and the hosts it is limited to.
fn place(e: &DeploymentEvent) -> String {
    match &e.hosts {
        Some(hosts) => format!(
            "{}/{}",
            escape(e.environment.as_str()),
            escape(hosts.as_str())
        ),
        None => escape(e.environment.as_str()),
    }
}

/// The one status message per deployment, kept current as it moves; `running_for` while it runs.
pub fn status(e: &DeploymentEvent, running_for: Option<std::time::Duration>) -> Message {
    let (emoji, state) = match e.state {
        StatusState::Pending => (":hourglass_flowing_sand:", "requested".to_string()),
        StatusState::Queued => (":double_vertical_bar:", escape(&e.description)),
        StatusState::InProgress => match running_for {
            Some(elapsed) => (
                ":rocket:",
                format!("deploying… {}", human_duration(elapsed)),
            ),
            None => (":rocket:", "deploying…".to_string()),
        },
        StatusState::Success => (":white_check_mark:", description_in_chat(e)),
        StatusState::Failure => (":x:", format!("failed: {}", description_in_chat(e))),
        StatusState::Error => (":warning:", format!("error: {}", description_in_chat(e))),
    };
    let headline = format!(
        "*Deployment #{}*: {} to *{}* for {}",
        e.deployment_id,
        what(e),
        place(e),
        user(&e.actor)
    );
    let mut detail = format!("{emoji} {state}");
    let link = log_link(e.log_url.as_deref());
    if !link.is_empty() {
        detail.push_str(&format!(" · {link}"));
    }
    let text = format!("{headline}\n{detail}");
    let blocks = serde_json::json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": detail}]},
    ]);
    Message {
        text,
        blocks: Some(blocks),
    }
}

/// Most characters of output a failure reply carries.
const TAIL_CHARS: usize = 2500;

/// The reply that tells how a deployment ended (a new message, so people are notified).
/// What a deploy shipped, for its success reply: "3 commits since the last deploy to production
/// (compare) by alice, bob:" and the first lines of at most five commit messages, escaped.
/// ` (<url|compare>)`, or nothing when the forge has no page for the comparison (the embedded forge).
fn compare_link(c: &crate::forge::Comparison) -> String {
    if c.url.is_empty() {
        String::new()
    } else {
        format!(" (<{}|compare>)", c.url)
    }
}

pub fn changes(changes: &crate::forge::Changes, e: &DeploymentEvent) -> String {
    use crate::forge::Changes;
    let commits = |n: u64| {
        if n == 1 {
            "1 commit".to_string()
        } else {
            format!("{n} commits")
        }
    };
    let list = |c: &crate::forge::Comparison, total: u64| {
        let mut lines: Vec<String> = c
            .commits
            .iter()
            .map(|(_, line)| format!("• {}", escape(line)))
            .collect();
        let more = total.saturating_sub(c.commits.len() as u64);
        if more > 0 {
            lines.push(format!("• …and {more} more"));
        }
        lines.join("\n")
    };
    match changes {
        Changes::First => format!("The first deploy of {} to {}.", e.app, e.environment),
        Changes::Same => format!(
            "The same commit as the last deploy to {}: nothing new.",
            e.environment
        ),
        Changes::Since(c) => {
            let mut authors: Vec<&str> = Vec::new();
            for login in c.commits.iter().filter_map(|(login, _)| login.as_deref()) {
                if !authors.contains(&login) {
                    authors.push(login);
                }
            }
            let by = if authors.is_empty() {
                String::new()
            } else {
                format!(
                    " by {}",
                    authors
                        .iter()
                        .map(|a| escape(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!(
                "{} since the last deploy to {}{}{by}:\n{}",
                commits(c.ahead_by),
                e.environment,
                compare_link(c),
                list(c, c.ahead_by)
            )
        }
        Changes::TookBack(c) => format!(
            "Took back {} from {}{}:\n{}",
            commits(c.ahead_by),
            e.environment,
            compare_link(c),
            list(c, c.ahead_by)
        ),
    }
}

pub fn outcome(e: &DeploymentEvent) -> Message {
    let who = user(&e.actor);
    let link = log_link(e.log_url.as_deref());
    let text = match e.state {
        StatusState::Success if e.task.is_lock() || e.task.is_unlock() => {
            format!("{} {link}", sentence(&description_in_chat(e)))
        }
        StatusState::Success if e.task.is_noop() => format!(
            "{who} {} on *{}*: {} {link}",
            what(e),
            place(e),
            sentence(&description_in_chat(e))
        ),
        StatusState::Success => format!(
            "{who} {} is on *{}*. {} {link}{}",
            what(e),
            place(e),
            description_in_chat(e),
            e.changes
                .as_ref()
                .map(|c| format!("\n{}", changes(c, e)))
                .unwrap_or_default()
        ),
        StatusState::Failure => {
            let mut tail: Vec<&str> = e.tail.iter().map(String::as_str).collect();
            let mut total: usize = tail.iter().map(|l| l.len() + 1).sum();
            while total > TAIL_CHARS && !tail.is_empty() {
                total -= tail.remove(0).len() + 1;
            }
            let mut text = format!(
                "{who} deploying {} to *{}* failed: {} {link}",
                what(e),
                place(e),
                sentence(&description_in_chat(e))
            );
            if !tail.is_empty() {
                text.push_str(&format!("\n```{}```", escape(&tail.join("\n"))));
            }
            text
        }
        _ => format!(
            "{who} {} was not deployed to *{}*: {} {link}",
            what(e),
            place(e),
            sentence(&description_in_chat(e))
        ),
    };
    Message::text(text.trim_end())
}

/// `deploys`: the recent deployments as a table, then who approved which; times in `zone` (one whose
/// timestamp did not read is shown as `?`).
pub fn deploys_table(
    app: &AppName,
    environment: Option<&Environment>,
    git_ref: Option<&GitRef>,
    rows: &[DeploymentSummary],
    approvals: &[Approved],
    now: chrono::DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> String {
    let mut title = format!("Recent deployments of {app}");
    if let Some(git_ref) = git_ref {
        title.push_str(&format!(" at `{}`", escape(git_ref.as_str())));
    }
    if let Some(env) = environment {
        title.push_str(&format!(" in {env}"));
    }
    if rows.is_empty() {
        return format!("{title}: none yet.");
    }
    let header = ["#", "who", "what", "task", "where", "state", "when"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                r.who.clone(),
                format!("{}({})", r.git_ref, short(&r.sha)),
                r.task.clone(),
                r.environment.clone(),
                r.state.clone(),
                r.created_at
                    .map_or_else(|| "?".to_string(), |at| when(at, now, zone)),
            ]
        })
        .collect();
    // Each column as wide as its widest cell, so long refs keep the table aligned.
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain(std::iter::once(header[i].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join(" ").trim_end().to_string()
    };
    let mut table = line(&header.map(String::from));
    for row in &cells {
        table.push('\n');
        table.push_str(&line(row));
    }
    let mut text = format!("{title}\n```{}```", escape(&table));
    for (id, approvers) in approvals {
        if !rows.iter().any(|r| &r.id == id) {
            continue;
        }
        let who: Vec<String> = approvers
            .iter()
            .map(|(a, at)| format!("{} ({})", user(a), when(*at, now, zone)))
            .collect();
        text.push_str(&format!("\n• #{id} approved by {}", who.join(", ")));
    }
    text
}

/// A deployment and who approved it, when.
pub type Approved = (
    crate::domain::DeploymentId,
    Vec<(String, chrono::DateTime<Utc>)>,
);

/// A deploy command with a one-time password: zbot has no verifier for them, so it says so rather than
/// accept a code it cannot check.
pub fn otp_not_checked() -> String {
    "I don't check one-time passwords (zbot has no verifier for them), so I won't deploy with one: \
     send the command again without it."
        .to_string()
}

/// `where can i deploy`: the app's environments, each with its lock, and what closes any of them now
/// (freezes, windows).
/// `where can i deploy`: the app's environments, each lock with its holder and start, then every
/// closure (each freeze: who, why, until when; a window) on its own line; times in `zone`.
pub fn environments(
    app: &AppName,
    environments: &[Environment],
    locks: &[Lock],
    closures: &[Closure],
    now: chrono::DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> String {
    let listed: Vec<String> = environments
        .iter()
        .map(|env| match locks.iter().find(|l| &l.environment == env) {
            Some(lock) => format!(
                "{env} (locked by {} since {})",
                user(&lock.holder),
                since(lock, now, zone)
            ),
            None => env.to_string(),
        })
        .collect();
    let mut text = format!("{app} can be deployed to {}", sentence(&listed.join(", ")));
    for closure in closures {
        text.push_str(&format!(
            "\n:snowflake: {}",
            sentence(&closure_text(closure, true))
        ));
    }
    text
}

/// Every lock, with its age, reason and end.
pub fn locks(locks: &[Lock], now: chrono::DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    if locks.is_empty() {
        return "No environment is locked.".into();
    }
    let lines: Vec<String> = locks
        .iter()
        .map(|l| {
            let age = human_duration((now - l.created_at).to_std().unwrap_or_default());
            let mut line = format!(
                "• {} is locked on *{}* by {} since {} (for {age}",
                l.app,
                l.environment,
                user(&l.holder),
                since(l, now, zone)
            );
            if let Some(end) = l.expires_at {
                line.push_str(&format!("; ends {}", when(end, now, zone)));
            }
            line.push(')');
            match &l.reason {
                Some(reason) => line.push_str(&lock_reason(reason, true)),
                None => line.push_str(": no reason given"),
            }
            line
        })
        .collect();
    format!("Locked environments:\n{}", lines.join("\n"))
}

pub fn lock_taken(lock: &Lock, now: chrono::DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    format!(
        "Locked {} on *{}*. Only {} can deploy there {}.",
        lock.app,
        lock.environment,
        user(&lock.holder),
        lock_until(lock, now, zone),
    )
}

/// Until when `lock` holds, in `zone`: its end (if it has one) or an `unlock`.
fn lock_until(lock: &Lock, now: chrono::DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    match lock.expires_at {
        Some(end) => format!(
            "until {} or `unlock {} in {}`",
            when(end, now, zone),
            lock.app,
            lock.environment
        ),
        None => format!("until `unlock {} in {}`", lock.app, lock.environment),
    }
}

/// `lock!` took another's lock: from whom, and until when the new one holds (as [`lock_taken`]).
pub fn lock_taken_over(
    lock: &Lock,
    previous: &Lock,
    now: chrono::DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> String {
    format!(
        "Took the lock on {} in *{}* from {}; only {} can deploy there {}. I told {} by direct message.",
        lock.app,
        lock.environment,
        user(&previous.holder),
        user(&lock.holder),
        lock_until(lock, now, zone),
        user(&previous.holder)
    )
}

/// The direct message to a holder whose lock was taken.
pub fn lock_taken_from_you(previous: &Lock, by: &str) -> String {
    format!(
        "{} took your lock on {} in *{}* (`lock!`).",
        user(by),
        previous.app,
        previous.environment
    )
}

fn scope_text(app: Option<&AppName>, environment: &Environment) -> String {
    match app {
        Some(app) => format!("{app} in *{environment}*"),
        None => format!("*{environment}*"),
    }
}

/// `notify me when … is free`, when it is free already.
pub fn already_free(app: Option<&AppName>, environment: &Environment) -> String {
    format!(
        "{} is not locked: it is free now.",
        scope_text(app, environment)
    )
}

pub fn will_notify(app: Option<&AppName>, environment: &Environment) -> String {
    format!(
        "I'll send you a direct message when {} is free.",
        scope_text(app, environment)
    )
}

/// The direct message to a watcher.
pub fn now_free(app: Option<&AppName>, environment: &Environment) -> String {
    format!(
        ":unlock: {} is free now: nobody holds its lock.",
        scope_text(app, environment)
    )
}

/// An approval given while the request could not deploy: closed since it was made (a freeze, outside its
/// window), freezes or locks that cannot be read, or locked by someone other than the requester. Not
/// taken; the request stays open until it expires. `why` is said as chat says it.
pub fn approval_not_taken(
    r: &ApprovalRequest,
    why: &Denial,
    zone: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> String {
    let why = match why {
        // Not the chat refusal's "an admin can `deploy!`": the request's own `force` decided that.
        Denial::Closed { closure, .. } => sentence(&closure_text(closure, true)),
        other => denial(other),
    };
    format!(
        "{why} Your approval was not taken: request #{} stays open until {}; approve it again once deploys are open there.",
        r.id,
        when(r.request.expires_at, now, zone)
    )
}

/// The request posted in the thread: what it would ship, who may approve, with Approve and Reject
/// buttons (Block Kit; the text is the fallback, which also names the commands).
pub fn approval_request(r: &ApprovalRequest, approvers: &[String], zone: chrono_tz::Tz) -> Message {
    let n = &r.request;
    let who = if approvers.is_empty() {
        "anyone but the requester".to_string()
    } else {
        approvers
            .iter()
            .map(|a| user(a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let needed = if n.needed == 1 {
        "one approval".to_string()
    } else {
        format!("{} approvals", n.needed)
    };
    let text = format!(
        ":raised_hand: *Deploy request #{}*: {} wants to deploy {} `{}` (`{}`) to *{}*. It needs {needed} from {who} by {}. `approve #{}` or `reject #{} <reason>`.",
        r.id,
        user(&n.requester),
        n.app,
        escape(n.git_ref.as_str()),
        short(n.sha.as_str()),
        n.environment,
        when(n.expires_at, n.created_at, zone),
        r.id,
        r.id
    );
    let blocks = serde_json::json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": format!("zbot_request_{}", r.id), "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": r.id.to_string(),
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": r.id.to_string(),
             "text": {"type": "plain_text", "text": "Reject"}}
        ]}
    ]);
    Message {
        text,
        blocks: Some(blocks),
    }
}

/// The `action_id` of the Approve button.
pub const APPROVE_ACTION: &str = "zbot_approve";
/// The `action_id` of the Reject button.
pub const REJECT_ACTION: &str = "zbot_reject";

/// The `callback_id` of the modal that asks why a request is rejected.
pub const REJECT_CALLBACK: &str = "zbot_reject_reason";
/// The `block_id` and `action_id` of its reason field.
pub const REASON_FIELD: &str = "reason";

/// The modal (a Slack view) asking why request `request` is rejected; the reason is optional.
pub fn reject_reason_modal(request: i64) -> serde_json::Value {
    serde_json::json!({
        "type": "modal",
        "callback_id": REJECT_CALLBACK,
        "private_metadata": request.to_string(),
        "title": {"type": "plain_text", "text": format!("Reject request #{request}")},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{
            "type": "input", "block_id": REASON_FIELD, "optional": true,
            "label": {"type": "plain_text", "text": "Why? (said in the thread)"},
            "element": {"type": "plain_text_input", "action_id": REASON_FIELD, "multiline": true}
        }]
    })
}

/// The request message once decided: the buttons are gone.
pub fn approval_request_ended(r: &ApprovalRequest, how: &str) -> Message {
    Message::text(format!(
        "*Deploy request #{}*: {} `{}` (`{}`) to *{}*: {}",
        r.id,
        r.request.app,
        escape(r.request.git_ref.as_str()),
        short(r.request.sha.as_str()),
        r.request.environment,
        sentence(how)
    ))
}

/// How a request ended, on its message: approved.
pub fn request_approved_by(approvers: &[String]) -> String {
    format!(
        "approved by {}",
        approvers
            .iter()
            .map(|a| user(a))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// How a request ended, on its message: rejected.
pub fn request_rejected_by(by: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("rejected by {}: {}", user(by), escape(reason)),
        None => format!("rejected by {}", user(by)),
    }
}

/// An approval counted, more needed.
pub fn approval_counted(r: &ApprovalRequest, approvers: &[String]) -> String {
    format!(
        "{} approved deploy request #{} ({} of {}).",
        approvers.last().map_or_else(String::new, |a| user(a)),
        r.id,
        approvers.len(),
        r.request.needed
    )
}

/// The request approved: the deploy goes ahead.
pub fn approved(r: &ApprovalRequest, approvers: &[String]) -> String {
    format!(
        ":white_check_mark: Deploy request #{} approved by {}: deploying {} `{}` to *{}*.",
        r.id,
        approvers
            .iter()
            .map(|a| user(a))
            .collect::<Vec<_>>()
            .join(", "),
        r.request.app,
        short(r.request.sha.as_str()),
        r.request.environment
    )
}

pub fn rejected(r: &ApprovalRequest, by: &str, reason: Option<&str>) -> String {
    let mut text = format!(
        ":no_entry: Deploy request #{} was rejected by {}",
        r.id,
        user(by)
    );
    match reason {
        Some(reason) => text.push_str(&format!(": {}", escape(reason))),
        None => text.push_str(" (no reason given)"),
    }
    sentence(&format!("{text}. Nothing was deployed"))
}

/// A request whose time ran out.
pub fn request_expired(r: &ApprovalRequest) -> String {
    let waited = human_duration(
        (r.request.expires_at - r.request.created_at)
            .to_std()
            .unwrap_or_default(),
    );
    format!(
        ":hourglass: Deploy request #{} expired after {waited} without approval; nothing was deployed. Ask again to deploy {} to *{}*.",
        r.id, r.request.app, r.request.environment
    )
}

/// Added to a failed deploy's description when `lock_on_failure` locked its environment (plain).
pub fn locked_after_failure(environment: &Environment, holder: &str) -> String {
    format!("{environment} is now locked for {holder} (lock_on_failure)")
}

/// For the deploy log: who approved it, and when, in `zone`.
pub fn approved_plain(
    request: i64,
    approvers: &[(String, chrono::DateTime<Utc>)],
    zone: chrono_tz::Tz,
) -> String {
    let who: Vec<String> = approvers
        .iter()
        .map(|(a, at)| format!("{a} at {}", dated(*at, zone)))
        .collect();
    format!("approved (request #{request}) by {}", who.join(", "))
}

/// Auto-deploy holds a green commit back, said once in the app's channel.
pub fn auto_deploy_held(
    app: &AppName,
    environment: &Environment,
    sha: &crate::domain::Sha,
    why: &str,
) -> String {
    format!(
        ":pause_button: Auto-deploy of {app} to *{environment}* is holding back `{}` (CI passed): {} I'll deploy the newest green commit once that changes.",
        short(sha.as_str()),
        sentence(&escape(why))
    )
}

/// Why auto-deploy does not deploy where approval is needed.
pub fn auto_needs_approval() -> String {
    "deploys there need an approval, which a deploy nobody asked for cannot get: ask in chat".into()
}

/// A failed deploy or a rollback locked the environment (`lock_on_failure`).
pub fn locked_for_incident(lock: &Lock) -> String {
    format!(
        ":lock: Locked {} on *{}* for {} so nobody deploys on top of this; `unlock {} in {}` when it is over.",
        lock.app,
        lock.environment,
        user(&lock.holder),
        lock.app,
        lock.environment
    )
}

/// `approve #n` / `reject #n` for a request that is not waiting.
pub fn no_such_request(request: u64) -> String {
    format!("There is no deploy request #{request}.")
}

/// `approve #N` / `reject #N` where N is a deployment's number, not a request's.
pub fn deployment_not_request(id: u64) -> String {
    format!(
        "#{id} is a deployment, not a deploy request: `approve` and `reject` take the number of a *Deploy request #…*."
    )
}

/// An approver approving again what they approved already (more approvals are needed).
pub fn already_approved(r: &ApprovalRequest, given: usize) -> String {
    format!(
        "You approved deploy request #{} already; it has {given} of {} approvals and needs someone else's.",
        r.id, r.request.needed
    )
}

pub fn unlocked(app: &AppName, environment: &Environment) -> String {
    format!("Unlocked {app} on *{environment}*.")
}

pub fn not_locked(app: &AppName, environment: &Environment) -> String {
    format!("{app} is not locked on *{environment}*.")
}

/// `unlock` found the lock changed hands since it was read: the new one stays.
pub fn lock_changed(app: &AppName, environment: &Environment) -> String {
    format!(
        "The lock on {app} in *{environment}* changed hands just now; it stays. Look at `locks`."
    )
}

pub fn unlock_denied(lock: &Lock) -> String {
    format!(
        "Only {} or an admin can unlock {} on *{}*.",
        user(&lock.holder),
        lock.app,
        lock.environment
    )
}

pub const HELP: &str = "I deploy apps from chat. Commands:\n\
• `deploy adxstat/v0.0.1 to production` — deploy a ref (`deploy!` skips auto-merge and required checks; an admin's also goes through a freeze or outside a window; `deploy:noop` is a dry run)\n\
• `deploys adxstat in production` — recent deployments\n\
• `where can i deploy adxstat` — its environments, locks and each freeze\n\
• `lock adxstat in production 2h &lt;reason&gt;`, `lock!` (admins take it), `unlock adxstat in production`, `locks`\n\
• `notify me when production is free` — a direct message when its lock goes\n\
• `freeze production 2h &lt;reason&gt;`, `freeze adxstat in production until 18:00 &lt;reason&gt;`, `unfreeze production`\n\
• `approve #12`, `reject #12 &lt;reason&gt;` — deploy request #12, waiting for approval (a request's number, not a deployment's)\n\
• `cancel adxstat in production`, `cancel #42` — stop a queued or running deploy\n\
• `rollback adxstat in production` — redeploy the previous good commit (`rollback!`: an admin's, through a freeze or outside a window)\n\
• `help &lt;command&gt;`, `version`";

pub fn help(topic: Option<&str>) -> String {
    let Some(topic) = topic else {
        return HELP.to_string();
    };
    let example = match topic {
        "deploy" => {
            "`deploy adxstat` · `deploy adxstat/v0.0.2 to staging` · `deploy! adxstat/hotfix to production` · `deploy:migrate adxstat to staging` · `deploy:noop adxstat/v0.0.2 to production` (a dry run)"
        }
        "deploys" => "`deploys adxstat` · `deploys adxstat in production`",
        "where" => "`where can i deploy adxstat`",
        "lock" => {
            "`lock adxstat in production database migration` · `lock adxstat in production 2h incident` · `lock! adxstat in production` (admins)"
        }
        "freeze" => {
            "`freeze production 2h release week` · `freeze adxstat in production until 18:00 db migration` (durations from 1m to 30d; times in the bot's time zone, `24:00` the end of the day)"
        }
        "unfreeze" => "`unfreeze production` · `unfreeze adxstat in production`",
        "approve" => "`approve #12` (not your own deploy)",
        "reject" => "`reject #12 not on a Friday`",
        "notify" => "`notify me when production is free`",
        "unlock" => "`unlock adxstat in production` (the holder or an admin)",
        "locks" => "`locks`",
        "cancel" => "`cancel adxstat in production` · `cancel #42`",
        "rollback" => {
            "`rollback adxstat in production` (`rollback!`: admins, through a freeze or outside a window)"
        }
        "help" => "`help` · `help deploy`",
        _ => "`version`",
    };
    // Usage lines have `<app>` placeholders, which Slack would take for links.
    format!(
        "{}\nFor example: {example}",
        escape(crate::command::grammar::usage(topic))
    )
}

pub fn version() -> String {
    format!("zbot v{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_names_every_closure_and_fits_the_status() {
        let frozen = |app: Option<&str>, reason: &str| Closure::Frozen {
            freeze: crate::store::Freeze {
                id: 1,
                app: app.map(|a| a.parse().unwrap()),
                environment: "production".parse().unwrap(),
                holder: "U0BOB".into(),
                reason: Some(reason.into()),
                created_at: chrono::DateTime::parse_from_rfc3339("2026-11-30T08:00:00Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
                until: None,
            },
            time_zone: chrono_tz::UTC,
        };
        let two = [frozen(None, "release"), frozen(Some("adxstat"), "db move")];
        let whole = "override by U0ADMIN (production (every app) is frozen by U0BOB until someone \
                     unfreezes it: release; adxstat in production is frozen by U0BOB until someone \
                     unfreezes it: db move)";
        for (closures, room, expected) in [
            (
                &two[..1],
                usize::MAX,
                "override by U0ADMIN (production (every app) is frozen by U0BOB until someone unfreezes it: release)",
            ),
            (&two[..], usize::MAX, whole),
            (&two[..], whole.len(), whole),
            (
                &two[..],
                110,
                "override by U0ADMIN (production (every app) is frozen by U0BOB until someone unfreezes it: release; +1 more)",
            ),
            (
                &two[..],
                60,
                "override by U0ADMIN (production (every app) is fr…; +1 more)",
            ),
        ] {
            let said = overridden_plain(closures, "U0ADMIN", room);
            assert_eq!(said, expected, "{room}");
            assert!(said.chars().count() <= room, "{said}");
        }
        assert_eq!(
            overriding(&two, "U0ADMIN"),
            ":warning: <@U0ADMIN> is deploying through all of these:\n\
             • production (every app) is frozen by <@U0BOB> until someone unfreezes it: release.\n\
             • adxstat in production is frozen by <@U0BOB> until someone unfreezes it: db move."
        );
    }

    #[test]
    fn a_too_old_polled_deployment_says_how_old_and_what_to_do() {
        use std::time::Duration;
        for (secs, shown) in [
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3 * 3600 + 1200, "3h"),
        ] {
            assert_eq!(coarse_duration(Duration::from_secs(secs)), shown);
        }
        let refusal = Refusal {
            deployment_id: crate::domain::DeploymentId(7),
            repository: None,
            repository_text: "octo/adxstat".into(),
            why: Why::TooOld {
                age: Duration::from_secs(3 * 3600 + 60),
                max_age: Duration::from_secs(3600),
            },
        };
        assert_eq!(
            refusal_plain(&refusal),
            "created 3h ago, older than [github] poll_max_age = 1h; deploy again"
        );
    }

    #[test]
    fn a_sentence_ends_once() {
        for (text, expected) in [
            (
                "Conflict merging main into topic",
                "Conflict merging main into topic.",
            ),
            (
                "Conflict merging main into topic.",
                "Conflict merging main into topic.",
            ),
            (
                "Conflict merging main into topic.  ",
                "Conflict merging main into topic.",
            ),
            ("is it?", "is it?"),
            ("stop!", "stop!"),
            ("and so on…", "and so on…"),
            ("see `v1.`", "see `v1.`."),
            ("", "."),
        ] {
            assert_eq!(sentence(text), expected, "{text:?}");
        }
    }

    /// Every reply that ends text from outside with a period: given text that has one, none shows `..`.
    #[test]
    fn no_reply_ends_a_sentence_twice() {
        let message = "Conflict merging main into topic.".to_string();
        let replies = [
            refused(
                &Refused::MergeConflict(message.clone()),
                "adxstat",
                "octo/adxstat",
            ),
            refused(
                &Refused::Validation(message.clone()),
                "adxstat",
                "octo/adxstat",
            ),
            refused(
                &Refused::Other {
                    status: 500,
                    message: message.clone(),
                },
                "adxstat",
                "octo/adxstat",
            ),
            refused(
                &Refused::Unreachable(message.clone()),
                "adxstat",
                "octo/adxstat",
            ),
            refused(
                &Refused::FailedContexts {
                    contexts: vec![("ci/v1.".into(), "failure.".into())],
                },
                "adxstat",
                "octo/adxstat",
            ),
            parse_error(&ParseError::UnknownVerb {
                verb: "x.".into(),
                suggestion: None,
            }),
        ];
        for reply in replies {
            assert!(!reply.contains(".."), "{reply}");
        }
        assert_eq!(
            refused(&Refused::MergeConflict(message), "adxstat", "octo/adxstat"),
            "GitHub could not merge the default branch into this ref: Conflict merging main into topic. \
             Merge it yourself, or deploy with `deploy!` (no auto-merge)."
        );
        let env: Environment = "v1.".parse().unwrap();
        let listed = environments(
            &"adxstat".parse().unwrap(),
            std::slice::from_ref(&env),
            &[],
            &[],
            chrono::Utc::now(),
            chrono_tz::Tz::UTC,
        );
        assert_eq!(listed, "adxstat can be deployed to v1.");
    }

    fn event(task: &str, state: StatusState, actor: &str) -> DeploymentEvent {
        DeploymentEvent {
            deployment_id: crate::domain::DeploymentId(7),
            app: "adxstat".parse().unwrap(),
            repository: "octo/adxstat".parse().unwrap(),
            environment: "production".parse().unwrap(),
            git_ref: "v0.0.1".parse().unwrap(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".parse().unwrap(),
            task: task.parse().unwrap(),
            actor: actor.into(),
            state,
            description: String::new(),
            log_url: None,
            notify: None,
            tail: Vec::new(),
            denial: None,
            hosts: None,
            changes: None,
        }
    }

    /// What a success shipped: counted, linked, authors once each, at most five first lines, escaped.
    #[test]
    fn changes_are_counted_listed_and_escaped() {
        use crate::forge::{Changes, Comparison};
        let e = event("deploy", StatusState::Success, "U0BOB");
        let lines = |n: usize| -> Vec<(Option<String>, String)> {
            (1..=n)
                .map(|i| {
                    (
                        Some(if i % 2 == 0 { "bob" } else { "alice" }.to_string()),
                        format!("Change {i} <b>"),
                    )
                })
                .collect()
        };
        let since = |ahead: u64, shown: usize| {
            Changes::Since(Comparison {
                ahead_by: ahead,
                behind_by: 0,
                url: "https://github.com/octo/adxstat/compare/a...b".into(),
                commits: lines(shown),
            })
        };
        let cases = [
            (Changes::First, "The first deploy of adxstat to production."),
            (
                Changes::Same,
                "The same commit as the last deploy to production: nothing new.",
            ),
            (
                since(1, 1),
                "1 commit since the last deploy to production (<https://github.com/octo/adxstat/compare/a...b|compare>) by alice:\n• Change 1 &lt;b&gt;",
            ),
            (
                since(7, 5),
                "7 commits since the last deploy to production (<https://github.com/octo/adxstat/compare/a...b|compare>) by alice, bob:\n• Change 1 &lt;b&gt;\n• Change 2 &lt;b&gt;\n• Change 3 &lt;b&gt;\n• Change 4 &lt;b&gt;\n• Change 5 &lt;b&gt;\n• …and 2 more",
            ),
        ];
        for (c, expected) in cases {
            assert_eq!(changes(&c, &e), expected);
        }
    }

    /// The status and the outcome name a task other than a plain deploy, and the hosts a deploy is
    /// limited to.
    #[test]
    fn chat_shows_the_task_and_the_host_limit() {
        let mut e = event("deploy:migrate", StatusState::Success, "U0BOB");
        e.hosts = Some("web1,web2".parse().unwrap());
        let shown = status(&e, None).text;
        assert!(
            shown.contains("`deploy:migrate` adxstat `v0.0.1`")
                && shown.contains("to *production/web1,web2*"),
            "{shown}"
        );
        let outcome = outcome(&e).text;
        assert!(outcome.contains("*production/web1,web2*"), "{outcome}");
        let plain = status(&event("deploy", StatusState::Success, "U0BOB"), None).text;
        assert!(
            plain.contains(": adxstat `v0.0.1`") && plain.contains("to *production* for"),
            "{plain}"
        );
    }

    /// A lock's holder is a mention in every chat text, also when the lock stopped a deployment that
    /// came from GitHub; GitHub's own description keeps the plain id.
    #[test]
    fn chat_names_a_lock_holder_by_mention() {
        let lock = Lock {
            app: "adxstat".parse().unwrap(),
            environment: "production".parse().unwrap(),
            holder: "U0BOSS".into(),
            reason: Some("freeze".into()),
            created_at: chrono::Utc::now(),
            expires_at: None,
        };
        let denial = Denial::Locked {
            lock,
            time_zone: chrono_tz::Tz::UTC,
        };
        let mut refused = event("deploy", StatusState::Error, "U0ALICE");
        refused.description = denial_plain(&denial);
        refused.denial = Some(denial);
        assert!(refused.description.contains("by U0BOSS since"));
        for text in [outcome(&refused).text, status(&refused, None).text] {
            assert!(text.contains("by <@U0BOSS> since"), "{text}");
            assert!(!text.contains("by U0BOSS"), "{text}");
        }
        let mut locked = event("deploy:lock", StatusState::Success, "U0BOSS");
        locked.description = "adxstat locked on production by U0BOSS".into();
        for text in [outcome(&locked).text, status(&locked, None).text] {
            assert!(
                text.contains("adxstat locked on *production* by <@U0BOSS>"),
                "{text}"
            );
        }
    }

    /// A window's time in its own zone, and in `[bot] time_zone` when that shows another clock (the
    /// date too when it is another day there); a lock's "because" reason is not said twice.
    #[test]
    fn times_are_said_in_the_bots_zone_too() {
        let (berlin, new_york) = (chrono_tz::Europe::Berlin, chrono_tz::America::New_York);
        let at = |t: &str| t.parse::<chrono::DateTime<Utc>>().unwrap();
        for (instant, zone, shown_in, expected) in [
            (
                "2026-11-30T14:00:00Z",
                new_york,
                berlin,
                "Mon Nov 30 09:00 EST (15:00 CET)",
            ),
            (
                "2026-12-01T04:30:00Z",
                new_york,
                berlin,
                "Mon Nov 30 23:30 EST (Tue Dec 1 05:30 CET)",
            ),
            (
                "2026-11-30T08:00:00Z",
                berlin,
                berlin,
                "Mon Nov 30 09:00 CET",
            ),
            (
                "2027-07-05T07:00:00Z",
                berlin,
                berlin,
                "Mon Jul 5 09:00 CEST",
            ),
        ] {
            assert_eq!(in_both(at(instant), zone, shown_in), expected, "{instant}");
        }
        for (reason, chat, expected) in [
            ("because testing", true, " because testing"),
            ("Because <!here>", true, " Because &lt;!here&gt;"),
            ("testing", false, ": testing"),
            ("becausetesting", false, ": becausetesting"),
        ] {
            assert_eq!(lock_reason(reason, chat), expected, "{reason}");
        }
    }

    fn row(id: u64, who: &str, git_ref: &str, task: &str) -> DeploymentSummary {
        DeploymentSummary {
            id: crate::domain::DeploymentId(id),
            task: task.into(),
            git_ref: git_ref.into(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            environment: "production".into(),
            who: who.into(),
            created_at: "2026-11-02T10:42:00Z".parse().ok(),
            state: "success".into(),
        }
    }

    /// A long ref widens its column; every other column stays aligned under its header.
    #[test]
    fn the_deploys_table_stays_aligned_with_a_long_ref() {
        let long = "feature/a-rather-long-branch-name-for-the-new-billing-export";
        let table = deploys_table(
            &"adxstat".parse().unwrap(),
            None,
            None,
            &[
                row(1001, "U0ALICE", "v0.0.1", "deploy"),
                row(1002, "bob", long, "deploy:migrate"),
            ],
            &[],
            "2026-11-02T12:00:00Z".parse().unwrap(),
            chrono_tz::Europe::Berlin,
        );
        let lines: Vec<&str> = table
            .lines()
            .map(|l| l.trim_start_matches("```").trim_end_matches("```"))
            .collect();
        assert_eq!(lines[0], "Recent deployments of adxstat");
        let header = lines[1];
        let rows = &lines[2..];
        assert_eq!(rows.len(), 2, "{table}");
        for column in ["task", "where", "state", "when"] {
            let at = header.find(column).unwrap();
            for row in rows {
                let before = &row[..at];
                assert!(
                    before.ends_with(' ') && !row[at..].starts_with(' '),
                    "`{column}` is not aligned in:\n{table}"
                );
            }
        }
        assert!(rows[1].contains(&format!("{long}(f95f852)")), "{table}");
        assert!(rows[0].ends_with(" 11:42 CET"), "{table}");
        assert!(
            rows[0].contains(" deploy ") && rows[1].contains(" deploy:migrate "),
            "{table}"
        );
    }
}
