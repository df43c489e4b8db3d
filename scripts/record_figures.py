"""The figures of docs/lifecycle.md ("Record and replay"): the size of a recording of the demo
app run 100 times, and how fast `appshield replay` decides it.

    python scripts/record_figures.py [--runs 100] [--keep FILE]

Runs `examples/demo.py` RUNS times, one after the other, each appending to the same
recording (APPSHIELD_RECORD), then replays the recording against the demo's own policy
(nothing new must come out) and against it without `uname-only` (exactly the recorded
`uname` starts must come out as denied), and prints a Markdown table. The replay time is
the best of five (the decisions only: reading the file is counted apart).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appshield.record.replay import load_recordings, replay  # noqa: E402

DEMO = ROOT / "examples" / "demo.py"
POLICY = ROOT / "examples" / "demo-policy.yaml"


def _env(recording: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env["APPSHIELD_RECORD"] = str(recording)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--keep", metavar="FILE", help="write the recording here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="appshield-record-"))
    recording = Path(args.keep) if args.keep else folder / "demo.jsonl"
    recording.unlink(missing_ok=True)
    started = time.monotonic()
    for run in range(args.runs):
        done = subprocess.run(
            [sys.executable, str(DEMO)], capture_output=True, text=True, env=_env(recording)
        )
        if done.returncode != 0:
            print(f"run {run}: exit {done.returncode}\n{done.stdout}{done.stderr}")
            return 1
    ran = time.monotonic() - started

    read_started = time.perf_counter()
    loaded = load_recordings([str(recording)])
    read_seconds = time.perf_counter() - read_started
    same = min((replay(loaded, str(POLICY)) for _ in range(5)), key=lambda r: r.seconds)
    assert not same.newly_denied and not same.newly_allowed, "the same policy changed something"
    narrower = folder / "without-uname-only.yaml"
    data = yaml.safe_load(POLICY.read_text())
    data["rules"] = [r for r in data["rules"] if r["id"] != "uname-only"]
    narrower.write_text(yaml.safe_dump(data, sort_keys=False))
    cut = replay(loaded, str(narrower))
    denied = sum(g.operations for g in cut.newly_denied)
    recorded = sum(
        e.times for e, _ in loaded.entries if e.decision and e.decision.rule_id == "uname-only"
    )
    assert denied == recorded and not cut.newly_allowed, (denied, recorded)

    lines = len(recording.read_text().splitlines())
    size = recording.stat().st_size
    per_run = size / args.runs / 1024
    rows = [
        ("demo runs recorded", f"{args.runs} ({len(loaded.headers)} processes, {ran:.0f} s)"),
        ("recording size", f"{size / 1024:,.0f} KiB, {lines:,} lines ({per_run:,.1f} KiB/run)"),
        ("distinct decisions after folding", f"{same.decisions:,}"),
        ("operations they stand for", f"{same.operations:,}"),
        ("reading and folding the file", f"{read_seconds:.2f} s"),
        (
            "replay, same policy",
            f"{same.seconds * 1000:.1f} ms: {same.per_second:,.0f} decisions/s,"
            f" {same.operations_per_second:,.0f} operations/s; nothing new",
        ),
        (
            "replay, `uname-only` removed",
            f"{len(cut.newly_denied)} group(s), {denied} operation(s) newly denied"
            f" = the {recorded} recorded `uname` starts",
        ),
    ]
    print("| figure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
