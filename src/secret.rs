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
///
/// Every occurrence of every secret is found, overlapping ones included, and each run of overlapping
/// occurrences becomes one `***`: no part of a secret is left readable, whatever the order of the
/// secrets or how they overlap. Text that arrives in pieces (a long line cut for memory) is redacted
/// with [`Redactor::safe_cut`], so the result does not depend on where it was cut.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    values: Vec<Secret>,
}

/// Secrets shorter than this are not redacted: replacing every `a` in a log would destroy it and hide
/// nothing (such a value is no secret).
const MIN_REDACTED_LEN: usize = 6;

/// What a redacted secret becomes.
const MASK: &str = "***";

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut values: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| s.0.len() >= MIN_REDACTED_LEN)
            .cloned()
            .collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        values.dedup();
        Redactor { values }
    }

    /// The length in bytes of the longest secret, 0 without secrets: how much of a text's end may be
    /// the beginning of a secret that the next piece completes.
    pub fn longest(&self) -> usize {
        self.values.iter().map(|s| s.0.len()).max().unwrap_or(0)
    }

    /// `text` with every known secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut written = 0;
        for hidden in self.hidden(text) {
            out.push_str(&text[written..hidden.start]);
            out.push_str(MASK);
            written = hidden.end;
        }
        out.push_str(&text[written..]);
        out
    }

    /// How much of `text` can be redacted and written now when more text may follow it: all of it but
    /// the last [`Redactor::longest`]` - 1` bytes (where a secret the next piece completes may begin),
    /// moved back to a character boundary and to the start of a secret it would cut. Redacting the
    /// part before the cut and, later, the rest joined to what follows gives the same text as redacting
    /// everything at once.
    pub fn safe_cut(&self, text: &str) -> usize {
        let longest = self.longest();
        if longest == 0 {
            return text.len();
        }
        let mut cut = text.len().saturating_sub(longest - 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        // A secret that starts before `cut` ends within `text`, so it is among those found here.
        match self.hidden(text).find(|h| h.start < cut && cut < h.end) {
            Some(straddling) => straddling.start,
            None => cut,
        }
    }

    /// The byte ranges of `text` to hide, in order: each a run of overlapping secret occurrences.
    fn hidden(&self, text: &str) -> impl Iterator<Item = std::ops::Range<usize>> {
        let mut found: Vec<std::ops::Range<usize>> = Vec::new();
        for secret in &self.values {
            let value = secret.expose();
            // Overlapping occurrences too: search again one character after each start.
            let step = value.chars().next().map_or(1, char::len_utf8);
            let mut from = 0;
            while let Some(at) = text[from..].find(value) {
                let start = from + at;
                found.push(start..start + value.len());
                from = start + step;
            }
        }
        found.sort_by_key(|r| r.start);
        let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(found.len());
        for range in found {
            match merged.last_mut() {
                Some(last) if range.start < last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        merged.into_iter()
    }
}

/// 128 bits from the system's random source, as 32 hex digits: an unguessable token (the grants zbot
/// puts in the deployments it creates). `None` when the random source cannot be read.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .ok()?;
    Some(hex::encode(bytes))
}

/// The hex SHA-256 digest of a token: what is stored of a token that must be recognised but never
/// read back (a grant's).
pub fn digest(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        assert_eq!(format!("{:?}", Secret::new("ghp_abcdef")), "Secret(***)");
    }

    fn redactor(secrets: &[&str]) -> Redactor {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        Redactor::new(&secrets)
    }

    #[test]
    fn redacts_every_occurrence_leaving_no_part_readable() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["token123"], "no secret here", "no secret here"),
            (&["token123"], "a token123 b token123", "a *** b ***"),
            // One secret inside another: hidden whole, in either order.
            (
                &["token123", "token123456"],
                "x token123456 y token123 z",
                "x *** y *** z",
            ),
            (&["token123456", "token123"], "x token123456 y", "x *** y"),
            // Two secrets overlapping: the run is hidden, not one and the other's readable rest.
            (&["abcdefgh", "efghijkl"], "<abcdefghijkl>", "<***>"),
            (&["efghijkl", "abcdefgh"], "<abcdefghijkl>", "<***>"),
            // A secret overlapping itself.
            (&["aaaaaa"], "<aaaaaaaaa>", "<***>"),
            (&["abcabc"], "abcabcabc!", "***!"),
            // Side by side: two masks, as when the text is redacted in two pieces between them.
            (
                &["first-secret", "second-secret"],
                "first-secretsecond-secret",
                "******",
            ),
            (&["sécrète-valeur"], "é sécrète-valeur é", "é *** é"),
            // Too short to be a secret.
            (&["abc"], "abc", "abc"),
            (&[], "anything", "anything"),
        ];
        for (secrets, text, expected) in cases {
            assert_eq!(
                redactor(secrets).redact(text),
                *expected,
                "{secrets:?} in {text:?}"
            );
        }
    }

    #[test]
    fn safe_cut_keeps_back_what_a_secret_may_still_become() {
        let r = redactor(&["ghp_0123456789"]); // 14 bytes: the last 13 of a text wait
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("short", 0),
            ("xxxxxxxxxxxxxxxxxxxx", 20 - 13),
            // A whole secret across the cut: cut before it.
            ("xxxxxghp_0123456789", 5),
            ("xxxxxxxxghp_0123456789yy", 8),
            // A whole secret before the cut is fine where it is.
            ("ghp_0123456789xxxxxxxxxxxxxxxxx", 31 - 13),
            // Never inside a character: é is two bytes.
            ("xxxxxxé123456789012", 6),
        ];
        for (text, expected) in cases {
            assert_eq!(r.safe_cut(text), *expected, "{text:?}");
        }
        assert_eq!(redactor(&[]).safe_cut("anything"), 8);
    }

    /// Redacts `pieces` as log.rs does with a cut line: write what is safe, keep the rest.
    fn redact_in_pieces(r: &Redactor, pieces: &[&str]) -> String {
        let (mut out, mut pending) = (String::new(), String::new());
        for piece in pieces {
            pending.push_str(piece);
            let cut = r.safe_cut(&pending);
            out.push_str(&r.redact(&pending[..cut]));
            pending.drain(..cut);
        }
        out + &r.redact(&pending)
    }

    #[test]
    fn a_secret_cut_at_any_offset_is_redacted_whole() {
        let token = "ghp_PLANTEDtoken0123456789abcdef";
        let r = redactor(&[token, "xoxb-short1"]);
        let line = format!("output before {token} and after");
        for cut in 0..=line.len() {
            let (a, b) = line.split_at(cut);
            assert_eq!(
                redact_in_pieces(&r, &[a, b]),
                "output before *** and after",
                "cut at {cut}"
            );
        }
        // Three pieces, the token cut twice.
        for first in 14..14 + token.len() {
            for second in first..14 + token.len() {
                let pieces = [&line[..first], &line[first..second], &line[second..]];
                assert_eq!(redact_in_pieces(&r, &pieces), "output before *** and after");
            }
        }
    }

    proptest::proptest! {
        /// However a text is cut into pieces, redacting it piece by piece gives the same text as
        /// redacting it whole.
        #[test]
        fn pieces_redact_as_the_whole(
            text in "[abé-]{0,80}",
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let r = redactor(&["abab-a", "ab-aba", "ééaéé-", "aaaaaaa", "b-b-b-b"]);
            let mut cuts: Vec<usize> = cuts
                .into_iter()
                .map(|c| c.min(text.len()))
                .filter(|&c| text.is_char_boundary(c))
                .collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for cut in cuts {
                pieces.push(&text[from..cut]);
                from = cut;
            }
            pieces.push(&text[from..]);
            proptest::prop_assert_eq!(redact_in_pieces(&r, &pieces), r.redact(&text));
        }
    }
}
