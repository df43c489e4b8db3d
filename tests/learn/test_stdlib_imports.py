"""A learned policy and the imports its run did not make: a code path that only imports
standard-library modules (pure Python, and CPython's own extension modules in lib-dynload
that they need) still works on the second run; native capabilities (ctypes, mmap,
_posixsubprocess), third-party packages, a planted file under a standard-library name and a
copy of a standard extension module outside lib-dynload stay denied. `--strict-imports`
keeps the exact list (the control)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

STDLIB = sysconfig.get_paths()["stdlib"]
EXTENSION = (
    sys.modules["_frozen_importlib_external"].EXTENSION_SUFFIXES[0]  # type: ignore[attr-defined]
)

APP = textwrap.dedent(
    """
    import os, sys

    # Standard-library modules with an extension module below them, none loaded while
    # learning: the learning run (no argument) prints what of them it had loaded.
    NATIVE = {"stringprep": "unicodedata", "csv": "_csv", "decimal": "_decimal",
              "zoneinfo": "_zoneinfo", "fractions": "_decimal"}
    case = sys.argv[1] if len(sys.argv) > 1 else ""
    if not case:
        names = {*NATIVE, *NATIVE.values(), "encodings.idna"}
        print("loaded while learning:", sorted(names & set(sys.modules)))
    if os.environ.get("EXTRA"):
        sys.path.insert(0, os.environ["EXTRA"])  # a prepended sys.path entry

    def attempt(name):
        assert name not in sys.modules, name  # a fresh import, so it is judged
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
    elif case == "native":
        fresh = {*NATIVE, *NATIVE.values(), "encodings.idna"}
        assert not fresh & set(sys.modules), fresh & set(sys.modules)
        assert "b\\u00fccher.example".encode("idna") == b"xn--bcher-kva.example"
        import csv, decimal, fractions, io, zoneinfo
        rows = list(csv.reader(io.StringIO("a,b\\n1,2\\n")))
        total = decimal.Decimal("1.10") + decimal.Decimal("2.205")
        half = fractions.Fraction(decimal.Decimal("0.5"))
        print("native ok", rows, total, half, zoneinfo.ZoneInfo.__module__)
        print("extensions", sorted(set(NATIVE.values()) & set(sys.modules)))
    elif case == "by-path":
        # A copy of an extension module's file, loaded by path under a standard name.
        import importlib.util
        spec = importlib.util.spec_from_file_location("unicodedata", os.environ["FAKE"])
        try:
            module = importlib.util.module_from_spec(spec)
        except PermissionError:
            print("blocked by-path")
        else:
            print("imported by-path", module.lookup("LATIN SMALL LETTER A"))
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
            # What the second runs import lazily really was not seen here.
            assert "loaded while learning: []" in done.stdout, done.stdout

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
    assert "id: import-stdlib-native" in text
    assert 'origin: ["{stdlib_modules}/lib-dynload/*.so"]' in text
    excluded_names = ("ctypes", "_ctypes", "mmap", "_posixsubprocess", "_sqlite3", "_tkinter")
    for excluded in (*excluded_names, "readline", "syslog", "_testcapi", "xxlimited"):
        assert f'"{excluded}"' not in text, excluded
    strict = learned.strict.read_text()
    assert "import-stdlib-python" not in strict and "import-stdlib-native" not in strict
    assert _appshield("check", str(learned.policy), cwd=learned.root).returncode == 0


def test_lazy_pure_python_stdlib_imports_pass_on_the_second_run(learned: Learned) -> None:
    out, found = learned.run("lazy")
    assert found == [] and "lazy ok" in out, (out, found)


def test_lazy_imports_that_need_stdlib_extension_modules_pass(learned: Learned) -> None:
    # IDNA (stringprep -> unicodedata), csv (_csv), decimal and fractions (_decimal),
    # zoneinfo (_zoneinfo): none loaded while learning, so only the broad rules allow them.
    out, found = learned.run("native")
    assert found == [] and "native ok" in out, (out, found)
    assert "extensions ['_csv', '_decimal', '_zoneinfo', 'unicodedata']" in out, out


@pytest.mark.parametrize(
    "module",
    [
        "ctypes",
        "_ctypes",
        "mmap",
        "_posixsubprocess",
        "_posixshmem",
        "_multiprocessing",
        "_sqlite3",
    ],
)
def test_native_capabilities_not_seen_are_blocked_and_reported(
    learned: Learned, module: str
) -> None:
    # CPython's own extension modules too, but ones that map memory, share it, start
    # processes or load any library: the broad rule leaves them out by name.
    out, found = learned.run(module)
    assert f"blocked {module}" in out, out
    assert _blocked_imports(found) == [module]


def _extension_file(name: str) -> Path:
    found = Path(STDLIB, "lib-dynload").glob(name + ".*")
    path = next((p for p in found if p.name.endswith(EXTENSION)), None)
    if path is None:
        pytest.skip(f"{name} is not an extension module in lib-dynload on this build")
    return path


def test_the_real_unicodedata_file_by_path_is_allowed(learned: Learned) -> None:
    # The control for the copies below: the same import, from lib-dynload itself.
    out, found = learned.run("by-path", FAKE=str(_extension_file("unicodedata")))
    assert found == [] and "imported by-path a" in out, (out, found)


@pytest.mark.parametrize(
    ("source", "file_name"),
    [
        ("unicodedata", "unicodedata" + EXTENSION),  # a copy under its own name
        ("unicodedata", "helpers" + EXTENSION),  # a copy under another name
        ("_ctypes", "unicodedata" + EXTENSION),  # another file renamed into place
    ],
)
def test_a_copy_of_an_extension_module_outside_lib_dynload_is_blocked(
    learned: Learned, source: str, file_name: str
) -> None:
    copy = learned.app / file_name
    shutil.copyfile(_extension_file(source), copy)
    try:
        out, found = learned.run("by-path", FAKE=str(copy))
    finally:
        copy.unlink()
    assert "blocked by-path" in out and _blocked_imports(found) == ["unicodedata"], (out, found)


def test_another_lib_dynload_file_under_a_listed_name_is_blocked(learned: Learned) -> None:
    # `_ctypes`' own file, in lib-dynload, loaded as `unicodedata`: the file's own name
    # (`_ctypes`) must be allowed too.
    out, found = learned.run("by-path", FAKE=str(_extension_file("_ctypes")))
    assert "blocked by-path" in out and _blocked_imports(found) == ["unicodedata"], (out, found)


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


@pytest.mark.parametrize("module", ["colorsys", "unicodedata"])
def test_strict_imports_denies_the_lazy_stdlib_import(learned: Learned, module: str) -> None:
    out, found = learned.run(module, policy=learned.strict)
    assert f"blocked {module}" in out and _blocked_imports(found) == [module]
