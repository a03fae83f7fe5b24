//! zbot's integration tests: one binary, one module per area.

mod check;
mod grammar;
mod parse_cli;
mod recipes;
mod support;
