"""`appshield run -- python -m pytest` on a project that turns warnings into errors.

The shield's bootstrap imports the `appshield` package before pytest starts, and pytest marks
the top-level package of every `pytest11` entry point for assertion rewriting; an already
imported package draws `PytestAssertRewriteWarning`, fatal under `-W error` or
`filterwarnings = error`, unless its docstring holds `PYTEST_DONT_REWRITE`.
Real processes: `appshield run`, then pytest in a project under tmp_path.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import appshield
from tests.activation._helpers import PY, RUN, clean_env, policy_file, run
from tests.plugin.test_plugin import QUIET_PLUGINS

# Offline tests: no process, no network; files and imports as pytest needs them.
OFFLINE = """
version: 1
name: pytest-offline
defaults: {process: deny, file: allow, network: deny, import: allow}
"""

TESTS = """
def test_sum():
    assert 1 + 1 == 2
"""

WARNING = "Module already imported so cannot be rewritten; appshield"


def project(tmp_path: Path, ini: str = "") -> tuple[Path, Path]:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(TESTS).lstrip())
    if ini:
        (tmp_path / "pyproject.toml").write_text(textwrap.dedent(ini).lstrip())
    return tmp_path, policy_file(tmp_path, OFFLINE)


def env(**extra: str) -> dict[str, str]:
    # pytest marks the plugin's package when it can find it: from the distribution's file
    # list (a regular install), or on sys.path (an editable install, whose files are not
    # listed). The folder `appshield` was imported from makes both cases behave the same.
    source = str(Path(appshield.__file__).resolve().parent.parent)
    return clean_env(PYTHONPATH=source, **extra)


@pytest.mark.parametrize("dont_write_bytecode", [False, True])
def test_pytest_with_warnings_as_errors(tmp_path: Path, dont_write_bytecode: bool) -> None:
    folder, policy = project(tmp_path)
    extra = {"PYTHONDONTWRITEBYTECODE": "1"} if dont_write_bytecode else {}
    argv = [
        *RUN,
        "--policy",
        str(policy),
        "--",
        PY,
        "-m",
        "pytest",
        *QUIET_PLUGINS,
        "-W",
        "error",
        "-q",
    ]
    result = run(argv, env=env(**extra), cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert WARNING not in result.stdout + result.stderr


def test_filterwarnings_error_in_the_config_with_the_plugin_on(tmp_path: Path) -> None:
    folder, policy = project(
        tmp_path,
        ini="""
        [tool.pytest.ini_options]
        filterwarnings = ["error"]
        """,
    )
    # The plugin is loaded and listens to the locked shield (same policy).
    argv = [*RUN, "--policy", str(policy), "--", PY, "-m", "pytest", *QUIET_PLUGINS, "-q"]
    result = run([*argv, "--appshield-policy", str(policy)], env=env(), cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_plugin_named_with_autoload_off(tmp_path: Path) -> None:
    # `-p appshield` (the entry point's name) marks the package itself for rewriting.
    folder, policy = project(tmp_path)
    argv = [
        *RUN,
        "--policy",
        str(policy),
        "--",
        PY,
        "-m",
        "pytest",
        *QUIET_PLUGINS,
        "-W",
        "error",
        "-q",
    ]
    result = run(
        [*argv, "-p", "appshield", "--appshield-policy", str(policy)],
        env=env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
        cwd=folder,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_without_the_marker_pytest_would_abort(tmp_path: Path) -> None:
    # The control: these runs do reach pytest's check, which only the docstring passes.
    folder, policy = project(tmp_path)
    code = (
        "import sys, appshield, pytest\n"
        "appshield.__doc__ = 'no marker'\n"
        f"sys.exit(pytest.main([*{list(QUIET_PLUGINS)!r}, '-W', 'error', '-q']))\n"
    )
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code], env=env(), cwd=folder)
    assert result.returncode != 0
    assert WARNING in result.stdout + result.stderr


def test_the_marker_is_in_the_package_docstring() -> None:
    assert "PYTEST_DONT_REWRITE" in (appshield.__doc__ or "")
    assert os.path.basename(appshield.__file__) == "__init__.py"
