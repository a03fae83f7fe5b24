//! Grammar properties: it never panics, printing a parsed command parses back to the same command, and
//! any space may stand where a command has one.

use proptest::prelude::*;
use zbot::command::grammar::parse_command;
use zbot::command::{Addressing, parse_message};

/// Every character the grammar takes for a space (`zbot::domain::is_space`).
static SPACES: std::sync::LazyLock<Vec<char>> = std::sync::LazyLock::new(|| {
    (0..=0x10FFFF)
        .filter_map(char::from_u32)
        .filter(|&c| zbot::domain::is_space(c))
        .collect()
});

fn addressing(names: &[String]) -> Addressing<'_> {
    Addressing {
        names,
        bot_user_id: Some("U0BOT"),
        direct: false,
        slash_command: None,
    }
}

/// Text built from the grammar's own words, so that many samples parse.
fn commandish() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("deploy".to_string()),
        Just("deploy!".to_string()),
        Just("deploy:migrate".to_string()),
        Just("deploy:lock".to_string()),
        Just("deploys".to_string()),
        Just("lock".to_string()),
        Just("unlock".to_string()),
        Just("locks".to_string()),
        Just("cancel".to_string()),
        Just("rollback".to_string()),
        Just("rollback!".to_string()),
        Just("help".to_string()),
        Just("where can i deploy".to_string()),
        Just("to".to_string()),
        Just("in".to_string()),
        Just("on".to_string()),
        Just("#12".to_string()),
        Just("123456".to_string()),
        "[a-z][a-z0-9._-]{0,8}(/[a-zA-Z0-9._/-]{1,12})?",
        "[a-z]{1,6}/[a-z0-9,]{1,6}",
        "[ -~]{1,6}",
    ];
    prop::collection::vec(word, 1..7).prop_map(|words| words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn never_panics_on_any_text(text in any::<String>()) {
        let names = vec!["zbot".to_string()];
        let _ = parse_message(&text, &addressing(&names));
        let _ = parse_message(&format!("zbot {text}"), &addressing(&names));
        let _ = parse_message(&format!("<@U0BOT> deploy {text}"), &addressing(&names));
        let _ = parse_command(&text);
    }

    #[test]
    fn never_panics_on_control_characters(text in "[\\x00-\\x1f\\x7f<>&|@#:!/ a-z]{0,64}") {
        let _ = parse_command(&text);
        let _ = parse_command(&format!("deploy {text}"));
    }

    /// Slack sends a pasted command with no-break spaces and phones add zero-width ones: replacing any
    /// space of a command by any space character, or by several, gives the same command, addressed or not.
    #[test]
    fn any_space_character_separates_words(
        text in commandish(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), 1..3usize), 12),
    ) {
        let Ok(command) = parse_command(&text) else {
            return Ok(());
        };
        let spaces = &*SPACES;
        let mut picks = picks.into_iter().cycle();
        let mut spaced = |text: &str| -> String {
            text.chars()
                .map(|c| match (c, picks.next()) {
                    (' ', Some((index, count))) => index.get(spaces).to_string().repeat(count),
                    (c, _) => c.to_string(),
                })
                .collect()
        };
        let typed = spaced(&text);
        prop_assert_eq!(parse_command(&typed), Ok(command.clone()), "typed as {:?}", typed);
        let names = vec!["zbot".to_string()];
        // Slack sends `&`, `<` and `>` escaped; the grammar undoes that.
        let sent = zbot::mrkdwn::escape(&text);
        let addressed = spaced(&format!("zbot {sent}"));
        prop_assert_eq!(
            parse_message(&addressed, &addressing(&names)),
            Some(Ok(command.clone())),
            "typed as {:?}",
            addressed
        );
        let mentioned = spaced(&format!("<@U0BOT> {sent}"));
        prop_assert_eq!(
            parse_message(&mentioned, &addressing(&names)),
            Some(Ok(command)),
            "typed as {:?}",
            mentioned
        );
    }

    #[test]
    fn round_trips(text in commandish()) {
        if let Ok(command) = parse_command(&text) {
            let printed = command.to_string();
            prop_assert_eq!(parse_command(&printed), Ok(command), "printed as {:?}", printed);
        }
    }
}

#[test]
fn huge_input_is_an_error_not_a_crash() {
    // A ref has at most 255 characters: a huge one is refused with the limit, not parsed.
    let huge = format!("deploy adxstat/{} to production", "a".repeat(1_000_000));
    let refused = parse_command(&huge).unwrap_err();
    assert!(
        zbot::reply::parse_error_text(&refused)
            .0
            .contains("at most 255"),
        "{refused}"
    );
    let huge = "deploy ".repeat(200_000);
    assert!(parse_command(&huge).is_err());
    let deep = format!("zbot {}", "<".repeat(100_000));
    let names = vec!["zbot".to_string()];
    assert!(parse_message(&deep, &addressing(&names)).unwrap().is_err());
}
