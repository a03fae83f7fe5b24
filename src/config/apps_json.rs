//! hubot-deploy's `apps.json` → `[apps.*]` tables for `bot.toml` (`zbot check --apps-json FILE`).
//!
//! Keys map one to one where zbot has them (`allowed_rooms` → `allowed_channels`, `<env>_url` →
//! `environment_urls`); keys zbot does not use are kept as comments so nothing is lost silently, and
//! per-app `github_token`/`github_api` are dropped with a note (secrets do not belong in the file).
//! Defaults that differ are written out: hubot-deploy (`configureAutoMerge`) and GitHub's API merge
//! the default branch into the ref unless `auto_merge` is false, zbot only when it is true, so an app
//! that leaves `auto_merge` out gets `auto_merge = true`.

use serde_json::Value;
use std::fmt::Write;

/// Converts the text of an `apps.json` file. Errors name the app and key that could not be converted.
pub fn convert(json: &str) -> Result<String, String> {
    let apps: serde_json::Map<String, Value> =
        serde_json::from_str(json).map_err(|e| format!("apps.json is not a JSON object: {e}"))?;
    let mut out =
        String::from("# Converted from hubot-deploy apps.json by `zbot check --apps-json`.\n");
    for (name, app) in &apps {
        let app = app
            .as_object()
            .ok_or_else(|| format!("app `{name}`: expected an object"))?;
        convert_app(&mut out, name, app)?;
    }
    Ok(out)
}

fn quoted(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

fn string_list(name: &str, key: &str, value: &Value) -> Result<String, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("app `{name}`: `{key}` should be a list"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(|s| quoted(s.trim_start_matches('#')))
                .ok_or_else(|| format!("app `{name}`: `{key}` should hold strings"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("[{}]", items.join(", ")))
}

fn convert_app(
    out: &mut String,
    name: &str,
    app: &serde_json::Map<String, Value>,
) -> Result<(), String> {
    let mut urls = Vec::new();
    let mut heroku = Vec::new();
    let mut notes = Vec::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(out, "\n[apps.{}]", toml_key(name));
    for (key, value) in app {
        let text = value.as_str();
        match (key.as_str(), text) {
            ("repository", Some(repo)) => {
                let _ = writeln!(out, "repository = {}", quoted(repo));
            }
            ("provider", Some(provider)) => {
                let _ = writeln!(out, "provider = {}", quoted(provider));
            }
            ("environments", _) => {
                let _ = writeln!(out, "environments = {}", string_list(name, key, value)?);
            }
            ("required_contexts", _) if value.is_null() => {}
            ("required_contexts", _) => {
                let _ = writeln!(
                    out,
                    "required_contexts = {}",
                    string_list(name, key, value)?
                );
            }
            ("allowed_rooms", _) => {
                let _ = writeln!(out, "allowed_channels = {}", string_list(name, key, value)?);
            }
            ("auto_merge", _) => match value.as_bool() {
                Some(b) => {
                    let _ = writeln!(out, "auto_merge = {b}");
                }
                None => {
                    return Err(format!(
                        "app `{name}`: `auto_merge` should be true or false"
                    ));
                }
            },
            // Heaven's names: `heroku_<env>_name` for one environment, `heroku_name` for any.
            ("heroku_name", Some(app)) => heroku.push((None, app.to_string())),
            (heroku_key, Some(app))
                if heroku_key.starts_with("heroku_") && heroku_key.ends_with("_name") =>
            {
                let env = &heroku_key["heroku_".len()..heroku_key.len() - "_name".len()];
                heroku.push((Some(env.to_string()), app.to_string()));
            }
            ("github_token" | "github_api", _) => notes.push(format!(
                "# `{key}` dropped: set [github] token/api_url (secrets come from the environment)"
            )),
            (url_key, Some(url)) if url_key.ends_with("_url") => urls.push((
                url_key.trim_end_matches("_url").to_string(),
                url.to_string(),
            )),
            _ => notes.push(format!("# not used by zbot: {key} = {value}")),
        }
    }
    if !app.contains_key("auto_merge") {
        let _ = writeln!(
            out,
            "auto_merge = true  # hubot-deploy's and GitHub's default; zbot's is false"
        );
    }
    if !urls.is_empty() {
        let entries: Vec<String> = urls
            .iter()
            .map(|(env, url)| format!("{env} = {}", quoted(url)))
            .collect();
        let _ = writeln!(out, "environment_urls = {{ {} }}", entries.join(", "));
    }
    match heroku.as_slice() {
        [] => {}
        [(None, app)] => {
            let _ = writeln!(out, "heroku_app = {}", quoted(app));
        }
        _ => {
            let entries: Vec<String> = heroku
                .iter()
                .filter_map(|(env, app)| {
                    Some(format!("{} = {}", toml_key(env.as_ref()?), quoted(app)))
                })
                .collect();
            let _ = writeln!(out, "heroku_app = {{ {} }}", entries.join(", "));
        }
    }
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    Ok(())
}

/// A table key as TOML needs it: bare when it can be (`adxstat`), quoted otherwise (`"web.app"`), so
/// a name with a dot or a space stays one key.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if bare {
        name.to_string()
    } else {
        toml::Value::String(name.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_hubot_deploy_keys() {
        let json = r##"{"hubot": {"provider": "heroku", "repository": "MyOrg/my-org-hubot",
            "environments": ["production", "staging"], "allowed_rooms": ["#ops"], "auto_merge": false,
            "required_contexts": ["ci/janky"], "production_url": "https://hubot.example",
            "heroku_production_name": "my-orgs-hubot", "github_token": "secret"}}"##;
        let toml = convert(json).unwrap();
        assert!(toml.contains("[apps.hubot]"));
        assert_eq!(toml_key("web.app"), "\"web.app\"");
        assert_eq!(toml_key("my app"), "\"my app\"");
        assert_eq!(toml_key("adx-stat_1"), "adx-stat_1");
        assert!(toml.contains("allowed_channels = [\"ops\"]"));
        assert!(toml.contains("environment_urls = { production = \"https://hubot.example\" }"));
        assert!(toml.contains("heroku_app = { production = \"my-orgs-hubot\" }"));
        let one = convert(
            r#"{"web": {"provider": "heroku", "repository": "o/web", "heroku_name": "web-app"}}"#,
        )
        .unwrap();
        assert!(one.contains("heroku_app = \"web-app\""), "{one}");
        let both = convert(
            r#"{"web": {"provider": "heroku", "repository": "o/web",
                "heroku_production_name": "web-prod", "heroku_staging_name": "web-stg"}}"#,
        )
        .unwrap();
        assert!(
            both.contains("heroku_app = { production = \"web-prod\", staging = \"web-stg\" }"),
            "{both}"
        );
        assert!(!toml.contains("\"secret\""));
        assert!(toml.contains("auto_merge = false"));
        assert!(!toml.contains("auto_merge = true"));
    }

    /// hubot-deploy and GitHub merge the default branch unless told not to; zbot does not unless told
    /// to: an app that leaves `auto_merge` out keeps hubot-deploy's behaviour.
    #[test]
    fn auto_merge_left_out_is_written_true() {
        let toml = convert(r#"{"hubot": {"repository": "MyOrg/hubot"}}"#).unwrap();
        let table: toml::Table = toml.parse().unwrap();
        assert_eq!(
            table["apps"]["hubot"]["auto_merge"],
            toml::Value::Boolean(true),
            "{toml}"
        );
    }
}
