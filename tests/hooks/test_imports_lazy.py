"""Lazy imports stay lazy under the shield (`importlib.util.LazyLoader`).

A module that LazyLoader returns has not run: its class's `__getattribute__` runs it on the
first attribute read. The import hooks judge the import from its spec, before anything runs,
and must never read the module's attributes themselves (`is_lazy` in
appshield/hooks/imports/names.py).

Real processes: a temporary package whose body writes a marker file, imported lazily through
the import statement (a finder that hands out LazyLoader specs, the route CPython's own
test_lazy takes) and through the recipe in importlib's documentation (the route of
scientific Python's `lazy_loader`). Each case runs bare first (the control: the import really
is lazy there), then under the shield.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from tests.activation._helpers import PY, RUN, allow_all_but, clean_env, run

# A finder that makes every import of `lazypkg` (and its submodules) lazy.
FINDER = """
import importlib.abc, importlib.machinery, importlib.util, os, sys

class LazyFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] != "lazypkg":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec

sys.meta_path.insert(0, LazyFinder())
ran = lambda: os.path.exists(os.environ["MARKER"])
"""

STATEMENT = (
    FINDER
    + """
import lazypkg
print("imported", ran())
print("value", lazypkg.VALUE, ran())
"""
)

# importlib's documented recipe; run before the shield starts when `auto` is appended.
RECIPE = """
import importlib.util, os, sys
ran = lambda: os.path.exists(os.environ["MARKER"])
spec = importlib.util.find_spec("lazypkg")
spec.loader = importlib.util.LazyLoader(spec.loader)
module = importlib.util.module_from_spec(spec)
sys.modules["lazypkg"] = module
spec.loader.exec_module(module)
"""

AUTO_AFTER_RECIPE = (
    RECIPE
    + """
import appshield.auto
print("imported", ran())
with open(os.environ["APPSHIELD_LOG"]) as log:
    print("logged", [line.count("watch-lazypkg") for line in log])
print("value", module.VALUE, ran())
"""
)


def _package(folder: Path) -> Path:
    package = folder / "lazypkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            import os
            with open(os.environ["MARKER"], "w") as marker:
                marker.write("ran")
            VALUE = 42
            """
        )
    )
    return package


def _env(folder: Path, **extra: str) -> dict[str, str]:
    return clean_env(MARKER=str(folder / "marker"), PYTHONPATH=str(folder), **extra)


def _lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("imported", "value"))]


LAZY = ["imported False", "value 42 True"]


def test_lazy_import_statement_stays_lazy_under_run(tmp_path: Path) -> None:
    _package(tmp_path)
    bare = run([PY, "-c", STATEMENT], env=_env(tmp_path), cwd=tmp_path)
    assert _lines(bare.stdout) == LAZY, bare.stderr  # control: lazy without the shield
    (tmp_path / "marker").unlink()
    # Import rules, so the import hooks have something to decide (not the empty-policy path).
    policy = allow_all_but(
        tmp_path, "- {id: no-ctypes, category: import, action: deny, match: {module: ctypes}}"
    )
    shielded = run(
        [*RUN, "--policy", str(policy), "--", PY, "-c", STATEMENT],
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert shielded.returncode == 0, shielded.stderr
    assert _lines(shielded.stdout) == LAZY


def test_a_denied_lazy_import_is_still_denied_before_it_runs(tmp_path: Path) -> None:
    _package(tmp_path)
    policy = allow_all_but(
        tmp_path, "- {id: no-lazypkg, category: import, action: deny, match: {module: lazypkg}}"
    )
    code = STATEMENT.replace(
        "import lazypkg\n",
        "try:\n    import lazypkg\nexcept PermissionError as exc:\n"
        "    print('denied', exc.rule_id, ran())\n    raise SystemExit(0)\n",
    )
    shielded = run(
        [*RUN, "--policy", str(policy), "--", PY, "-c", code], env=_env(tmp_path), cwd=tmp_path
    )
    assert shielded.returncode == 0, shielded.stderr
    assert "denied no-lazypkg False" in shielded.stdout
    assert not (tmp_path / "marker").exists()


def test_lazy_module_imported_before_auto_is_reported_without_running(tmp_path: Path) -> None:
    """`import appshield.auto` reports denied modules the app imported before it; a lazy one
    is judged from its spec, left unrun."""
    _package(tmp_path)
    bare = run([PY, "-c", RECIPE + "\nprint('imported', ran())"], env=_env(tmp_path))
    assert _lines(bare.stdout) == ["imported False"], bare.stderr  # control
    policy = allow_all_but(
        tmp_path,
        "- {id: watch-lazypkg, category: import, action: alert, match: {module: lazypkg}}",
    )
    log = tmp_path / "violations.jsonl"
    shielded = run(
        [PY, "-c", AUTO_AFTER_RECIPE],
        env=_env(tmp_path, APPSHIELD_POLICY=str(policy), APPSHIELD_LOG=str(log)),
        cwd=tmp_path,
    )
    assert shielded.returncode == 0, shielded.stderr
    assert _lines(shielded.stdout) == LAZY
    # Reported at install, before anything of it ran (and again when its body runs).
    assert "logged [1]" in shielded.stdout
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(r["rule"], r["target"]) for r in records} == {("watch-lazypkg", "lazypkg")}


def _has_cpython_test_lazy() -> bool:
    try:
        return importlib.util.find_spec("test.test_importlib.test_lazy") is not None
    except ImportError:
        return False


@pytest.mark.skipif(
    not _has_cpython_test_lazy(),
    reason="this interpreter ships without CPython's `test` package (test.test_importlib)",
)
def test_cpython_test_lazy_passes_under_run(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    command = [PY, "-m", "unittest", "-q", "test.test_importlib.test_lazy"]
    bare = run(command, env=clean_env(), cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr  # control
    shielded = run([*RUN, "--policy", str(policy), "--", *command], env=clean_env(), cwd=tmp_path)
    assert shielded.returncode == 0, shielded.stderr
    assert "OK" in shielded.stderr
