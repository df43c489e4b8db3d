"""The way out (atexit, SIGTERM), start-up manners, and fork."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.telemetry.apps import run_app, start_app
from tests.telemetry.otlp_receiver import running


def _violation_spans(receiver) -> list:  # type: ignore[no-untyped-def,type-arg]
    return [s for s in receiver.spans() if s.name == "appshield.violation"]


def _sigterm(tmp_path: Path, body: str, endpoint: str) -> tuple[int, str, str, float]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # nothing leaves before the flush on the way out
    }
    proc = start_app(tmp_path, body, env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err, time.monotonic() - sent


WAIT = """
violate()
time.sleep(0.5)  # the pipeline loads in the background
print("ready", flush=True)
time.sleep(60)
"""


def test_sigterm_default_flushes_then_dies_of_sigterm(tmp_path: Path) -> None:
    with running() as receiver:
        code, _, err, took = _sigterm(tmp_path, WAIT, receiver.endpoint)
        assert code == -signal.SIGTERM, err
        assert took < 5
        assert len(_violation_spans(receiver)) == 1


@pytest.mark.parametrize("when", ["before", "after"])
def test_sigterm_app_handler_still_runs(tmp_path: Path, when: str) -> None:
    handler = """
import signal as _signal
def on_term(signum, frame):
    print("app handler", flush=True)
    sys.exit(7)
"""
    before = handler + "_signal.signal(_signal.SIGTERM, on_term)\n" if when == "before" else ""
    after = handler + "_signal.signal(_signal.SIGTERM, on_term)\n" if when == "after" else ""
    body = before + "violate()\n" + after + WAIT.replace("violate()\n", "", 1)
    with running() as receiver:
        code, out, err, took = _sigterm(tmp_path, body, receiver.endpoint)
        assert code == 7, err
        assert "app handler" in out
        assert took < 5
        assert len(_violation_spans(receiver)) == 1


def test_sigterm_ignored_by_app_stays_ignored(tmp_path: Path) -> None:
    body = """
import signal as _signal
_signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
violate()
print(_signal.getsignal(_signal.SIGTERM) is _signal.SIG_IGN)
"""
    with running() as receiver:
        result = run_app(tmp_path, body, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        assert result.stdout.strip() == "True"


AT_EXIT = """
import atexit
atexit.register(violate)  # the first violation comes during the exit
"""


@pytest.mark.parametrize("when", ["last-statement", "atexit"])
def test_exit_right_after_the_first_violation_sends_all_three_signals(
    tmp_path: Path, when: str
) -> None:
    """The process exits right after its first violation, while the pipeline is still loading
    (or from an atexit handler, where 3.12+ refuses new threads and 3.12.0-3.12.2 refuse them
    from the moment the main thread returns): the span, the log record and the count still
    arrive."""
    body = "violate()\n" if when == "last-statement" else AT_EXIT
    with running() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
            # the bound is tested below with a dead collector; here a loaded machine may take
            # longer than 2 s to import the SDK on the way out
            "APPSHIELD_FLUSH_TIMEOUT": "30",
        }
        result = run_app(tmp_path, body, env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert len(_violation_spans(receiver)) == 1
        assert [r.event_name for r in receiver.log_records()] == ["appshield.violation"]
        points = receiver.metric_points("appshield.violations")
        assert points and points[-1].as_int == 1


@pytest.mark.parametrize("when", ["last-statement", "atexit"])
def test_exit_with_a_dead_collector_is_bounded(tmp_path: Path, when: str) -> None:
    """The same exits with nothing listening: the OTLP exporters would retry each signal for
    their own 10 s timeout; the exit takes the flush bound (1 s here) plus the interpreter's
    own finalisation (and, from an atexit handler, importing the SDK there)."""
    flush_bound = 1.0
    margin = 2.5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = ("violate()\n" if when == "last-statement" else AT_EXIT) + "print(time.time())\n"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "APPSHIELD_FLUSH_TIMEOUT": str(flush_bound),
    }
    result = run_app(tmp_path, body, env)
    exit_s = time.time() - float(result.stdout.split()[-1])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert exit_s < flush_bound + margin, exit_s


def test_install_imports_no_opentelemetry_and_prints_nothing(tmp_path: Path) -> None:
    body = """
print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
import threading
print(threading.active_count())
"""
    result = run_app(tmp_path, body, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    lines = result.stdout.splitlines()
    assert json.loads(lines[0]) == []
    assert lines[1] == "1"  # no thread started before a violation needs one
    assert result.stderr == ""


def test_violation_without_logging_config_prints_nothing(tmp_path: Path) -> None:
    result = run_app(tmp_path, "violate()\n")
    assert result.returncode == 0
    assert result.stderr == ""


def test_appshield_log_dash_prints_json_on_stderr(tmp_path: Path) -> None:
    result = run_app(tmp_path, "violate()\nviolate()\n", {"APPSHIELD_LOG": "-"})
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines[0]["rule"] == "no-denied-writes"
    assert lines[-1].get("suppressed_count") == 1


def test_fork_child_starts_fresh(tmp_path: Path) -> None:
    body = """
log = os.environ["APPSHIELD_LOG"]
violate()
pid = os.fork()
if pid == 0:
    violate()  # a repeat for the parent, but the child's own first: reported in full
    os._exit(0)
os.waitpid(pid, 0)
"""
    log = tmp_path / "v.jsonl"
    result = run_app(tmp_path, body, {"APPSHIELD_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    pids = [line["pid"] for line in lines if "suppressed_count" not in line]
    assert len(set(pids)) == 2


def test_uninstall_flushes_and_gives_sigterm_back(tmp_path: Path) -> None:
    body = """
import signal as _signal
violate()
had = _signal.getsignal(_signal.SIGTERM) is not _signal.SIG_DFL
appshield.uninstall()
print(json.dumps({"had": had, "restored": _signal.getsignal(_signal.SIGTERM) is _signal.SIG_DFL}))
"""
    with running() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
        result = run_app(tmp_path, body, env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"had": True, "restored": True}
        assert len(_violation_spans(receiver)) == 1
