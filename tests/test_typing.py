"""`mypy --strict` is clean on the core, the runtime and the hooks.

The package ships `py.typed`, so its annotations are a promise to the code that uses it. The
scope is pinned here and in pyproject's `[tool.mypy] files` (the test checks they agree);
modules outside it are analysed for their types where the scope imports them, but their own
errors are not reported (`follow_imports = "silent"` in pyproject). mypy runs as a
subprocess with a fresh cache in the test's tmp folder, offline, so the result depends only
on the checkout and the installed mypy (at least the `test` extra's lower bound).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STRICT_SCOPE = (
    "appshield/policy",
    "appshield/engine",
    "appshield/operations.py",
    "appshield/decision.py",
    "appshield/normalize.py",
    "appshield/errors.py",
    "appshield/runtime.py",
    "appshield/hooks",
    "appshield/document.py",
    "appshield/_threadstate.py",
    "appshield/ports.py",
    "appshield/settings.py",
    "appshield/_proc_describe.py",
    "appshield/_proc_children.py",
    "appshield/shadow.py",
    "appshield/versions.py",
    "appshield/attribution.py",
    "appshield/grants.py",
    "appshield/granting.py",
)


def _mypy(cache: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYPY")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            *options,
            *STRICT_SCOPE,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _check(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"mypy --strict found problems (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    )


def test_scope_exists_and_matches_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # 3.11+; the scope itself is checked everywhere
    for entry in STRICT_SCOPE:
        assert (ROOT / entry).exists(), entry
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert tuple(config["files"]) == STRICT_SCOPE
    assert config["strict"] is True


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    _check(_mypy(tmp_path / "mypy-cache"))


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_mypy_strict_is_clean_for_every_supported_python(tmp_path: Path, version: str) -> None:
    """The hooks branch on `sys.version_info`; mypy checks only the branches of the version
    it targets, so each supported version is checked once (typeshed's stubs for it)."""
    if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip("this interpreter's version: test_mypy_strict_is_clean checks it")
    _check(_mypy(tmp_path / "mypy-cache", "--python-version", version))
