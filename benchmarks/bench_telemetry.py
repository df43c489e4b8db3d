"""Telemetry costs: start-up, the first violation, repeated and distinct violations.

    python benchmarks/bench_telemetry.py [--rounds 30] [--calls 5000]

Start-up: `python -c pass` against `python -c "import appshield; appshield.install(P)"`
(also with an OTLP endpoint set, which must not change it: nothing from opentelemetry is
imported before a violation), interleaved round by round in fresh interpreters; medians.

Per violation, in fresh interpreters (a denied file write through `Shield.enforce`, the
exception caught), median microseconds per call:
- `allowed`: the same call for an allowed path: the decision alone;
- `repeat`: the same violation again and again (folded by the aggregator: counted only);
- `distinct`: a new path every call (each one reported in full);
each with no OpenTelemetry configured (`none`) and with the private pipeline exporting over
OTLP/HTTP to a receiver on 127.0.0.1 (`otlp`). Also the wall time of the first violating
call (the pipeline then loads on a background thread) and of `import opentelemetry.trace`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

POLICY = """\
version: 1
name: bench-telemetry
defaults: {process: allow, file: allow, network: allow, import: allow}
rules:
  - id: no-denied-writes
    category: file
    action: deny
    match: {path: "DENIED/**", access: write}
"""

WORKER = """
import json, os, statistics, sys, time
import appshield
from appshield.errors import PolicyViolation
from appshield.operations import FileOp
from appshield.runtime import active_shield
appshield.install(os.environ["BENCH_POLICY"])
denied, calls = os.environ["BENCH_DENIED"], int(os.environ["BENCH_CALLS"])
shield = active_shield()

def call(path):
    t = time.perf_counter()
    try:
        shield.enforce(FileOp(path, "write"), "open")
    except PolicyViolation:
        pass
    return time.perf_counter() - t

first = call(denied + "/first")
time.sleep(1.0)  # let the background pipeline load before measuring the steady state
allowed = [call("/tmp/allowed-file") for _ in range(calls)]
repeat = [call(denied + "/same") for _ in range(calls)]
distinct = [call(denied + f"/d{i}") for i in range(calls)]
print(json.dumps({
    "first_ms": first * 1e3,
    "allowed_us": statistics.median(allowed) * 1e6,
    "repeat_us": statistics.median(repeat) * 1e6,
    "distinct_us": statistics.median(distinct) * 1e6,
}))
"""


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _receiver() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPSHIELD_"))}
    env.update(extra)
    return env


def _wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def startup(policy: Path, rounds: int) -> dict[str, float]:
    install = f"import appshield; appshield.install({str(policy)!r})"
    variants = {
        "bare": ([sys.executable, "-c", "pass"], _env()),
        "shield": ([sys.executable, "-c", install], _env()),
        "shield+otlp-env": (
            [sys.executable, "-c", install],
            _env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
        ),
        "import otel.trace": ([sys.executable, "-c", "import opentelemetry.trace"], _env()),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for argv, env in variants.values():  # warm the page cache and .pyc files
        _wall(argv, env)
    for _ in range(rounds):
        for name, (argv, env) in variants.items():
            samples[name].append(_wall(argv, env))
    return {name: statistics.median(v) * 1e3 for name, v in samples.items()}


SHARE = """
import time, appshield.runtime
t = time.perf_counter()
from appshield.telemetry import make_reporter
make_reporter(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
took = time.perf_counter() - t
import sys
loaded = [m for m in sys.modules if m.startswith(("opentelemetry", "logging", "json"))]
print(took * 1e3, len(loaded))
"""


def telemetry_share(rounds: int) -> tuple[float, int]:
    """In-process: importing appshield.telemetry and making the reporter, after the rest
    of appshield is loaded (the part of install() that this package owns)."""
    samples, loaded = [], 0
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", SHARE], env=_env(), capture_output=True, text=True, check=True
        ).stdout.split()
        samples.append(float(out[0]))
        loaded = int(out[1])
    return statistics.median(samples), loaded


def per_violation(policy: Path, denied: Path, calls: int, rounds: int) -> dict[str, Any]:
    server, endpoint = _receiver()
    base = {"BENCH_POLICY": str(policy), "BENCH_DENIED": str(denied), "BENCH_CALLS": str(calls)}
    configs = {
        "none": _env(**base),
        "otlp": _env(**base, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, env in configs.items():
            out = subprocess.run(
                [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, check=True
            )
            results[name].append(json.loads(out.stdout))
    server.shutdown()
    return {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="start-up rounds")
    parser.add_argument("--calls", type=int, default=5000, help="calls per measured loop")
    parser.add_argument("--worker-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        denied = Path(tmp) / "denied"
        denied.mkdir()
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY.replace("DENIED", str(denied)))
        start = startup(policy, args.rounds)
        print(f"start-up, median of {args.rounds} interleaved runs (ms wall):")
        for name, ms in start.items():
            print(f"  {name:<20} {ms:8.1f}")
        print(f"  shield - bare        {start['shield'] - start['bare']:8.1f}   (target <= 50)")
        share, loaded = telemetry_share(args.rounds)
        print(f"  telemetry's share    {share:8.2f}   (import + make_reporter, in-process)")
        print(f"  opentelemetry/logging/json modules loaded by it: {loaded}")
        costs = per_violation(policy, denied, args.calls, args.worker_rounds)
        print(f"\nper call, median over {args.calls} calls, median of {args.worker_rounds} runs:")
        print(
            f"  {'config':<8}{'first ms':>10}{'allowed us':>12}{'repeat us':>11}{'distinct us':>13}"
        )
        for name, c in costs.items():
            print(
                f"  {name:<8}{c['first_ms']:>10.2f}{c['allowed_us']:>12.1f}"
                f"{c['repeat_us']:>11.1f}{c['distinct_us']:>13.1f}"
            )
        print("  targets: repeat <= 100 us, distinct <= 500 us")


if __name__ == "__main__":
    main()
