"""Sends spans to slogate through the real OpenTelemetry Python SDK and OTLP exporters.

Used by the Rust integration tests: they write the spans to send as JSON (one cohort per file,
with exact start and end times) and check what slogate serves against the exact values.

usage: send_spans.py --protocol grpc|http --endpoint URL --input spans.json
                     [--header KEY=VALUE ...] [--ca-file ca.pem]
(--ca-file: TLS trusting that CA; --header: e.g. authorization=Bearer T, sent with every export)
input: {"service": s, "version": v, "env": e,
        "spans": [{"name": n, "route": r, "method": m, "start_ns": i, "end_ns": i,
                   "error": bool, "status_code": int}]}
"""

import argparse
import json
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--ca-file")
    args = p.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    with open(args.input) as f:
        doc = json.load(f)

    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if args.ca_file:
            import grpc

            with open(args.ca_file, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            exporter = OTLPSpanExporter(
                endpoint=args.endpoint, credentials=credentials, headers=headers or None
            )
        else:
            exporter = OTLPSpanExporter(
                endpoint=args.endpoint, insecure=True, headers=headers or None
            )
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=args.endpoint, headers=headers or None, certificate_file=args.ca_file
        )

    resource = Resource.create(
        {
            "service.name": doc["service"],
            "service.version": doc["version"],
            "deployment.environment.name": doc["env"],
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=len(doc["spans"]) + 1, max_export_batch_size=512)
    )
    tracer = provider.get_tracer("slogate-it")
    for s in doc["spans"]:
        span = tracer.start_span(
            s["name"],
            kind=SpanKind.SERVER,
            start_time=s["start_ns"],
            attributes={
                "http.request.method": s["method"],
                "http.route": s["route"],
                "http.response.status_code": s["status_code"],
            },
        )
        if s["error"]:
            span.set_status(Status(StatusCode.ERROR, "failed"))
        span.end(end_time=s["end_ns"])
    ok = provider.force_flush(timeout_millis=30_000)
    provider.shutdown()
    if not ok:
        print("force_flush timed out", file=sys.stderr)
        return 1
    print(f"sent {len(doc['spans'])} spans over {args.protocol}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
