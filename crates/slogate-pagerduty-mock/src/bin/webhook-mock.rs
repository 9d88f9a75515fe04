//! `webhook-mock`: a receiver of Alertmanager's webhook (version 4) as a process.
//!
//! Usage: `webhook-mock [--listen ADDR] [--path /hook] [--token TOKEN] [--record FILE]`. The
//! first line on stdout is `listening on URL`, printed once the socket is bound. With `--token`,
//! requests without `Authorization: Bearer TOKEN` are answered `401`.

use slogate_pagerduty_mock::Kind;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    slogate_pagerduty_mock::receiver::main_with(Kind::Alertmanager, "webhook-mock").await
}
