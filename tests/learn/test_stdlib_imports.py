"""A learned policy and the imports its run did not make: a code path that only imports
pure-Python standard-library modules still works on the second run; native capabilities
(ctypes, mmap, extension modules), third-party packages and a planted file under a standard
library name stay denied. `--strict-imports` keeps the exact list (the control)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

APP = textwrap.dedent(
    """
    import os, sys, unicodedata

    # Learned: the extension module encodings.idna needs (extension modules stay precise).
    unicodedata.normalize("NFC", "x")
    case = sys.argv[1] if len(sys.argv) > 1 else ""
    if os.environ.get("EXTRA"):
        sys.path.insert(0, os.environ["EXTRA"])  # a prepended sys.path entry

    def attempt(name):
        try:
            __import__(name)
        except PermissionError:
            print("blocked", name)
        else:
            print("imported", name)

    if case == "lazy":
        # Not loaded yet, so each import below is judged (not a sys.modules hit).
        fresh = {"stringprep", "encodings.idna", "colorsys", "graphlib", "html", "runpy"}
        assert not fresh & set(sys.modules), fresh & set(sys.modules)
        assert "b\\u00fccher.example".encode("idna") == b"xn--bcher-kva.example"
        import colorsys, graphlib, html, runpy
        print("lazy ok", colorsys.rgb_to_hsv(1, 0, 0), html.unescape("&amp;"))
    elif case == "idna":
        try:
            "b\\u00fccher.example".encode("idna")
        except PermissionError:
            print("blocked idna")
    elif case == "frozen-name":
        import importlib.util
        spec = importlib.util.spec_from_file_location("runpy", os.environ["FAKE"])
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except PermissionError:
            print("blocked frozen-name")
    elif case:
        attempt(case)
    print("done")
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update(extra)
    return env


def _appshield(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(**env),
    )


class Learned:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.app = root / "app"
        self.app.mkdir()
        (self.app / "app.py").write_text(APP)
        self.policy = root / "learned.yaml"
        self.strict = root / "strict.yaml"
        for out, extra in ((self.policy, ()), (self.strict, ("--strict-imports",))):
            done = _appshield(
                "learn", "--out", str(out), *extra, "--", sys.executable, "app.py", cwd=self.app
            )
            assert done.returncode == 0, done.stderr

    def run(self, *args: str, policy: Path | None = None, **env: str) -> tuple[str, list[Any]]:
        """Run the app enforced with `args`; its stdout and the violations it reported."""
        log = self.root / "violations.jsonl"
        log.unlink(missing_ok=True)
        done = _appshield(
            "run", "--policy", str(policy or self.policy), "--mode", "enforce", "--",
            sys.executable, "app.py", *args, cwd=self.app, APPSHIELD_LOG=str(log), **env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        found = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return done.stdout, found


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Learned:
    return Learned(tmp_path_factory.mktemp("stdlib-imports"))


def _blocked_imports(found: list[Any]) -> list[str]:
    assert all(v["blocked"] and v["category"] == "import" for v in found), found
    return [str(v["target"]) for v in found]


def test_the_policy_has_the_rules_and_they_check(learned: Learned) -> None:
    text = learned.policy.read_text()
    assert "id: import-stdlib-python" in text and "id: import-stdlib-frozen" in text
    assert '"{stdlib_modules}/**/*.py"' in text and '"{stdlib_modules}/ctypes/**"' in text
    assert '"ctypes"' not in text and '"mmap"' not in text
    assert "import-stdlib-python" not in learned.strict.read_text()
    assert _appshield("check", str(learned.policy), cwd=learned.root).returncode == 0


def test_lazy_pure_python_stdlib_imports_pass_on_the_second_run(learned: Learned) -> None:
    out, found = learned.run("lazy")
    assert found == [] and "lazy ok" in out, (out, found)


@pytest.mark.parametrize("module", ["ctypes", "mmap", "csv"])
def test_native_capabilities_not_seen_are_blocked_and_reported(
    learned: Learned, module: str
) -> None:
    # csv: a pure-Python module over the `_csv` extension, which no broad rule grants.
    out, found = learned.run(module)
    assert f"blocked {module}" in out, out
    expected = "_csv" if module == "csv" else module
    assert _blocked_imports(found) == [expected]


def test_an_unseen_third_party_package_is_blocked(learned: Learned, tmp_path: Path) -> None:
    package = tmp_path / "extra" / "thirdparty_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    out, found = learned.run("thirdparty_pkg", EXTRA=str(tmp_path / "extra"))
    assert "blocked thirdparty_pkg" in out and _blocked_imports(found) == ["thirdparty_pkg"]


def test_a_stringprep_on_a_prepended_path_entry_is_blocked(
    learned: Learned, tmp_path: Path
) -> None:
    (tmp_path / "stringprep.py").write_text("raise SystemExit('planted code ran')\n")
    out, found = learned.run("idna", EXTRA=str(tmp_path))
    assert "blocked idna" in out and _blocked_imports(found) == ["stringprep"], (out, found)


def test_a_stringprep_planted_in_the_app_folder_is_blocked(learned: Learned) -> None:
    planted = learned.app / "stringprep.py"
    planted.write_text("raise SystemExit('planted code ran')\n")
    try:
        out, found = learned.run("idna")
    finally:
        planted.unlink()
    assert "blocked idna" in out and _blocked_imports(found) == ["stringprep"], (out, found)


def test_a_file_loaded_under_a_frozen_modules_name_is_blocked(
    learned: Learned, tmp_path: Path
) -> None:
    fake = tmp_path / "runpy.py"
    fake.write_text("raise SystemExit('planted code ran')\n")
    out, found = learned.run("frozen-name", FAKE=str(fake))
    assert "blocked frozen-name" in out and _blocked_imports(found) == ["runpy"], (out, found)


def test_strict_imports_denies_the_lazy_stdlib_import(learned: Learned) -> None:
    out, found = learned.run("colorsys", policy=learned.strict)
    assert "blocked colorsys" in out and _blocked_imports(found) == ["colorsys"]
