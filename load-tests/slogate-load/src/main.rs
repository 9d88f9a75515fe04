//! `slogate-load`: run a trace scenario or a metrics load against slogate, check scenario files,
//! or run a counting sink.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use slogate_load::metrics::{MetricsScenario, MetricsSpec};
use slogate_load::pool::{Encoding, PoolParams, build_requests};
use slogate_load::scenario::CohortSettings;
use slogate_load::{Access, Protocol, Rate, Scenario, Signal, Target};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "slogate-load",
    version,
    about = "OTLP trace and metrics load generator for slogate"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run a trace scenario (or, with `--signal metrics`, a metrics load) and print what was sent.
    Run {
        /// A scenario file, or a scenario folder containing scenario.yaml (traces only).
        scenario: Option<PathBuf>,
        /// What to send: traces (from the scenario) or metrics (shaped by the --services,
        /// --instances and --metric-series flags; no scenario file).
        #[arg(long, value_parser = Signal::parse, default_value = "traces")]
        signal: Signal,
        /// Override the target endpoint (http://host:4317, or http://host:4318/v1/traces; a
        /// missing path gets /v1/traces or /v1/metrics).
        #[arg(long)]
        endpoint: Option<String>,
        /// Override the protocol: grpc, http-protobuf or http-json.
        #[arg(long, value_parser = parse_protocol)]
        protocol: Option<Protocol>,
        /// Compress requests with gzip.
        #[arg(long)]
        gzip: bool,
        /// Speak TLS, trusting only this CA (PEM); the endpoint must be https://.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Send `Authorization: Bearer <token>` with the first token of this file.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// An extra header (gRPC metadata) on every request, `name=value` as in
        /// OTEL_EXPORTER_OTLP_HEADERS; repeatable.
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// Override the rate in spans/s, or data points/s for metrics (250000, 250k, 1M) or
        /// `max`. Metrics default: 50k.
        #[arg(long, value_parser = Rate::parse)]
        rate: Option<Rate>,
        /// Override the duration (30s, 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[arg(long)]
        connections: Option<usize>,
        #[arg(long)]
        concurrency: Option<usize>,
        /// Spans per request, or data points per request for metrics (default 1000).
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long)]
        pool_size: Option<usize>,
        /// Metrics: services (each its own resource per instance).
        #[arg(long, default_value_t = 10)]
        services: usize,
        /// Metrics: instances per service (service.instance.id).
        #[arg(long, default_value_t = 1)]
        instances: usize,
        /// Metrics: metric streams over all services and instances, spread evenly; each
        /// request round sends one point per stream.
        #[arg(long, default_value_t = 1000)]
        metric_series: usize,
        /// Metrics: deployment.environment.name and service.version of every resource.
        #[arg(long, default_value = "prod")]
        env: String,
        #[arg(long, default_value = "v1")]
        version: String,
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
    /// Print one generated span of each cohort as OTLP JSON, with encoded span sizes; with
    /// `--signal metrics`, one point of each metric family and the request sizes.
    Sample {
        scenario: Option<PathBuf>,
        #[arg(long, value_parser = Signal::parse, default_value = "traces")]
        signal: Signal,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
    /// Accept and count OTLP trace and metrics exports, printing spans/s and points/s every second.
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

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("header {s:?} is not name=value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// TLS and headers from the command line.
fn access(
    tls_ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
    mut headers: Vec<(String, String)>,
) -> anyhow::Result<Access> {
    let tls_ca_pem = tls_ca
        .map(|p| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    if let Some(p) = token_file {
        headers.push(Access::bearer_from_file(&p).map_err(anyhow::Error::msg)?);
    }
    Ok(Access {
        tls_ca_pem,
        headers,
    })
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
            signal: Signal::Metrics,
            endpoint,
            protocol,
            gzip,
            tls_ca,
            token_file,
            headers,
            rate,
            duration,
            connections,
            concurrency,
            batch_size,
            pool_size,
            seed,
            threads,
            json,
            services,
            instances,
            metric_series,
            env,
            version,
        } => {
            if let Some(p) = scenario {
                bail!(
                    "--signal metrics takes no scenario file ({}); shape the load with --services, --instances and --metric-series",
                    p.display()
                );
            }
            if pool_size.is_some() {
                bail!("--pool-size is for traces; metrics requests are encoded as they go");
            }
            let protocol = protocol.unwrap_or(Protocol::Grpc);
            let endpoint = endpoint.unwrap_or_else(|| match protocol {
                Protocol::Grpc => "http://127.0.0.1:4317".into(),
                _ => "http://127.0.0.1:4318/v1/metrics".into(),
            });
            let spec = MetricsSpec {
                services,
                instances,
                series: metric_series,
                batch_size: batch_size.unwrap_or(1000),
                env,
                version,
                seed: seed.unwrap_or(1),
            };
            let mut sc = MetricsScenario::new(
                Target {
                    endpoint,
                    protocol,
                    gzip,
                },
                spec,
                rate.unwrap_or(Rate::PerSecond(50_000.0)),
                duration.unwrap_or(Duration::from_secs(30)),
            );
            sc.access = access(tls_ca, token_file, headers)?;
            sc.connections = connections.unwrap_or(sc.connections);
            sc.concurrency = concurrency.unwrap_or(sc.concurrency);
            let report = runtime(threads)?.block_on(slogate_load::run_metrics(&sc))?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            if report.not_served() {
                bail!(
                    "{} does not serve OTLP metrics ({}): is the server's metrics receiver there?",
                    sc.target.endpoint,
                    report
                        .errors_by_status
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if report.requests_ok == 0 {
                bail!("no request was accepted");
            }
        }
        Cmd::Run {
            scenario,
            signal: Signal::Traces,
            endpoint,
            protocol,
            gzip,
            tls_ca,
            token_file,
            headers,
            rate,
            duration,
            connections,
            concurrency,
            batch_size,
            pool_size,
            seed,
            threads,
            json,
            ..
        } => {
            let Some(scenario) = scenario else {
                bail!("no scenario given (a file or folder; or --signal metrics)");
            };
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
            sc.access = access(tls_ca, token_file, headers)?;
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
        Cmd::Sample {
            signal: Signal::Metrics,
            batch_size,
            ..
        } => sample_metrics(batch_size)?,
        Cmd::Sample {
            scenario,
            signal: Signal::Traces,
            ..
        } => {
            let Some(scenario) = scenario else {
                bail!("no scenario given (or --signal metrics)");
            };
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
                    let mut last = (0u64, 0u64, 0u64);
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let now = (
                            c.spans.load(Relaxed),
                            c.requests.load(Relaxed),
                            c.points.load(Relaxed),
                        );
                        if now != last {
                            eprintln!(
                                "{} spans/s, {} points/s, {} requests/s (total {} spans, {} points, {} malformed)",
                                now.0 - last.0,
                                now.2 - last.2,
                                now.1 - last.1,
                                now.0,
                                now.2,
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

/// One point of each metric family as OTLP JSON, and what a default request weighs.
fn sample_metrics(batch_size: usize) -> anyhow::Result<()> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let spec = MetricsSpec {
        batch_size,
        ..MetricsSpec::default()
    };
    let now = slogate_load::metrics::now_ns();
    let mut templates = slogate_load::metrics::build_templates(&spec, now);
    let t = &mut templates[0];
    t.advance(now - 10_000_000_000);
    let body = t.encode_next(now, slogate_load::pool::Encoding::Protobuf, false);
    println!(
        "# {} series in {} requests; the first holds {} points in {} bytes ({} bytes/point)",
        spec.series,
        templates.len(),
        templates[0].points(),
        body.len(),
        body.len() / templates[0].points().max(1)
    );
    let mut one = templates[0].request().clone();
    one.resource_metrics.truncate(1);
    for m in &mut one.resource_metrics[0].scope_metrics[0].metrics {
        match m.data.as_mut() {
            Some(Data::Gauge(g)) => g.data_points.truncate(1),
            Some(Data::Sum(x)) => x.data_points.truncate(1),
            Some(Data::Histogram(h)) => h.data_points.truncate(1),
            Some(Data::ExponentialHistogram(h)) => h.data_points.truncate(1),
            Some(Data::Summary(x)) => x.data_points.truncate(1),
            None => {}
        }
    }
    println!("{}", serde_json::to_string_pretty(&one)?);
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
