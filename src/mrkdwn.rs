//! Slack's text format (mrkdwn), both ways, in one place: [`escape`] what zbot writes, [`unescape`] what
//! people type, [`plain`] for a terminal, [`log_link`] for links, and the [`Message`] zbot posts.
//!
//! Slack's rules ("Formatting text for app surfaces"): in generated text escape exactly `&`, `<` and
//! `>`; links are `<url|label>` with `|` and `>` percent-encoded in the url; user text arrives with the
//! same three entities, typed links as `<url|text>` and mentions as `<@U…>`, `<#C…|name>`, `<!here>`.

/// A message to post: mrkdwn text (also the notification fallback) and optional Block Kit blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub blocks: Option<serde_json::Value>,
}

impl Message {
    pub fn text(text: impl Into<String>) -> Message {
        Message {
            text: text.into(),
            blocks: None,
        }
    }
}

/// Escapes text from outside (refs, output, reasons) for Slack mrkdwn: exactly `&`, `<`, `>`, so no
/// text from outside can become a mention (`<!channel>`) or a link.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Undoes Slack's message encoding: `<url|text>` → `text`, `<url>` → `url`, then `&lt;` `&gt;` `&amp;`.
/// Mentions (`<@U…>`, `<#C…|name>`, `<!here>`) are kept as written, so they stay visibly unusable as values.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('>') {
            Some(end) if !after[..end].starts_with(['@', '#', '!']) => {
                let inner = &after[..end];
                out.push_str(inner.split_once('|').map_or(inner, |(_, label)| label));
                rest = &after[end + 1..];
            }
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A link to `url` labelled `log`; `|` and `>` in the url are percent-encoded so it stays one link.
pub fn log_link(url: Option<&str>) -> String {
    match url {
        Some(url) => format!("<{}|log>", url.replace('|', "%7C").replace('>', "%3E")),
        None => String::new(),
    }
}

/// Slack mrkdwn as terminal text: links as `label: url`, mentions as the user, entities undone.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            out.push('<');
            rest = after;
            continue;
        };
        let inner = &after[..end];
        match (inner.strip_prefix('@'), inner.split_once('|')) {
            (Some(user), _) => out.push_str(user),
            (None, Some((url, label))) => out.push_str(&format!("{label}: {url}")),
            (None, None) => out.push_str(inner),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let emoji = [
        (":hourglass_flowing_sand:", "⏳"),
        (":double_vertical_bar:", "⏸"),
        (":rocket:", "🚀"),
        (":white_check_mark:", "✅"),
        (":x:", "❌"),
        (":warning:", "⚠️"),
    ];
    let mut out = emoji
        .iter()
        .fold(out, |text, (code, symbol)| text.replace(code, symbol));
    out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_through_what_people_type() {
        for text in [
            "plain",
            "<!channel> & <@U0BOB>",
            "a<b>c&amp;d",
            "&lt;already&gt;",
            "<http://x|y>",
            "ünï ⚠️ `code`",
            "",
        ] {
            assert_eq!(unescape(&escape(text)), text, "{text:?}");
            assert_eq!(plain(&escape(text)), text, "{text:?}");
        }
    }

    #[test]
    fn unescape_reads_links_and_keeps_mentions() {
        assert_eq!(unescape("deploy <http://v0.0.1|v0.0.1>"), "deploy v0.0.1");
        assert_eq!(unescape("x <https://a.b>"), "x https://a.b");
        assert_eq!(unescape("<@U0BOT> deploy"), "<@U0BOT> deploy");
        assert_eq!(unescape("a &amp;&lt;&gt;"), "a &<>");
    }

    #[test]
    fn links_stay_one_link() {
        assert_eq!(
            log_link(Some("https://x/a|b>c")),
            "<https://x/a%7Cb%3Ec|log>"
        );
        assert_eq!(log_link(None), "");
        assert_eq!(plain(&log_link(Some("https://x/y"))), "log: https://x/y");
    }
}
