//! zbot: a Slack bot with a built-in deployer.
//!
//! A person types `zbot deploy adxstat/v0.0.1 to production`; zbot parses it ([`command`]), checks it
//! against `bot.toml` ([`config`]), creates a GitHub deployment, receives GitHub's `deployment` webhook
//! ([`webhook`]), queues it ([`store`], [`scheduler`]), runs the deploy recipe from `commands/`
//! ([`recipe`], [`runner`]) in a checkout of that sha, streams the output to a gist, posts deployment
//! statuses ([`forge`]), and publishes every change ([`events`]) for the reply in the Slack thread.
//!
//! Modules, in the order data flows through them:
//! - [`command`]: the chat grammar, text in, typed [`command::Command`] out. Pure.
//! - [`config`]: `bot.toml` in, a validated [`config::Config`] out; also converts hubot-deploy `apps.json`.
//! - [`webhook`]: the axum listener: signature check, storing deployments, health and log pages.
//! - [`poll`]: the same deployments found by polling GitHub, for installations without an inbound port.
//! - [`loglink`]: the unguessable links to zbot's own log pages.
//! - [`store`]: all SQL: deployments, locks.
//! - [`scheduler`]: which queued deployment runs next; cancel; restart recovery.
//! - [`runner`]: one deployment from start to end: checkout, recipe, process, log, statuses.
//! - [`recipe`]: deploy recipes (`commands/*.toml`): detection in a checkout and argv rendering.
//! - [`forge`]: GitHub statuses and gists (the only module that names octocrab).
//! - [`events`]: deployment state changes, for the chat side.
//! - [`reply`]: sentences people read.
//! - [`chat`], [`policy`], [`slack`]: the conversation, its rules, and Slack.
//! - [`campfire`]: Campfire as a second chat beside Slack.
//! - [`shell`]: the bot in a terminal, with the embedded forge; [`example`]: its example app.
//! - [`http`]: the HTTP client for Heroku, Campfire and GitHub's archive redirect.
//! - [`app`]: wiring and shutdown.
//! - [`secret`], [`suggest`]: secrets that never print; "did you mean".
//! - [`metrics`]: the Prometheus metrics at `/metrics`.

pub mod app;
pub mod autodeploy;
pub mod campfire;
pub mod chat;
pub mod clock;
pub mod command;
pub mod config;
pub mod domain;
pub mod events;
pub mod example;
pub mod forge;
pub mod http;
pub mod loglink;
pub mod logpage;
pub mod metrics;
pub mod mrkdwn;
pub mod payload;
pub mod policy;
pub mod poll;
pub mod recipe;
pub mod reply;
pub mod runner;
pub mod scheduler;
pub mod secret;
pub mod shell;
pub mod slack;
pub mod store;
pub mod suggest;
pub mod webhook;
