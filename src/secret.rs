//! Values that must never be printed: tokens and the webhook secret.
//!
//! A [`Secret`] has a redacted `Debug` and no `Display`, so it cannot reach a log line by accident; the
//! only way to the value is [`Secret::expose`], at the one place that hands it to a client. A
//! [`Redactor`] knows every configured secret value and replaces it with `***` in text that leaves zbot
//! (deploy logs, gists, chat replies).

use std::fmt;

/// A secret value. `Debug` shows `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the client that needs it. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replaces known secret values with `***`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    values: Vec<Secret>,
}

/// Secrets shorter than this are not redacted: replacing every `a` in a log would destroy it and hide
/// nothing (such a value is no secret).
const MIN_REDACTED_LEN: usize = 6;

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut values: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| s.0.len() >= MIN_REDACTED_LEN)
            .cloned()
            .collect();
        values.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        values.dedup();
        Redactor { values }
    }

    /// `text` with every known secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.values {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        assert_eq!(format!("{:?}", Secret::new("ghp_abcdef")), "Secret(***)");
    }

    #[test]
    fn redacts_longest_first() {
        let a = Secret::new("token123");
        let b = Secret::new("token123456");
        let r = Redactor::new([&a, &b]);
        assert_eq!(r.redact("x token123456 y token123 z"), "x *** y *** z");
    }
}
