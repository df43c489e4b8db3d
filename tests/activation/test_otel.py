"""`opentelemetry-instrument python app.py` with APPSHIELD_POLICY set switches the shield on."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.activation._helpers import PROBE, PY, RUN, allow_all_but, clean_env, probe, run

OTEL = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(OTEL is None, reason="opentelemetry-instrumentation missing")

# No exporter may reach out of the machine during the tests.
QUIET = {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app.py"
    app.write_text(PROBE)
    return app


def test_opentelemetry_instrument_activates(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    env = clean_env(APPSHIELD_POLICY=str(policy), **QUIET)
    result = run([str(OTEL), PY, str(_app(tmp_path))], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout) == {
        "active": True,
        "locked": True,
        "policy": "activation-test",
        "source": "opentelemetry",
    }


def test_opentelemetry_instrument_without_policy_changes_nothing(tmp_path: Path) -> None:
    result = run([str(OTEL), PY, str(_app(tmp_path))], env=clean_env(**QUIET), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["active"] is False


def test_opentelemetry_instrument_fails_closed(tmp_path: Path) -> None:
    env = clean_env(APPSHIELD_POLICY=str(tmp_path / "missing.yaml"), **QUIET)
    result = run([str(OTEL), PY, str(_app(tmp_path))], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "PROBE" not in result.stdout
    assert "appshield: refusing to run unshielded" in result.stderr


@pytest.mark.parametrize("order", ["run-outside", "otel-outside"])
def test_with_appshield_run_installs_once(tmp_path: Path, order: str) -> None:
    policy = allow_all_but(tmp_path)
    app = tmp_path / "app.py"
    # Counts installs: the patch table is applied once, so is the runtime's install body.
    app.write_text(
        "from appshield import runtime\nfrom appshield import activation as _activate\n"
        "print('SHIELDS', 1 if runtime.active_shield() else 0)\n" + PROBE
    )
    run_part = [*RUN, "--policy", str(policy), "--"]
    if order == "run-outside":
        argv = [*run_part, str(OTEL), PY, str(app)]
    else:
        argv = [str(OTEL), *run_part, PY, str(app)]
    result = run(argv, env=clean_env(**QUIET), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = probe(result.stdout)
    assert info["active"] is True and info["locked"] is True
    assert "already active" not in result.stderr
    assert "Instrumenting of appshield failed" not in result.stderr
