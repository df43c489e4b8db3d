"""The patch table's machinery: wrapt's C FunctionWrapper without wrapt's package import,
modules patched when they are imported (by the import hooks, every route that registers the
module), class attributes resolved as wrapt would, and uninstall leaving nothing behind."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appshield import patching as _patching
from appshield import runtime
from appshield.patching import FunctionWrapper, Patcher, PatchPoint
from appshield.policy import Policy

ALLOW_ALL = """\
version: 1
name: patching-tests
defaults: {process: allow, file: allow, network: allow, import: allow}
"""

MODULE = """\
def greet(name):
    return "hello " + name

class Greeter:
    @staticmethod
    def loud(name):
        return name.upper()
"""


@pytest.fixture
def shielded() -> Iterator[None]:
    """A shield that allows everything: its import hooks are what patch modules on import."""
    runtime.install(Policy.from_yaml(ALLOW_ALL))
    try:
        yield
    finally:
        runtime.uninstall()


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("patch_target_")]:
            del sys.modules[name]
        importlib.invalidate_caches()


def _tagging(calls: list[str]) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        calls.append(args[0])
        return wrapped(*args, **kwargs)

    return wrapper


def test_a_module_imported_after_install_is_patched(shielded: None, module_dir: Path) -> None:
    (module_dir / "patch_target_a.py").write_text(MODULE)
    calls: list[str] = []
    points = [
        PatchPoint("patch_target_a", "greet", _tagging(calls), "test"),
        PatchPoint("patch_target_a", "Greeter.loud", _tagging(calls), "test"),
    ]
    patcher = Patcher(points)
    patcher.install()
    try:
        assert "patch_target_a" in _patching._waiting
        import patch_target_a  # type: ignore[import-not-found]

        assert "patch_target_a" not in _patching._waiting
        assert isinstance(patch_target_a.greet, FunctionWrapper)
        assert patch_target_a.greet("a") == "hello a"
        # the staticmethod itself was wrapped (read from the class __dict__, as wrapt does)
        assert patch_target_a.Greeter.loud("b") == "B"
        assert patch_target_a.Greeter().loud("c") == "C"
        assert calls == ["a", "b", "c"]
        original = patcher.applied()[1][1]
        assert isinstance(original, staticmethod)
    finally:
        assert patcher.uninstall() == []
    assert not isinstance(patch_target_a.greet, FunctionWrapper)
    assert patch_target_a.Greeter.__dict__["loud"] is original


def test_a_module_run_by_hand_is_patched_once_registered(shielded: None, module_dir: Path) -> None:
    path = module_dir / "patch_target_b.py"
    path.write_text(MODULE)
    calls: list[str] = []
    patcher = Patcher([PatchPoint("patch_target_b", "greet", _tagging(calls), "test")])
    patcher.install()
    try:
        # Not registered in sys.modules: a private copy, not the module; still waiting.
        spec = importlib.util.spec_from_file_location("patch_target_b", path)
        assert spec is not None and spec.loader is not None
        private = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(private)
        assert not isinstance(private.greet, FunctionWrapper)
        assert "patch_target_b" in _patching._waiting
        # Registered first, as importlib's recipe does: patched when its body has run.
        spec = importlib.util.spec_from_file_location("patch_target_b", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["patch_target_b"] = module
        spec.loader.exec_module(module)
        assert isinstance(module.greet, FunctionWrapper)
        assert module.greet("x") == "hello x" and calls == ["x"]
    finally:
        patcher.uninstall()


def test_uninstall_forgets_modules_never_imported() -> None:
    patcher = Patcher([PatchPoint("patch_target_never", "greet", _tagging([]), "test")])
    other = Patcher([PatchPoint("patch_target_never", "greet", _tagging([]), "test")])
    patcher.install()
    other.install()
    assert len(_patching._waiting["patch_target_never"]) == 2
    patcher.uninstall()
    assert len(_patching._waiting["patch_target_never"]) == 1  # the other patcher's stays
    other.uninstall()
    assert "patch_target_never" not in _patching._waiting


def _run(
    code: str, cwd: Path | None = None, bytecode: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "WRAPT_"))}
    if bytecode:
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


DENY_TMP_READS = """
import os, sys, tempfile
folder = tempfile.mkdtemp()
secret = os.path.join(folder, "secret")
open(secret, "w").close()
import appshield
appshield.install({
    "version": 1, "name": "t",
    "defaults": {"process": "allow", "file": "allow", "network": "allow", "import": "allow"},
    "rules": [{"id": "no-secret", "category": "file", "action": "deny",
               "match": {"path": secret}}],
})
try:
    open(secret)
    print("OPENED")
except PermissionError:
    print("BLOCKED")
"""


def test_startup_loads_the_extension_not_the_package(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        ALLOW_ALL + f"rules:\n  - {{id: no-secret, category: file, action: deny,"
        f" match: {{path: '{secret}'}}}}\n"
    )
    code = f"""
import sys
import appshield.auto
print("package" if "wrapt" in sys.modules else "no-package")
print("inspect" if "inspect" in sys.modules else "no-inspect")
try:
    open({str(secret)!r})
    print("OPENED")
except PermissionError:
    print("BLOCKED")
from appshield.patching import FunctionWrapper
import wrapt  # the app's own import, later: the very same classes
print(wrapt.FunctionWrapper is FunctionWrapper)
"""
    env = {"APPSHIELD_POLICY": str(policy)}
    for _ in range(2):  # the second start uses the policy cache: no validator, no dataclasses
        done = _run(code, cwd=tmp_path, bytecode=True, **env)
        assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["no-package", "no-inspect", "BLOCKED", "True"], done.stdout


def test_pure_python_wrapt_still_enforces() -> None:
    done = _run(
        DENY_TMP_READS
        + """
from appshield.patching import FunctionWrapper
import wrapt.wrappers
print(FunctionWrapper is wrapt.wrappers.FunctionWrapper)
""",
        WRAPT_DISABLE_EXTENSIONS="1",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "BLOCKED"
    assert done.stdout.split()[-1] == "True", done.stdout  # the pure-Python class
