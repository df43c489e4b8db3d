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
