"""16 threads (or tasks) x N mixed allowed and denied operations in one shielded process.

Every denied operation is blocked (and no connection reaches the denied listener), every
allowed one works, every violation is counted exactly once on `appshield.violations`, and
the whole run finishes (no deadlock: a hard timeout). The same with asyncio tasks, and with
an `os.fork()` in the middle while the other threads keep going.

The normal suite runs 16 x 1,000; the full 16 x 10,000 is marked slow (CI's bounded sample,
APPSHIELD_SLOW_SAMPLE=1, runs 16 x 3,000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.examples._ready import require

DRIVER = Path(__file__).with_name("_driver.py")
THREADS = 16
DEFAULT_OPS = 1_000
FULL_OPS = 3_000 if os.environ.get("APPSHIELD_SLOW_SAMPLE", "") not in ("", "0") else 10_000


def run_driver(scenario: str, ops: int, workdir: Path, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env |= {f"OTEL_{s}_EXPORTER": "none" for s in ("TRACES", "METRICS", "LOGS")}
    try:
        done = subprocess.run(
            [sys.executable, str(DRIVER), scenario, str(THREADS), str(ops), str(workdir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{scenario}: no result after {timeout}s (deadlock?)\n{expired.stderr!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def expected_denied(ops: int) -> int:
    return sum(1 for i in range(ops) if i % 3 == 0)


def check_counts(counts: dict[str, int], workers: int, ops: int) -> int:
    """Every operation accounted for, none denied-but-done, none allowed-but-blocked; returns
    the number of violations the workers saw."""
    seen = Counter(counts)
    for bad in ("open_leaked", "connect_leaked", "open_wrongly_blocked",
                "connect_wrongly_blocked", "open_error", "connect_error"):  # fmt: skip
        assert seen[bad] == 0, (bad, counts)
    assert sum(seen.values()) == workers * ops
    blocked = seen["open_blocked"] + seen["connect_blocked"]
    assert blocked == workers * expected_denied(ops)
    return blocked


@pytest.fixture(autouse=True)
def _landed() -> None:
    require("loader", "engine", "hooks", "otel")


@pytest.mark.parametrize("scenario", ["threads", "asyncio"])
def test_mixed_operations(scenario: str, tmp_path: Path) -> None:
    result = run_driver(scenario, DEFAULT_OPS, tmp_path, timeout=120)
    blocked = check_counts(result["counts"], THREADS, DEFAULT_OPS)
    assert result["counted"] == blocked  # each violation counted exactly once
    assert result["arrived"]["denied"] == 0
    assert result["arrived"]["allowed"] == result["counts"]["connect_ok"]


def test_fork_in_the_middle(tmp_path: Path) -> None:
    result = run_driver("fork", DEFAULT_OPS, tmp_path, timeout=120)
    parent_blocked = check_counts(result["parent"], THREADS + 1, DEFAULT_OPS)
    assert result["counted"] == parent_blocked
    child = result["child"]
    assert result["child_status"] == 0 and child, "the forked child did not finish"
    child_counts = Counter(child["counts"])
    assert child_counts["open_leaked"] == child_counts["connect_leaked"] == 0
    assert child_counts["open_wrongly_blocked"] == 0
    child_blocked = child_counts["open_blocked"] + child_counts["connect_blocked"]
    assert child_blocked == 5 * expected_denied(DEFAULT_OPS // 4)  # 4 threads + main
    assert child["counted"] == child_blocked  # the child counts its own, exactly once
    assert result["arrived"]["denied"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["threads", "asyncio"])
def test_mixed_operations_full(scenario: str, tmp_path: Path) -> None:
    result = run_driver(scenario, FULL_OPS, tmp_path, timeout=900)
    blocked = check_counts(result["counts"], THREADS, FULL_OPS)
    assert result["counted"] == blocked
    assert result["arrived"]["denied"] == 0


@pytest.mark.slow
def test_fork_in_the_middle_full(tmp_path: Path) -> None:
    result = run_driver("fork", FULL_OPS, tmp_path, timeout=900)
    assert result["counted"] == check_counts(result["parent"], THREADS + 1, FULL_OPS)
    assert result["child"]["counted"] > 0 and result["arrived"]["denied"] == 0
