"""The `appshield` command is the script bin/appshield (pyproject.toml `script-files`), not a
`[project.scripts]` entry point, whose generated wrapper imports `re` in `appshield run`'s own
process. These tests check that the installed command is that script and that `appshield run`
through it reaches the exec without importing `re` (or argparse, PyYAML, typing, or the modules
of appshield's own that only other commands, a decision or a problem need)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import appshield

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bin" / "appshield"
# The folder that holds the `appshield` package this interpreter imports (the checkout for
# an editable install, site-packages otherwise).
PACKAGE_PARENT = str(Path(appshield.__file__).resolve().parents[1])
TRUE = shutil.which("true") or "/bin/true"

# No variable, no `extends`: its cache is valid for any interpreter of the same version.
POLICY = """\
version: 1
name: command-script
defaults: {process: allow, file: allow, network: deny, import: allow}
rules:
  - {id: no-shadow, category: file, action: deny, match: {path: /etc/shadow}}
"""

# Never in `appshield run`'s own process when the policy cache is valid.
HEAVY = ("re", "argparse", "yaml", "typing", "enum")
# appshield's own modules that only a problem to report (`errors`), a decision (`decision`) or
# another command (`cli.commands`) needs: not loaded before the exec either
# (docs/performance.md, "appshield run's own process, second round").
NOT_BEFORE_THE_EXEC = ("appshield.errors", "appshield.decision", "appshield.cli.commands")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "PYTHONPROFILEIMPORTTIME"))
        and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }
    return {**env, **extra}


def _imported(importtime_stderr: str) -> list[str]:
    """The module names of `-X importtime` lines (`import time: self | cumulative | name`)."""
    names = []
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names


def _compiled_policy(folder: Path) -> Path:
    policy = folder / "policy.yaml"
    policy.write_text(POLICY)
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "check", "--compile", str(policy)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return policy


def test_the_command_is_a_script_not_an_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["script-files"] == ["bin/appshield"]
    assert "appshield" not in config["project"].get("scripts", {})
    lines = SCRIPT.read_text().splitlines()
    # `#!python` is what installers rewrite to the environment's interpreter.
    assert lines[0] == "#!python"
    assert os.access(SCRIPT, os.X_OK)
    assert not any(line.startswith(("import re", "from re ")) for line in lines)


def test_the_installed_command_is_this_script() -> None:
    installed = Path(sys.executable).with_name("appshield")
    if not installed.exists():
        pytest.skip(f"no appshield command beside {sys.executable}")
    first, _, body = installed.read_text().partition("\n")
    assert first.startswith("#!") and os.path.exists(first[2:].split()[0]), first
    # An installation made before the change still has pip's wrapper: reinstall
    # (`pip install -e .`), the README's command.
    assert body == SCRIPT.read_text().partition("\n")[2], f"{installed} is stale: reinstall"


def test_run_through_the_command_imports_no_re(tmp_path: Path) -> None:
    """`-S`: without `site`, whose editable-install finder imports `re` before appshield
    runs; appshield is found through PYTHONPATH instead. The command is bin/appshield itself
    (its installed copy differs only in the first line), run up to a real exec of `true`."""
    policy = _compiled_policy(tmp_path)
    command = ["-S", "-X", "importtime", str(SCRIPT), "run", "--policy", str(policy), "--", TRUE]
    done = subprocess.run(
        [sys.executable, *command],
        env=_env(PYTHONPATH=PACKAGE_PARENT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]  # `true` ran: the exec was reached
    imported = _imported(done.stderr)
    assert "appshield.policy.cache" in imported, imported  # the check did run
    assert not [m for m in HEAVY if m in imported], imported
    assert not [m for m in NOT_BEFORE_THE_EXEC if m in imported], imported
    # `types` neither (about 1 M instructions), unless this Python's own start loads it.
    bare = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", "pass"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "types" not in _imported(bare.stderr):
        assert "types" not in imported, imported


def test_the_names_loaded_on_first_use_are_the_modules_own() -> None:
    """`appshield.PolicyError`/`PolicyViolation` and `appshield.cli`'s table come from their
    modules on first use (PEP 562), every way of asking giving the same object."""
    code = (
        "import sys, appshield, appshield.cli\n"
        "print('appshield.errors' in sys.modules, 'appshield.cli.commands' in sys.modules)\n"
        "from appshield import PolicyError, PolicyViolation\n"
        "from appshield.errors import PolicyError as E, PolicyViolation as V\n"
        "from appshield.cli import COMMANDS, EXIT_INVALID, build_parser\n"
        "from appshield.cli import commands\n"
        "print(PolicyError is E, PolicyViolation is V, appshield.PolicyError is E)\n"
        "print(COMMANDS is commands.COMMANDS, build_parser is commands.build_parser,"
        " EXIT_INVALID)\n"
        "ns = {}\n"
        "exec('from appshield import *', ns)\n"
        "print(ns['PolicyError'] is E)\n"
        "try:\n"
        "    appshield.cli.nothing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env=_env(PYTHONPATH=PACKAGE_PARENT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False False",
        "True True True",
        "True True 2",
        "True",
        "module 'appshield.cli' has no attribute 'nothing'",
    ]


def test_an_invalid_policy_through_the_command_still_stops_before_the_command(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("action: deny", "action: nope"))
    marker = tmp_path / "ran"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--policy", str(policy), "--", "touch", str(marker)],
        env=_env(PYTHONPATH=PACKAGE_PARENT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{policy}:5:" in done.stderr, done.stderr
    assert not marker.exists()


def _venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    return folder / "bin"


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_installs_a_working_command(tmp_path: Path, editable: bool) -> None:
    """Both installs the README and docs/operations.md use give a working `appshield` in the
    environment's bin folder; with the non-editable one (no finder importing `re` in
    `site`), `appshield run` is checked as users start it. `--no-deps`: with a valid policy
    cache, `appshield run`'s own process needs nothing but the standard library."""
    if editable and os.environ.get("APPSHIELD_SLOW_SAMPLE", "") not in ("", "0"):
        # CI's bounded sample: its own install is the README's editable one, which
        # test_the_installed_command_is_this_script already checks.
        pytest.skip("CI installs editable itself")
    policy = _compiled_policy(tmp_path)
    bin_dir = _venv(tmp_path / "venv")
    install = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    done = subprocess.run(
        [*install, *(["-e"] if editable else []), str(ROOT)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    command = bin_dir / "appshield"
    first = command.read_text().partition("\n")[0]
    assert first.startswith(f"#!{bin_dir}/python"), first
    for argv in ([str(command)], [str(bin_dir / "python"), "-m", "appshield"]):
        done = subprocess.run(
            [*argv, "--version"], env=_env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and done.stdout.startswith("appshield "), done.stderr
    done = subprocess.run(
        [str(command), "run", "--policy", str(policy), "--", TRUE],
        env=_env(PYTHONPROFILEIMPORTTIME="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = _imported(done.stderr)
    assert "appshield.policy.cache" in imported, imported
    if not editable:
        assert not [m for m in HEAVY if m in imported], imported


def test_run_through_the_command_leaves_the_command_its_collector(tmp_path: Path) -> None:
    """The command's own process holds the cyclic collector off for `run` alone (it only
    checks and execs); the exec'd command starts with it on, shielded."""
    policy = _compiled_policy(tmp_path)
    probe = (
        "import gc, appshield.runtime as r; print(gc.isenabled(), r.active_shield() is not None)"
    )
    child = [sys.executable, "-c", probe]
    shielded = subprocess.run(
        [sys.executable, "-S", str(SCRIPT), "run", "--policy", str(policy), "--", *child],
        env=_env(PYTHONPATH=PACKAGE_PARENT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shielded.returncode == 0, shielded.stderr[-3000:]
    assert shielded.stdout.split() == ["True", "True"]
    assert "gc.disable()" in SCRIPT.read_text().split("from appshield.cli import main")[0]
    assert 'if sys.argv[1:2] == ["run"]:' in SCRIPT.read_text()
