//! Case 8: where the milliseconds of one deploy start go. One zbot deploy start (after a warm-up
//! start, so the repository cache and the working tree are warm), from the bench sending the
//! `deployment` webhook to the recipe's first statement, step by step, from four sources on one clock:
//! the bench's own send and answer times, zbot's log lines (`RUST_LOG=zbot=trace,sqlx::query=debug`,
//! time-stamped to the microsecond), git's trace2 events (`GIT_TRACE2_EVENT`: every git process zbot
//! starts, its start and exit), and the fake GitHub's arrival times (gists, statuses).
//!
//! The traced zbot logs more than the measured one of case 2, so its steps are slightly slower; the
//! trace says where the time goes, case 2 says how much there is.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::{
    Args, Connection, FakeGitHub, Result, SECRET, Setup, delivery, deploy_repo, epoch, epoch_of,
    start_script, start_zbot, started_at,
};

/// One step: when (seconds since the epoch), what happened, who saw it.
struct Step {
    at: f64,
    what: String,
    seen_by: &'static str,
}

/// How long after the recipe's first statement steps are still shown (what zbot does meanwhile).
const AFTER: f64 = 0.05;

/// Traces one deploy start; the Markdown lines to print.
pub async fn deploy_start(args: &Args) -> Result<Vec<String>> {
    let dir = args.work.join("case8");
    std::fs::create_dir_all(&dir)?;
    let record = dir.join("starts");
    let script = std::fs::read_to_string(start_script(&dir, &record)?)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), &script)?;
    let github = FakeGitHub::start().await;
    let git_trace = dir.join("git-trace2.json");
    let zbot = start_zbot(
        args,
        &dir,
        &Setup {
            env: vec![
                ("RUST_LOG", "warn,zbot=trace,sqlx::query=debug".to_string()),
                ("GIT_TRACE2_EVENT", git_trace.display().to_string()),
            ],
            ..Setup::new(&github, &clone_url)
        },
    )?;
    let mut connection = Connection::open(zbot.addr).await?;
    let mut steps = Vec::new();
    for (id, traced) in [(60_000u64, false), (60_001, true)] {
        let log_from = zbot.log().len();
        let body = delivery(&args.fixture, id, "octo/bench", &clone_url, &sha);
        let sent = epoch();
        let status = connection
            .deliver(
                "/webhooks/github",
                "deployment",
                &format!("trace-{id}"),
                SECRET,
                &body,
            )
            .await?;
        let answered = epoch();
        let started = started_at(&record, &id.to_string())?;
        github.final_status(id, Duration::from_secs(60)).await;
        if !traced {
            continue;
        }
        steps.push(Step {
            at: sent,
            what: "the bench sends the `deployment` webhook".into(),
            seen_by: "bench",
        });
        steps.push(Step {
            at: answered,
            what: format!("the bench has zbot's answer ({status})"),
            seen_by: "bench",
        });
        steps.push(Step {
            at: started,
            what: "**the recipe's first statement**".into(),
            seen_by: "recipe",
        });
        steps.extend(zbot.log()[log_from..].iter().filter_map(|l| log_step(l)));
        steps.extend(git_steps(&git_trace)?);
        for (at, call) in github.requests() {
            if !call.ends_with("/statuses") {
                steps.push(Step {
                    at: epoch_of(at),
                    what: format!("GitHub receives `{call}`"),
                    seen_by: "fake GitHub",
                });
            }
        }
        for status in github.statuses(id) {
            steps.push(Step {
                at: epoch_of(status.at),
                what: format!("GitHub receives the status `{}`", status.state),
                seen_by: "fake GitHub",
            });
        }
        steps.retain(|s| s.at >= sent && s.at <= started + AFTER);
        steps.sort_by(|a, b| a.at.total_cmp(&b.at));
        let mut lines = vec![
            format!(
                "Trace of one deploy start (warm; zbot's log lines, git's trace2 events and the fake GitHub's \
                 arrivals on one clock; ms after the bench sent the webhook; shown until {:.0} ms after the \
                 recipe's first statement, which came after {:.2} ms):",
                AFTER * 1000.0,
                (started - sent) * 1000.0
            ),
            String::new(),
            "| ms | step | seen by |".into(),
            "|---:|---|---|".into(),
        ];
        for step in &steps {
            lines.push(format!(
                "| {:.2} | {} | {} |",
                (step.at - sent) * 1000.0,
                step.what,
                step.seen_by
            ));
        }
        lines.extend(phases(sent, answered, started, &steps));
        drop(zbot);
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(lines);
    }
    Err("no deploy start was traced".into())
}

/// The trace in four phases (ms): the answer, what zbot does before the checkout, the git
/// processes, and the recipe's start after the last of them.
fn phases(sent: f64, answered: f64, started: f64, steps: &[Step]) -> Vec<String> {
    let git: Vec<f64> = steps
        .iter()
        .filter(|s| s.seen_by == "git trace2" && s.at <= started)
        .map(|s| s.at)
        .collect();
    let ms = |from: f64, to: f64| format!("{:.2} ms", (to - from) * 1000.0);
    let mut lines = vec![
        String::new(),
        "In phases:".into(),
        String::new(),
        format!(
            "- webhook sent → answer (the job stored durably): {}",
            ms(sent, answered)
        ),
    ];
    match (git.first(), git.last()) {
        (Some(&first), Some(&last)) => lines.extend([
            format!(
                "- answer → first git process (the claim, the grant and the guards: store): {}",
                ms(answered, first)
            ),
            format!(
                "- git processes, first start → last exit: {}",
                ms(first, last)
            ),
            format!(
                "- last git exit → the recipe's first statement: {}",
                ms(last, started)
            ),
        ]),
        _ => lines.push(format!(
            "- answer → the recipe's first statement (no git process seen): {}",
            ms(answered, started)
        )),
    }
    lines
}

/// Text fit for one Markdown table cell, at most `max` characters.
fn cell(text: &str, max: usize) -> String {
    let mut text: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
        .replace('`', "'");
    if text.chars().count() > max {
        text = text.chars().take(max).collect::<String>() + "…";
    }
    text
}

/// Seconds since the epoch of an RFC 3339 time stamp.
fn time_of(stamp: &str) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    Some(at.timestamp_micros() as f64 / 1e6)
}

/// A zbot log line (its time stamp is among its first tokens: an instance id may come first).
fn log_step(line: &str) -> Option<Step> {
    let mut rest = line;
    for _ in 0..2 {
        let (token, after) = rest.split_once(' ')?;
        if let Some(at) = time_of(token) {
            return Some(Step {
                at,
                what: statement(after)
                    .unwrap_or_else(|| format!("zbot logs `{}`", cell(after, 160))),
                seen_by: "zbot's log",
            });
        }
        rest = after;
    }
    None
}

/// A statement sqlx logged (`sqlx::query` at debug): its summary and how long it took.
fn statement(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("sqlx::query: summary=\"")?;
    let (summary, rest) = rest.split_once('"')?;
    let elapsed = rest
        .split_whitespace()
        .find_map(|field| field.strip_prefix("elapsed="))
        .unwrap_or("?");
    Some(format!("store: `{}` took {elapsed}", cell(summary, 80)))
}

/// The start and the exit of every git process in a trace2 event file.
fn git_steps(file: &Path) -> Result<Vec<Step>> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut argv = std::collections::HashMap::new();
    let mut steps = Vec::new();
    for event in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let (Some(kind), Some(sid), Some(at)) = (
            event["event"].as_str(),
            event["sid"].as_str(),
            event["time"].as_str().and_then(time_of),
        ) else {
            continue;
        };
        match kind {
            "start" => {
                let words: Vec<&str> = event["argv"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let command = cell(&words.join(" "), 120);
                steps.push(Step {
                    at,
                    what: format!("git starts: `{command}`"),
                    seen_by: "git trace2",
                });
                argv.insert(sid.to_string(), command);
            }
            "exit" => steps.push(Step {
                at,
                what: format!(
                    "git exits ({}): `{}`",
                    event["code"],
                    argv.get(sid).map_or("?", String::as_str)
                ),
                seen_by: "git trace2",
            }),
            _ => {}
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_become_steps_on_the_epoch_clock() {
        let cases = [
            (
                "2026-11-30T00:10:00.250000Z  INFO zbot::webhook: deployment accepted deployment=7",
                Some((
                    1_795_997_400.25,
                    "zbot logs `INFO zbot::webhook: deployment accepted deployment=7`",
                )),
            ),
            (
                "instance=a-1 2026-11-30T00:10:00.000001Z  INFO zbot::runner: deploy started",
                Some((
                    1_795_997_400.000_001,
                    "zbot logs `INFO zbot::runner: deploy started`",
                )),
            ),
            (
                "2026-11-30T00:10:00.5Z DEBUG sqlx::query: summary=\"SELECT * FROM locks …\" db.statement=\"\\n\\nSELECT * FROM locks\\n\" rows_affected=1 elapsed=104.5µs elapsed_secs=0.0001",
                Some((
                    1_795_997_400.5,
                    "store: `SELECT * FROM locks …` took 104.5µs",
                )),
            ),
            ("    continued db.statement line", None),
            ("no time stamp here at all", None),
        ];
        for (line, expected) in cases {
            let step = log_step(line).map(|s| (s.at, s.what));
            match (step, expected) {
                (Some((at, what)), Some((want_at, want_what))) => {
                    assert!((at - want_at).abs() < 1e-6, "{line}: {at}");
                    assert_eq!(what, want_what, "{line}");
                }
                (None, None) => {}
                (step, _) => panic!("{line}: {:?}", step.map(|s| s.1)),
            }
        }
    }

    #[test]
    fn cells_stay_one_markdown_cell() {
        for (text, max, expected) in [
            ("a | b", 10, "a \\| b"),
            ("`code`", 10, "'code'"),
            ("one\n  two", 10, "one two"),
            ("abcdefghij", 4, "abcd…"),
        ] {
            assert_eq!(cell(text, max), expected);
        }
    }

    #[test]
    fn git_trace_events_name_the_command_at_its_exit() {
        let dir = std::env::temp_dir().join(format!("zbot-bench-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("trace.json");
        std::fs::write(
            &file,
            concat!(
                r#"{"event":"version","sid":"s1","time":"2026-11-30T00:10:00.000000Z","evt":"3"}"#, "\n",
                r#"{"event":"start","sid":"s1","time":"2026-11-30T00:10:00.001000Z","argv":["git","clean","-ffdxq"]}"#, "\n",
                r#"{"event":"exit","sid":"s1","time":"2026-11-30T00:10:00.003000Z","code":0}"#, "\n",
            ),
        )
        .expect("written");
        let steps = git_steps(&file).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        let seen: Vec<&str> = steps.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            seen,
            [
                "git starts: `git clean -ffdxq`",
                "git exits (0): `git clean -ffdxq`"
            ]
        );
    }
}
