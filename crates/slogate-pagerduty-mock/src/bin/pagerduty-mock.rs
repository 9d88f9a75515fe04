//! `pagerduty-mock`: runs the Events API v2 mock as a process so tests in other crates can kill
//! and restart "PagerDuty".
//!
//! Usage: `pagerduty-mock [--listen ADDR] [--record FILE]`. The first line on stdout is
//! `listening on http://ADDR`, printed only once the socket is bound, so a parent process can
//! read it to learn the port chosen for `--listen 127.0.0.1:0`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use slogate_pagerduty_mock::{MockConfig, MockServer};

fn parse_args() -> Result<MockConfig, String> {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let mut record = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen needs an address")?;
                addr = value
                    .parse()
                    .map_err(|e| format!("invalid --listen address {value:?}: {e}"))?;
            }
            "--record" => {
                record = Some(PathBuf::from(args.next().ok_or("--record needs a file")?));
            }
            "-h" | "--help" => {
                return Err("usage: pagerduty-mock [--listen ADDR] [--record FILE]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(MockConfig { addr, record })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let server = match MockServer::start_with(config).await {
        Ok(s) => s,
        Err(err) => {
            eprintln!("cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", server.url());
    let _ = stdout.flush();
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}
