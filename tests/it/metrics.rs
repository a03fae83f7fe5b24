//! `GET /metrics`: Prometheus's text format, read back with a Prometheus text-format parser, whose
//! counters move with a deploy.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::fakes::github::FakeGitHub;
use crate::harness::{FABFILE, TestRepo, config_text, deploy, http, start_zbot};

const DEADLINE: Duration = Duration::from_secs(60);

/// Scrapes zbot's `/metrics` and parses it.
pub async fn scrape(zbot: std::net::SocketAddr) -> Scrape {
    let (status, body) = http(zbot, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of the sample `name` whose labels include all of `labels` (0 when there is none yet).
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

/// With `[webhook] metrics_token`, `/metrics` answers only its bearer.
#[tokio::test(flavor = "multi_thread")]
async fn a_metrics_token_is_asked_for_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let token = "scrape-me-0123456789abcdef";
    let config = config_text(&github, &repo, "", "").replace(
        "[webhook]\n",
        &format!("[webhook]\nmetrics_token = \"{token}\"\n"),
    );
    let zbot = start_zbot(dir.path(), &config).await;
    for authorization in [
        None,
        Some("Bearer wrong-token-0123456789abcdef".to_string()),
    ] {
        let headers: Vec<(&str, String)> = authorization
            .into_iter()
            .map(|value| ("Authorization", value))
            .collect();
        let (status, body) = http(zbot.addr, "GET", "/metrics", &headers, b"").await;
        assert_eq!(status, 401, "{headers:?}");
        assert!(!body.contains("zbot_"), "{body}");
    }
    let (status, body) = http(
        zbot.addr,
        "GET",
        "/metrics",
        &[("Authorization", format!("Bearer {token}"))],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("zbot_build_info"), "{body}");
    zbot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_a_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let zbot = start_zbot(dir.path(), &config_text(&github, &repo, "", "")).await;

    let before = scrape(zbot.addr).await;
    assert!(
        before
            .samples
            .iter()
            .any(|s| s.metric == "zbot_build_info" && s.labels.get("version").is_some()),
        "{:?}",
        before.samples
    );
    let place = [
        ("app", "adxstat"),
        ("environment", "production"),
        ("outcome", "success"),
    ];
    let accepted = [("event", "deployment"), ("result", "accepted")];

    deploy(zbot.addr, 8101, "v0.0.1", &sha, "production").await;
    let last = github.final_status(8101, DEADLINE).await;
    assert_eq!(last.state, "success");

    // The outcome is counted before it is posted to GitHub, so it is there by now.
    let after = scrape(zbot.addr).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    // This zbot's own metrics: exactly this deploy moved them.
    assert_eq!(
        moved("zbot_deployments_total", &place),
        1.0,
        "{:?}",
        after.samples
    );
    assert_eq!(
        moved(
            "zbot_deploy_duration_seconds_count",
            &[("app", "adxstat"), ("environment", "production")]
        ),
        1.0
    );
    assert_eq!(moved("zbot_webhook_deliveries_total", &accepted), 1.0);
    assert!(moved("zbot_github_requests_total", &[("result", "2xx")]) >= 3.0);
    assert_eq!(moved("zbot_queue_wait_seconds_count", &[]), 1.0);
    assert!(
        after.samples.iter().any(|s| s.metric == "zbot_queue_depth"),
        "the queue depth is a gauge: {:?}",
        after.samples
    );

    // A forged delivery is counted by its answer.
    let (status, _) = http(
        zbot.addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "deployment".to_string()),
            ("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64))),
        ],
        b"{}",
    )
    .await;
    assert_eq!(status, 401);
    let forged = scrape(zbot.addr).await;
    let unsigned = [("event", "deployment"), ("result", "unsigned")];
    assert_eq!(
        value(&forged, "zbot_webhook_deliveries_total", &unsigned),
        1.0
    );
    zbot.stop().await.unwrap();
}
