"""appshield's benchmark: bare Python vs appshield vs a ptrace tracer, one command.

    python benchmarks/run.py            # the whole table (a few minutes)
    python benchmarks/run.py --quick    # fewer rounds
    python benchmarks/run.py --only open,connect

Every operation is measured in fresh interpreters, bare and shielded *interleaved* round by
round (bare, shield, bare, shield, ...), each worker warming up first and timing several
repetitions; the table shows medians and the ratio of medians from this one run, because the
machines are noisy and only ratios taken side by side mean anything. The allowed path is
measured under a generated 1,000-rule policy across all four categories (benchmarks/
_policygen.py) under which the measured operation is allowed. `strace -f` (ptrace, what is
left on hosts without eBPF) runs the bare loop for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _policygen import generate, to_yaml  # noqa: E402

from appshield.policy.model import Condition, RuleSpec  # noqa: E402

WORKER = str(HERE / "_worker.py")


@dataclass(frozen=True)
class Case:
    name: str  # row label
    op: str  # _worker.py operation
    n: int  # operations per repetition
    policy: str  # "full" | "no_file_deny"
    target: str  # the issue's target, for the table
    strace: bool = True


CASES = (
    Case("open()+close(), no file deny rules", "open", 20000, "no_file_deny", "<= 1.15x"),
    Case("open()+close(), 1,000 rules with file denies", "open", 20000, "full", "<= 1.5x"),
    Case("subprocess.run(['true'])", "subprocess", 100, "full", "<= 1.03x"),
    Case("TCP connect+close, loopback", "connect", 3000, "full", "<= 1.10x"),
    Case("getaddrinfo('localhost')", "getaddrinfo", 3000, "full", "-"),
    Case("import json (cached)", "import_cached", 200000, "full", "<= 1.05x"),
    Case("first import of a module", "import_first", 300, "full", "<= 1.10x"),
    Case(
        "violation, repeated (aggregated)",
        "violation_repeated",
        2000,
        "full",
        "<= 100 us",
        strace=False,
    ),
    Case(
        "violation, distinct, fully reported",
        "violation_distinct",
        500,
        "full",
        "<= 500 us",
        strace=False,
    ),
)


def bench_rules() -> list[RuleSpec]:
    """Rules that make the measured operations allowed (and the violation loop denied)."""
    tmp = tempfile.gettempdir()
    return [
        RuleSpec("bench-true", "process", "allow", Condition({"executable": ("true",)})),
        RuleSpec(
            "bench-denied",
            "file",
            "deny",
            Condition({"path": (f"{tmp}/appshield-bench-*/denied/**",)}),
        ),
        RuleSpec("bench-localhost", "network", "allow", Condition({"host": ("localhost",)})),
    ]


def write_policies(folder: Path) -> dict[str, str]:
    full = generate(1000, name="bench-1000")
    full = replace(full, rules=(*bench_rules(), *full.rules))
    no_deny = replace(
        full,
        name="bench-1000-no-file-deny",
        rules=tuple(r for r in full.rules if not (r.category == "file" and r.action != "allow")),
    )
    paths = {}
    for key, document in (("full", full), ("no_file_deny", no_deny)):
        path = folder / f"{key}.yaml"
        path.write_text(to_yaml(document))
        paths[key] = str(path)
    return paths


def start_listener() -> tuple[subprocess.Popen[bytes], int]:
    """An accept-and-close server in its own process, so it does not share our GIL."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    code = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(1024)\n"
        "while True:\n    c, _ = s.accept(); c.close()\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return server, port


def run_worker(
    case: Case,
    mode: str,
    reps: int,
    policy: str,
    env: dict[str, str],
    tracer: list[str] | None = None,
) -> list[float]:
    command = [sys.executable, WORKER, case.op, mode, str(case.n), str(reps), policy]
    if tracer:
        command = [*tracer, *command]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{case.op} {mode} failed:\n{out.stderr[-2000:]}")
    return [float(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def measure(
    case: Case, rounds: int, reps: int, policy: str, env: dict[str, str], with_strace: bool
) -> dict[str, float | None]:
    samples: dict[str, list[float]] = {"bare": [], "shield": [], "strace": []}
    strace = shutil.which("strace") if with_strace and case.strace else None
    for _ in range(rounds):
        samples["bare"] += run_worker(case, "bare", reps, policy, env)
        samples["shield"] += run_worker(case, "shield", reps, policy, env)
        if strace:
            samples["strace"] += run_worker(
                case,
                "bare",
                max(1, reps // 2),
                policy,
                env,
                [strace, "-f", "-qq", "-o", "/dev/null"],
            )
    return {k: (statistics.median(v) if v else None) for k, v in samples.items()}


def startup(rounds: int, policy: str, env: dict[str, str]) -> dict[str, float]:
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import appshield.auto'": [sys.executable, "-c", "import appshield.auto"],
        "appshield run -- python -c pass": [
            sys.executable,
            "-m",
            "appshield",
            "run",
            "--policy",
            policy,
            "--",
            sys.executable,
            "-c",
            "pass",
        ],
    }
    run_env = {**env, "APPSHIELD_POLICY": policy}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(rounds):
        for label, command in commands.items():  # interleaved
            t0 = time.perf_counter()
            subprocess.run(command, env=run_env, check=True, capture_output=True)
            times[label].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def fmt_ns(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} us" if value >= 1000 else f"{value:.0f} ns"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    parser.add_argument("--only", help="comma-separated worker ops to run (e.g. open,connect)")
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    rounds, reps = (3, 3) if args.quick else (7, 5)
    folder = Path(tempfile.mkdtemp(prefix="appshield-bench-policies-"))
    policies = write_policies(folder)
    server, port = start_listener()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update(BENCH_PORT=str(port), APPSHIELD_LOG=str(folder / "violations.jsonl"))
    results: dict[str, object] = {}
    try:
        print(
            f"{'operation':46} {'bare':>10} {'appshield':>10} {'ratio':>7} {'target':>10}"
            f" {'strace -f':>10} {'ratio':>7}"
        )
        for case in CASES:
            if args.only and case.op not in args.only.split(","):
                continue
            m = measure(case, rounds, reps, policies[case.policy], env, not args.no_strace)
            bare, shield, traced = m["bare"], m["shield"], m["strace"]
            assert bare is not None and shield is not None
            violation = case.op.startswith("violation")
            ratio = "-" if violation else f"{shield / bare:.3f}x"
            sratio = f"{traced / bare:.1f}x" if traced else "-"
            print(
                f"{case.name:46} {fmt_ns(None if violation else bare):>10} {fmt_ns(shield):>10}"
                f" {ratio:>7} {case.target:>10} {fmt_ns(traced):>10} {sratio:>7}",
                flush=True,
            )
            results[case.name] = m
        if not args.only or "startup" in args.only:
            s = startup(5 if args.quick else 15, policies["full"], env)
            base = s["python -c pass"]
            print()
            for label, ms in s.items():
                extra = "" if label == "python -c pass" else f"  (+{ms - base:.1f} ms)"
                print(f"start-up  {label:40} {ms:7.1f} ms{extra}")
            results["startup_ms"] = s
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
