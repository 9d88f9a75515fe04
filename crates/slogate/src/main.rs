//! The `slogate` binary: a release gate that watches real traffic.
//!
//! Where things live (ARCHITECTURE.md has the longer map):
//! - [`cli`]: the command line, one file per command, and the exit codes;
//! - [`config`]: the YAML file format, its defaults, and validation into the runtime [`config::Config`];
//! - [`server`]: `slogate serve` — listeners, background tasks, startup and shutdown;
//! - [`auth`]: bearer tokens, API roles and TLS on the listeners;
//! - [`api`]: the HTTP API on :8080 (one file per resource), the gRPC verdict service and the dashboard;
//! - [`engine`]: the state the server keeps between requests — gates and the verdict log,
//!   alert state machines, stored baselines;
//! - [`report`]: renderings for people — the verdict table, SQL output, the daily canary report
//!   and the SLA report.

mod api;
mod auth;
mod cli;
mod config;
mod engine;
mod report;
mod server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
