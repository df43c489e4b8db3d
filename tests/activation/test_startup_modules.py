"""`import appshield.auto` leaves the standard library's heavier modules out of start-up.

Each of `typing`, `re`, `enum`, `contextlib`, `weakref`, `importlib.util` and `ipaddress`
costs a shielded start millions of instructions (docs/performance.md, "Start-up, third
round"), and a single `from typing import Any` or `import weakref` at the top of one
module on the path brings it back. This runs a real child, a non-site interpreter (`-S`: an
editable install's import finder, which a `.pth` file starts, loads `re` and `contextlib`
itself) with the typical policy from a warm cache and bytecode writing on, as production
starts, and reads which module imported each of them (`-X importtime` prints the imports as a
tree).

No appshield module may bring any of them into a start: the glob compiler and the policy
variables, the last two that did, now import `re` only when a glob is compiled for a
decision (and `threading` stays, on purpose: below).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import wrapt

import appshield
from tests.activation._helpers import PY, clean_env, run

REPO = Path(appshield.__file__).resolve().parent.parent
POLICY = REPO / "examples" / "web-service.yaml"

OFF_THE_PATH = (
    "typing",
    "re",
    "enum",
    "contextlib",
    "weakref",
    "importlib.util",
    "ipaddress",
)
# `threading` (and the `functools` it imports) stays: appshield.telemetry imports it at
# start-up on purpose (the exit flush needs it loaded on the main thread before the exit).

# Importers allowed to bring them at start-up: none.
EXEMPT: tuple[str, ...] = ()


def _import_tree(stderr: str) -> list[tuple[int, str]]:
    """(depth, module) for each line of `-X importtime`, in its order: a module is listed
    after everything it imported, one level deeper than it."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        name = line.rsplit("|", 1)[1]
        stripped = name.lstrip(" ")
        rows.append(((len(name) - len(stripped)) // 2, stripped.strip()))
    return rows


def _importers(rows: list[tuple[int, str]], index: int) -> list[str]:
    """The chain of modules whose import led to `rows[index]`, nearest first."""
    chain = []
    depth = rows[index][0]
    for later_depth, name in rows[index + 1 :]:
        if later_depth < depth:
            chain.append(name)
            depth = later_depth
    return chain


def test_auto_starts_without_the_heavy_standard_library(tmp_path: Path) -> None:
    policy = tmp_path / "web-service.yaml"
    shutil.copyfile(POLICY, policy)
    # This checkout and wrapt's folder: nothing else from site-packages.
    path = os.pathsep.join([str(REPO), str(Path(wrapt.__file__).resolve().parent.parent)])
    env = clean_env(APPSHIELD_POLICY=str(policy), PYTHONPATH=path)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the policy cache is written, then read
    code = "import appshield.auto, sys; print(sorted(sys.modules))"
    warm = run([PY, "-S", "-c", code], env=env, cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr
    started = run([PY, "-S", "-X", "importtime", "-c", code], env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert "'appshield.runtime'" in started.stdout  # the shield really started
    rows = _import_tree(started.stderr)
    wrong = []
    for index, (_, name) in enumerate(rows):
        if name not in OFF_THE_PATH:
            continue
        chain = _importers(rows, index)
        ours = [m for m in chain if m.startswith("appshield")]
        if not ours or ours[0] not in EXEMPT:
            wrong.append(f"{name} <- {' <- '.join(chain)}")
    assert wrong == []


# appshield's own modules that `import appshield.auto` needs neither to install nor for a
# first allowed operation (docs/performance.md, "Start-up, sixth round"): the inheritance
# record and the children's check (only the ways in that pass the shield on through the
# environment, and the process part, use them), the ports (type hints only), the report's
# records (a part, loaded by the first violation) and the stopping of denied exporters (a
# part, loaded by the first blocked connection).
NOT_AT_START = (
    "appshield._inherit",
    "appshield._proc_children",
    "appshield.ports",
    "appshield.report",
    "appshield.telemetry.denied_exporters",
)


def test_auto_starts_without_the_modules_only_other_ways_in_or_a_violation_need(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "web-service.yaml"
    shutil.copyfile(POLICY, policy)
    path = os.pathsep.join([str(REPO), str(Path(wrapt.__file__).resolve().parent.parent)])
    env = clean_env(APPSHIELD_POLICY=str(policy), PYTHONPATH=path)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = (
        "import appshield.auto, sys\n"
        "from appshield import runtime\n"
        "assert runtime.active_shield() is not None\n"
        f"print([m for m in {NOT_AT_START!r} if m in sys.modules])\n"
    )
    assert run([PY, "-S", "-c", code], env=env, cwd=tmp_path).returncode == 0
    started = run([PY, "-S", "-c", code], env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "[]"


def test_activation_restates_the_ways_in_that_pass_the_shield_on() -> None:
    from appshield import _proc_children, activation
    from appshield import policy as policy_module

    assert activation.ENV_SOURCES == _proc_children.ENV_SOURCES
    assert activation.POLICY_VARIABLE == policy_module._ENV_VAR
    assert activation.BOOTSTRAP_DIR == _proc_children.BOOTSTRAP_DIR


def test_the_modules_before_appshield_are_taken_before_any_of_its_own(tmp_path: Path) -> None:
    # `appshield.MODULES_BEFORE_APPSHIELD` (what learning's observer counts as the
    # interpreter's or the app's) is taken by the package's `__init__` before it imports any
    # module of its own: it holds what the app loaded first, and none of appshield's modules
    # but the package itself. (`appshield.settings` is the module it imports itself: the
    # exceptions are loaded on first use, `appshield run`'s own process never needing them.)
    code = (
        "import json, sys, appshield\n"
        "before = appshield.MODULES_BEFORE_APPSHIELD\n"
        "print(sorted(m for m in before if m.startswith('appshield')))\n"
        "print('json' in before, 'appshield.settings' in sys.modules)\n"
        "print(sorted(m for m in before if m not in sys.modules))\n"
    )
    env = clean_env(PYTHONPATH=str(REPO))  # `-S`: this checkout, nothing of site-packages
    found = run([PY, "-S", "-c", code], env=env, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines() == ["['appshield']", "True True", "[]"]
