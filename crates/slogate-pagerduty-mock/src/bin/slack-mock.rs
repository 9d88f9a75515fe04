//! `slack-mock`: a Slack incoming webhook as a process, so tests in other crates can kill and
//! restart "Slack".
//!
//! Usage: `slack-mock [--listen ADDR] [--path /services/T…/B…/…] [--record FILE]`. The first
//! line on stdout is `listening on URL` (the webhook URL, secret path included), printed once
//! the socket is bound. `--path` keeps the URL the same across restarts.

use slogate_pagerduty_mock::Kind;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    slogate_pagerduty_mock::receiver::main_with(Kind::Slack, "slack-mock").await
}
