//! Every sentence zbot says to a person, in one place, so the chat, the shell and GitHub statuses
//! speak the same language.

use chrono::{Local, Utc};

use crate::store::Lock;

/// "adxstat is locked on production by U0BOB since 10:42: testing the migration".
pub fn locked(lock: &Lock) -> String {
    let local = lock.created_at.with_timezone(&Local);
    let since = if local.date_naive() == Utc::now().with_timezone(&Local).date_naive() {
        local.format("%H:%M").to_string()
    } else {
        local.format("%b %-d %H:%M").to_string()
    };
    let mut text = format!(
        "{} is locked on {} by {} since {since}",
        lock.app, lock.environment, lock.holder
    );
    if let Some(reason) = &lock.reason {
        text.push_str(": ");
        text.push_str(reason);
    }
    text
}
