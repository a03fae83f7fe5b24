//! The deployment payload, hubot-deploy and Heaven compatible: `{name, robotName, hosts, notify{…},
//! config, reason}`. zbot writes it when chat asks for a deploy ([`Payload`]) and reads it back from
//! webhooks and the store ([`Parts::of`]), so the four places that once read it by key share one typed
//! reading.
//!
//! Reading is strict where a value reaches a process (`hosts` must validate, or the deployment is refused)
//! and lenient where it only says where to talk (`notify` that does not validate is ignored with a warning,
//! and the deployment is announced in the default channel).

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

impl Parts {
    /// Reads a payload (an object, or hubot-deploy's JSON text of one). `Err` when `hosts` or `name` is
    /// present but does not validate.
    pub fn of(payload: &Value) -> Result<Parts, Invalid> {
        let raw: Raw = match payload {
            Value::Object(_) => serde_json::from_value(payload.clone()).unwrap_or_default(),
            Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
            _ => Raw::default(),
        };
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
            _ => None,
        };
        let name = text(raw.name).map(|n| n.parse()).transpose()?;
        let hosts = text(raw.hosts).map(|h| h.parse()).transpose()?;
        let notify = raw
            .notify
            .and_then(|n| match serde_json::from_value::<Notify>(n) {
                Ok(notify) => Some(notify),
                Err(e) => {
                    tracing::warn!("ignoring a deployment payload's notify: {e}");
                    None
                }
            });
        Ok(Parts {
            name,
            hosts,
            notify,
            reason: text(raw.reason),
        })
    }
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
        let odd_notify = Parts::of(&json!({"notify": {"room": "<!channel>"}})).unwrap();
        assert!(odd_notify.notify.is_none());
    }
}
