//! Fuzzes the chat grammar: any bytes, in every addressing form, must parse or fail without a panic,
//! and a parsed command must print back to text that parses to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zbot::command::grammar::parse_command;
use zbot::command::{Addressing, parse_message};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names = vec!["zbot".to_string()];
    for (direct, slash) in [(false, None), (true, None), (false, Some("/deploy")), (false, Some("/zbot"))] {
        let addressing = Addressing { names: &names, bot_user_id: Some("U0BOT"), direct, slash_command: slash };
        let _ = parse_message(text, &addressing);
    }
    if let Ok(command) = parse_command(text) {
        assert_eq!(parse_command(&command.to_string()), Ok(command));
    }
});
