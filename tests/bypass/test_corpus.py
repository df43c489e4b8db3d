"""One attack corpus, three runs each: control (works without appshield), enforce (blocked,
allowed things still work), monitor (happens and is reported).

Attempts live in `attempts_<category>.py` modules as a list `ATTEMPTS` of `Attempt`.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import tests.bypass as package
from tests.bypass._harness import Attempt, Listener, run_attempt


def _collect() -> list[Attempt]:
    found: list[Attempt] = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("attempts_"):
            module = importlib.import_module(f"tests.bypass.{info.name}")
            found.extend(module.ATTEMPTS)
    ids = [a.id for a in found]
    assert len(ids) == len(set(ids)), "duplicate attempt ids"
    return found


ATTEMPTS = _collect()
BY_ID = pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.id for a in ATTEMPTS])


@BY_ID
def test_control_attempt_really_works(attempt: Attempt, tmp_path: Path, listener: Listener) -> None:
    outcome = run_attempt(attempt, tmp_path, listener, mode=None)
    assert outcome.happened, f"the attempt does not work even without appshield:\n{outcome.stderr}"


@BY_ID
def test_enforce_blocks_attempt(attempt: Attempt, tmp_path: Path, listener: Listener) -> None:
    outcome = run_attempt(attempt, tmp_path, listener, mode="enforce")
    assert not outcome.happened, f"bypass succeeded:\n{outcome.stdout}\n{outcome.stderr}"
    assert "Traceback" not in outcome.stderr or "PolicyViolation" in outcome.stderr


@BY_ID
def test_monitor_lets_attempt_happen_and_reports_it(
    attempt: Attempt, tmp_path: Path, listener: Listener
) -> None:
    outcome = run_attempt(attempt, tmp_path, listener, mode="monitor")
    assert outcome.happened, f"monitor mode changed the outcome:\n{outcome.stderr}"
    if attempt.reported:
        assert outcome.violations, f"no violation reported:\n{outcome.stderr}"
        assert all(v["blocked"] is False for v in outcome.violations)
