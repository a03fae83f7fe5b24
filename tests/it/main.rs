//! zbot's integration tests: one binary, one module per area.

mod chat;
mod check;
mod deployer;
mod fakes;
mod grammar;
mod harness;
mod parse_cli;
mod recipes;
mod slack_fake_conformance;
mod sshd;
mod support;
