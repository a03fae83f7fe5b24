//! The deployment payload, hubot-deploy and Heaven compatible: `{name, robotName, hosts, notify{…},
//! config, reason}`. zbot writes it when chat asks for a deploy ([`Payload`]) and reads it back from
//! webhooks and the store ([`Parts::of`]), so the four places that once read it by key share one typed
//! reading.
//!
//! Reading is strict where a value reaches a process (`hosts` must validate, or the deployment is refused)
//! and lenient where it only says where to talk: `notify` is read field by field, and a field that does
//! not validate is left out with a warning while the others are kept. hubot-deploy 0.13 sends what its
//! chat adapter knows (`src/models/deployment.coffee`, `unfilteredRequestBody`): Slack a channel and a
//! user name, the shell adapter the room `Shell`, Campfire numbers for the room and the user, HipChat
//! room and user addresses (`…@conf.hipchat.com`), Flowdock a `thread_id` and a numeric `message_id`.
//! None of them costs the deployment its user.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{AppName, Hosts, Invalid, Notify};

/// What zbot reads from a payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    /// `name`: the app, when several apps deploy one repository.
    pub name: Option<AppName>,
    /// `hosts`: the hosts a deploy is limited to; empty means all of the environment's.
    pub hosts: Option<Hosts>,
    /// `notify`: where chat talks about the deployment.
    pub notify: Option<Notify>,
    /// `reason`: why a `deploy:lock` locks.
    pub reason: Option<String>,
    /// `zbot_grant`: the token of what zbot asked for when it created the deployment.
    pub grant: Option<String>,
}

/// The payload as serde reads it: every field optional, unknown keys ignored.
#[derive(Deserialize, Default)]
struct Raw {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    hosts: Option<Value>,
    #[serde(default)]
    notify: Option<Value>,
    #[serde(default)]
    reason: Option<Value>,
    #[serde(default)]
    zbot_grant: Option<Value>,
}

impl Parts {
    /// Reads a payload (an object, or hubot-deploy's JSON text of one). `Err` when `hosts` or `name` is
    /// present but does not validate.
    pub fn of(payload: &Value) -> Result<Parts, Invalid> {
        let unreadable = |rule| Invalid {
            kind: crate::domain::ValueKind::Payload,
            value: String::new(),
            problem: crate::domain::Problem::Format(rule),
        };
        // A payload zbot cannot read is refused, never read as empty: an empty one would drop `hosts`
        // and deploy to every host of the environment.
        let raw: Raw = match payload {
            Value::Object(_) => serde_json::from_value(payload.clone())
                .map_err(|_| unreadable("is not a hubot-deploy payload"))?,
            Value::String(text) if text.trim().is_empty() => Raw::default(),
            Value::String(text) => serde_json::from_str(text)
                .map_err(|_| unreadable("is text that is not a JSON object"))?,
            Value::Null => Raw::default(),
            _ => return Err(unreadable("is neither an object nor JSON text")),
        };
        // `name`, `hosts`: text (empty means none); anything else is refused, not ignored.
        let strict = |v: Option<Value>, what: &'static str| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(unreadable(what)),
        };
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
            _ => None,
        };
        let name = strict(raw.name, "has a `name` that is not text")?
            .map(|n| n.parse())
            .transpose()?;
        let hosts = strict(raw.hosts, "has `hosts` that are not text")?
            .map(|h| h.parse())
            .transpose()?;
        let notify = raw.notify.and_then(notify_of);
        Ok(Parts {
            name,
            hosts,
            notify,
            reason: text(raw.reason),
            grant: text(raw.zbot_grant),
        })
    }
}

/// `notify` read field by field: a field that does not validate is left out (with a warning), the others
/// are kept.
fn notify_of(value: Value) -> Option<Notify> {
    let Value::Object(fields) = value else {
        tracing::warn!("ignoring a deployment payload's notify: not an object");
        return None;
    };
    fn field<T: DeserializeOwned>(fields: &Map<String, Value>, name: &str) -> Option<T> {
        let value = fields.get(name).filter(|v| !v.is_null())?;
        serde_json::from_value(value.clone())
            .map_err(|e| tracing::warn!("ignoring a deployment payload's notify.{name}: {e}"))
            .ok()
    }
    Some(Notify {
        adapter: field(&fields, "adapter"),
        room: field(&fields, "room"),
        thread_ts: field(&fields, "thread_ts"),
        user: field(&fields, "user"),
        user_name: field(&fields, "user_name"),
        team_id: field(&fields, "team_id"),
    })
}

/// The payload of a deployment zbot asks GitHub for.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub name: AppName,
    #[serde(rename = "robotName")]
    pub robot_name: String,
    /// Empty when the deploy is not limited to some hosts (hubot-deploy sends `""`).
    pub hosts: String,
    pub notify: Notify,
    /// The app's public settings (nothing secret).
    pub config: Value,
    /// Why a `deploy:lock` locks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The token of what zbot asked for (`store::Grant`), the only way a payload's chat user, override
    /// or approval is believed.
    #[serde(rename = "zbot_grant", skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// zbot deployed this by itself (auto-deploy on green CI), no one asked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub automatic: bool,
}

impl Payload {
    /// As JSON, the form GitHub stores.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_hubot_deploy_and_zbot_write() {
        let slack = Parts::of(&json!({
            "name": "adxstat", "robotName": "hubot", "hosts": "",
            "notify": {"adapter": "slack", "room": "C0CHAN", "thread_ts": "1700000000.000100",
                       "user": "U0BOB", "user_name": "bob"},
            "config": {"provider": "capistrano"}
        }))
        .unwrap();
        assert_eq!(slack.name.unwrap().as_str(), "adxstat");
        assert!(slack.hosts.is_none());
        assert!(slack.notify.unwrap().slack_place().is_some());
        let text = Parts::of(&json!("{\"name\":\"adxstat\",\"hosts\":\"web1\"}")).unwrap();
        assert_eq!(text.hosts.unwrap().as_str(), "web1");
        assert_eq!(Parts::of(&Value::Null).unwrap(), Parts::default());
    }

    #[test]
    fn refuses_hosts_and_names_that_do_not_validate() {
        for payload in [
            json!({"hosts": "-oProxyCommand=x"}),
            json!({"hosts": "web1;reboot"}),
            json!({"name": "../x"}),
        ] {
            assert!(Parts::of(&payload).is_err(), "{payload}");
        }
        let odd_notify = Parts::of(&json!({"notify": {"room": "<!channel>", "user": "U0BOB"}}))
            .unwrap()
            .notify
            .unwrap();
        assert!(odd_notify.room.is_none());
        assert_eq!(odd_notify.user.unwrap().as_str(), "U0BOB");
    }

    /// `notify` as hubot-deploy 0.13.27 writes it for each chat adapter (`robot.adapterName`, the
    /// adapter's room and user): the user is kept in every case; only Slack names a Slack place.
    #[test]
    fn reads_hubot_deploy_notify_from_every_adapter() {
        let cases = [
            // Slack: a channel name and the user's name; message_id and thread_id default to "unknown".
            (
                json!({"adapter": "slack", "room": "ops", "user": "atmos",
                       "message_id": "unknown", "thread_id": "unknown"}),
                "atmos",
                Some("ops"),
                true,
            ),
            // The shell adapter: room `Shell`, user id 1.
            (
                json!({"adapter": "shell", "room": "Shell", "user": 1, "user_name": "Shell"}),
                "1",
                Some("Shell"),
                false,
            ),
            // Campfire: numbers for the room and the user.
            (
                json!({"adapter": "campfire", "room": 564573, "user": 1232913,
                       "message_id": null, "thread_id": null}),
                "1232913",
                Some("564573"),
                false,
            ),
            // HipChat: the user's and the room's XMPP addresses.
            (
                json!({"adapter": "hipchat", "room": "12345_ops@conf.hipchat.com",
                       "user": "12345_67890@chat.hipchat.com"}),
                "12345_67890@chat.hipchat.com",
                Some("12345_ops@conf.hipchat.com"),
                false,
            ),
            // Flowdock: a flow id, a thread id and a numeric message id.
            (
                json!({"adapter": "flowdock", "room": "d5a4c3b2-0f1e-4d3c-8b7a-6f5e4d3c2b1a",
                       "user": "atmos", "message_id": 3811, "thread_id": "cK0q9eFgHiJkLmNo"}),
                "atmos",
                Some("d5a4c3b2-0f1e-4d3c-8b7a-6f5e4d3c2b1a"),
                false,
            ),
            // hubot-deploy's defaults when the adapter told it nothing.
            (
                json!({"adapter": "unknown", "room": "unknown", "user": "unknown"}),
                "unknown",
                Some("unknown"),
                false,
            ),
        ];
        for (notify, user, room, slack) in cases {
            let payload = json!({"name": "hubot", "robotName": "hubot", "hosts": "", "notify": notify,
                                 "config": {"provider": "fabric", "auto_merge": true}});
            let parts = Parts::of(&payload).unwrap();
            let notify = parts.notify.expect("notify is read");
            assert_eq!(
                notify.user.as_ref().map(|u| u.as_str()),
                Some(user),
                "{payload}"
            );
            assert_eq!(notify.room.as_ref().map(|r| r.as_str()), room, "{payload}");
            assert_eq!(notify.slack_place().is_some(), slack, "{payload}");
        }
    }
}
