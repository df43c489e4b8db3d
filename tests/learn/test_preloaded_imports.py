"""Modules that appshield itself loads while learning (json, tempfile, the YAML loader, ...)
are `sys.modules` hits for the app there, but may be first imports under `appshield run`
(which loads far less, thanks to the policy cache). The learned policy must still allow them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP = """\
open(__file__).close()  # the first operation recorded: the recorder loads its writer's modules
import json, shutil, datetime, tempfile
from random import randint
import yaml.constructor
print("OK", json.dumps([1]), randint(1, 1))
"""


def _appshield(
    *args: str, cwd: Path, log: str = os.devnull, bytecode: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    # Bytecode (and so the policy cache) written, as in production: the shield that enforces
    # then loads no YAML and no tempfile at start-up.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["APPSHIELD_LOG"] = log
    return subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_imports_of_modules_appshield_preloaded_are_learned(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    policy = tmp_path / "learned.yaml"
    app = (sys.executable, "app.py")
    learned = _appshield("learn", "--out", str(policy), "--", *app, cwd=tmp_path)
    assert learned.returncode == 0, learned.stderr
    for _ in range(2):  # the second start uses the policy cache
        done = _appshield("run", "--policy", str(policy), "--", *app, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("OK"), done.stdout


SHUTIL_APP = """\
open(__file__).close()  # the recorder computes {tmp}: tempfile, random and shutil load
import shutil
print("OK", shutil.which("sh") is not None)
"""


def test_what_a_preloaded_module_loaded_is_learned_and_appshields_own_work_is_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text(SHUTIL_APP)
    policy = tmp_path / "learned.yaml"
    app = (sys.executable, "app.py")
    # The exact list: without it, the rule for every pure-Python stdlib module names both.
    strict = "--strict-imports"
    learned = _appshield("learn", strict, "--out", str(policy), "--", *app, cwd=tmp_path)
    assert learned.returncode == 0, learned.stderr
    text = policy.read_text()
    # shutil's own imports (zlib, the compression modules) come with it ...
    assert '"shutil"' in text and '"zlib"' in text, text
    # ... while what only appshield used while learning stays out of the policy.
    assert '"tempfile"' not in text and '"random"' not in text, text
    for bytecode in (False, True, True):  # no cache, then written, then used
        log = tmp_path / "violations.log"
        run = ("run", "--policy", str(policy), "--", *app)
        done = _appshield(*run, cwd=tmp_path, log=str(log), bytecode=bytecode)
        assert done.returncode == 0 and done.stdout.startswith("OK"), done.stderr
        assert not log.exists() or log.read_text() == "", log.read_text()
