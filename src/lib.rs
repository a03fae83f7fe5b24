//! zbot: a Slack bot with a built-in deployer.
//!
//! A person types `zbot deploy adxstat/v0.0.1 to production`; zbot parses it ([`command`]), checks it
//! against `bot.toml` ([`config`]), creates a GitHub deployment, receives GitHub's `deployment` webhook,
//! runs the deploy recipe from `commands/` ([`recipe`]) in a checkout of that sha, streams the output to a
//! gist, posts deployment statuses, and answers in the Slack thread.
//!
//! Modules, in the order data flows through them:
//! - [`command`]: the chat grammar, text in, typed [`command::Command`] out. Pure.
//! - [`config`]: `bot.toml` in, a validated [`config::Config`] out; also converts hubot-deploy `apps.json`.
//! - [`recipe`]: deploy recipes (`commands/*.toml`): detection in a checkout and argv rendering.
//! - [`secret`]: values that must never be printed, and the redactor that enforces it.
//! - [`suggest`]: "did you mean" for typos.

pub mod command;
pub mod config;
pub mod recipe;
pub mod secret;
pub mod suggest;
