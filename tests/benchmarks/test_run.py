"""The benchmark's own plumbing (benchmarks/run.py, _worker.py): which rows a command line
selects, that every worker operation runs in every local mode, and the Markdown table that
docs/performance.md is filled from. No figure is checked: speed is measured, not tested."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

from tests.benchmarks._load import BENCHMARKS, load_benchmark

WORKER = BENCHMARKS / "_worker.py"
POLICY = str(BENCHMARKS.parent / "examples" / "web-service.yaml")


run = load_benchmark("run")
worker = load_benchmark("_worker")


def _rows(only: AbstractSet[str] | None, skip: AbstractSet[str] = frozenset()) -> list[str]:
    return [case.name for case in run.CASES if run.selected(case, only, skip)]


def test_calls_selects_every_per_call_row() -> None:
    assert _rows({"calls"}) == [case.name for case in run.CASES]
    assert _rows(None) == _rows({"calls"})


def test_a_row_answers_to_its_op_and_its_key() -> None:
    opens = _rows({"open"})
    assert len(opens) == 3  # both open rows and the 50-grant one (op `open`)
    assert _rows({"open"}, {"open_grants50"}) == opens[:2]
    assert _rows({"open_grants50"}) == opens[2:]


def test_an_empty_name_selects_nothing() -> None:
    # `--only open,` must not pick every row whose key is empty.
    assert _rows({""}) == []
    assert _rows({"calls"}, {""}) == _rows({"calls"})


def test_unhandled_event_rows_compare_with_the_hook() -> None:
    unhandled = [case for case in run.CASES if case.unhandled]
    assert {case.op for case in unhandled} >= {
        "compile",
        "exec_code",
        "getframe",
        "function_code",
        "frame_code",
    }
    assert all(case.target == run.HOOK_FLOOR for case in unhandled)


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port: int = server.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    server.close()


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The first-import row's modules, as run.py writes them (a few: the workers here ask
    for nine)."""
    return str(run.write_modules(tmp_path_factory.mktemp("bench") / "modules", count=20))


def _work(
    op: str, mode: str, port: int, modules: str = "/nonexistent"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "AIKIDO_"))}
    env["BENCH_PORT"] = str(port)
    env["BENCH_MODULES"] = modules
    return subprocess.run(
        [sys.executable, str(WORKER), op, mode, "4", "2", POLICY],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("op", sorted(set(worker.OPS) - {"subprocess"}))
@pytest.mark.parametrize("mode", ["bare", "noop_hook"])
def test_every_operation_runs(op: str, mode: str, listener: int, modules: str) -> None:
    done = _work(op, mode, listener, modules)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    assert len(figures) == 2 and all(x > 0 for x in figures)


@pytest.mark.parametrize("op", ["open", "connect", "import_first", "open_new"])
def test_the_compiled_floor_runs(op: str, listener: int, modules: str) -> None:
    try:
        from appshield import _c_audit_hook  # noqa: F401
    except ImportError:
        pytest.skip("the C hook was not built")
    done = _work(op, "compiled_floor", listener, modules)
    assert done.returncode == 0, done.stderr


def test_the_first_import_row_imports_modules_it_did_not_write(listener: int, modules: str) -> None:
    # Its modules come with their bytecode, and the worker writes no file: the row
    # measures the import alone.
    folder = Path(modules)
    assert len(list((folder / "__pycache__").glob("benchmod_*.pyc"))) == 20
    before = sorted(p.name for p in folder.rglob("*"))
    done = _work("import_first", "shield", listener, modules)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.rglob("*")) == before


@pytest.mark.parametrize(
    "op", ["getframe", "function_code", "frame_code", "compile", "exec_import"]
)
def test_unhandled_operations_run_shielded(op: str, listener: int) -> None:
    done = _work(op, "shield", listener)
    assert done.returncode == 0, done.stderr


def test_an_unknown_mode_is_refused(listener: int) -> None:
    done = _work("getframe", "noop", listener)
    assert done.returncode != 0
    assert "unknown mode" in done.stderr


def test_markdown_table() -> None:
    by_op = {case.op: case for case in run.CASES}
    measured = {
        "bare": 100.0,
        "shield": 150.0,
        "noop_hook": 120.0,
        "strace": 1000.0,
        "instructions_bare": 1000.0,
        "instructions_shield": 1320.0,
        "instructions_noop_hook": 1200.0,
    }
    violation = {"bare": 50.0, "shield": 90_000.0, "noop_hook": 60.0, "strace": None}
    table = run.markdown_table(
        [(by_op["getframe"], measured), (by_op["violation_repeated"], violation)],
        (run.NOOP_HOOK,),
    )
    head, rule, getframe, repeated = table.splitlines()
    assert head.split(" | ")[1:4] == ["bare, instr.", "no-op hook, instr.", "appshield, instr."]
    assert rule.count("---") == head.count("|") - 1
    cells = getframe.strip("| ").split(" | ")
    assert cells == [
        "sys._getframe()",
        "1,000",
        "1,200 (1.20x)",
        "1,320 (1.32x)",
        "hook +10%",
        "1.100x",
        "1.50x",
        "10.0x",
    ]
    # Only under appshield is the loop a violation: the other modes show no figure.
    assert repeated.strip("| ").split(" | ")[1:4] == ["-", "-", "90.00 us"]


def test_every_startup_command_runs(tmp_path: Path) -> None:
    # The start-up rows (bare, the no-op hook floor, the references, appshield's ways in and,
    # with a stand-in interpreter, the peer's row) each start and exit cleanly.
    policies = {
        key: POLICY for key in ("typical", "full", "nobytecode_nocache", "nobytecode_compiled")
    }
    commands = run.startup_commands(policies, aikido_python=sys.executable)
    assert {"python -c pass", run.NOOP_HOOK_STARTUP, "Aikido Zen, protect()"} <= set(commands)
    for label, (command, extra) in commands.items():
        if label.startswith("Aikido"):
            continue  # needs aikido_zen, which is never in appshield's environment
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
        done = subprocess.run(
            command, env={**env, **extra}, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (label, done.stderr[-2000:])
