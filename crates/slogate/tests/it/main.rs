//! Integration tests of the `slogate` binary: the real server process, fed by real OTLP
//! exporters (Rust `opentelemetry-otlp`, Python `opentelemetry-sdk`) and by hostile clients.

mod alerts;
mod api;
mod architecture;
mod auth;
mod bad_input;
mod baselines;
mod cli;
mod connections;
mod crash;
mod dashboard;
mod exporters;
mod gates;
mod harness;
mod history;
mod judge;
mod metrics;
mod notifications;
mod openapi;
mod overload;
mod reload;
mod soak;
mod sql_limits;
