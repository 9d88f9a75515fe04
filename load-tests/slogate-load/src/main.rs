//! `slogate-load`: run a load scenario against slogate, check scenario files, or run a counting sink.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use slogate_load::pool::{Encoding, PoolParams, build_requests};
use slogate_load::scenario::CohortSettings;
use slogate_load::{Protocol, Rate, Scenario};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "slogate-load",
    version,
    about = "OTLP trace load generator for slogate"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario and print what was sent.
    Run {
        /// A scenario file, or a scenario folder containing scenario.yaml.
        scenario: PathBuf,
        /// Override the target endpoint (http://host:4317, or http://host:4318/v1/traces).
        #[arg(long)]
        endpoint: Option<String>,
        /// Override the protocol: grpc, http-protobuf or http-json.
        #[arg(long, value_parser = parse_protocol)]
        protocol: Option<Protocol>,
        /// Compress requests with gzip.
        #[arg(long)]
        gzip: bool,
        /// Override the rate in spans/s (250000, 250k, 1M) or `max`.
        #[arg(long, value_parser = Rate::parse)]
        rate: Option<Rate>,
        /// Override the duration (30s, 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[arg(long)]
        connections: Option<usize>,
        #[arg(long)]
        concurrency: Option<usize>,
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long)]
        pool_size: Option<usize>,
        #[arg(long)]
        seed: Option<u64>,
        /// Runtime worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Parse and validate scenario files or folders.
    Check { scenarios: Vec<PathBuf> },
    /// Print one generated span of each cohort as OTLP JSON, with encoded span sizes.
    Sample { scenario: PathBuf },
    /// Accept and count OTLP trace exports, printing spans/s every second.
    Sink {
        #[arg(long, default_value = "127.0.0.1:4317")]
        grpc: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:4318")]
        http: SocketAddr,
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "grpc" => Ok(Protocol::Grpc),
        "http-protobuf" | "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http-json" | "http/json" => Ok(Protocol::HttpJson),
        _ => Err(format!(
            "unknown protocol {s:?}; use grpc, http-protobuf or http-json"
        )),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Scenario> {
    let file = if path.is_dir() {
        path.join("scenario.yaml")
    } else {
        path.to_path_buf()
    };
    let mut sc = Scenario::from_file(&file)?;
    if sc.name.is_none() {
        sc.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    }
    Ok(sc)
}

fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = threads {
        b.worker_threads(t.max(1));
    }
    Ok(b.enable_all().build()?)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run {
            scenario,
            endpoint,
            protocol,
            gzip,
            rate,
            duration,
            connections,
            concurrency,
            batch_size,
            pool_size,
            seed,
            threads,
            json,
        } => {
            let mut sc = load(&scenario)?;
            if let Some(p) = protocol {
                sc.target.protocol = p;
                // Switching protocol without an endpoint means the default port of that protocol.
                if endpoint.is_none() {
                    sc.target.endpoint = swap_port(&sc.target.endpoint, p);
                }
            }
            if let Some(e) = endpoint {
                sc.target.endpoint = e;
            }
            sc.target.gzip |= gzip;
            sc.rate = rate.unwrap_or(sc.rate);
            sc.duration = duration.unwrap_or(sc.duration);
            sc.connections = connections.unwrap_or(sc.connections);
            sc.concurrency = concurrency.unwrap_or(sc.concurrency);
            sc.batch_size = batch_size.unwrap_or(sc.batch_size);
            sc.pool_size = pool_size.unwrap_or(sc.pool_size);
            sc.seed = seed.unwrap_or(sc.seed);
            // Phases after a shortened end would be rejected; drop them instead.
            let end = sc.duration;
            sc.phases.retain(|p| p.at < end);
            let report = runtime(threads)?.block_on(slogate_load::run(&sc))?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            if report.requests_ok == 0 {
                bail!("no request was accepted");
            }
        }
        Cmd::Check { scenarios } => {
            if scenarios.is_empty() {
                bail!("no scenario given");
            }
            for p in scenarios {
                let sc = load(&p).with_context(|| format!("checking {}", p.display()))?;
                println!(
                    "{}: ok ({} cohorts, {} phases, {:?})",
                    p.display(),
                    sc.cohorts.len(),
                    sc.phases.len(),
                    sc.duration
                );
            }
        }
        Cmd::Sample { scenario } => {
            let sc = load(&scenario)?;
            for c in &sc.cohorts {
                let settings = CohortSettings {
                    weight: c.weight,
                    error_rate: c.error_rate,
                    latency_multiplier: 1.0,
                };
                let params = PoolParams {
                    cohort: c,
                    settings,
                    batch_size: sc.batch_size.min(64),
                    pool_size: 1,
                    seed: sc.seed,
                    encoding: Encoding::Protobuf,
                    gzip_body: false,
                };
                let (req, _, _) = build_requests(&params).remove(0);
                let spans = &req.resource_spans[0].scope_spans[0].spans;
                let sizes: Vec<usize> = spans.iter().map(prost::Message::encoded_len).collect();
                println!(
                    "# {}: span sizes {}..{} bytes, mean {}",
                    c.display_name(),
                    sizes.iter().min().unwrap_or(&0),
                    sizes.iter().max().unwrap_or(&0),
                    sizes.iter().sum::<usize>() / sizes.len().max(1)
                );
                let mut one = req.clone();
                one.resource_spans[0].scope_spans[0].spans.truncate(1);
                println!("{}", serde_json::to_string_pretty(&one)?);
            }
        }
        Cmd::Sink {
            grpc,
            http,
            threads,
        } => {
            let counters = Arc::new(slogate_load::sink::SinkCounters::default());
            let rt = runtime(threads)?;
            rt.block_on(async move {
                let c = counters.clone();
                tokio::spawn(async move {
                    let mut last = (0u64, 0u64);
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let now = (c.spans.load(Relaxed), c.requests.load(Relaxed));
                        if now != last {
                            eprintln!(
                                "{} spans/s, {} requests/s (total {} spans, {} malformed)",
                                now.0 - last.0,
                                now.1 - last.1,
                                now.0,
                                c.malformed.load(Relaxed)
                            );
                        }
                        last = now;
                    }
                });
                eprintln!("sink listening on grpc {grpc}, http {http}");
                slogate_load::sink::serve(Some(grpc), Some(http), counters).await
            })?;
        }
    }
    Ok(())
}

fn swap_port(endpoint: &str, p: Protocol) -> String {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or("127.0.0.1");
    match p {
        Protocol::Grpc => format!("http://{host}:4317"),
        _ => format!("http://{host}:4318/v1/traces"),
    }
}
