"""benchmarks/bench_servers.py runs end to end in a tiny mode (a few requests): each server
is learned, its policy checked, then served bare and shielded with the shield proven on; and
its servers are gone afterwards, also when a step fails. No figure is checked: speed is
measured, not tested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks._load import BENCHMARKS, load_benchmark

servers = load_benchmark("bench_servers")
run = load_benchmark("run")


@pytest.fixture(autouse=True)
def _servers_installed() -> None:
    for name in ("gunicorn", "uvicorn"):
        if not Path(sys.executable).with_name(name).exists():
            pytest.skip(f"{name} is not installed next to {sys.executable}")


def test_both_servers_learned_and_measured(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_servers.py"), "--rounds", "1",
         "--requests", "20", "--warmup", "10", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert sorted(figures) == sorted(s.label for s in servers.SERVERS)
    for label, row in figures.items():
        assert row["policy_rules"] > 0, label
        assert row["rps_bare"] > 0 and row["rps_shield"] > 0, label
        (pair,) = row["rounds"]
        assert pair["bare"]["rps"] > 0 and pair["shield"]["rps"] > 0
    assert "rps bare" in done.stdout and "CPU us/req" in done.stdout


def test_a_failed_step_leaves_no_server(tmp_path: Path) -> None:
    server = servers.SERVERS[0]  # gunicorn: a master and its forked worker
    servers.prepare(server, tmp_path)
    port = servers.free_port()
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="step failed"):
        with servers.serving(server.command(port), tmp_path, port, servers.clean_env()) as pid:
            seen += [pid, *servers._children(pid)]
            raise RuntimeError("step failed")
    assert len(seen) == 2
    assert not [pid for pid in seen if servers._running(pid)]


def test_servers_is_opt_in_for_run_py() -> None:
    # `--only servers` selects no per-call row, and no row answers to `servers`.
    assert not [case for case in run.CASES if run.selected(case, {"servers"}, set())]
