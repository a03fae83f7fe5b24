//! zbot's integration tests: one binary, one module per area.

mod campfire;
mod changes;
mod chat;
mod check;
mod deployer;
mod docs;
mod fakes;
mod grammar;
mod hardening;
mod harness;
mod heroku;
mod hostile;
mod install;
mod left_behind;
mod metrics;
mod notify;
mod parse_cli;
mod polling;
mod recipes;
mod reliability;
mod shell;
mod slack_fake_conformance;
mod sshd;
mod support;
mod tidy;
mod tools;
