"""In-process tests of the import hooks: every route to a new module, native libraries,
no appshield code on a `sys.modules` hit, the importing depth the file hooks rely on,
modules loaded before install, and tampering with the import system's attributes.
"""

from __future__ import annotations

import glob
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appshield import runtime
from appshield._threadstate import thread_state
from appshield.errors import PolicyViolation
from appshield.hooks import imports
from appshield.policy import Policy
from appshield.report import Violation

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _policy(extra: str = "", mode: str = "enforce") -> Policy:
    return Policy.from_yaml(
        f"""\
version: 1
name: import-tests
mode: {mode}
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - id: no-evil
    category: import
    action: deny
    match: {{module: [shield_evil_*, xxlimited]}}
"""
        + extra
    )


def _install(policy: Policy) -> list[Violation]:
    runtime.install(policy)
    shield = runtime.active_shield()
    assert shield is not None
    seen: list[Violation] = []
    shield.add_listener(seen.append)
    return seen


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path with modules whose bodies record that they ran."""
    (tmp_path / "shield_evil_a.py").write_text(
        "RAN = True\nimport builtins\nbuiltins.EVIL_RAN = 1\n"
    )
    (tmp_path / "shield_good_a.py").write_text(
        "from appshield._threadstate import thread_state\nDEPTH = thread_state.importing\n"
    )
    (tmp_path / "innocent.py").write_text("import builtins\nbuiltins.EVIL_RAN = 2\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith(("shield_", "innocent"))]:
        del sys.modules[name]
    import builtins

    builtins.__dict__.pop("EVIL_RAN", None)


@pytest.fixture
def shielded(modules: Path) -> Iterator[list[Violation]]:
    seen = _install(
        _policy(f"""\
  - id: no-code-from-tmp
    category: import
    action: deny
    match: {{origin: "{modules}/innocent*"}}
  - id: no-native
    category: import
    action: deny
    match: {{library: "/**/libm*"}}
""")
    )
    try:
        yield seen
    finally:
        runtime.uninstall()


def _not_ran() -> bool:
    import builtins

    return not hasattr(builtins, "EVIL_RAN")


@pytest.mark.parametrize(
    "route",
    [
        lambda: exec("import shield_evil_a"),
        lambda: __import__("shield_evil_a"),
        lambda: importlib.import_module("shield_evil_a"),
        lambda: importlib.__import__("shield_evil_a"),
    ],
    ids=["statement", "__import__", "import_module", "importlib.__import__"],
)
def test_denied_import_raises_before_the_body_runs(
    shielded: list[Violation], route: object
) -> None:
    with pytest.raises(PolicyViolation) as caught:
        route()  # type: ignore[operator]
    assert isinstance(caught.value, PermissionError)
    assert not isinstance(caught.value, ImportError)
    assert "shield_evil_a" not in sys.modules  # no half-initialised module is left
    assert _not_ran()
    assert shielded[-1].operation.module == "shield_evil_a"  # type: ignore[union-attr]
    assert shielded[-1].callsite.file in (__file__, "<string>")


def test_origin_is_the_real_file(shielded: list[Violation], modules: Path) -> None:
    spec = importlib.util.spec_from_file_location("json", modules / "innocent.py")
    assert spec is not None and spec.loader is not None
    with pytest.raises(PolicyViolation) as caught:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    assert caught.value.rule_id == "no-code-from-tmp"
    assert shielded[-1].operation.origin == str(modules / "innocent.py")  # type: ignore[union-attr]
    # A loader called directly, without a spec, is judged on its own path.
    with pytest.raises(PolicyViolation):
        importlib.machinery.SourceFileLoader("json", str(modules / "innocent.py")).exec_module(
            types.ModuleType("json")
        )
    assert _not_ran()


def test_zipimport_and_reload(shielded: list[Violation], modules: Path) -> None:
    archive = modules / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("shield_evil_zip.py", "import builtins\nbuiltins.EVIL_RAN = 3\n")
    sys.path.insert(0, str(archive))
    try:
        with pytest.raises(PolicyViolation):
            import shield_evil_zip  # type: ignore[import-not-found]  # noqa: F401
    finally:
        sys.path.remove(str(archive))
    runtime.uninstall()
    good = importlib.import_module("shield_good_a")
    (modules / "shield_good_a.py").write_text("import builtins\nbuiltins.EVIL_RAN = 4\n")
    _install(
        _policy(f"""\
  - id: no-reload
    category: import
    action: deny
    match: {{origin: "{modules}/shield_good_a.py"}}
""")
    )
    with pytest.raises(PolicyViolation):
        importlib.reload(good)
    assert _not_ran()


def test_extension_module_routes(shielded: list[Violation]) -> None:
    found = glob.glob(
        os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload", "xxlimited.*.so")
    )
    if not found:
        pytest.skip("no xxlimited extension in this build")
    with pytest.raises(PolicyViolation):
        import xxlimited  # noqa: F401
    spec = importlib.util.spec_from_file_location("xxlimited", found[0])
    assert spec is not None
    with pytest.raises(PolicyViolation):
        importlib.util.module_from_spec(spec)
    import _imp

    with pytest.raises(PolicyViolation):
        _imp.create_dynamic(importlib.machinery.ModuleSpec("xxlimited", None, origin=found[0]))
    assert "xxlimited" not in sys.modules


def test_native_libraries(shielded: list[Violation]) -> None:
    import _ctypes
    import ctypes

    with pytest.raises(PolicyViolation):
        ctypes.CDLL("libm.so.6")
    dlopen = _ctypes.dlopen
    with pytest.raises(PolicyViolation):
        dlopen("libm.so.6", 2)
    library = shielded[-1].operation.library  # type: ignore[union-attr]
    assert library is not None and library.startswith("/") and "libm" in library
    ctypes.CDLL("libc.so.6")  # allowed


def test_cached_import_runs_no_appshield_code(shielded: list[Violation]) -> None:
    import json

    calls: list[str] = []

    def profiler(frame: types.FrameType, event: str, arg: object) -> None:
        calls.append(frame.f_code.co_filename)

    sys.setprofile(profiler)
    try:
        import json
        import json.decoder  # noqa: F401
    finally:
        sys.setprofile(None)
    assert not [f for f in calls if f.startswith(PACKAGE_DIR + "/appshield")]


def test_importing_depth_covers_the_import_system_not_the_body(
    shielded: list[Violation], tmp_path: Path
) -> None:
    seen_depths: list[object] = []

    def probe(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and str(args[0]).endswith("shield_good_a.py"):
            seen_depths.append(thread_state.importing)

    sys.addaudithook(probe)
    module = importlib.import_module("shield_good_a")
    assert module.DEPTH == 0  # the module body runs unmarked
    # Marked with the module's own files (its file, its bytecode cache).
    assert seen_depths and all(type(d) is tuple for d in seen_depths)
    assert all(d[0].endswith("shield_good_a.py") for d in seen_depths)  # type: ignore[index]
    # A loader asked for a file that is not a module is an ordinary, checked file read.
    seen_depths.clear()
    # Not valid Python, so no bytecode is ever cached for it: each call reads the file itself
    # (a file such as /etc/hostname compiles, and its cached bytecode would be read instead).
    not_a_module = tmp_path / "notes.txt"
    not_a_module.write_text("this is ( not python\n")
    target = str(not_a_module)

    def probe_other(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and args[0] == target:
            seen_depths.append(thread_state.importing)

    sys.addaudithook(probe_other)
    try:
        importlib.machinery.SourceFileLoader("x", target).get_code("x")
    except (SyntaxError, OSError, ValueError):
        pass
    assert seen_depths and all(not d for d in seen_depths)
    assert thread_state.importing == 0


def test_modules_loaded_before_install_are_reported(modules: Path) -> None:
    importlib.import_module("shield_evil_a")
    seen: list[Violation] = []

    class Collect:
        def report(self, violation: Violation) -> None:
            seen.append(violation)

    runtime.install(_policy())
    try:
        shield = runtime.active_shield()
        assert shield is not None
        shield.reporter = Collect()
        imports.FAMILY.on_install(shield)  # the install-time walk, seen by our collector
    finally:
        runtime.uninstall()
    hits = [v for v in seen if v.operation.module == "shield_evil_a"]  # type: ignore[union-attr]
    assert hits and not hits[0].decision.blocked


def test_loaded_before_install_an_allow_does_not_hide_an_objecting_rule(modules: Path) -> None:
    """The install-time walk looks only for rules that can object (a deny or an alert): an
    allow naming the same module, as the telemetry exporter's standard-library origins name
    nearly every module loaded, neither reports it nor hides it from them, whether they
    name its file or the name its file has."""
    for name in ("shield_file_b", "shield_home_b", "shield_quiet_b"):
        (modules / f"{name}.py").write_text("X = 1\n")
    importlib.invalidate_caches()
    importlib.import_module("shield_file_b")
    importlib.import_module("shield_quiet_b")
    spec = importlib.util.spec_from_file_location("zz_alias_b", modules / "shield_home_b.py")
    assert spec is not None and spec.loader is not None
    alias = importlib.util.module_from_spec(spec)
    sys.modules["zz_alias_b"] = alias
    spec.loader.exec_module(alias)
    seen: list[Violation] = []

    class Collect:
        def report(self, violation: Violation) -> None:
            seen.append(violation)

    runtime.install(
        _policy(f"""\
  - id: everything-here
    category: import
    action: allow
    match: {{origin: "{modules}/**"}}
  - id: watch-file
    category: import
    action: alert
    match: {{origin: "{modules}/shield_file_b.py"}}
  - id: watch-home
    category: import
    action: alert
    match: {{module: shield_home_b}}
""")
    )
    try:
        shield = runtime.active_shield()
        assert shield is not None
        shield.reporter = Collect()
        imports.FAMILY.on_install(shield)
    finally:
        runtime.uninstall()
        del sys.modules["zz_alias_b"]
    found = {v.operation.module: v.decision.rule_id for v in seen}  # type: ignore[union-attr]
    assert found.get("shield_file_b") == "watch-file"
    assert found.get("zz_alias_b") == "watch-home"
    assert "shield_quiet_b" not in found


def test_uninstall_restores_identical_objects() -> None:
    import _frozen_importlib as bootstrap
    import _frozen_importlib_external as external

    before = (
        bootstrap._load_unlocked,
        bootstrap._exec,
        importlib.util.module_from_spec,
        vars(external._LoaderBasics)["exec_module"],
        vars(external.SourceLoader)["get_code"],
    )
    runtime.install(_policy())
    assert bootstrap._load_unlocked is not before[0]
    runtime.uninstall()
    after = (
        bootstrap._load_unlocked,
        bootstrap._exec,
        importlib.util.module_from_spec,
        vars(external._LoaderBasics)["exec_module"],
        vars(external.SourceLoader)["get_code"],
    )
    assert all(a is b for a, b in zip(before, after, strict=True))


def test_tamper_restoring_the_import_system(shielded: list[Violation]) -> None:
    import _frozen_importlib as bootstrap
    import _frozen_importlib_external as external

    saved = {
        (bootstrap, "_load_unlocked"): bootstrap._load_unlocked,
        (external._LoaderBasics, "exec_module"): vars(external._LoaderBasics)["exec_module"],
    }
    try:
        for (owner, name), proxy in saved.items():
            setattr(owner, name, proxy.__wrapped__)
        with pytest.raises(PolicyViolation):  # the audit backstop, by module name
            exec("import shield_evil_a")
    finally:
        for (owner, name), proxy in saved.items():
            setattr(owner, name, proxy)
    assert _not_ran()


def test_threads_and_monitor(modules: Path) -> None:
    import threading

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            importlib.import_module("shield_evil_a")
        except PolicyViolation as exc:
            errors.append(exc)

    _install(_policy())
    try:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        runtime.uninstall()
    assert len(errors) == 4
    seen = _install(_policy(mode="monitor"))
    try:
        importlib.import_module("shield_evil_a")
    finally:
        runtime.uninstall()
    assert not _not_ran()
    assert [v.decision.blocked for v in seen] == [False]


def test_decided_once_and_only_where_a_rule_can_apply(modules: Path) -> None:
    """One decision per import however many layers see it; a module that no rule could name
    is let through without one (the engine's screen), while a scoped rule still gets the
    stack and a decider with no import screen (the learning recorder) sees every import."""
    for name in ("shield_plain", "shield_watched", "shield_scoped", "shield_recorded"):
        (modules / f"{name}.py").write_text("X = 1\n")
    importlib.invalidate_caches()
    seen = _install(
        _policy("""\
  - id: watch
    category: import
    action: alert
    match: {module: shield_watched}
  - id: scoped
    category: import
    action: deny
    match: {module: shield_scoped}
    scope: [tests.hooks.*]
""")
    )
    shield = runtime.active_shield()
    assert shield is not None
    decided: list[object] = []
    real_decide = shield.compiled.decide

    class StandIn:
        """A decider (appshield.ports.Decider) with no import screen, as learn's is."""

        describes_callers = False

        def decide(self, op: object, stack: object = None, api: str = "") -> object:
            decided.append(op)
            return real_decide(op, stack, api)  # type: ignore[arg-type]

        def import_screen(self) -> None:
            return None

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    real = shield.compiled
    try:
        importlib.import_module("shield_plain")
        importlib.import_module("shield_watched")
        assert [v.decision.rule_id for v in seen] == ["watch"]  # once, not once per layer
        with pytest.raises(PolicyViolation):
            importlib.import_module("shield_scoped")
        shield.compiled = StandIn()
        importlib.import_module("shield_recorded")
    finally:
        shield.compiled = real
        runtime.uninstall()
    assert [getattr(op, "module", None) for op in decided] == ["shield_recorded"]
