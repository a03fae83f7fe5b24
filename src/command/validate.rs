//! Value rules for the words of a command: app names, git refs, environments, hosts, tasks, one-time
//! passwords. Each check returns the reason a value is refused, phrased for the person who typed it.
//!
//! These rules are the first line of the "safe by default" promise: whatever passes here is later handed
//! to git and to deploy tools as a single argv element, and nothing shell-like gets through.

/// Characters that mean something to a shell; named in the refusal so the person sees what went wrong.
const SHELL_CHARACTERS: &[char] = &[
    '$', '`', ';', '|', '&', '<', '>', '(', ')', '{', '}', '\'', '"', '\\', '!', '*', '?', '[',
    ']', '~', '^',
];

fn shell_character(value: &str) -> Option<char> {
    value.chars().find(|c| SHELL_CHARACTERS.contains(c))
}

fn refuse_shell(what: &str, value: &str) -> Result<(), String> {
    match shell_character(value) {
        Some(c) => Err(format!("`{c}` is not allowed in {what}")),
        None => Ok(()),
    }
}

fn refuse_control(what: &str, value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control()) {
        return Err(format!("{what} cannot contain control characters"));
    }
    Ok(())
}

/// App names: `[-_.0-9a-z]+`, any case (hubot-deploy's `validSlug`).
pub fn app(value: &str) -> Result<(), String> {
    refuse_shell("an app name", value)?;
    refuse_control("an app name", value)?;
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{value}` is not an app name: use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// Environment names: a plain identifier that starts with a letter or digit.
pub fn environment(value: &str) -> Result<(), String> {
    identifier("an environment name", value)
}

/// Host lists: plain identifiers joined by `,`.
pub fn hosts(value: &str) -> Result<(), String> {
    value
        .split(',')
        .try_for_each(|host| identifier("a host name", host))
}

fn identifier(what: &str, value: &str) -> Result<(), String> {
    refuse_shell(what, value)?;
    refuse_control(what, value)?;
    let starts_well = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !starts_well || !plain {
        return Err(format!(
            "`{value}` is not {what}: use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// Tasks: `[a-z0-9_-]` segments joined by `:`, e.g. `deploy`, `deploy:migrate`.
pub fn task(value: &str) -> Result<(), String> {
    refuse_shell("a task", value)?;
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
    };
    if !value.split(':').all(segment_ok) {
        return Err(format!(
            "`{value}` is not a task: use lowercase words of `a-z`, `0-9`, `_`, `-` joined by `:`"
        ));
    }
    Ok(())
}

/// One-time passwords: 6 digits (an authenticator) or 32–64 modhex characters (a yubikey).
pub fn otp(value: &str) -> bool {
    let totp = value.len() == 6 && value.chars().all(|c| c.is_ascii_digit());
    let yubikey =
        (32..=64).contains(&value.len()) && value.chars().all(|c| "cbdefghijklnrtuv".contains(c));
    totp || yubikey
}

/// Git refs: the rules of `git check-ref-format`, minus anything a shell would read, or a hex sha.
pub fn git_ref(value: &str) -> Result<(), String> {
    refuse_shell("a ref", value)?;
    refuse_control("a ref", value)?;
    if let Some(c) = value.chars().find(|c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '/' | '-' | '+' | '@' | '#' | ',' | '=' | '%'))
    }) {
        return Err(format!("`{c}` is not allowed in a ref"));
    }
    let problem = if value.is_empty() {
        Some("is empty")
    } else if value.starts_with('-') {
        Some("starts with `-`")
    } else if value == "@" {
        Some("is only `@`")
    } else if value.contains("..") {
        Some("contains `..`")
    } else if value.contains("//") {
        Some("contains `//`")
    } else if value.ends_with('/') || value.ends_with('.') {
        Some("ends with `/` or `.`")
    } else if value
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        Some("has a part that starts with `.` or ends with `.lock`")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("`{value}` is not a valid git ref: it {problem}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_follow_check_ref_format() {
        for good in [
            "v0.0.1",
            "main",
            "atmos/branch",
            "feature/x-1",
            "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
            "release+1",
        ] {
            assert_eq!(git_ref(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-rf",
            "a..b",
            "a//b",
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
            "$(reboot)",
            "`id`",
            "a;b",
            "a|b",
            "a&b",
            "a\u{7}b",
            "ünï",
        ] {
            assert!(git_ref(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn otp_is_six_digits_or_modhex() {
        assert!(otp("123456"));
        assert!(otp("ccccccdlnncbtuevhdbctrccukdciveuclhbkvehbeve"));
        assert!(!otp("burgers"));
        assert!(!otp("12345"));
        assert!(!otp("1234567"));
    }

    #[test]
    fn tasks_are_lowercase_segments() {
        assert_eq!(task("deploy:migrate"), Ok(()));
        assert!(task("deploy:").is_err());
        assert!(task("deploy:$(x)").is_err());
        assert!(task("Deploy").is_err());
    }
}
