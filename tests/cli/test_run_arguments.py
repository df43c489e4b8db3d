"""`appshield run` reads the usual spellings of its arguments without argparse (which costs
more to import than the rest of the command); every spelling it reads must mean exactly what
argparse makes of it, and everything else must be left to argparse."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from appshield.cli.run import register, simple_run_arguments

WORDS = [
    "--policy",
    "--mode",
    "--policy=p.yaml",
    "--policy=",
    "--mode=enforce",
    "--mode=monitor",
    "--mode=bad",
    "--pol",
    "--policy=a=b",
    "p.yaml",
    "enforce",
    "monitor",
    "--",
    "python",
    "-c",
    "-h",
    "--help",
    "-",
    "x y",
    "",
]


def _argparse(argv: list[str]) -> tuple[str | None, str | None, list[str]] | None:
    parser = argparse.ArgumentParser(prog="appshield")
    register(parser.add_subparsers(dest="subcommand", required=True))
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(argv)
    except SystemExit:
        return None
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return args.policy, args.mode, command


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_every_spelling_read_without_argparse_means_the_same(words: list[str]) -> None:
    argv = ["run", *words]
    simple = simple_run_arguments(argv)
    if simple is not None:
        assert simple == _argparse(argv), argv


def test_the_launchers_spellings_are_read_without_argparse() -> None:
    for argv, expected in [
        (["run", "--", "python", "app.py"], (None, None, ["python", "app.py"])),
        (["run", "--policy", "p.yaml", "--", "python"], ("p.yaml", None, ["python"])),
        (["run", "--policy=p.yaml", "--mode=monitor", "--", "x"], ("p.yaml", "monitor", ["x"])),
        (
            ["run", "--mode", "enforce", "gunicorn", "--workers", "2"],
            (None, "enforce", ["gunicorn", "--workers", "2"]),
        ),
        (["run", "--", "python", "--", "-c"], (None, None, ["python", "--", "-c"])),
    ]:
        assert simple_run_arguments(argv) == expected
        assert _argparse(argv) == expected
    for unusual in (["run", "-h"], ["run", "--pol", "p", "--", "x"], ["run", "--mode", "bad"]):
        assert simple_run_arguments(unusual) is None


def test_run_imports_no_argparse(tmp_path: object) -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['appshield', 'run', '--', sys.executable, '-c', 'pass']\n"
        "import os\n"
        "os.execvpe = lambda *a: sys.exit(0 if 'argparse' not in sys.modules else 3)\n"
        "from appshield.cli import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
    env["APPSHIELD_DISABLE"] = "1"  # no policy needed: only the argument reading is tested
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_run_names_the_bootstrap_folder_the_child_uses() -> None:
    from appshield._proc_children import BOOTSTRAP_DIR
    from appshield.cli import run

    assert run.BOOTSTRAP_DIR == BOOTSTRAP_DIR


# `appshield run` with a valid policy cache, up to the exec: what it must not import (the
# YAML loader, argparse, the child's modules, sysconfig), and that it reaches the exec.
LEAN = """\
import os, sys
sys.argv = ["appshield", "run", "--policy", sys.argv[1], "--", sys.executable, "-c", "pass"]
heavy = ("yaml", "argparse", "appshield._proc_children", "appshield._inherit", "sysconfig")
def execvpe(*args):
    print("exec", sorted(m for m in heavy if m in sys.modules))
    sys.exit(0)
os.execvpe = execvpe
from appshield.cli import main
sys.exit(main())
"""

POLICY = """\
version: 1
name: lean-run
extends: ["appshield:python-runtime"]
defaults: {process: allow, file: allow, network: deny, import: allow}
rules:
  - {id: tmp, category: file, action: deny, match: {path: "{tmp}/nope/**"}}
"""


def test_run_with_a_valid_cache_imports_only_what_validating_needs(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the first run writes the cache
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", LEAN, str(policy)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())
    assert outputs[1] == "exec []", outputs  # the cache proved the policy valid
    # and a policy that no longer is valid still stops it before the exec, exit 2
    policy.write_text(POLICY.replace("action: deny", "action: nope"))
    done = subprocess.run(
        [sys.executable, "-c", LEAN, str(policy)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and f"{policy}:" in done.stderr and "exec" not in done.stdout
