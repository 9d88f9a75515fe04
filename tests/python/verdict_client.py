"""Calls slogate's VerdictService through stubs generated from proto/slogate/v1/verdict.proto.

The stubs are generated at run time with grpcio-tools, so this is a client built from the .proto
file alone: if the server's messages drift from the file, the test that runs this fails.

usage: verdict_client.py --proto-root DIR --target HOST:PORT --gate G [--phase P]
                         [--canary k=v ...] [--baseline k=v ...] [--list]
prints the response as JSON (protobuf's json_format, enum names, proto field names).
"""

import argparse
import importlib
import json
import os
import sys
import tempfile


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--proto-root", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--gate", default="")
    p.add_argument("--phase", default="")
    p.add_argument("--canary", action="append", default=[])
    p.add_argument("--baseline", action="append", default=[])
    p.add_argument("--list", action="store_true")
    args = p.parse_args()

    out = tempfile.mkdtemp()
    from grpc_tools import protoc

    rc = protoc.main(
        [
            "protoc",
            f"-I{args.proto_root}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.join(args.proto_root, "slogate/v1/verdict.proto"),
        ]
    )
    if rc != 0:
        print("protoc failed", file=sys.stderr)
        return 2
    sys.path.insert(0, out)
    pb = importlib.import_module("slogate.v1.verdict_pb2")
    stubs = importlib.import_module("slogate.v1.verdict_pb2_grpc")

    import grpc
    from google.protobuf import json_format

    with grpc.insecure_channel(args.target) as ch:
        stub = stubs.VerdictServiceStub(ch)
        try:
            if args.list:
                resp = stub.ListGates(pb.ListGatesRequest(), timeout=10)
            else:
                req = pb.EvaluateRequest(
                    gate=args.gate,
                    phase=args.phase,
                    canary=dict(kv.split("=", 1) for kv in args.canary),
                    baseline=dict(kv.split("=", 1) for kv in args.baseline),
                )
                resp = stub.Evaluate(req, timeout=10)
        except grpc.RpcError as e:
            print(json.dumps({"grpc_error": e.code().name, "details": e.details()}))
            return 0
    print(json_format.MessageToJson(resp, preserving_proto_field_name=True, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
