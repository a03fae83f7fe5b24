//! zbot's integration tests: one binary, one module per area.

mod check;
mod deployer;
mod fakes;
mod harness;
mod grammar;
mod parse_cli;
mod recipes;
mod support;
