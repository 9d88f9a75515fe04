//! The `slogate` binary: command line, configuration, and the server wiring.
//!
//! `slogate serve` runs the OTLP receivers, the slot closer and the HTTP API;
//! `slogate config check FILE` validates a configuration; `slogate sli` asks a running server.

mod alerts;
mod api;
mod baseline;
mod cli;
mod config;
mod daily;
mod dashboard;
mod gates;
mod grpc_api;
mod http_server;
mod report;
mod sched;
mod serve;
mod sla;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
