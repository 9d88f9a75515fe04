#!/usr/bin/env bash
# End-to-end benchmark (issue 6): slogate vs the OpenTelemetry Collector, spans (spanmetrics
# pipeline) and OTLP metrics (otlp -> prometheus exporter pipeline).
#
#   load-tests/bench/run.sh                      # build, then all runs (20 s each), Markdown table
#   load-tests/bench/run.sh --duration 30s --unpinned-too --json-out /tmp/bench.json
#   load-tests/bench/run.sh --only slogate-grpc,collector-grpc
#   load-tests/bench/run.sh --only slogate-grpc,slogate-grpc-tls,slogate-http,slogate-http-tls   # cost of TLS
#   load-tests/bench/run.sh --only slogate-metrics-grpc,slogate-metrics-http,collector-metrics-grpc,collector-metrics-http
#   load-tests/bench/run.sh --only collector-metrics-grpc --metric-series 50000 --metric-rate 100000
#
# TLS runs (slogate-grpc-tls, slogate-http-tls): slogate with server.tls and auth tokens, the
# generator over TLS with a token; needs the openssl CLI for the throwaway CA. The table ends with
# the server CPU per span they add over the plain runs of the same invocation.
#
# Metrics runs: --metric-series (20000) streams from --metric-services (20) services at a fixed
# --metric-rate (50000 points/s), --metric-batch (1000) points per request; slogate is configured
# from load-tests/bench/slogate-metrics.yaml (a template), the Collector from
# load-tests/collector/config-metrics.yaml. A slogate without an OTLP metrics receiver fails the
# run with a clear message (HTTP 404 / gRPC UNIMPLEMENTED).
#
# Environment:
#   SLOGATE_BIN, SLOGATE_LOAD_BIN  use these binaries instead of building them
#   OTELCOL_BIN                    use this Collector instead of building load-tests/collector
#   NO_COLLECTOR=1                 skip the Collector runs
#   CARGO_TARGET_DIR               where cargo builds (default /tmp/e2e-target)
#   BENCH_PROFILE                  the cargo profile built (default release; dist for the image's)
#   GOTOOLCHAIN                    only needed if the Collector modules ever need a newer Go
#
# Everything runs on loopback with free ports. With taskset and >= 2 cores the server is pinned
# to core 0 and the generator (plus the verdict loop) to core 1: the figures are for one server
# core. See bench.py for what is measured and how.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [[ -z "${SLOGATE_BIN:-}" || -z "${SLOGATE_LOAD_BIN:-}" ]]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/e2e-target}"
  # What the README's first command builds; BENCH_PROFILE=dist measures the container image's
  # (fat LTO, everything at opt-level 3), 1-5 % less CPU per span (BENCHMARKS.md, session 8).
  profile="${BENCH_PROFILE:-release}"
  echo "# building slogate and slogate-load ($profile) in $CARGO_TARGET_DIR" >&2
  (cd "$root" && cargo build --profile "$profile" -p slogate -p slogate-load >&2)
  export SLOGATE_BIN="${SLOGATE_BIN:-$CARGO_TARGET_DIR/$profile/slogate}"
  export SLOGATE_LOAD_BIN="${SLOGATE_LOAD_BIN:-$CARGO_TARGET_DIR/$profile/slogate-load}"
fi

if [[ -z "${NO_COLLECTOR:-}" && -z "${OTELCOL_BIN:-}" ]]; then
  if command -v go >/dev/null; then
    export OTELCOL_BIN="${TMPDIR:-/tmp}/e2e-otelcol"
    echo "# building the Collector (otlp -> spanmetrics | prometheus) into $OTELCOL_BIN" >&2
    (cd "$root/load-tests/collector" && GOFLAGS=-buildvcs=false go build -trimpath -o "$OTELCOL_BIN" . >&2)
  else
    echo "# go not found: skipping the Collector runs" >&2
  fi
fi
if [[ -n "${NO_COLLECTOR:-}" ]]; then
  unset OTELCOL_BIN
fi

echo "# $(nproc) cores: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" >&2
exec python3 "$here/bench.py" "$@"
