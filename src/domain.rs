//! The words of the field as types: app, environment, ref, sha, task, hosts, repository, deployment id,
//! and the chat place to answer ([`Notify`]).
//!
//! Every value from outside — a chat command, a webhook, `bot.toml`, a row read back from the store —
//! becomes one of these at the edge, and each is built only through its validation (`FromStr`,
//! `TryFrom<String>`, serde). After the edge no function takes a bare string for them, so a value that
//! reaches a path, an argv element or a tool's syntax is safe by construction: no shell character, no
//! control character, no leading `-`, no `..`, bounded length.
//!
//! The rules come from the systems the values live in: hubot-deploy's app slugs, `git check-ref-format`,
//! GitHub's limits (a repository name has at most 100 characters, an owner 39, an environment 255), and
//! Slack's id formats. A refusal is an [`Invalid`] that says what was wrong, for the person who typed it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    App,
    Environment,
    Ref,
    Sha,
    Task,
    Host,
    Repository,
    Channel,
    ThreadTs,
    User,
    /// A deployment's payload as a whole.
    Payload,
    /// A Heroku app's name.
    HerokuApp,
    /// A zbot instance's id (`zbot run --instance-id`).
    Instance,
}

impl ValueKind {
    /// "an app name", "a ref", … for sentences.
    pub fn noun(self) -> &'static str {
        match self {
            ValueKind::App => "an app name",
            ValueKind::Environment => "an environment name",
            ValueKind::Ref => "a ref",
            ValueKind::Sha => "a commit sha",
            ValueKind::Task => "a task",
            ValueKind::Host => "a host name",
            ValueKind::Repository => "a repository",
            ValueKind::Channel => "a chat room",
            ValueKind::ThreadTs => "a thread timestamp",
            ValueKind::User => "a user",
            ValueKind::Payload => "the deployment payload",
            ValueKind::HerokuApp => "a Heroku app name",
            ValueKind::Instance => "an instance id",
        }
    }
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Empty,
    /// Longer than the limit, in characters.
    TooLong {
        max: usize,
    },
    /// A character a shell (or a tool's own syntax) would read.
    ShellCharacter(char),
    Control,
    /// A character no one sees ([`ZERO_WIDTH`], or a mark that changes the direction of text).
    Invisible(char),
    /// A character outside the allowed set.
    Character(char),
    /// A rule of the value's own format, phrased as "it …".
    Format(&'static str),
}

/// A value refused at the edge: which kind, the value as given (cut for display), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub kind: ValueKind,
    pub value: String,
    pub problem: Problem,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: String = self
            .value
            .chars()
            .take(60)
            .map(|c| if c.is_control() { '�' } else { c })
            .collect();
        let what = self.kind.noun();
        match &self.problem {
            Problem::Empty => write!(f, "{what} cannot be empty"),
            Problem::TooLong { max } => {
                write!(
                    f,
                    "{what} has at most {max} characters; `{value}…` is longer"
                )
            }
            Problem::ShellCharacter(c) | Problem::Character(c) if unseen(*c) => {
                write!(
                    f,
                    "U+{:04X} (a space or a character no one sees) is not allowed in {what}",
                    u32::from(*c)
                )
            }
            Problem::ShellCharacter(c) | Problem::Character(c) => {
                write!(f, "`{c}` is not allowed in {what}")
            }
            Problem::Control => write!(f, "{what} cannot contain control characters"),
            Problem::Invisible(c) => write!(
                f,
                "{what} cannot contain U+{:04X}, a character no one sees (paste it as plain text)",
                u32::from(*c)
            ),
            Problem::Format(rule) if value.is_empty() => write!(f, "{what} {rule}"),
            Problem::Format(rule) => write!(f, "`{value}` is not {what}: it {rule}"),
        }
    }
}

/// A character a refusal names by its code point, since printed it would not be seen.
fn unseen(c: char) -> bool {
    is_space(c) || c.is_control() || is_direction_mark(c)
}

fn invalid(kind: ValueKind, value: &str, problem: Problem) -> Invalid {
    Invalid {
        kind,
        value: value.chars().take(300).collect(),
        problem,
    }
}

/// Characters chat text carries that no one sees: zero-width space, zero-width non-joiner and joiner,
/// word joiner, zero-width no-break space (the byte-order mark) and the Mongolian vowel separator.
/// Slack, phones and text copied from web pages put them between words.
pub const ZERO_WIDTH: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{180E}',
];

/// A space between the words of chat text: any Unicode white space (`char::is_whitespace`: the ASCII
/// space, tab and line breaks, the no-break space U+00A0 and narrow no-break space U+202F that Slack
/// delivers for a pasted command, the en, em and thin spaces, the ideographic space, …) or a
/// [`ZERO_WIDTH`] character. The chat grammar separates words at exactly these characters, and no value
/// here contains a zero-width one.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ZERO_WIDTH.contains(&c)
}

/// Marks that change the direction of text (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069): invisible,
/// and able to make a value read differently from what it is.
fn is_direction_mark(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that mean something to a shell; named in the refusal so the person sees what went wrong.
const SHELL_CHARACTERS: &[char] = &[
    '$', '`', ';', '|', '&', '<', '>', '(', ')', '{', '}', '\'', '"', '\\', '!', '*', '?', '[',
    ']', '~', '^',
];

/// The checks every value shares: not empty, bounded, no shell, control or invisible character.
fn common(kind: ValueKind, value: &str, max: usize) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(invalid(kind, value, Problem::Empty));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| ZERO_WIDTH.contains(&c) || is_direction_mark(c))
    {
        return Err(invalid(kind, value, Problem::Invisible(c)));
    }
    if let Some(c) = value.chars().find(|c| SHELL_CHARACTERS.contains(c)) {
        return Err(invalid(kind, value, Problem::ShellCharacter(c)));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(kind, value, Problem::Control));
    }
    if value.chars().count() > max {
        return Err(invalid(kind, value, Problem::TooLong { max }));
    }
    Ok(())
}

/// `[A-Za-z0-9._-]`, starting with a letter or digit (so never `-x`, `.` or `..`).
fn identifier(kind: ValueKind, value: &str, max: usize) -> Result<(), Invalid> {
    common(kind, value, max)?;
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(kind, value, Problem::Character(c)));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            kind,
            value,
            Problem::Format("must start with a letter or a digit"),
        ));
    }
    Ok(())
}

/// Implements the string plumbing of a validated newtype: `FromStr`, `TryFrom<String>`, `Display`,
/// `as_str`, and serde as a string through the validation.
macro_rules! string_type {
    ($name:ident, $check:expr) => {
        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Invalid;
            fn from_str(value: &str) -> Result<Self, Invalid> {
                let check: fn(&str) -> Result<String, Invalid> = $check;
                check(value).map($name)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Invalid;
            fn try_from(value: String) -> Result<Self, Invalid> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

/// An app's name in `bot.toml` (hubot-deploy's slug): `[A-Za-z0-9._-]`, at most 100 characters,
/// starting with a letter or digit. Compared as written; chat finds it in any case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);
string_type!(AppName, |v| {
    identifier(ValueKind::App, v, 100)?;
    Ok(v.to_string())
});

impl std::borrow::Borrow<str> for AppName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A deployment environment: `[A-Za-z0-9._-]`, at most 255 characters (GitHub's limit), starting with a
/// letter or digit. GitHub compares environment names case-insensitively: so does [`Environment::same`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Environment(String);
string_type!(Environment, |v| {
    identifier(ValueKind::Environment, v, 255)?;
    Ok(v.to_string())
});

impl Environment {
    /// `production`, the default environment.
    pub fn production() -> Environment {
        Environment("production".into())
    }

    /// Whether two names are the same environment to GitHub (ASCII case-insensitive).
    pub fn same(&self, other: &Environment) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl std::borrow::Borrow<str> for Environment {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A git ref as typed or sent: the rules of `git check-ref-format` (one level allowed), minus anything a
/// shell would read; at most 255 characters. A sha is a valid ref too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GitRef(String);
string_type!(GitRef, |v| {
    check_ref(v)?;
    Ok(v.to_string())
});

fn check_ref(value: &str) -> Result<(), Invalid> {
    let kind = ValueKind::Ref;
    common(kind, value, 255)?;
    if let Some(c) = value.chars().find(|c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '/' | '-' | '+' | '@' | '#' | ',' | '=' | '%'))
    }) {
        return Err(invalid(kind, value, Problem::Character(c)));
    }
    let rule = if value.starts_with('-') {
        Some("starts with `-`")
    } else if value == "@" {
        Some("is only `@`")
    } else if value.contains("..") {
        Some("contains `..`")
    } else if value.contains("//") {
        Some("contains `//`")
    } else if value.starts_with('/') {
        Some("starts with `/`")
    } else if value.ends_with('/') || value.ends_with('.') {
        Some("ends with `/` or `.`")
    } else if value.contains("@{") {
        Some("contains `@{`")
    } else if value
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        Some("has a part that starts with `.` or ends with `.lock`")
    } else {
        None
    };
    match rule {
        Some(rule) => Err(invalid(kind, value, Problem::Format(rule))),
        None => Ok(()),
    }
}

/// A full commit sha: 40 hex digits (SHA-1) or 64 (SHA-256 repositories), kept lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha(String);
string_type!(Sha, |v| {
    let kind = ValueKind::Sha;
    if v.is_empty() {
        return Err(invalid(kind, v, Problem::Empty));
    }
    if let Some(c) = v.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(invalid(kind, v, Problem::Character(c)));
    }
    if v.len() != 40 && v.len() != 64 {
        return Err(invalid(
            kind,
            v,
            Problem::Format("is not 40 or 64 hex digits"),
        ));
    }
    Ok(v.to_ascii_lowercase())
});

impl Sha {
    /// The first 7 digits, as people write a sha.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

/// A deployment task: lower-case `[a-z0-9_-]` words joined by `:` (`deploy`, `deploy:migrate`), at most
/// 100 characters (GitHub stores it as given; Heaven and hubot-deploy use this form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Task(String);
string_type!(Task, |v| {
    let kind = ValueKind::Task;
    common(kind, v, 100)?;
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
    };
    if !v.split(':').all(segment_ok) {
        return Err(invalid(
            kind,
            v,
            Problem::Format("is not lowercase words of `a-z`, `0-9`, `_`, `-` joined by `:`"),
        ));
    }
    Ok(v.to_string())
});

impl Task {
    /// The task a plain `deploy` runs.
    pub fn deploy() -> Task {
        Task("deploy".into())
    }

    /// `deploy:noop`, a dry run (branch-deploy's `.noop`): the recipe's `noop_task` runs with
    /// `ZBOT_NOOP=1`, and GitHub gets a transient deployment that never becomes what is live.
    pub fn noop() -> Task {
        Task("deploy:noop".into())
    }

    /// Whether this is [`Task::noop`].
    pub fn is_noop(&self) -> bool {
        self.0 == "deploy:noop"
    }

    /// `deploy:lock`, Heaven's lock task.
    pub fn is_lock(&self) -> bool {
        self.0 == "deploy:lock"
    }

    /// `deploy:unlock`, Heaven's unlock task.
    pub fn is_unlock(&self) -> bool {
        self.0 == "deploy:unlock"
    }
}

/// Host names a deploy is limited to (`to production/web1,web2`): each `[A-Za-z0-9._-]`, starting with
/// a letter or digit, at most 253 characters (DNS); at most 100 hosts. Printed joined by `,`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hosts(String);
string_type!(Hosts, |v| {
    let hosts: Vec<&str> = v.split(',').collect();
    if hosts.len() > 100 {
        return Err(invalid(
            ValueKind::Host,
            v,
            Problem::Format("names more than 100 hosts"),
        ));
    }
    for host in hosts {
        identifier(ValueKind::Host, host, 253)?;
    }
    Ok(v.to_string())
});

impl Hosts {
    /// Each host name.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(',')
    }
}

/// A GitHub repository, `owner/name`: the owner `[A-Za-z0-9-]` (at most 39, not starting with `-`), the
/// name `[A-Za-z0-9._-]` (at most 100, not `.` or `..`), GitHub's rules. GitHub compares them
/// case-insensitively: so does [`Repository::same`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Repository(String);
string_type!(Repository, |v| {
    let kind = ValueKind::Repository;
    common(kind, v, 140)?;
    let Some((owner, name)) = v.split_once('/') else {
        return Err(invalid(kind, v, Problem::Format("is not `owner/name`")));
    };
    let owner_ok = !owner.is_empty()
        && owner.len() <= 39
        && !owner.starts_with('-')
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let name_ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !owner_ok || !name_ok {
        return Err(invalid(kind, v, Problem::Format("is not `owner/name`")));
    }
    Ok(v.to_string())
});

impl Repository {
    /// The owner and the name.
    pub fn parts(&self) -> (&str, &str) {
        self.0.split_once('/').unwrap_or((&self.0, ""))
    }

    /// Whether two are the same repository to GitHub (ASCII case-insensitive).
    pub fn same(&self, other: &Repository) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

/// A deployment's number: GitHub's deployment id, or the embedded forge's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct DeploymentId(pub u64);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A chat room: a Slack channel id (`C…`, `G…`, `D…`) or name, or another adapter's room (hubot-deploy's
/// shell adapter says `Shell`, Campfire a room number, HipChat an address `…@conf.hipchat.com`):
/// `[A-Za-z0-9._#@-]`, at most 80 characters; a number is read as its digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "TextOrNumber", into = "String")]
pub struct Room(String);
string_type!(Room, |v| {
    let kind = ValueKind::Channel;
    if v.is_empty() {
        return Err(invalid(kind, v, Problem::Empty));
    }
    if v.chars().count() > 80 {
        return Err(invalid(kind, v, Problem::TooLong { max: 80 }));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '#' | '@')))
    {
        return Err(invalid(kind, v, Problem::Character(c)));
    }
    Ok(v.to_string())
});

/// A Slack message timestamp (`1700000000.000100`): digits, optionally `.` and digits (the terminal numbers
/// its lines); at most 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ThreadTs(String);
string_type!(ThreadTs, |v| {
    let kind = ValueKind::ThreadTs;
    let digits = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
    let ok = v.len() <= 32
        && match v.split_once('.') {
            Some((seconds, fraction)) => digits(seconds) && digits(fraction),
            None => digits(v),
        };
    if !ok {
        return Err(invalid(
            kind,
            v,
            Problem::Format("is not digits, `.`, digits"),
        ));
    }
    Ok(v.to_string())
});

/// Who asked: a chat user id (`U0BOB`), a hubot adapter's user (a number or a name) or a GitHub login;
/// at most 255 characters, no control or shell character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "TextOrNumber", into = "String")]
pub struct User(String);
string_type!(User, |v| {
    common(ValueKind::User, v.trim(), 255)?;
    Ok(v.trim().to_string())
});

/// hubot-deploy's shell and Campfire adapters send user (and Campfire room) ids as numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrNumber {
    Text(String),
    Number(u64),
}

impl TextOrNumber {
    fn parse<T: FromStr<Err = Invalid>>(self) -> Result<T, Invalid> {
        match self {
            TextOrNumber::Text(text) => text.parse(),
            TextOrNumber::Number(n) => n.to_string().parse(),
        }
    }
}

impl TryFrom<TextOrNumber> for User {
    type Error = Invalid;
    fn try_from(value: TextOrNumber) -> Result<User, Invalid> {
        value.parse()
    }
}

impl TryFrom<TextOrNumber> for Room {
    type Error = Invalid;
    fn try_from(value: TextOrNumber) -> Result<Room, Invalid> {
        value.parse()
    }
}

impl User {
    /// Whether this is a Slack user id (`U…`/`W…`), which chat shows as a mention.
    pub fn is_slack_id(&self) -> bool {
        self.0.len() > 2
            && self.0.starts_with(['U', 'W'])
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    }
}

/// Where a deployment is talked about: the payload's `notify`, hubot-deploy and Heaven compatible
/// (`adapter`, `room`, `thread_ts`, `user`, `user_name`, `team_id`). Unknown keys are ignored. Read as
/// a whole, a field that does not validate refuses it; `payload::Parts` reads it field by field instead,
/// leaving out only such a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<Adapter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Room>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<ThreadTs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<Room>,
}

/// The chat adapter a `notify` was written by (hubot-deploy's `robot.adapterName`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Adapter(String);
string_type!(Adapter, |v| {
    identifier(ValueKind::Channel, v, 40)?;
    Ok(v.to_ascii_lowercase())
});

impl Adapter {
    /// `slack`.
    pub fn slack() -> Adapter {
        Adapter("slack".into())
    }
}

/// A Heroku app's name, as Heroku allows it: 3 to 30 lowercase letters, digits and dashes, starting
/// with a letter and not ending with a dash (Heroku's rule for app names). It goes into API paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HerokuApp(String);
string_type!(HerokuApp, |v| {
    let kind = ValueKind::HerokuApp;
    common(kind, v, 30)?;
    if v.chars()
        .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(invalid(
            kind,
            v,
            Problem::Format("must be lowercase letters, digits or dashes (Heroku's rule)"),
        ));
    }
    if v.len() < 3 || !v.starts_with(|c: char| c.is_ascii_lowercase()) || v.ends_with('-') {
        return Err(invalid(
            kind,
            v,
            Problem::Format("is 3 to 30 of a-z, 0-9 and `-`, starting with a letter"),
        ));
    }
    Ok(v.to_string())
});

impl Adapter {
    /// `campfire`.
    pub fn campfire() -> Adapter {
        Adapter("campfire".into())
    }
}

impl Notify {
    /// The place to answer in chat service `adapter`: a room and, if given, the thread; `None` when the
    /// deployment was asked for elsewhere (another adapter, or no room). No adapter means Slack
    /// (hubot-deploy's default).
    pub fn place_in(&self, adapter: &Adapter) -> Option<(&Room, Option<&ThreadTs>)> {
        let here = self
            .adapter
            .as_ref()
            .map_or(adapter.as_str() == "slack", |a| a == adapter);
        match &self.room {
            Some(room) if here => Some((room, self.thread_ts.as_ref())),
            _ => None,
        }
    }

    /// The Slack place to answer: a room and, if given, the thread; `None` when the deployment was not
    /// asked for from Slack (another adapter, or no room).
    pub fn slack_place(&self) -> Option<(&Room, Option<&ThreadTs>)> {
        let slack = self.adapter.as_ref().is_none_or(|a| a.as_str() == "slack");
        match &self.room {
            Some(room) if slack => Some((room, self.thread_ts.as_ref())),
            _ => None,
        }
    }
}

/// How one commit status context or check run of a commit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Passed,
    Pending,
    Failed,
}

/// A commit's statuses (by context) and check runs (by name), as GitHub reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    pub contexts: Vec<(String, CheckState)>,
}

/// One running zbot among those sharing a store (`zbot run --instance-id`; by default the host name and
/// the process id): named in logs, in `/healthz`, in a deploy's log header, and in the store as the
/// holder of a running deployment's lease. At most [`InstanceId::MAX`] characters of ASCII letters,
/// digits, `.`, `_`, `-` and `:` (a host name's characters), so it is safe in a log line and a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceId(String);

impl InstanceId {
    /// The longest id, in characters: a host name (at most 64 on Linux) and a process id.
    pub const MAX: usize = 100;

    /// This process's default id: `<host name>-<pid>`, the host name's other characters replaced by `-`.
    pub fn of_this_process() -> InstanceId {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "zbot".to_string());
        let host: String = host
            .chars()
            .take(64)
            .map(|c| if instance_char(c) { c } else { '-' })
            .collect();
        InstanceId(format!("{host}-{}", std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn instance_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')
}

impl FromStr for InstanceId {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let refuse = |problem| Invalid {
            kind: ValueKind::Instance,
            value: s.to_string(),
            problem,
        };
        if s.is_empty() {
            return Err(refuse(Problem::Empty));
        }
        if s.chars().count() > InstanceId::MAX {
            return Err(refuse(Problem::TooLong {
                max: InstanceId::MAX,
            }));
        }
        if let Some(c) = s.chars().find(|&c| !instance_char(c)) {
            return Err(refuse(Problem::Character(c)));
        }
        Ok(InstanceId(s.to_string()))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heroku_app_names_follow_herokus_rule() {
        for good in ["adxstat", "adxstat-staging", "a1b", "my-app-2"] {
            assert!(good.parse::<HerokuApp>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "Adxstat",
            "1app",
            "app-",
            "app_x",
            "a/b",
            &"a".repeat(31),
        ] {
            assert!(bad.parse::<HerokuApp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_notify_is_answered_in_its_own_chat() {
        let campfire: Notify =
            serde_json::from_value(serde_json::json!({"adapter": "campfire", "room": 42})).unwrap();
        assert!(campfire.place_in(&Adapter::campfire()).is_some());
        assert!(campfire.place_in(&Adapter::slack()).is_none());
        let plain: Notify = serde_json::from_value(serde_json::json!({"room": "C0CHAN"})).unwrap();
        assert!(plain.place_in(&Adapter::slack()).is_some());
        assert!(plain.place_in(&Adapter::campfire()).is_none());
    }

    #[test]
    fn refs_follow_check_ref_format() {
        for good in [
            "v0.0.1",
            "main",
            "atmos/branch",
            "feature/x-1",
            "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
            "release+1",
            "hotfix,urgent",
            "rel=2",
        ] {
            assert!(good.parse::<GitRef>().is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "-rf",
            "--upload-pack=touch /tmp/x",
            "a..b",
            "a//b",
            "/a",
            "a/",
            "a.",
            ".hidden",
            "x.lock",
            "a/.b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "@",
            "a@{1}",
            "$(reboot)",
            "`id`",
            "a;b",
            "a|b",
            "a&b",
            "a\u{7}b",
            "a\nb",
            "ünï",
            long.as_str(),
        ] {
            assert!(bad.parse::<GitRef>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn environments_are_plain_names() {
        let long = "e".repeat(256);
        let max = "e".repeat(255);
        assert!(max.parse::<Environment>().is_ok());
        for bad in [
            "",
            "..",
            "../..",
            "a/../..",
            ".",
            "-x",
            "a b",
            "a\nb",
            "a/b",
            "$x",
            long.as_str(),
        ] {
            assert!(bad.parse::<Environment>().is_err(), "{bad:?}");
        }
        let a: Environment = "Production".parse().unwrap();
        let b: Environment = "production".parse().unwrap();
        assert!(a.same(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn apps_tasks_hosts() {
        for good in ["adxstat", "ad-x_s.t", "A1"] {
            assert!(good.parse::<AppName>().is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "-a", "a/b", "a b", "a;b"] {
            assert!(bad.parse::<AppName>().is_err(), "{bad:?}");
        }
        for good in ["deploy", "deploy:migrate", "deploy:db-2"] {
            assert!(good.parse::<Task>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "deploy:",
            "deploy:$(x)",
            "Deploy",
            "deploy;rm",
            ":x",
            "deploy:-x",
        ] {
            assert!(bad.parse::<Task>().is_err(), "{bad:?}");
        }
        for good in ["web1", "web1,web2", "db.internal"] {
            assert!(good.parse::<Hosts>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "web1,-x",
            "web1,,web2",
            "a b",
            "web1;x",
        ] {
            assert!(bad.parse::<Hosts>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shas_are_full_hex() {
        let sha1 = "F95F852BD8FCA8FCC58A9A2D6C842781E32A215E";
        assert_eq!(
            sha1.parse::<Sha>().unwrap().as_str(),
            sha1.to_ascii_lowercase()
        );
        assert!("a".repeat(64).parse::<Sha>().is_ok());
        for bad in [
            "",
            "abc1234",
            "--upload-pack=x",
            &"g".repeat(40),
            &"a".repeat(41),
        ] {
            assert!(bad.parse::<Sha>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repositories_follow_github() {
        for good in ["atmos/adxstat", "a-b/c.d_e", "O/n"] {
            assert!(good.parse::<Repository>().is_ok(), "{good}");
        }
        let long = format!("o/{}", "n".repeat(101));
        for bad in [
            "",
            "adxstat",
            "/x",
            "x/",
            "o/..",
            "o/.",
            "-o/x",
            "o/x/y",
            "o/x y",
            long.as_str(),
        ] {
            assert!(bad.parse::<Repository>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn notify_reads_hubot_payloads() {
        let slack: Notify = serde_json::from_value(serde_json::json!({
            "adapter": "slack", "room": "C0CHAN", "thread_ts": "1700000000.000100",
            "user": "U0BOB", "user_name": "bob", "team_id": "T0TEAM"
        }))
        .unwrap();
        assert!(slack.slack_place().is_some());
        let shell: Notify = serde_json::from_value(serde_json::json!({
            "adapter": "shell", "room": "Shell", "user": 1, "user_name": "Shell"
        }))
        .unwrap();
        assert_eq!(shell.user.as_ref().map(User::as_str), Some("1"));
        assert!(shell.slack_place().is_none());
        assert!(
            serde_json::from_value::<Notify>(serde_json::json!({"room": "<!channel>"})).is_err()
        );
    }

    /// What chat and phones put between words never gets inside a value, and the refusal names the
    /// character, which printed as is would not be seen.
    #[test]
    fn values_refuse_spaces_and_invisible_characters() {
        for c in ZERO_WIDTH.iter().copied().chain([
            '\u{00A0}', '\u{202F}', '\u{3000}', '\u{200E}', '\u{202E}', '\u{2066}',
        ]) {
            let value = format!("v1{c}x");
            let ref_refusal = value.parse::<GitRef>().unwrap_err().to_string();
            assert!(
                ref_refusal.contains(&format!("U+{:04X}", u32::from(c))),
                "{ref_refusal}"
            );
            assert!(value.parse::<AppName>().is_err(), "{value:?}");
            assert!(value.parse::<Environment>().is_err(), "{value:?}");
            assert!(value.parse::<Hosts>().is_err(), "{value:?}");
            assert!(
                format!("deploy:{value}").parse::<Task>().is_err(),
                "{value:?}"
            );
            if !c.is_whitespace() {
                assert!(format!("U0BOB{c}").parse::<User>().is_err(), "{c:?}");
            }
        }
        assert_eq!(
            "v1\u{200B}".parse::<GitRef>().unwrap_err().to_string(),
            "a ref cannot contain U+200B, a character no one sees (paste it as plain text)"
        );
        for c in [
            '\u{00A0}', '\u{202F}', '\u{2009}', '\u{3000}', '\t', '\u{200B}', '\u{FEFF}',
        ] {
            assert!(is_space(c), "{c:?}");
        }
        for c in ['a', '-', '\u{200E}', '\u{00AD}'] {
            assert!(!is_space(c), "{c:?}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let e = "a;b".parse::<GitRef>().unwrap_err();
        assert_eq!(e.to_string(), "`;` is not allowed in a ref");
        let e = "..".parse::<Environment>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "`..` is not an environment name: it must start with a letter or a digit"
        );
    }
}
