//! zbot's metrics, served at `GET /metrics` in the Prometheus text format (OpenMetrics) through the
//! `prometheus-client` crate.
//!
//! One [`Metrics`] per running zbot (`app::start`, `app::start_local`), handed down like the store to
//! the parts that record where the thing happens (the runner, the queue, the webhook, the GitHub and
//! Slack clients, the poller, auto-deploy) and served by that zbot's own listener: two zbots in one
//! process (tests do this) count apart. Names carry the `zbot_` prefix; counters end in `_total`,
//! durations are seconds.
//!
//! Every label value comes from a bounded set, as each value is a series Prometheus keeps: apps are
//! configured ones, an environment is named only when it is one of its app's configured environments
//! (else `other`), and the rest are enums below.
//!
//! | metric | labels |
//! |---|---|
//! | `zbot_deployments_total` | `app`, `environment`, `outcome` (success, failure, error) |
//! | `zbot_deploy_duration_seconds` (histogram) | `app`, `environment` |
//! | `zbot_queue_depth` (gauge) | |
//! | `zbot_queue_wait_seconds` (histogram): from stored to started | |
//! | `zbot_webhook_deliveries_total` | `event`, `result` |
//! | `zbot_github_requests_total`, `zbot_github_request_duration_seconds` | `result` (`2xx` … `5xx`, `304`, `timeout`, `network`) |
//! | `zbot_slack_requests_total`, `zbot_slack_request_duration_seconds` | `method`, `result` (`ok`, `rate_limited`, `error`, `timeout`) |
//! | `zbot_slack_socket_mode_reconnects_total` | |
//! | `zbot_github_polls_total` | `result` (`changed`, `unchanged`, `error`) |
//! | `zbot_auto_deploys_total` | `app`, `environment`, `outcome` (created, held, refused) |
//! | `zbot_build_info` | `version` |

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::domain::{AppName, Environment};

impl EncodeLabelValue for AppName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// An environment as a label: its name when it is one of its app's configured environments,
/// `other` otherwise, so what GitHub sends cannot grow the series without bound.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum EnvironmentLabel {
    Configured(Environment),
    Other,
}

impl EnvironmentLabel {
    /// `environment` when `configured` (one of its app's environments in bot.toml), else `other`.
    pub fn of(environment: &Environment, configured: bool) -> EnvironmentLabel {
        if configured {
            EnvironmentLabel::Configured(environment.clone())
        } else {
            EnvironmentLabel::Other
        }
    }
}

impl EncodeLabelValue for EnvironmentLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        match self {
            EnvironmentLabel::Configured(environment) => encoder.write_str(environment.as_str()),
            EnvironmentLabel::Other => encoder.write_str("other"),
        }
    }
}

/// Label enums written as their snake-case names.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// How a deploy ended (GitHub's final deployment states).
    DeployOutcome { Success => "success", Failure => "failure", Error => "error" }
);

label_enum!(
    /// What auto-deploy did with a green branch head.
    AutoOutcome { Created => "created", Held => "held", Refused => "refused" }
);

label_enum!(
    /// The `X-GitHub-Event` of a delivery: the ones zbot reads, `other`, or `none` (no header).
    /// Read before the signature is checked, so a client that is not GitHub cannot make up values.
    DeliveryEvent {
        Deployment => "deployment",
        Ping => "ping",
        Status => "status",
        CheckSuite => "check_suite",
        CheckRun => "check_run",
        Other => "other",
        None => "none",
    }
);

impl DeliveryEvent {
    /// The label of an `X-GitHub-Event` header.
    pub fn of(header: Option<&str>) -> DeliveryEvent {
        match header {
            Some("deployment") => DeliveryEvent::Deployment,
            Some("ping") => DeliveryEvent::Ping,
            Some("status") => DeliveryEvent::Status,
            Some("check_suite") => DeliveryEvent::CheckSuite,
            Some("check_run") => DeliveryEvent::CheckRun,
            Some(_) => DeliveryEvent::Other,
            None => DeliveryEvent::None,
        }
    }
}

label_enum!(
    /// What zbot answered a webhook delivery, by HTTP status.
    DeliveryResult {
        Ok => "ok",
        Accepted => "accepted",
        Malformed => "malformed",
        Unsigned => "unsigned",
        TooSlow => "too_slow",
        TooLarge => "too_large",
        Refused => "refused",
        Unavailable => "unavailable",
        Other => "other",
    }
);

impl DeliveryResult {
    /// The label of the HTTP status a delivery was answered with.
    pub fn of(status: u16) -> DeliveryResult {
        match status {
            200 => DeliveryResult::Ok,
            202 => DeliveryResult::Accepted,
            400 => DeliveryResult::Malformed,
            401 => DeliveryResult::Unsigned,
            408 => DeliveryResult::TooSlow,
            413 => DeliveryResult::TooLarge,
            422 => DeliveryResult::Refused,
            503 => DeliveryResult::Unavailable,
            _ => DeliveryResult::Other,
        }
    }
}

label_enum!(
    /// One try of a GitHub request: its status class, `304` alone (a free conditional answer), or
    /// why no answer came.
    GitHubResult {
        Informational => "1xx",
        Success => "2xx",
        NotModified => "304",
        Redirect => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
        Timeout => "timeout",
        Network => "network",
    }
);

impl GitHubResult {
    /// The label of an HTTP status.
    pub fn of_status(status: u16) -> GitHubResult {
        match status {
            304 => GitHubResult::NotModified,
            100..200 => GitHubResult::Informational,
            200..300 => GitHubResult::Success,
            300..400 => GitHubResult::Redirect,
            400..500 => GitHubResult::ClientError,
            _ => GitHubResult::ServerError,
        }
    }
}

label_enum!(
    /// One try of a Slack Web API call.
    SlackResult { Ok => "ok", RateLimited => "rate_limited", Error => "error", Timeout => "timeout" }
);

label_enum!(
    /// One listing of a repository's deployments by `[github] poll`.
    PollResult { Changed => "changed", Unchanged => "unchanged", Error => "error" }
);

/// A deployment's place.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Place {
    pub app: AppName,
    pub environment: EnvironmentLabel,
}

/// A deployment's place and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Ended {
    pub app: AppName,
    pub environment: EnvironmentLabel,
    pub outcome: DeployOutcome,
}

/// What auto-deploy did at a place.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AutoDeployed {
    pub app: AppName,
    pub environment: EnvironmentLabel,
    pub outcome: AutoOutcome,
}

/// A webhook delivery: its `X-GitHub-Event` and what zbot answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Delivery {
    pub event: DeliveryEvent,
    pub result: DeliveryResult,
}

/// The result of one GitHub request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitHubCall {
    pub result: GitHubResult,
}

/// The result of one poll.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Poll {
    pub result: PollResult,
}

/// A Slack Web API call: its method (one of the few zbot calls, named in the code) and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlackCall {
    pub method: &'static str,
    pub result: SlackResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
}

fn seconds_histogram() -> Histogram {
    // 0.05 s to about 7 hours: API calls at the short end, deploys at the long one.
    Histogram::new(exponential_buckets(0.05, 2.0, 20))
}

/// Every metric one zbot keeps, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    pub deployments: Family<Ended, Counter>,
    pub deploy_duration: Family<Place, Histogram>,
    pub queue_depth: Gauge,
    pub queue_wait: Histogram,
    pub webhook_deliveries: Family<Delivery, Counter>,
    pub github_requests: Family<GitHubCall, Counter>,
    pub github_duration: Family<GitHubCall, Histogram>,
    pub slack_requests: Family<SlackCall, Counter>,
    pub slack_duration: Family<SlackCall, Histogram>,
    pub socket_mode_reconnects: Counter,
    pub github_polls: Family<Poll, Counter>,
    pub auto_deploys: Family<AutoDeployed, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, every counter at zero, in a registry of its own.
    pub fn new() -> Metrics {
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
        let github_requests = Family::<GitHubCall, Counter>::default();
        registry.register(
            "github_requests",
            "GitHub API requests (each try), by result",
            github_requests.clone(),
        );
        let github_duration = Family::<GitHubCall, Histogram>::new_with_constructor(
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
        let github_polls = Family::<Poll, Counter>::default();
        registry.register(
            "github_polls",
            "Listings of a repository's deployments by [github] poll, by result",
            github_polls.clone(),
        );
        let auto_deploys = Family::<AutoDeployed, Counter>::default();
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
    pub fn deploy_ended(
        &self,
        app: &AppName,
        environment: EnvironmentLabel,
        outcome: DeployOutcome,
        took: Duration,
    ) {
        self.deployments
            .get_or_create(&Ended {
                app: app.clone(),
                environment: environment.clone(),
                outcome,
            })
            .inc();
        self.deploy_duration
            .get_or_create(&Place {
                app: app.clone(),
                environment,
            })
            .observe(took.as_secs_f64());
    }

    /// A webhook delivery answered.
    pub fn delivery(&self, event: DeliveryEvent, result: DeliveryResult) {
        self.webhook_deliveries
            .get_or_create(&Delivery { event, result })
            .inc();
    }

    /// One try of a GitHub request.
    pub fn github_request(&self, result: GitHubResult, took: Duration) {
        let label = GitHubCall { result };
        self.github_requests.get_or_create(&label).inc();
        self.github_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// One try of a Slack Web API call.
    pub fn slack_request(&self, method: &'static str, result: SlackResult, took: Duration) {
        let label = SlackCall { method, result };
        self.slack_requests.get_or_create(&label).inc();
        self.slack_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// What auto-deploy did with a green head there.
    pub fn auto_deploy(&self, app: &AppName, environment: EnvironmentLabel, outcome: AutoOutcome) {
        self.auto_deploys
            .get_or_create(&AutoDeployed {
                app: app.clone(),
                environment,
                outcome,
            })
            .inc();
    }

    /// One poll of a repository's deployments.
    pub fn poll(&self, result: PollResult) {
        self.github_polls.get_or_create(&Poll { result }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_with_their_labels() {
        let metrics = Metrics::new();
        let app: AppName = "adxstat".parse().unwrap();
        let production: Environment = "production".parse().unwrap();
        metrics.deploy_ended(
            &app,
            EnvironmentLabel::of(&production, true),
            DeployOutcome::Success,
            Duration::from_secs(3),
        );
        metrics.deploy_ended(
            &app,
            EnvironmentLabel::of(&"made-up".parse().unwrap(), false),
            DeployOutcome::Error,
            Duration::from_secs(1),
        );
        metrics.delivery(
            DeliveryEvent::of(Some("deployment")),
            DeliveryResult::of(202),
        );
        let text = metrics.encode();
        for line in [
            "zbot_deployments_total{app=\"adxstat\",environment=\"production\",outcome=\"success\"} 1",
            "zbot_deployments_total{app=\"adxstat\",environment=\"other\",outcome=\"error\"} 1",
            "zbot_webhook_deliveries_total{event=\"deployment\",result=\"accepted\"} 1",
            "zbot_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains("made-up"), "{text}");
    }

    #[test]
    fn labels_of_statuses_and_headers() {
        for (status, label) in [
            (304, "304"),
            (201, "2xx"),
            (302, "3xx"),
            (404, "4xx"),
            (503, "5xx"),
        ] {
            assert_eq!(GitHubResult::of_status(status).as_str(), label, "{status}");
        }
        for (header, label) in [
            (Some("deployment"), "deployment"),
            (Some("push"), "other"),
            (None, "none"),
        ] {
            assert_eq!(DeliveryEvent::of(header).as_str(), label);
        }
        for (status, label) in [(202, "accepted"), (401, "unsigned"), (418, "other")] {
            assert_eq!(DeliveryResult::of(status).as_str(), label);
        }
    }

    #[test]
    fn two_sets_of_metrics_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.socket_mode_reconnects.inc();
        assert_eq!(a.socket_mode_reconnects.get(), 1);
        assert_eq!(b.socket_mode_reconnects.get(), 0);
    }
}
