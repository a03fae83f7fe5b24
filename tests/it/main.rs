//! zbot's integration tests: one binary, one module per area.

mod check;
mod deployer;
mod fakes;
mod grammar;
mod harness;
mod parse_cli;
mod recipes;
mod sshd;
mod support;
