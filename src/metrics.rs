//! zbot's metrics, served at `GET /metrics` in the Prometheus text format (OpenMetrics) through the
//! `prometheus-client` crate.
//!
//! One registry per process, as Prometheus scrapes a process: the parts record into [`global`] where
//! the thing happens (the runner, the queue, the webhook, the GitHub and Slack clients, the poller).
//! Names carry the `zbot_` prefix; counters end in `_total`, durations are seconds.
//!
//! | metric | labels |
//! |---|---|
//! | `zbot_deployments_total` | `app`, `environment`, `outcome` (success, failure, error) |
//! | `zbot_deploy_duration_seconds` (histogram) | `app`, `environment` |
//! | `zbot_queue_depth` (gauge) | |
//! | `zbot_queue_wait_seconds` (histogram): from stored to started | |
//! | `zbot_webhook_deliveries_total` | `event`, `result` |
//! | `zbot_github_requests_total`, `zbot_github_request_duration_seconds` | `result` (`2xx` … `5xx`, `304`, `timeout`, `network`) |
//! | `zbot_slack_requests_total`, `zbot_slack_request_duration_seconds` | `method`, `result` (`ok`, `error`, `timeout`) |
//! | `zbot_slack_socket_mode_reconnects_total` | |
//! | `zbot_github_polls_total` | `result` (`changed`, `unchanged`, `error`) |
//! | `zbot_build_info` | `version` |

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// A deployment's place.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Place {
    pub app: String,
    pub environment: String,
}

/// A deployment's place and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Ended {
    pub app: String,
    pub environment: String,
    pub outcome: String,
}

/// A webhook delivery: its `X-GitHub-Event` and what zbot answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Delivery {
    pub event: String,
    pub result: String,
}

/// The result of one outside call or poll.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub result: String,
}

/// A Slack Web API call: its method and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlackCall {
    pub method: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
}

fn seconds_histogram() -> Histogram {
    // 0.05 s to about 7 hours: API calls at the short end, deploys at the long one.
    Histogram::new(exponential_buckets(0.05, 2.0, 20))
}

/// Every metric zbot keeps.
pub struct Metrics {
    registry: Registry,
    pub deployments: Family<Ended, Counter>,
    pub deploy_duration: Family<Place, Histogram>,
    pub queue_depth: Gauge,
    pub queue_wait: Histogram,
    pub webhook_deliveries: Family<Delivery, Counter>,
    pub github_requests: Family<Outcome, Counter>,
    pub github_duration: Family<Outcome, Histogram>,
    pub slack_requests: Family<SlackCall, Counter>,
    pub slack_duration: Family<SlackCall, Histogram>,
    pub socket_mode_reconnects: Counter,
    pub github_polls: Family<Outcome, Counter>,
    pub auto_deploys: Family<Ended, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("zbot");
        let deployments = Family::<Ended, Counter>::default();
        registry.register(
            "deployments",
            "Deployments that ended, by app, environment and outcome",
            deployments.clone(),
        );
        let deploy_duration = Family::<Place, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register(
            "deploy_duration_seconds",
            "How long deploys ran, from start to end",
            deploy_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deployments stored and waiting for their turn",
            queue_depth.clone(),
        );
        let queue_wait = seconds_histogram();
        registry.register(
            "queue_wait_seconds",
            "How long deployments waited from being stored to starting",
            queue_wait.clone(),
        );
        let webhook_deliveries = Family::<Delivery, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "GitHub webhook deliveries, by event and result",
            webhook_deliveries.clone(),
        );
        let github_requests = Family::<Outcome, Counter>::default();
        registry.register(
            "github_requests",
            "GitHub API requests (each try), by result",
            github_requests.clone(),
        );
        let github_duration = Family::<Outcome, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register(
            "github_request_duration_seconds",
            "GitHub API request latency (each try), by result",
            github_duration.clone(),
        );
        let slack_requests = Family::<SlackCall, Counter>::default();
        registry.register(
            "slack_requests",
            "Slack Web API calls, by method and result",
            slack_requests.clone(),
        );
        let slack_duration = Family::<SlackCall, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register(
            "slack_request_duration_seconds",
            "Slack Web API call latency, by method and result",
            slack_duration.clone(),
        );
        let socket_mode_reconnects = Counter::default();
        registry.register(
            "slack_socket_mode_reconnects",
            "Socket Mode connections opened again after the first",
            socket_mode_reconnects.clone(),
        );
        let github_polls = Family::<Outcome, Counter>::default();
        registry.register(
            "github_polls",
            "Listings of a repository's deployments by [github] poll, by result",
            github_polls.clone(),
        );
        let auto_deploys = Family::<Ended, Counter>::default();
        registry.register(
            "auto_deploys",
            "What auto-deploy did with a green branch head, by app, environment and outcome (created, held, refused)",
            auto_deploys.clone(),
        );
        registry.register(
            "build",
            "zbot's version",
            Info::new(Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
        Metrics {
            registry,
            deployments,
            deploy_duration,
            queue_depth,
            queue_wait,
            webhook_deliveries,
            github_requests,
            github_duration,
            slack_requests,
            slack_duration,
            socket_mode_reconnects,
            github_polls,
            auto_deploys,
        }
    }

    /// Every metric in the text format Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// A deploy that ended: counted by outcome, its running time observed.
    pub fn deploy_ended(&self, app: &str, environment: &str, outcome: &str, took: Duration) {
        self.deployments
            .get_or_create(&Ended {
                app: app.to_string(),
                environment: environment.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.deploy_duration
            .get_or_create(&Place {
                app: app.to_string(),
                environment: environment.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// A webhook delivery answered.
    pub fn delivery(&self, event: &str, result: &str) {
        self.webhook_deliveries
            .get_or_create(&Delivery {
                event: event.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// One try of a GitHub request: `result` is its status class (`2xx`, `304`, …) or why none came.
    pub fn github_request(&self, result: &str, took: Duration) {
        let label = Outcome {
            result: result.to_string(),
        };
        self.github_requests.get_or_create(&label).inc();
        self.github_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// One Slack Web API call.
    pub fn slack_request(&self, method: &str, result: &str, took: Duration) {
        let label = SlackCall {
            method: method.to_string(),
            result: result.to_string(),
        };
        self.slack_requests.get_or_create(&label).inc();
        self.slack_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// What auto-deploy did with a green head there: `created`, `held` or `refused`.
    pub fn auto_deploy(&self, app: &str, environment: &str, outcome: &str) {
        self.auto_deploys
            .get_or_create(&Ended {
                app: app.to_string(),
                environment: environment.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// One poll of a repository's deployments.
    pub fn poll(&self, result: &str) {
        self.github_polls
            .get_or_create(&Outcome {
                result: result.to_string(),
            })
            .inc();
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The label of an HTTP status: `304` alone (a free conditional answer), else its class (`2xx`).
pub fn status_class(status: u16) -> String {
    if status == 304 {
        "304".to_string()
    } else {
        format!("{}xx", status / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_with_their_labels() {
        let metrics = Metrics::new();
        metrics.deploy_ended("adxstat", "production", "success", Duration::from_secs(3));
        metrics.delivery("deployment", "accepted");
        let text = metrics.encode();
        assert!(
            text.contains(
                "zbot_deployments_total{app=\"adxstat\",environment=\"production\",outcome=\"success\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "zbot_webhook_deliveries_total{event=\"deployment\",result=\"accepted\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("zbot_build_info{version=\""), "{text}");
        assert_eq!(status_class(304), "304");
        assert_eq!(status_class(201), "2xx");
        assert_eq!(status_class(503), "5xx");
    }
}
