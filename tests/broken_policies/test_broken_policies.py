"""Every broken policy in this folder fails with exactly the messages in expected.txt,
in-process (`load_file`) and through the real command (`appshield check`, exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from appshield.errors import PolicyError
from appshield.policy.loader import load_file

HERE = Path(__file__).parent


def _expected() -> dict[str, list[str]]:
    table: dict[str, list[str]] = defaultdict(list)
    for row in (HERE / "expected.txt").read_text(encoding="utf-8").splitlines():
        if row.startswith("#") or not row.strip():
            continue
        name, _, line = row.partition(" | ")
        table[name].append(line)
    return dict(table)


EXPECTED = _expected()
POLICIES = sorted(p.name for p in HERE.glob("*.yaml"))


def test_every_policy_has_expectations() -> None:
    assert sorted(EXPECTED) == POLICIES
    assert len(POLICIES) >= 20


@pytest.mark.parametrize("name", POLICIES)
def test_load_file_reports_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)
    with pytest.raises(PolicyError) as caught:
        load_file(name)
    assert [str(p) for p in caught.value.problems] == EXPECTED[name]
    assert str(caught.value) == "\n".join(EXPECTED[name])


def test_check_command_prints_every_problem() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "appshield", "check", *POLICIES],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    expected = [line for name in POLICIES for line in EXPECTED[name]]
    assert result.stdout.splitlines() == expected


@pytest.mark.parametrize("name", ["empty.yaml", "python_tag.yaml", "extends_cycle_a.yaml"])
def test_check_one_broken_policy_exits_1(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "appshield", "check", name],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == EXPECTED[name]
    assert "Traceback" not in result.stderr
