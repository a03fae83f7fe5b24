//! How a value is written in a deploy tool's own syntax, so that the tool reads back exactly that value.
//!
//! A recipe template becomes one argv element, but tools parse inside an element: Fabric 1 reads
//! `task:arg,key=value` and names a namespaced task `ns.task`; Fabric 2 (invoke) names it `ns.task`
//! too, with `-` for `_`; Capistrano reads `HOSTS` as plain names or, when one is not plain, as a
//! regular expression; Ansible reads `--limit` as a host pattern and `--extra-vars {…}` as YAML whose
//! strings are templates. A placeholder says where its value lands with a filter (`{ref|fabric1_arg}`,
//! see [`Quote`]), and [`Quote::write`] writes the value so, or says why the tool cannot be given it as
//! typed ([`Unrepresentable`]): such a deploy is refused before anything runs.
//!
//! Each rule comes from the tool's own parser, in the versions the tests run for real: fab-classic 1.21
//! `fabric/main.py` (`parse_arguments`, `_escape_split`); invoke 2.2 (`Collection`, auto-dashed task
//! names); Capistrano 3.17 `configuration/filter.rb` and `host_filter.rb`; ansible-core 2.19
//! `inventory/manager.py` (`split_host_pattern`, `_enumerate_matches`) and `utils/vars.py`
//! (`load_extra_vars`).

use std::fmt::Write as _;

/// Where a placeholder's value lands, named in a template after `|` (`{task|fabric1_task}`); without a
/// filter the value is written as it is (a list of hosts joined by `,`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quote {
    /// `{ref}`: as it is, for an argument the tool takes whole (an option's value, an environment
    /// variable, `-H web1,web2`).
    Verbatim,
    /// `fabric1_task`: a Fabric 1 task name, the part of `task:args` before the first `:`. Fabric 1
    /// names a task in a namespace `ns.task`, so `deploy:migrate` becomes `deploy.migrate`; a `.` of the
    /// value's own would be read as a namespace and is refused.
    Fabric1Task,
    /// `fabric1_arg`: a value in Fabric 1's per-task arguments, after `task:`. Fabric splits them at
    /// `,` and each at `=`, where a `\` right before the separator escapes it (and is dropped); any other
    /// `\` stays as it is. So `,` and `=` are written `\,` and `\=`, and a value that ends in `\` right
    /// before a `,` or `=` of the template cannot be written (Fabric has no escape for `\` itself). A
    /// list (the hosts) is joined by `;`, as Fabric reads the per-task `hosts=`.
    Fabric1Arg,
    /// `fabric2_task`: a Fabric 2+ (invoke) task name: `deploy:migrate` becomes `deploy.migrate`, and
    /// `_` becomes `-` (invoke names `db_setup` `db-setup`); a `.` of the value's own is refused.
    Fabric2Task,
    /// `capistrano_hosts`: Capistrano 3's host filter (`HOSTS=`, `--hosts`), matching exactly the named
    /// hosts. Capistrano matches plain names (`[-A-Za-z0-9.]`) exactly, but reads `all` as every host
    /// and any other name as an unanchored regular expression; such a list is written as one anchored
    /// expression, `^(?:web_1|all)$`.
    CapistranoHosts,
    /// `ansible_pattern`: names in an Ansible host pattern (`--limit`), joined by `,`. Ansible has no
    /// escape in patterns, so a name with a character its patterns read (`,` `:` `*` `?` `[` `]`, a
    /// leading `&` `!` `~` `@`, space) is refused, and so are `all` and `ungrouped`, which it reads as
    /// groups. A name that is also a group's name is read as the group, as Ansible always does.
    AnsiblePattern,
    /// `ansible_var`: a string in Ansible's `--extra-vars {…}` YAML: double-quoted and tagged
    /// `!unsafe`, so Ansible never reads it as a template.
    AnsibleVar,
}

/// Each filter's name in a template.
const NAMES: &[(&str, Quote)] = &[
    ("fabric1_task", Quote::Fabric1Task),
    ("fabric1_arg", Quote::Fabric1Arg),
    ("fabric2_task", Quote::Fabric2Task),
    ("capistrano_hosts", Quote::CapistranoHosts),
    ("ansible_pattern", Quote::AnsiblePattern),
    ("ansible_var", Quote::AnsibleVar),
];

/// A value to write: one text, or a list (a deploy's hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    List(Vec<String>),
}

impl Value {
    fn items(&self) -> Vec<&str> {
        match self {
            Value::Text(text) => vec![text.as_str()],
            Value::List(items) => items.iter().map(String::as_str).collect(),
        }
    }

    fn joined(&self, separator: &str) -> String {
        self.items().join(separator)
    }
}

/// Why a value cannot be given to a tool as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrepresentable {
    Empty,
    /// A list where the tool takes one name (the hosts as a task name).
    List,
    /// A `.` in a task name, which Fabric reads as a namespace separator.
    Dot,
    /// The value ends with `\` right before the separator `before` (`,` or `=`): Fabric 1 would read
    /// them together as an escaped separator.
    TrailingBackslash {
        before: char,
    },
    /// An item of a list holds the list's separator (`;` in Fabric 1's per-task hosts).
    Separator(char),
    /// A character the tool reads as syntax there, with no way to escape it.
    Character(char),
    /// A word the tool reads as something else: Ansible's `all` and `ungrouped` name groups.
    Reserved(String),
}

/// The entry of a name table called `name`.
pub(crate) fn named<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The name of `value` in a name table, empty if it has none.
pub(crate) fn name_in<T: PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, t)| *t == value)
        .map_or("", |(n, _)| *n)
}

impl Quote {
    /// The filter a template names, if it is one.
    pub fn from_name(name: &str) -> Option<Quote> {
        named(NAMES, name)
    }

    /// Every filter's name, for the message of a recipe that names an unknown one.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(n, _)| *n)
    }

    /// The filter's name in a template (`fabric1_arg`), empty for [`Quote::Verbatim`].
    pub fn name(self) -> &'static str {
        name_in(NAMES, self)
    }

    /// The tool whose syntax this is, for sentences: "Fabric 1", "Ansible", …
    pub fn tool(self) -> &'static str {
        match self {
            Quote::Verbatim => "the tool",
            Quote::Fabric1Task | Quote::Fabric1Arg => "Fabric 1",
            Quote::Fabric2Task => "Fabric 2",
            Quote::CapistranoHosts => "Capistrano",
            Quote::AnsiblePattern | Quote::AnsibleVar => "Ansible",
        }
    }

    /// Writes `value` in this syntax. `next` is the character the template puts right after it (`None`
    /// at the end of the argument): Fabric 1's escapes depend on it.
    pub fn write(self, value: &Value, next: Option<char>) -> Result<String, Unrepresentable> {
        match self {
            Quote::Verbatim => Ok(value.joined(",")),
            Quote::Fabric1Task => dotted_task(one(value)?, false),
            Quote::Fabric2Task => dotted_task(one(value)?, true),
            Quote::Fabric1Arg => fabric1_arg(value, next),
            Quote::CapistranoHosts => capistrano_hosts(&value.items()),
            Quote::AnsiblePattern => ansible_pattern(&value.items()),
            Quote::AnsibleVar => Ok(yaml_unsafe(&value.joined(","))),
        }
    }
}

fn one(value: &Value) -> Result<&str, Unrepresentable> {
    match value {
        Value::Text(text) if text.is_empty() => Err(Unrepresentable::Empty),
        Value::Text(text) => Ok(text),
        Value::List(_) => Err(Unrepresentable::List),
    }
}

/// `deploy:migrate` → `deploy.migrate` (and `_` → `-` for invoke).
fn dotted_task(task: &str, dashes: bool) -> Result<String, Unrepresentable> {
    if task.contains('.') {
        return Err(Unrepresentable::Dot);
    }
    Ok(task
        .chars()
        .map(|c| match c {
            ':' => '.',
            '_' if dashes => '-',
            c => c,
        })
        .collect())
}

fn fabric1_arg(value: &Value, next: Option<char>) -> Result<String, Unrepresentable> {
    let text = match value {
        Value::Text(text) => text.clone(),
        Value::List(items) => {
            if items.iter().any(|item| item.contains(';')) {
                return Err(Unrepresentable::Separator(';'));
            }
            items.join(";")
        }
    };
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    match next {
        Some(before @ (',' | '=')) if out.ends_with('\\') => {
            Err(Unrepresentable::TrailingBackslash { before })
        }
        _ => Ok(out),
    }
}

/// A character no host name of a list may hold: whitespace and control characters, which the tools
/// strip or read as separators.
fn blank(items: &[&str]) -> Result<(), Unrepresentable> {
    for item in items {
        if item.is_empty() {
            return Err(Unrepresentable::Empty);
        }
        if let Some(c) = item.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(Unrepresentable::Character(c));
        }
    }
    if items.is_empty() {
        return Err(Unrepresentable::Empty);
    }
    Ok(())
}

fn capistrano_hosts(items: &[&str]) -> Result<String, Unrepresentable> {
    blank(items)?;
    let plain = |item: &&str| {
        item.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    };
    if items.iter().all(plain) && items != ["all"] {
        return Ok(items.join(","));
    }
    let mut out = String::from("^(?:");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        for c in item.chars() {
            // Ruby reads `\` before any ASCII punctuation as that character itself.
            if c.is_ascii() && !c.is_ascii_alphanumeric() && c != '_' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push_str(")$");
    Ok(out)
}

fn ansible_pattern(items: &[&str]) -> Result<String, Unrepresentable> {
    blank(items)?;
    for item in items {
        if matches!(*item, "all" | "ungrouped") {
            return Err(Unrepresentable::Reserved(item.to_string()));
        }
        if let Some(c) = item.chars().next().filter(|c| "&!~@".contains(*c)) {
            return Err(Unrepresentable::Character(c));
        }
        if let Some(c) = item.chars().find(|c| ",:*?[]".contains(*c)) {
            return Err(Unrepresentable::Character(c));
        }
    }
    Ok(items.join(","))
}

/// A YAML double-quoted scalar tagged `!unsafe`: `\` and `"` escaped, and every character YAML does
/// not print (or reads as a line break) written as `\uXXXX` / `\UXXXXXXXX`.
fn yaml_unsafe(text: &str) -> String {
    let mut out = String::from("!unsafe \"");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            ' '..='~' => out.push(c),
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}'
                if !matches!(c, '\u{2028}' | '\u{2029}') =>
            {
                out.push(c);
            }
            c if u32::from(c) >= 0x10000 => out.push(c),
            c => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| s.to_string()).collect())
    }

    /// fab-classic 1.21's `_escape_split`, line for line, to read back what [`Quote::Fabric1Arg`]
    /// writes (the integration tests run the real `fab` too).
    fn escape_split(sep: char, text: &str) -> Vec<String> {
        let escaped = format!("\\{sep}");
        let Some(at) = text.find(&escaped) else {
            return text.split(sep).map(str::to_string).collect();
        };
        let (before, after) = (&text[..at], &text[at + 2..]);
        let mut start: Vec<String> = before.split(sep).map(str::to_string).collect();
        let mut unfinished = start.pop().unwrap_or_default();
        let end = escape_split(sep, after);
        unfinished.push(sep);
        unfinished.push_str(&end[0]);
        start.push(unfinished);
        start.extend(end[1..].iter().cloned());
        start
    }

    /// fab-classic's `parse_arguments` for one word: the task, its positional and keyword arguments.
    fn fab_reads(word: &str) -> (String, Vec<String>, Vec<(String, String)>) {
        let Some((task, argstr)) = word.split_once(':') else {
            return (word.to_string(), vec![], vec![]);
        };
        let (mut args, mut kwargs) = (vec![], vec![]);
        for pair in escape_split(',', argstr) {
            let parts = escape_split('=', &pair);
            match parts.as_slice() {
                [k, v] => kwargs.push((k.clone(), v.clone())),
                [v] => args.push(v.clone()),
                _ => panic!("fab would crash on {word:?}"),
            }
        }
        (task.to_string(), args, kwargs)
    }

    #[test]
    fn fabric1_args_read_back_exactly() {
        for value in [
            "v0.0.1",
            "hotfix,urgent",
            "rel=2",
            "a,b=c",
            ",=,=",
            "\\",
            "a\\b",
            "a\\,b",
            "a\\=b",
            "a\\\\,b",
            "x,host=evil.example",
            "trailing\\",
            "ünï,cødé",
        ] {
            let written = Quote::Fabric1Arg.write(&text(value), None).unwrap();
            let word = format!("deploy:branch_name={written}");
            assert_eq!(
                fab_reads(&word),
                (
                    "deploy".into(),
                    vec![],
                    vec![("branch_name".into(), value.into())]
                ),
                "{value:?} written {written:?}"
            );
            if !value.ends_with('\\') {
                let written = Quote::Fabric1Arg.write(&text(value), Some(',')).unwrap();
                let word = format!("deploy:{written},other=1");
                assert_eq!(
                    fab_reads(&word),
                    (
                        "deploy".into(),
                        vec![value.into()],
                        vec![("other".into(), "1".into())]
                    ),
                    "{value:?} written {written:?}"
                );
            }
        }
    }

    #[test]
    fn what_fabric1_cannot_read_is_refused() {
        let cases = [
            (
                Quote::Fabric1Arg,
                text("a\\"),
                Some(','),
                Unrepresentable::TrailingBackslash { before: ',' },
            ),
            (
                Quote::Fabric1Arg,
                text("a\\"),
                Some('='),
                Unrepresentable::TrailingBackslash { before: '=' },
            ),
            (
                Quote::Fabric1Arg,
                list(&["web1", "a;b"]),
                None,
                Unrepresentable::Separator(';'),
            ),
            (
                Quote::Fabric1Task,
                text("deploy.x"),
                None,
                Unrepresentable::Dot,
            ),
            (
                Quote::Fabric1Task,
                list(&["web1"]),
                None,
                Unrepresentable::List,
            ),
            (Quote::Fabric2Task, text("a.b"), None, Unrepresentable::Dot),
        ];
        for (quote, value, next, why) in cases {
            assert_eq!(quote.write(&value, next), Err(why), "{quote:?} {value:?}");
        }
    }

    #[test]
    fn each_filter_writes_the_tools_syntax() {
        let cases: &[(Quote, Value, &str)] = &[
            (Quote::Verbatim, list(&["web1", "web2"]), "web1,web2"),
            (Quote::Verbatim, text("deploy:migrate"), "deploy:migrate"),
            (Quote::Fabric1Task, text("deploy"), "deploy"),
            (Quote::Fabric1Task, text("deploy:migrate"), "deploy.migrate"),
            (Quote::Fabric1Task, text("db_setup"), "db_setup"),
            (
                Quote::Fabric2Task,
                text("deploy:db_setup"),
                "deploy.db-setup",
            ),
            (Quote::Fabric1Arg, list(&["web1", "web2"]), "web1;web2"),
            (Quote::Fabric1Arg, text("rel=2"), "rel\\=2"),
            (
                Quote::CapistranoHosts,
                list(&["web1", "db.x-1"]),
                "web1,db.x-1",
            ),
            (Quote::CapistranoHosts, list(&["all"]), "^(?:all)$"),
            (Quote::CapistranoHosts, list(&["web1", "all"]), "web1,all"),
            (
                Quote::CapistranoHosts,
                list(&["web_1", "db.x"]),
                "^(?:web_1|db\\.x)$",
            ),
            (Quote::AnsiblePattern, list(&["web1", "db.x"]), "web1,db.x"),
            (Quote::AnsiblePattern, text("staging"), "staging"),
            (Quote::AnsibleVar, text("rel=2"), "!unsafe \"rel=2\""),
            (
                Quote::AnsibleVar,
                text("{{ x }} \"q\" \\ \n\u{2028}é"),
                "!unsafe \"{{ x }} \\\"q\\\" \\\\ \\u000A\\u2028é\"",
            ),
        ];
        for (quote, value, written) in cases {
            assert_eq!(
                quote.write(value, None).as_deref(),
                Ok(*written),
                "{quote:?} {value:?}"
            );
        }
    }

    #[test]
    fn ansible_patterns_name_hosts_only() {
        for (item, why) in [
            ("all", Unrepresentable::Reserved("all".into())),
            ("ungrouped", Unrepresentable::Reserved("ungrouped".into())),
            ("&staging", Unrepresentable::Character('&')),
            ("!web1", Unrepresentable::Character('!')),
            ("~web.*", Unrepresentable::Character('~')),
            ("@hosts.txt", Unrepresentable::Character('@')),
            ("web*", Unrepresentable::Character('*')),
            ("web[0:2]", Unrepresentable::Character('[')),
            ("a:b", Unrepresentable::Character(':')),
            ("a b", Unrepresentable::Character(' ')),
            ("", Unrepresentable::Empty),
        ] {
            assert_eq!(
                Quote::AnsiblePattern.write(&list(&["web1", item]), None),
                Err(why),
                "{item:?}"
            );
        }
    }

    #[test]
    fn filter_names_round_trip() {
        for name in Quote::names() {
            assert_eq!(Quote::from_name(name).map(Quote::name), Some(name));
        }
        assert_eq!(Quote::from_name("shell"), None);
    }
}
