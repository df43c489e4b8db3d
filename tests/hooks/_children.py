"""Running a script in a child interpreter with one hook kind, for the tests that compare
the compiled audit hook with the Python one and with a control run without the shield."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

Run = Callable[[str | None], "subprocess.CompletedProcess[str]"]


def run_python(
    script: str, kind: str | None, cwd: Path, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """`script` in a child, with no `APPSHIELD_*` variable of this process's; `kind`
    "python" picks the Python audit hook (`APPSHIELD_PURE_PYTHON=1`), "compiled" or None
    leave the default (the script itself installs the shield, or not)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
    env.update(extra_env)
    if kind == "python":
        env["APPSHIELD_PURE_PYTHON"] = "1"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def shielded_words(run: Run, kind: str, control_words: list[str], canary: Path) -> list[str]:
    """The control run (`run(None)`, no shield) must print `control_words`; its canary is
    then removed, and the words the shielded run (`run(kind)`) prints are handed back (it
    must print some: its stderr says why when it does not)."""
    control = run(None)
    assert control.stdout.split() == control_words, control.stderr
    canary.unlink(missing_ok=True)
    shielded = run(kind)
    assert shielded.stdout, shielded.stderr
    return shielded.stdout.split()
