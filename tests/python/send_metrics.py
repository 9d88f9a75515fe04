"""Sends OTLP metrics with the real OpenTelemetry Python SDK (metrics API + OTLP exporter).

Used by crates/slogate/tests/it/metrics.rs. Every instrument kind the SDK has is exercised:
an observable gauge, a counter, an up-down counter, a histogram with explicit buckets and one
with exponential buckets (through Views), with delta or cumulative temporality. The values
recorded are printed as JSON on stdout so the test can compute what slogate must answer.

    send_metrics.py --protocol grpc|http --endpoint URL --service S --version V
                    [--temporality delta|cumulative] [--exports N] [--seed K]
"""

import argparse
import json
import random

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableGauge,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.metrics import Observation

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--instance", default="pod-1")
    p.add_argument("--temporality", default="cumulative")
    p.add_argument("--exports", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    temporality = {
        "delta": AggregationTemporality.DELTA,
        "cumulative": AggregationTemporality.CUMULATIVE,
    }[a.temporality]
    preferred = {
        Counter: temporality,
        UpDownCounter: AggregationTemporality.CUMULATIVE,
        Histogram: temporality,
        ObservableGauge: AggregationTemporality.CUMULATIVE,
    }
    if a.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(
            endpoint=a.endpoint, insecure=True, preferred_temporality=preferred
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(
            endpoint=a.endpoint + "/v1/metrics", preferred_temporality=preferred
        )
    # A long interval: the script exports explicitly with force_flush.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {
            "service.name": a.service,
            "service.version": a.version,
            "deployment.environment.name": "prod",
            "service.instance.id": a.instance,
        }
    )
    views = [
        View(
            instrument_name="http.server.request.duration",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=BOUNDS),
        ),
        View(
            instrument_name="rpc.server.duration",
            aggregation=ExponentialBucketHistogramAggregation(max_size=160),
        ),
    ]
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    meter = provider.get_meter("slogate-test")

    rng = random.Random(a.seed)
    depth = {"value": 0}
    meter.create_observable_gauge(
        "jobs.queue.depth",
        callbacks=[lambda _options: [Observation(depth["value"], {"queue": "jobs"})]],
        unit="{job}",
    )
    cache = meter.create_counter("cache.requests", unit="{request}")
    inflight = meter.create_up_down_counter("jobs.inflight", unit="{job}")
    http_duration = meter.create_histogram("http.server.request.duration", unit="s")
    rpc_duration = meter.create_histogram("rpc.server.duration", unit="ms")

    sent = {"depth": [], "hits": 0, "misses": 0, "inflight": 0, "http_s": [], "rpc_ms": []}
    for i in range(a.exports):
        depth["value"] = 10 * (i + 1)
        sent["depth"].append(depth["value"])
        hits, misses = rng.randint(50, 100), rng.randint(5, 20)
        cache.add(hits, {"result": "hit"})
        cache.add(misses, {"result": "miss"})
        sent["hits"] += hits
        sent["misses"] += misses
        delta = rng.randint(-3, 5)
        inflight.add(delta)
        sent["inflight"] += delta
        for _ in range(200):
            v = rng.lognormvariate(-3.0, 0.6)  # seconds, median ~50 ms
            http_duration.record(v, {"http.route": "/api/items"})
            sent["http_s"].append(v)
            w = rng.lognormvariate(3.0, 0.8)  # ms, median ~20 ms
            rpc_duration.record(w)
            sent["rpc_ms"].append(w)
        if not reader.force_flush(timeout_millis=10_000):
            raise SystemExit("force_flush failed")
    provider.shutdown()
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
