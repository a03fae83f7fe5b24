//! Value types of `bot.toml` that need more than serde: strings that name environment variables
//! (`"${SLACK_BOT_TOKEN}"`) and durations (`"30m"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A string from `bot.toml` in which `${NAME}` is replaced by the environment variable `NAME`.
///
/// A missing variable does not fail deserialization: it is recorded with the value's position, so that
/// `zbot check` can report every missing variable at once, each with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvString {
    /// The text with every variable that was set substituted.
    pub value: String,
    /// Variables that were referenced but not set.
    pub missing: Vec<String>,
    /// Variables that were set to the empty string: treated as unset (compose's
    /// `${GITHUB_TOKEN:-}` passes an empty variable on when the host has none).
    pub empty: Vec<String>,
    /// Byte range of the value in the file.
    pub span: std::ops::Range<usize>,
}

impl EnvString {
    /// Expands `${NAME}` references in `raw` with `lookup`.
    pub fn expand(
        raw: &str,
        span: std::ops::Range<usize>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut value = String::with_capacity(raw.len());
        let mut missing = Vec::new();
        let mut empty = Vec::new();
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            value.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match lookup(name) {
                        Some(v) if v.is_empty() => empty.push(name.to_string()),
                        Some(v) => value.push_str(&v),
                        None => missing.push(name.to_string()),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    value.push_str("${");
                    rest = after;
                }
            }
        }
        value.push_str(rest);
        EnvString {
            value,
            missing,
            empty,
            span,
        }
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<String>::deserialize(deserializer)?;
        let span = spanned.span();
        Ok(EnvString::expand(spanned.get_ref(), span, |name| {
            std::env::var(name).ok()
        }))
    }
}

/// A duration written as `"90s"`, `"30m"`, `"1h30m"` or `"500ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad =
            || format!("`{text}` is not a duration: write it like \"90s\", \"30m\" or \"1h30m\"");
        let mut total = Duration::ZERO;
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(number),
                "s" => Duration::from_secs(number),
                "m" => Duration::from_secs(number.saturating_mul(60)),
                "h" => Duration::from_secs(number.saturating_mul(3600)),
                _ => return Err(bad()),
            };
            total = total.saturating_add(unit);
            rest = &rest[unit_len..];
        }
        Ok(total)
    }
}

/// Written back as `bot.toml` takes it: `90s` as `1m30s`, `1500ms` as `1s500ms`, zero as `0s`.
impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.as_secs();
        let parts = [
            (seconds / 3600, "h"),
            (seconds % 3600 / 60, "m"),
            (seconds % 60, "s"),
            (u64::from(self.0.subsec_millis()), "ms"),
        ];
        let mut wrote = false;
        for (value, unit) in parts.into_iter().filter(|(value, _)| *value > 0) {
            write!(f, "{value}{unit}")?;
            wrote = true;
        }
        if !wrote {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text)
            .map(HumanDuration)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_records_missing_ones() {
        let lookup = |name: &str| match name {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let e = EnvString::expand("a-${SET}-${UNSET}-${EMPTY}-${", 0..1, lookup);
        assert_eq!(e.value, "a-value---${");
        assert_eq!(e.missing, vec!["UNSET".to_string()]);
        assert_eq!(e.empty, vec!["EMPTY".to_string()]);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(HumanDuration::parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(HumanDuration::parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            HumanDuration::parse("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert!(HumanDuration::parse("30").is_err());
        assert!(HumanDuration::parse("m").is_err());
        assert!(HumanDuration::parse("3x").is_err());
    }

    #[test]
    fn durations_are_written_as_they_are_read() {
        let table = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(5400), "1h30m"),
        ];
        for (duration, text) in table {
            assert_eq!(HumanDuration(duration).to_string(), text);
            assert_eq!(HumanDuration::parse(text), Ok(duration), "{text}");
        }
    }
}
