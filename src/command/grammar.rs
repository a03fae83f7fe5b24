//! The chat grammar (nom 8): a Slack message in, a [`Command`] or a [`ParseError`] out.
//!
//! `GRAMMAR.md` at the top of the repository writes the grammar out; the parsers below are named after
//! its rules. The work happens in three steps:
//! 1. [`addressed_text`] decides whether the message is for the bot at all (name or alias prefix, a
//!    mention of the bot's user id, a DM, a slash command) and returns the rest;
//! 2. [`crate::mrkdwn::unescape`] undoes Slack's encoding (`&amp;` `&lt;` `&gt;`, `<url|text>` links);
//! 3. [`command`] parses the words.
//!
//! Words are separated by [`crate::domain::is_space`], one definition for the whole grammar and for
//! addressing: any Unicode white space (Slack delivers a pasted command with no-break spaces) and the
//! zero-width characters Slack and phones insert. The nom parsers below never use nom's ASCII-only
//! `multispace`; they use `spaces0`, `spaces1` and `word`.
//!
//! Parsers return `nom::Err::Error` when an alternative does not match and `nom::Err::Failure` with a
//! [`ParseError`] once the input is known to be malformed, so the person gets the most specific message.
//! No I/O, no async, no configuration: only what was typed.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag_no_case, take_till1, take_while, take_while1},
    character::complete::{char, digit1},
    combinator::{opt, rest},
    sequence::preceded,
};

use super::{CancelTarget, Command, DEFAULT_TASK, DeployCommand, Until};
use crate::domain::{AppName, Environment, GitRef, Hosts, Invalid, Task, is_space};
use crate::suggest;

/// A message addressed to the bot that does not parse: what is wrong, with the data to say how to put it
/// right. `reply::parse_error` turns it into words; `verb` fields name the command whose usage helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Only the bot's name.
    NoCommand,
    /// A word after a complete command.
    Unexpected {
        word: String,
        verb: &'static str,
    },
    UnknownVerb {
        verb: String,
        suggestion: Option<&'static str>,
    },
    TakesNoArguments {
        verb: &'static str,
        got: String,
    },
    /// A value that does not validate (an app, ref, environment, hosts, task).
    Invalid {
        verb: &'static str,
        invalid: Invalid,
    },
    NeedsApp {
        verb: &'static str,
    },
    CharacterInApp {
        verb: &'static str,
        character: char,
    },
    ExpectedEnvironment {
        verb: &'static str,
        keyword: String,
    },
    TakesNoHosts {
        verb: &'static str,
    },
    /// A word where `to`/`in`/`on` was probably meant.
    DidYouMeanKeyword {
        word: String,
        keyword: &'static str,
    },
    /// An environment name without `to` before it.
    EnvironmentNeedsKeyword {
        word: String,
    },
    NotOneTimePassword {
        word: String,
    },
    WhereOnly,
    ControlInReason,
    /// A ref given to a command that works on an environment.
    RefNotAllowed {
        verb: &'static str,
    },
    NotADeploymentNumber {
        digits: String,
    },
    NoHelpOn {
        topic: String,
        suggestion: Option<&'static str>,
    },
    /// `until` followed by something other than a time of day (`00:00`–`24:00`).
    NotATime {
        word: String,
    },
    /// A duration of zero, or longer than [`MAX_MINUTES`] (`100d`), or too long to count.
    DurationOutOfRange {
        word: String,
    },
    /// A number in a unit zbot does not take (`2w`, `3hours`).
    NotADuration {
        word: String,
    },
    /// `approve` / `reject` without a request number.
    NeedsRequestNumber {
        verb: &'static str,
    },
    /// `notify` not followed by `me when <env> is free`.
    NotifyOnly,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ParseError {}

/// How a message reached the bot, which decides whether it is addressed to it.
#[derive(Debug, Clone, Default)]
pub struct Addressing<'a> {
    /// The bot's name and aliases (`zbot`, …): `zbot deploy …`, `zbot: …`, `@zbot, …`.
    pub names: &'a [String],
    /// The bot's Slack user id: `<@U0BOT> deploy …`.
    pub bot_user_id: Option<&'a str>,
    /// A direct message: no prefix needed.
    pub direct: bool,
    /// The slash command this text came with (`/deploy`, `/zbot`).
    pub slash_command: Option<&'a str>,
}

/// Verbs a message can start with, for "did you mean" and for `help <topic>`.
pub const VERBS: &[&str] = &[
    "deploy", "deploys", "where", "lock", "unlock", "locks", "freeze", "unfreeze", "approve",
    "reject", "notify", "cancel", "rollback", "help", "version",
];

/// Parses a message as Slack delivers it. `None`: not addressed to the bot (never an error).
pub fn parse_message(
    text: &str,
    addressing: &Addressing<'_>,
) -> Option<Result<Command, ParseError>> {
    let text = addressed_text(text, addressing)?;
    Some(parse_command(&crate::mrkdwn::unescape(&text)))
}

/// Parses the command words alone (already addressed and unescaped).
pub fn parse_command(text: &str) -> Result<Command, ParseError> {
    let text = trim_spaces(text);
    if text.is_empty() {
        return Err(ParseError::NoCommand);
    }
    match (command, spaces0).parse(text) {
        Ok(("", (command, _))) => Ok(command),
        // A stray word after a whole command: that command's own usage helps.
        Ok((left, (command, _))) => Err(unexpected(left, command.name())),
        Err(nom::Err::Failure(e)) | Err(nom::Err::Error(e)) => Err(e.into_parse_error(text)),
        Err(nom::Err::Incomplete(_)) => Err(unexpected(text, "help")),
    }
}

/// The text after the bot's address, or `None` when the message is not for the bot.
pub fn addressed_text(text: &str, addressing: &Addressing<'_>) -> Option<String> {
    if let Some(slash) = addressing.slash_command {
        let verb = slash.trim_start_matches('/').to_lowercase();
        let text = trim_spaces(text);
        let first = first_word(text).unwrap_or_default();
        let names_a_verb =
            is_deploy_family(first) || VERBS.contains(&first.to_lowercase().as_str());
        return Some(if VERBS.contains(&verb.as_str()) && !names_a_verb {
            format!("{verb} {text}")
        } else if text.is_empty() {
            "help".to_string()
        } else {
            text.to_string()
        });
    }
    let trimmed = text.trim_start_matches(is_space);
    if let Some(id) = addressing.bot_user_id
        && let Some(after) = mention_of(trimmed, id)
    {
        return Some(strip_separator(after).to_string());
    }
    let unprefixed = trimmed.strip_prefix('@').unwrap_or(trimmed);
    for name in addressing.names {
        let Some(head) = unprefixed.get(..name.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(name) {
            continue;
        }
        let after = &unprefixed[name.len()..];
        if after.is_empty() || after.starts_with([':', ',']) || after.starts_with(is_space) {
            return Some(strip_separator(after).to_string());
        }
    }
    addressing.direct.then(|| trimmed.to_string())
}

/// `<@U0BOT>` or `<@U0BOT|zbot>` at the start of `text`: the rest.
fn mention_of<'t>(text: &'t str, bot_user_id: &str) -> Option<&'t str> {
    let inner = text.strip_prefix("<@")?;
    let end = inner.find('>')?;
    let id = inner[..end].split('|').next()?;
    (id == bot_user_id).then(|| &inner[end + 1..])
}

fn strip_separator(text: &str) -> &str {
    text.trim_start_matches(is_space)
        .trim_start_matches([':', ','])
        .trim_start_matches(is_space)
}

/// `text` without spaces at either end.
pub fn trim_spaces(text: &str) -> &str {
    text.trim_matches(is_space)
}

/// The first word of `text`, if it has one.
fn first_word(text: &str) -> Option<&str> {
    text.split(is_space).find(|word| !word.is_empty())
}

/// Zero or more spaces.
fn spaces0(i: &str) -> PResult<'_, &str> {
    take_while(is_space).parse(i)
}

/// One or more spaces.
fn spaces1(i: &str) -> PResult<'_, &str> {
    take_while1(is_space).parse(i)
}

/// A word: everything up to the next space.
fn word(i: &str) -> PResult<'_, &str> {
    take_till1(is_space).parse(i)
}

/// The usage line of a verb, as the hint for a malformed command.
pub fn usage(verb: &str) -> &'static str {
    match verb {
        "deploy" => "usage: deploy[:task][!] <app>[/<ref>] [to <env>[/<hosts>]] [<otp>]",
        "deploys" => "usage: deploys <app>[/<ref>] [in <env>]",
        "where" => "usage: where can i deploy <app>",
        "lock" => "usage: lock[!] <app> [in <env>] [<duration> | until <HH:MM>] [<reason…>]",
        "freeze" => "usage: freeze [<app> in] <env> [<duration> | until <HH:MM>] [<reason…>]",
        "unfreeze" => "usage: unfreeze [<app> in] <env>",
        "approve" => "usage: approve #<request>",
        "reject" => "usage: reject #<request> [<reason…>]",
        "notify" => "usage: notify me when [<app> in] <env> is free",
        "unlock" => "usage: unlock <app> [in <env>]",
        "locks" => "usage: locks",
        "cancel" => "usage: cancel <app> [in <env>] | cancel #<deployment id>",
        "rollback" => "usage: rollback <app> [in <env>]",
        "help" => "usage: help [<command>]",
        "version" => "usage: version",
        _ => "try `help`",
    }
}

/// The nom error type: `Mismatch` lets `alt` try the next branch, `Malformed` carries the error.
#[derive(Debug)]
pub enum GrammarError<'a> {
    Mismatch(&'a str),
    Malformed(ParseError),
}

impl<'a> GrammarError<'a> {
    fn into_parse_error(self, whole: &str) -> ParseError {
        match self {
            GrammarError::Mismatch(at) => {
                unexpected(if at.is_empty() { whole } else { at }, "help")
            }
            GrammarError::Malformed(error) => error,
        }
    }
}

impl<'a> nom::error::ParseError<&'a str> for GrammarError<'a> {
    fn from_error_kind(input: &'a str, _kind: nom::error::ErrorKind) -> Self {
        GrammarError::Mismatch(input)
    }
    fn append(_input: &'a str, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        match (&self, &other) {
            (GrammarError::Malformed(_), _) => self,
            _ => other,
        }
    }
}

type PResult<'a, T> = IResult<&'a str, T, GrammarError<'a>>;

fn malformed<'a>(error: ParseError) -> nom::Err<GrammarError<'a>> {
    nom::Err::Failure(GrammarError::Malformed(error))
}

fn unexpected(left: &str, verb: &'static str) -> ParseError {
    let word = first_word(left).unwrap_or(left);
    ParseError::Unexpected {
        word: word.to_string(),
        verb,
    }
}

/// `command = deploy_family | deploys | where | locks | lock | unlock | cancel | rollback | help | version`
fn command(i: &str) -> PResult<'_, Command> {
    let (after, verb) = word(i)?;
    if is_deploy_family(verb) {
        return deploy_family(i);
    }
    match verb.to_lowercase().as_str() {
        "deploys" => deploys(after),
        "where" => where_can_i_deploy(after),
        "lock" => lock(after, false),
        "lock!" => lock(after, true),
        "unlock" => unlock(after),
        "freeze" => freeze(after),
        "unfreeze" => unfreeze(after),
        "approve" => approve(after),
        "reject" => reject(after),
        "notify" => notify_when_free(after),
        "locks" => no_arguments(after, "locks", Command::Locks),
        "cancel" => cancel(after),
        "rollback" => rollback(after, false),
        "rollback!" => rollback(after, true),
        "help" => help(after),
        "version" => no_arguments(after, "version", Command::Version),
        _ => Err(unknown_verb(verb)),
    }
}

/// `deploy`, `deploy!`, `deploy:<task>`, `deploy:<task>!`, in any case.
fn is_deploy_family(word: &str) -> bool {
    let rest = match word.get(..DEFAULT_TASK.len()) {
        Some(head) if head.eq_ignore_ascii_case(DEFAULT_TASK) => &word[DEFAULT_TASK.len()..],
        _ => return false,
    };
    rest.is_empty() || rest.starts_with([':', '!'])
}

fn unknown_verb<'a>(verb: &str) -> nom::Err<GrammarError<'a>> {
    malformed(ParseError::UnknownVerb {
        verb: verb.to_string(),
        suggestion: suggest::closest(verb, VERBS.iter().copied()),
    })
}

fn no_arguments<'a>(i: &'a str, verb: &'static str, command: Command) -> PResult<'a, Command> {
    let (left, _) = spaces0(i)?;
    if !left.is_empty() {
        return Err(malformed(ParseError::TakesNoArguments {
            verb,
            got: trim_spaces(left).to_string(),
        }));
    }
    Ok((left, command))
}

/// `deploy_family = "deploy" (":" task)* "!"? …`, where `deploy:lock`, `deploy:unlock` and
/// `deploy:version` are the lock, unlock and version commands.
fn deploy_family(i: &str) -> PResult<'_, Command> {
    let (after, word) = word(i)?;
    let (task, force) = match word.strip_suffix('!') {
        Some(task) => (task, true),
        None => (word, false),
    };
    // `is_deploy_family` checked that the word starts with the six ASCII letters of "deploy".
    let task = format!("{DEFAULT_TASK}{}", &task[DEFAULT_TASK.len()..]);
    match task.as_str() {
        "deploy:lock" => return lock(after, false),
        "deploy:unlock" => return unlock(after),
        "deploy:version" => return no_arguments(after, "version", Command::Version),
        _ => {}
    }
    let task: Task = valid(&task, "deploy")?;
    let (i, (app, git_ref)) = app_and_ref(after, "deploy")?;
    let (i, target) = target(i, "deploy")?;
    let (i, otp) = one_time_password(i, target.is_some())?;
    let (environment, hosts) = target.unzip();
    Ok((
        i,
        Command::Deploy(DeployCommand {
            task,
            force,
            app,
            git_ref,
            environment,
            hosts: hosts.flatten(),
            otp,
        }),
    ))
}

/// `app_ref = app ("/" ref)?`, preceded by white space.
fn app_and_ref<'a>(i: &'a str, verb: &'static str) -> PResult<'a, (AppName, Option<GitRef>)> {
    let (i, app) = app(i, verb)?;
    let (i, git_ref) = opt(preceded(char('/'), word)).parse(i)?;
    let git_ref = match git_ref {
        Some(git_ref) => Some(valid(git_ref, verb)?),
        None => {
            if let Some(character) = i.chars().next().filter(|&c| !is_space(c)) {
                return Err(malformed(ParseError::CharacterInApp { verb, character }));
            }
            None
        }
    };
    Ok((i, (app, git_ref)))
}

/// A value typed for `verb`, through its domain type's validation.
fn valid<'a, T: std::str::FromStr<Err = Invalid>>(
    text: &str,
    verb: &'static str,
) -> Result<T, nom::Err<GrammarError<'a>>> {
    text.parse()
        .map_err(|invalid| malformed(ParseError::Invalid { verb, invalid }))
}

/// `app = [-_.0-9a-zA-Z]+`, preceded by white space.
fn app<'a>(i: &'a str, verb: &'static str) -> PResult<'a, AppName> {
    let missing = || malformed(ParseError::NeedsApp { verb });
    let (i, _) = spaces1(i).map_err(|_: nom::Err<GrammarError>| missing())?;
    let (i, app) = take_while1(|c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .parse(i)
        .map_err(|_: nom::Err<GrammarError>| {
            let word = first_word(i).unwrap_or_default();
            match word.parse::<AppName>() {
                Err(invalid) => malformed(ParseError::Invalid { verb, invalid }),
                Ok(_) => missing(),
            }
        })?;
    Ok((i, valid(app, verb)?))
}

/// `target = ("to" | "in" | "on") env ("/" hosts)?`: `None` when no keyword follows.
#[allow(clippy::type_complexity)]
fn target<'a>(i: &'a str, verb: &'static str) -> PResult<'a, Option<(Environment, Option<Hosts>)>> {
    let keyword = preceded(
        spaces1,
        alt((tag_no_case("to"), tag_no_case("in"), tag_no_case("on"))),
    );
    let (after, keyword) = match (
        keyword,
        nom::combinator::peek(alt((spaces1, nom::combinator::eof))),
    )
        .parse(i)
    {
        Ok((after, (keyword, _))) => (after, keyword),
        Err(nom::Err::Error(_)) => return Ok((i, None)),
        Err(e) => return Err(e),
    };
    let Ok((after, value)) = preceded(spaces1, word).parse(after) else {
        return Err(malformed(ParseError::ExpectedEnvironment {
            verb,
            keyword: keyword.to_lowercase(),
        }));
    };
    let (environment, hosts) = match value.split_once('/') {
        Some((env, hosts)) => (env, Some(hosts)),
        None => (value, None),
    };
    let environment: Environment = valid(environment, verb)?;
    let hosts = match hosts {
        Some(_) if verb != "deploy" => {
            return Err(malformed(ParseError::TakesNoHosts { verb }));
        }
        Some(hosts) => Some(valid(hosts, verb)?),
        None => None,
    };
    Ok((after, Some((environment, hosts))))
}

/// `otp = [0-9]{6} | [cbdefghijklnrtuv]{32,64}`: anything else after the target is an error with a hint.
fn one_time_password(i: &str, had_target: bool) -> PResult<'_, Option<String>> {
    let (after, word) = match preceded(spaces1, word).parse(i) {
        Ok(found) => found,
        Err(_) => return Ok((i, None)),
    };
    if is_otp(word) {
        return Ok((after, Some(word.to_string())));
    }
    if !had_target {
        if let Some(keyword) = suggest::closest(word, ["to", "in", "on"]) {
            return Err(malformed(ParseError::DidYouMeanKeyword {
                word: word.to_string(),
                keyword,
            }));
        }
        if word.parse::<Environment>().is_ok() && !word.chars().all(|c| c.is_ascii_digit()) {
            return Err(malformed(ParseError::EnvironmentNeedsKeyword {
                word: word.to_string(),
            }));
        }
    }
    Err(malformed(ParseError::NotOneTimePassword {
        word: word.to_string(),
    }))
}

/// One-time passwords: 6 digits (an authenticator) or 32–64 modhex characters (a yubikey).
pub fn is_otp(value: &str) -> bool {
    let totp = value.len() == 6 && value.chars().all(|c| c.is_ascii_digit());
    let yubikey =
        (32..=64).contains(&value.len()) && value.chars().all(|c| "cbdefghijklnrtuv".contains(c));
    totp || yubikey
}

/// `deploys = "deploys" app_ref target?`
fn deploys(i: &str) -> PResult<'_, Command> {
    let (i, (app, git_ref)) = app_and_ref(i, "deploys")?;
    let (i, target) = target(i, "deploys")?;
    Ok((
        i,
        Command::Deploys {
            app,
            git_ref,
            environment: target.map(|(env, _)| env),
        },
    ))
}

/// `where = "where" "can" "i" "deploy" app "?"?`
fn where_can_i_deploy(i: &str) -> PResult<'_, Command> {
    let mut words = (
        spaces1,
        tag_no_case("can"),
        spaces1,
        tag_no_case("i"),
        spaces1,
        tag_no_case("deploy"),
    );
    let (i, _) = words
        .parse(i)
        .map_err(|_: nom::Err<GrammarError>| malformed(ParseError::WhereOnly))?;
    let (i, app) = app(i, "where")?;
    let (i, _) = opt(char('?')).parse(i)?;
    Ok((i, Command::Where { app }))
}

/// `lock = ("lock" "!"? | "deploy:lock" "!"?) app target? until? reason?`
fn lock(i: &str, force: bool) -> PResult<'_, Command> {
    let (i, app) = app_without_ref(i, "lock")?;
    let (i, target) = target(i, "lock")?;
    let (i, until) = until(i)?;
    let (i, reason) = reason(i)?;
    Ok((
        i,
        Command::Lock {
            force,
            app,
            environment: target.map(|(env, _)| env),
            until,
            reason,
        },
    ))
}

/// Free text to the end, or `None`. Its words are joined by one plain space, whatever spaces (a line
/// break too) were between them: a reason reads the same however it was typed or pasted.
fn reason(i: &str) -> PResult<'_, Option<String>> {
    let (i, reason) = rest(i)?;
    let reason = reason
        .split(is_space)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if reason.chars().any(char::is_control) {
        return Err(malformed(ParseError::ControlInReason));
    }
    Ok((i, (!reason.is_empty()).then_some(reason)))
}

/// `until = duration | "until" HH ":" MM`, where `duration = (digits ("d" | "h" | "m"))+`; `None`
/// when the next word is neither. A word that looks like a duration but is out of range (`0m`,
/// `100d`, digits that overflow) or in another unit (`2w`, `3hours`) is refused, never read as the
/// start of the reason; so is a time of day outside `00:00`–`24:00` (`24:00` is the end of the day,
/// the same instant as the next `00:00`).
fn until(i: &str) -> PResult<'_, Option<Until>> {
    let Ok((after, first)) = preceded(spaces1, word).parse(i) else {
        return Ok((i, None));
    };
    match duration_word(first) {
        DurationWord::Minutes(minutes) => return Ok((after, Some(Until::For { minutes }))),
        DurationWord::OutOfRange => {
            return Err(malformed(ParseError::DurationOutOfRange {
                word: first.to_string(),
            }));
        }
        DurationWord::Unreadable => {
            return Err(malformed(ParseError::NotADuration {
                word: first.to_string(),
            }));
        }
        DurationWord::Not => {}
    }
    // A bare number followed by a unit (`3 days`, `90 min`) was meant as a duration too; a number
    // followed by anything else (`1 < 2`) starts the reason.
    if first.chars().all(|c| c.is_ascii_digit())
        && let Ok((_, unit)) = preceded(spaces1, word).parse(after)
        && is_unit(unit)
    {
        return Err(malformed(ParseError::NotADuration {
            word: format!("{first} {unit}"),
        }));
    }
    if !first.eq_ignore_ascii_case("until") {
        return Ok((i, None));
    }
    let (after, time) =
        preceded(spaces1, word)
            .parse(after)
            .map_err(|_: nom::Err<GrammarError>| {
                malformed(ParseError::NotATime {
                    word: String::new(),
                })
            })?;
    match time_of_day(time) {
        Some((hour, minute)) => Ok((after, Some(Until::At { hour, minute }))),
        None => Err(malformed(ParseError::NotATime {
            word: time.to_string(),
        })),
    }
}

/// `HH:MM` on the 24-hour clock → (hour, minute); `24:00`, the end of the day, is the next `00:00`.
fn time_of_day(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !(digits(h) && digits(m) && h.len() <= 2 && m.len() == 2) {
        return None;
    }
    let (hour, minute): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (hour, minute) {
        (24, 0) => Some((0, 0)),
        (hour, minute) if hour < 24 && minute < 60 => Some((hour, minute)),
        _ => None,
    }
}

/// The longest freeze or lock typed in chat: 30 days, in minutes. zbot's own limit (no outside
/// service sets one): a closure longer than a month belongs in `bot.toml`, as a closed period of
/// `[windows.<env>]` that everyone can read, not in a chat message nobody finds again.
pub const MAX_MINUTES: u32 = 30 * 24 * 60;

/// What one word is, where a duration may stand.
#[derive(Debug, PartialEq, Eq)]
enum DurationWord {
    /// Not a duration: the reason starts here.
    Not,
    /// A duration of 1 to [`MAX_MINUTES`] minutes.
    Minutes(u32),
    /// Written as a duration, but zero, longer than [`MAX_MINUTES`], or too many digits to count.
    OutOfRange,
    /// Written like a duration, but not one zbot reads: a unit it does not take (`2w`, `3hours`,
    /// `90min`), a fraction (`1.5h`), or a number left without its unit (`2h30`). (A bare number
    /// followed by a unit word, `3 days`, is refused by [`until`].) Refused, never read as the start of the reason (the freeze would not end).
    Unreadable,
}

/// `duration = (digits ("d" | "h" | "m"))+`, any case, read with nom; the sum checked against
/// [`MAX_MINUTES`] without overflowing.
fn duration_word(text: &str) -> DurationWord {
    use nom::character::complete::one_of;
    use nom::combinator::all_consuming;
    use nom::multi::many1;
    type Plain<'a> = nom::error::Error<&'a str>;
    let parts = all_consuming(many1((digit1::<_, Plain>, one_of("dhmDHM")))).parse(text);
    let Ok((_, parts)) = parts else {
        return if reads_as_a_duration(text) {
            DurationWord::Unreadable
        } else {
            DurationWord::Not
        };
    };
    let total = parts.iter().try_fold(0u64, |total, (digits, unit)| {
        let per = match unit.to_ascii_lowercase() {
            'd' => 24 * 60,
            'h' => 60,
            _ => 1,
        };
        digits
            .parse::<u64>()
            .ok()?
            .checked_mul(per)?
            .checked_add(total)
    });
    match total.and_then(|t| u32::try_from(t).ok()) {
        Some(minutes) if (1..=MAX_MINUTES).contains(&minutes) => DurationWord::Minutes(minutes),
        _ => DurationWord::OutOfRange,
    }
}

/// Whether a word zbot does not read as a duration was meant as one: numbers, each with a unit
/// (`d`, `h`, `m` or one of [`OTHER_UNITS`]), a fraction only with its unit (`1.5h`), and only the
/// last number, after others, may lack its unit (`2h30`). `3`, `3rd`, `v1.5` and `1.2.3` are words.
fn reads_as_a_duration(text: &str) -> bool {
    let mut rest = text;
    let mut first = true;
    loop {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let mut fraction = false;
        if let Some(after) = rest.strip_prefix(['.', ',']) {
            let decimals =
                after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if decimals == 0 {
                return false;
            }
            rest = &after[decimals..];
            fraction = true;
        }
        let letters = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        if letters == 0 {
            // A bare number alone is a word (`1 < 2`): [`until`] looks at the word after it.
            return rest.is_empty() && !fraction && !first;
        }
        if !is_unit(&rest[..letters]) {
            return false;
        }
        rest = &rest[letters..];
        if rest.is_empty() {
            return true;
        }
        first = false;
    }
}

/// A unit zbot takes (`d`, `h`, `m`) or one of [`OTHER_UNITS`], any case.
fn is_unit(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    matches!(word.as_str(), "d" | "h" | "m") || OTHER_UNITS.contains(&word.as_str())
}

/// Units people write after a number that zbot does not take: refused with the units it does.
const OTHER_UNITS: &[&str] = &[
    "w", "wk", "wks", "week", "weeks", "s", "sec", "secs", "second", "seconds", "min", "mins",
    "minute", "minutes", "hr", "hrs", "hour", "hours", "day", "days", "mo", "month", "months", "y",
    "yr", "year", "years",
];

/// `2h`, `30m`, `1h30m`, `1d` → minutes (more than zero, at most [`MAX_MINUTES`]).
pub fn duration_minutes(text: &str) -> Option<u32> {
    match duration_word(text) {
        DurationWord::Minutes(minutes) => Some(minutes),
        _ => None,
    }
}

/// `scope = app ("in" | "on" | "to") env | env`: an app's environment, or that environment of every app.
fn scope<'a>(i: &'a str, verb: &'static str) -> PResult<'a, (Option<AppName>, Environment)> {
    let (after, first) = app_without_ref(i, verb)?;
    let (after, target) = target(after, verb)?;
    match target {
        Some((environment, _)) => Ok((after, (Some(first), environment))),
        None => Ok((after, (None, valid(first.as_str(), verb)?))),
    }
}

/// `freeze = "freeze" scope until? reason?`
fn freeze(i: &str) -> PResult<'_, Command> {
    let (i, (app, environment)) = scope(i, "freeze")?;
    let (i, until) = until(i)?;
    let (i, reason) = reason(i)?;
    Ok((
        i,
        Command::Freeze {
            app,
            environment,
            until,
            reason,
        },
    ))
}

/// `unfreeze = "unfreeze" scope`
fn unfreeze(i: &str) -> PResult<'_, Command> {
    let (i, (app, environment)) = scope(i, "unfreeze")?;
    Ok((i, Command::Unfreeze { app, environment }))
}

/// `"#"? digits`, a request number, for `verb`.
fn request_number<'a>(i: &'a str, verb: &'static str) -> PResult<'a, u64> {
    let (after, digits) = preceded((spaces1, opt(char('#'))), digit1)
        .parse(i)
        .map_err(|_: nom::Err<GrammarError>| malformed(ParseError::NeedsRequestNumber { verb }))?;
    if !(after.is_empty() || after.starts_with(is_space)) {
        return Err(malformed(ParseError::NeedsRequestNumber { verb }));
    }
    let number = digits.parse().map_err(|_| {
        malformed(ParseError::NotADeploymentNumber {
            digits: digits.to_string(),
        })
    })?;
    Ok((after, number))
}

/// `approve = "approve" "#"? digits`
fn approve(i: &str) -> PResult<'_, Command> {
    let (i, request) = request_number(i, "approve")?;
    Ok((i, Command::Approve { request }))
}

/// `reject = "reject" "#"? digits reason?`
fn reject(i: &str) -> PResult<'_, Command> {
    let (i, request) = request_number(i, "reject")?;
    let (i, reason) = reason(i)?;
    Ok((i, Command::Reject { request, reason }))
}

/// `notify = "notify" "me" "when" scope "is" "free" "?"?`
fn notify_when_free(i: &str) -> PResult<'_, Command> {
    let only = |_: nom::Err<GrammarError>| malformed(ParseError::NotifyOnly);
    let (i, _) = (spaces1, tag_no_case("me"), spaces1, tag_no_case("when"))
        .parse(i)
        .map_err(only)?;
    let (i, (app, environment)) = scope(i, "notify")?;
    let (i, _) = (spaces1, tag_no_case("is"), spaces1, tag_no_case("free"))
        .parse(i)
        .map_err(only)?;
    let (i, _) = opt(char('?')).parse(i)?;
    Ok((i, Command::NotifyWhenFree { app, environment }))
}

/// An app name where a ref makes no sense (locks, cancel, rollback).
fn app_without_ref<'a>(i: &'a str, verb: &'static str) -> PResult<'a, AppName> {
    let (i, (app, git_ref)) = app_and_ref(i, verb)?;
    if git_ref.is_some() {
        return Err(malformed(ParseError::RefNotAllowed { verb }));
    }
    Ok((i, app))
}

/// `unlock = ("unlock" | "deploy:unlock" "!"?) app target?`
fn unlock(i: &str) -> PResult<'_, Command> {
    let (i, app) = app_without_ref(i, "unlock")?;
    let (i, target) = target(i, "unlock")?;
    Ok((
        i,
        Command::Unlock {
            app,
            environment: target.map(|(env, _)| env),
        },
    ))
}

/// `cancel = "cancel" ("#"? digits | app target?)`
fn cancel(i: &str) -> PResult<'_, Command> {
    let by_id: PResult<'_, &str> = preceded((spaces1, opt(char('#'))), digit1).parse(i);
    if let Ok((after, digits)) = by_id
        && (after.is_empty() || after.starts_with(is_space))
    {
        let id = digits.parse().map_err(|_| {
            malformed(ParseError::NotADeploymentNumber {
                digits: digits.to_string(),
            })
        })?;
        return Ok((
            after,
            Command::Cancel(CancelTarget::Deployment(crate::domain::DeploymentId(id))),
        ));
    }
    let (i, app) = app_without_ref(i, "cancel")?;
    let (i, target) = target(i, "cancel")?;
    Ok((
        i,
        Command::Cancel(CancelTarget::App {
            app,
            environment: target.map(|(env, _)| env),
        }),
    ))
}

/// `rollback = "rollback" "!"? app target?`
fn rollback(i: &str, force: bool) -> PResult<'_, Command> {
    let (i, app) = app_without_ref(i, "rollback")?;
    let (i, target) = target(i, "rollback")?;
    Ok((
        i,
        Command::Rollback {
            app,
            environment: target.map(|(env, _)| env),
            force,
        },
    ))
}

/// `help = "help" verb?`
fn help(i: &str) -> PResult<'_, Command> {
    let (i, topic) = opt(preceded(spaces1, word)).parse(i)?;
    let Some(topic) = topic else {
        return Ok((i, Command::Help { topic: None }));
    };
    let lower = topic.to_lowercase();
    let known = match lower.as_str() {
        "deploy:lock" | "lock!" => Some("lock"),
        "rollback!" => Some("rollback"),
        "deploy:unlock" => Some("unlock"),
        "deploy:version" => Some("version"),
        other => VERBS.iter().copied().find(|verb| *verb == other),
    };
    match known {
        Some(verb) => Ok((
            i,
            Command::Help {
                topic: Some(verb.to_string()),
            },
        )),
        None => Err(malformed(ParseError::NoHelpOn {
            topic: topic.to_string(),
            suggestion: suggest::closest(topic, VERBS.iter().copied()),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input → the kind of error, beside the grammar (the words are `reply`'s, tested there and through
    /// `zbot parse`).
    #[test]
    fn malformed_commands_say_what_kind_of_wrong() {
        let cases: Vec<(&str, ParseError)> = vec![
            ("", ParseError::NoCommand),
            (
                "dploy adxstat",
                ParseError::UnknownVerb {
                    verb: "dploy".into(),
                    suggestion: Some("deploy"),
                },
            ),
            ("deploy", ParseError::NeedsApp { verb: "deploy" }),
            (
                "deploy adxstat to",
                ParseError::ExpectedEnvironment {
                    verb: "deploy",
                    keyword: "to".into(),
                },
            ),
            (
                "deploy adxstat staging",
                ParseError::EnvironmentNeedsKeyword {
                    word: "staging".into(),
                },
            ),
            (
                "lock adxstat/v1",
                ParseError::RefNotAllowed { verb: "lock" },
            ),
            (
                "unlock adxstat in production/web1",
                ParseError::TakesNoHosts { verb: "unlock" },
            ),
            (
                "locks please",
                ParseError::TakesNoArguments {
                    verb: "locks",
                    got: "please".into(),
                },
            ),
            ("where is adxstat", ParseError::WhereOnly),
            ("lock adxstat why\u{7}", ParseError::ControlInReason),
            (
                "help deplyo",
                ParseError::NoHelpOn {
                    topic: "deplyo".into(),
                    suggestion: Some("deploy"),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_command(text), Err(expected), "{text:?}");
        }
    }

    /// The guards' commands: scopes, durations and times, reasons.
    #[test]
    fn guard_commands_parse() {
        let production: Environment = "production".parse().unwrap();
        let adxstat: AppName = "adxstat".parse().unwrap();
        let cases: Vec<(&str, Command)> = vec![
            (
                "freeze production 2h release week",
                Command::Freeze {
                    app: None,
                    environment: production.clone(),
                    until: Some(Until::For { minutes: 120 }),
                    reason: Some("release week".into()),
                },
            ),
            (
                "freeze adxstat in production until 18:00 db migration",
                Command::Freeze {
                    app: Some(adxstat.clone()),
                    environment: production.clone(),
                    until: Some(Until::At {
                        hour: 18,
                        minute: 0,
                    }),
                    reason: Some("db migration".into()),
                },
            ),
            (
                "unfreeze production",
                Command::Unfreeze {
                    app: None,
                    environment: production.clone(),
                },
            ),
            (
                "lock! adxstat in production 1h30m because incident",
                Command::Lock {
                    force: true,
                    app: adxstat.clone(),
                    environment: Some(production.clone()),
                    until: Some(Until::For { minutes: 90 }),
                    reason: Some("because incident".into()),
                },
            ),
            ("approve #42", Command::Approve { request: 42 }),
            (
                "reject 42 not on a friday",
                Command::Reject {
                    request: 42,
                    reason: Some("not on a friday".into()),
                },
            ),
            (
                "notify me when production is free",
                Command::NotifyWhenFree {
                    app: None,
                    environment: production.clone(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_command(text), Ok(expected.clone()), "{text:?}");
            assert_eq!(
                parse_command(&expected.to_string()),
                Ok(expected),
                "{text:?}"
            );
        }
        for (text, expected) in [
            (
                "freeze production until 6pm",
                ParseError::NotATime { word: "6pm".into() },
            ),
            (
                "approve",
                ParseError::NeedsRequestNumber { verb: "approve" },
            ),
            ("notify me production", ParseError::NotifyOnly),
        ] {
            assert_eq!(parse_command(text), Err(expected), "{text:?}");
        }
        for (text, minutes) in [
            ("2h", Some(120)),
            ("1d", Some(1440)),
            ("1h30m", Some(90)),
            ("30d", Some(MAX_MINUTES)),
            ("0m", None),
            ("2x", None),
            ("h", None),
            ("31d", None),
            ("91d", None),
        ] {
            assert_eq!(duration_minutes(text), minutes, "{text}");
        }
    }

    /// A word where a duration or time may stand is a duration, out of range, in another unit, or the
    /// reason's first word; out of range is refused, never read as the reason.
    #[test]
    fn durations_and_times_are_parsed_strictly() {
        for (text, expected) in [
            ("2h", DurationWord::Minutes(120)),
            ("2H30M", DurationWord::Minutes(150)),
            ("1d1d", DurationWord::Minutes(2880)),
            ("43200m", DurationWord::Minutes(MAX_MINUTES)),
            ("43201m", DurationWord::OutOfRange),
            ("0m", DurationWord::OutOfRange),
            ("0h0m", DurationWord::OutOfRange),
            ("100d", DurationWord::OutOfRange),
            ("99999999999999999999999h", DurationWord::OutOfRange),
            ("18446744073709551615d", DurationWord::OutOfRange),
            ("2w", DurationWord::Unreadable),
            ("3", DurationWord::Not),
            ("90", DurationWord::Not),
            ("1.5h", DurationWord::Unreadable),
            ("2,5d", DurationWord::Unreadable),
            ("0.5hours", DurationWord::Unreadable),
            ("2h30", DurationWord::Unreadable),
            ("1d2h30", DurationWord::Unreadable),
            ("2h30min", DurationWord::Unreadable),
            ("1.2.3", DurationWord::Not),
            ("v1.5", DurationWord::Not),
            ("2.0", DurationWord::Not),
            ("3rd", DurationWord::Not),
            ("2h-ish", DurationWord::Not),
            ("3hours", DurationWord::Unreadable),
            ("90min", DurationWord::Unreadable),
            ("testing", DurationWord::Not),
            ("3rd", DurationWord::Not),
            ("2h-ish", DurationWord::Not),
            ("h2", DurationWord::Not),
        ] {
            assert_eq!(duration_word(text), expected, "{text}");
        }
        for (text, expected) in [
            ("00:00", Some((0, 0))),
            ("9:05", Some((9, 5))),
            ("23:59", Some((23, 59))),
            ("24:00", Some((0, 0))),
            ("24:01", None),
            ("25:61", None),
            ("12:60", None),
            ("12:5", None),
            ("+1:00", None),
            ("123:00", None),
            ("6pm", None),
        ] {
            assert_eq!(time_of_day(text), expected, "{text}");
        }
        let out_of_range = |word: &str| ParseError::DurationOutOfRange { word: word.into() };
        for (text, expected) in [
            ("freeze production 100d reason", out_of_range("100d")),
            ("lock adxstat in production 0m testing", out_of_range("0m")),
            (
                "lock adxstat 99999999999999999999h testing",
                out_of_range("99999999999999999999h"),
            ),
            (
                "freeze production 2w holidays",
                ParseError::NotADuration { word: "2w".into() },
            ),
            (
                "lock adxstat in production 2 hours testing",
                ParseError::NotADuration {
                    word: "2 hours".into(),
                },
            ),
            (
                "freeze production 3 days holidays",
                ParseError::NotADuration {
                    word: "3 days".into(),
                },
            ),
            (
                "freeze production 1.5h holidays",
                ParseError::NotADuration {
                    word: "1.5h".into(),
                },
            ),
            (
                "lock adxstat in production 2h30 testing",
                ParseError::NotADuration {
                    word: "2h30".into(),
                },
            ),
            (
                "freeze production 90 min testing",
                ParseError::NotADuration {
                    word: "90 min".into(),
                },
            ),
            (
                "freeze production until 25:61",
                ParseError::NotATime {
                    word: "25:61".into(),
                },
            ),
        ] {
            assert_eq!(parse_command(text), Err(expected), "{text:?}");
        }
        assert_eq!(
            parse_command("freeze production until 24:00 end of day"),
            Ok(Command::Freeze {
                app: None,
                environment: "production".parse().unwrap(),
                until: Some(Until::At { hour: 0, minute: 0 }),
                reason: Some("end of day".into()),
            })
        );
    }

    /// A stray word after a whole command gets that command's usage, not `deploy`'s.
    #[test]
    fn a_stray_word_gets_its_own_commands_usage() {
        for (text, verb) in [
            ("unlock adxstat in production now", "unlock"),
            ("rollback adxstat in production now", "rollback"),
            ("cancel adxstat in production now", "cancel"),
            ("deploys adxstat in production now", "deploys"),
            ("where can i deploy adxstat now", "where"),
            ("deploy adxstat to production 123456 now", "deploy"),
        ] {
            match parse_command(text) {
                Err(ParseError::Unexpected { word, verb: got }) => {
                    assert_eq!((word.as_str(), got), ("now", verb), "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    /// Slack delivers a pasted command with no-break spaces, phones insert zero-width ones: every space
    /// of a command may be any of them, and the command is the same.
    #[test]
    fn any_space_separates_words() {
        let spaces = [
            "\u{00A0}",
            "\u{202F}",
            "\u{2009}",
            "\u{3000}",
            "\u{200B}",
            "\u{FEFF}",
            "\t",
            " \u{200B}",
            "\u{2060}\u{00A0}",
        ];
        for text in [
            "deploy adxstat/v0.0.1 to staging",
            "deploy:migrate! adxstat to production/web1,web2 123456",
            "lock adxstat in staging migrating the db",
            "unlock adxstat in staging",
            "where can i deploy adxstat",
            "deploys adxstat/v1 in production",
            "cancel #12",
            "cancel adxstat on staging",
            "rollback adxstat in production",
            "help deploy",
        ] {
            let expected = parse_command(text).unwrap();
            for space in spaces {
                let typed = text.replace(' ', space);
                assert_eq!(parse_command(&typed), Ok(expected.clone()), "{typed:?}");
                let surrounded = format!("{space}{typed}{space}");
                assert_eq!(
                    parse_command(&surrounded),
                    Ok(expected.clone()),
                    "{surrounded:?}"
                );
            }
        }
    }

    /// The lock that once locked the default environment, with `in staging` as its reason.
    #[test]
    fn a_pasted_lock_locks_the_environment_typed() {
        let Ok(Command::Lock {
            environment,
            reason,
            ..
        }) = parse_command("lock adxstat\u{00A0}in\u{00A0}staging db\u{200B}migration")
        else {
            panic!("not a lock");
        };
        assert_eq!(environment.map(String::from).as_deref(), Some("staging"));
        assert_eq!(reason.as_deref(), Some("db migration"));
    }

    #[test]
    fn a_space_ends_a_value_so_none_holds_one() {
        // A zero-width space is a space: what follows it is a word of its own, and refused there.
        assert_eq!(
            parse_command("deploy adxstat/v0.0\u{200B}.1 to staging"),
            Err(ParseError::NotOneTimePassword { word: ".1".into() })
        );
        assert_eq!(
            parse_command("deploy adx\u{200B}stat"),
            Err(ParseError::EnvironmentNeedsKeyword {
                word: "stat".into()
            })
        );
    }

    #[test]
    fn addressing_takes_any_space() {
        let names = vec!["zbot".to_string()];
        let addressing = Addressing {
            names: &names,
            bot_user_id: Some("U0BOT"),
            direct: false,
            slash_command: None,
        };
        let expected = parse_command("deploy adxstat to staging");
        for text in [
            "zbot\u{00A0}deploy adxstat to staging",
            "\u{200B}zbot deploy\u{00A0}adxstat to staging",
            "zbot:\u{202F}deploy adxstat to staging",
            "@zbot,\u{FEFF}deploy adxstat\u{00A0}to staging",
            "<@U0BOT>\u{00A0}deploy adxstat to\u{00A0}staging",
            "\u{FEFF}<@U0BOT|zbot>\u{200B}deploy adxstat to staging",
        ] {
            assert_eq!(
                parse_message(text, &addressing),
                Some(expected.clone()),
                "{text:?}"
            );
        }
        // A name is a whole word: `zbotdeploy` is not addressed, `zbot\u{200B}deploy` is.
        assert_eq!(parse_message("zbotdeploy adxstat", &addressing), None);
        let slash = Addressing {
            slash_command: Some("/deploy"),
            ..addressing
        };
        assert_eq!(
            parse_message("\u{00A0}adxstat\u{00A0}to staging\u{200B}", &slash),
            Some(expected.clone())
        );
        assert_eq!(
            parse_message("\u{00A0}lock\u{00A0}adxstat", &slash).map(|c| c.map(|c| c.name())),
            Some(Ok("lock"))
        );
    }

    #[test]
    fn invalid_values_carry_the_refusal() {
        match parse_command("deploy adxstat/a..b") {
            Err(ParseError::Invalid { verb, invalid }) => {
                assert_eq!(verb, "deploy");
                assert_eq!(invalid.kind, crate::domain::ValueKind::Ref);
            }
            other => panic!("{other:?}"),
        }
    }
}
