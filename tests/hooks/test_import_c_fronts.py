"""The import layer's C fronts (appshield/_c_audit_hook.c `load_front_call`,
`exec_front_call`, `code_front_call`; hooks/imports `_import_front`), and the same runs with
the Python wrappers.

Where the compiled hook is built, the three wrapt layers every first import of a source
module passes (`_load_unlocked`, the loader's `exec_module`, `SourceLoader.get_code`) take
their usual case in C and hand every other call to the Python wrapper. Each test runs one
child per hook kind (`APPSHIELD_PURE_PYTHON=1` picks the Python one) and a control run
without the shield: what the imports do (their values, their exceptions, a canary file
written by a module body) must be what the bare interpreter does, except where a rule
refuses the import.
"""

from __future__ import annotations

import os
import py_compile
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.hooks._children import run_python, shielded_words
from tests.hooks.test_c_audit_hook import _kinds

POLICY = """\
version: 1
mode: enforce
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - {{id: no-evilmod, category: import, action: deny, match: {{module: evilmod}}}}
  - {{id: no-vault-code, category: import, action: deny, match: {{origin: "{vault}/**"}}}}
"""

PRELUDE = """\
import os, sys
sys.path.insert(0, {mods!r})
if {shielded}:
    import appshield
    appshield.install({policy!r})
from appshield.errors import PolicyViolation
from appshield._threadstate import thread_state
CANARY = {canary!r}
"""


def _run(root: Path, code: str, kind: str | None) -> subprocess.CompletedProcess[str]:
    prelude = PRELUDE.format(
        mods=str(root / "mods"),
        shielded=kind is not None,
        policy=str(root / "policy.yaml"),
        canary=str(root / "canary"),
    )
    return run_python(prelude + textwrap.dedent(code), kind, root)


def _shielded(root: Path, code: str, kind: str, control: list[str]) -> list[str]:
    return shielded_words(lambda how: _run(root, code, how), kind, control, root / "canary")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = Path(os.path.realpath(tmp_path))
    mods, vault = root / "mods", root / "vault"
    mods.mkdir()
    vault.mkdir()
    (root / "policy.yaml").write_text(POLICY.format(vault=vault))
    writes = "open({canary!r}, 'a').write('{name} ran\\n')\n"
    canary = str(root / "canary")
    (mods / "plain_a.py").write_text("VALUE = 'a'\n")
    (mods / "plain_b.py").write_text("VALUE = 'b'\n")
    (mods / "broken.py").write_text("def (:\n")
    (mods / "raising.py").write_text("raise LookupError('from the body')\n")
    (mods / "pkg").mkdir()
    (mods / "pkg" / "__init__.py").write_text("VALUE = 'pkg'\n")
    (mods / "pkg" / "inner.py").write_text("VALUE = 'inner'\n")
    (mods / "evilmod.py").write_text(writes.format(canary=canary, name="evilmod"))
    (vault / "hidden.py").write_text(writes.format(canary=canary, name="hidden"))
    # A module with bytecode alone (SourcelessFileLoader).
    source = root / "compiled_only.py"
    source.write_text("VALUE = 'pyc'\n")
    py_compile.compile(str(source), cfile=str(mods / "compiled_only.pyc"))
    source.unlink()
    return root


# Ordinary first imports and their failures: the same values, the same exceptions, nothing
# left marked as the import system's work afterwards (`thread_state.importing` back to 0).
ORDINARY = """
import importlib, importlib.util
outcomes = []
for name in ("plain_a", "plain_b", "broken", "raising", "pkg", "pkg.inner", "compiled_only"):
    try:
        outcomes.append((name, importlib.import_module(name).VALUE))
    except Exception as exc:
        outcomes.append((name, type(exc).__name__, str(exc).split(" (")[0]))
    outcomes.append(("importing", thread_state.importing))
outcomes.append(("raising" in sys.modules, "broken" in sys.modules))
spec = importlib.util.spec_from_file_location("by_hand", {plain_a!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
outcomes.append(("by_hand", module.VALUE, thread_state.importing))
print(repr(outcomes))
"""


@pytest.mark.parametrize("kind", _kinds())
def test_first_imports_and_their_failures_are_what_the_bare_interpreter_does(
    root: Path, kind: str
) -> None:
    code = ORDINARY.format(plain_a=str(root / "mods" / "plain_a.py"))
    control = _run(root, code, None)
    assert control.returncode == 0, control.stderr
    assert "LookupError" in control.stdout and "SyntaxError" in control.stdout
    shielded = _run(root, code, kind)
    assert shielded.returncode == 0, shielded.stderr
    assert shielded.stdout == control.stdout


# Denied imports, by name and by the file's folder, each after allowed first imports have
# gone through the fronts: refused before the module body runs (no canary).
DENIED = """
import plain_a, plain_b
for name in ("evilmod", "hidden"):
    if name == "hidden":
        sys.path.insert(0, os.path.join(os.path.dirname(CANARY), "vault"))
    try:
        __import__(name)
        print("IMPORTED", name)
    except PolicyViolation as exc:
        print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_denied_first_imports_are_refused_with_either_hook(root: Path, kind: str) -> None:
    words = _shielded(root, DENIED, kind, ["IMPORTED", "evilmod", "IMPORTED", "hidden", "CANARY"])
    assert words == [
        "BLOCKED",
        "no-evilmod",
        "BLOCKED",
        "no-vault-code",
        "NO",
        "CANARY",
    ]


# A loader made by hand for a denied file, handed a module whose spec was judged just now
# for another file: the spec is the one judged last, the file is not, so the call is judged
# again (and refused) instead of being taken for the import just judged.
ANOTHER_FILE = """
import importlib.machinery
import plain_a
loader = importlib.machinery.SourceFileLoader("plain_a", {hidden!r})
try:
    loader.exec_module(plain_a)
    print("RAN")
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
try:
    loader.get_code("plain_a")
    print("READ")
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_loader_for_another_file_is_judged_again(root: Path, kind: str) -> None:
    code = ANOTHER_FILE.format(hidden=str(root / "vault" / "hidden.py"))
    assert _shielded(root, code, kind, ["RAN", "READ", "CANARY"]) == [
        "BLOCKED",
        "no-vault-code",
        "BLOCKED",
        "no-vault-code",
        "NO",
        "CANARY",
    ]


# The same, with `get_code`'s layer put back to importlib's own first (so the read of the
# other file is not judged there): `exec_module`'s layer alone must see that the module's
# spec was judged for another file.
ONE_LAYER_LEFT = """
import importlib.machinery
import importlib._bootstrap_external as bx
bx.SourceLoader.get_code = getattr(
    vars(bx.SourceLoader)["get_code"], "__wrapped__", vars(bx.SourceLoader)["get_code"]
)
import plain_a
loader = importlib.machinery.SourceFileLoader("plain_a", {hidden!r})
try:
    loader.exec_module(plain_a)
    print("RAN")
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_exec_modules_layer_alone_judges_a_loader_for_another_file(root: Path, kind: str) -> None:
    code = ONE_LAYER_LEFT.format(hidden=str(root / "vault" / "hidden.py"))
    words = _shielded(root, code, kind, ["RAN", "CANARY"])
    assert words == ["BLOCKED", "no-vault-code", "NO", "CANARY"]


def test_the_fronts_are_the_wrappers_patched_in() -> None:
    # Where the C hook was built, each of the three layers is its C front around the Python
    # wrapper; otherwise the Python wrapper itself.
    from appshield.hooks import imports
    from tests.hooks.test_c_audit_hook import COMPILED_BUILT

    points = {p.attribute: p.wrapper for p in imports.PATCHES}
    pairs = {
        "_load_unlocked": imports._load_unlocked,
        "_LoaderBasics.exec_module": imports._loader_exec_module,
        "ExtensionFileLoader.exec_module": imports._loader_exec_module,
        "SourceLoader.get_code": imports._module_code_io,
        "SourcelessFileLoader.get_code": imports._module_code_io,
    }
    for attribute, python in pairs.items():
        wrapper = points[attribute]
        assert (wrapper.__self__ if COMPILED_BUILT else wrapper) is python, attribute


# The screen (`quiet`) reads an origin's first part: an origin spelled with `..` must be
# made absolute and normal before it is screened, or `/../<root>/vault/hidden.py` would
# pass as a file under `..`. Imported through such a `sys.path` entry, the module in the
# denied folder is refused.
UNFOLDED = """
import plain_a
sys.path.insert(0, "/.." + os.path.join(os.path.dirname(CANARY), "vault"))
try:
    import hidden
    print("IMPORTED")
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_an_origin_spelled_with_dot_dot_is_screened_as_its_normal_path(
    root: Path, kind: str
) -> None:
    words = _shielded(root, UNFOLDED, kind, ["IMPORTED", "CANARY"])
    assert words == ["BLOCKED", "no-vault-code", "NO", "CANARY"]


# The screen raising (here a RuntimeError, then a KeyboardInterrupt, as a signal handler
# would raise): the import does not happen, the app gets that very exception, and the
# attempt is reported as undescribable, with either hook.
SCREEN_RAISES = """
from appshield.hooks import _gate, imports
found = []
_gate._shield.add_listener(found.append)
import plain_a
screen = type(imports._screen[1])
quiet = screen.quiet
for error in (RuntimeError, KeyboardInterrupt):
    def broken(self, *args, error=error):
        raise error("the screen broke")
    screen.quiet = broken
    name = "plain_b" if error is RuntimeError else "pkg"
    try:
        __import__(name)
        print("IMPORTED")
    except BaseException as exc:
        print(type(exc).__name__, name in sys.modules)
    screen.quiet = quiet
print(*[v.decision.rule_id for v in found])
import plain_b
print("IMPORTED", plain_b.VALUE)
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_screen_that_raises_refuses_the_import_and_reports_it(root: Path, kind: str) -> None:
    shielded = _run(root, SCREEN_RAISES, kind)
    assert shielded.stdout.split() == [
        "RuntimeError",
        "False",
        "KeyboardInterrupt",
        "False",
        "implicit:undescribable",
        "implicit:undescribable",
        "IMPORTED",
        "b",
    ], shielded.stderr


# A module imported under a name its file does not have (a finder of the app's hands back
# `evilmod.py` as `innocent`): the file's own name decides, as for any import, so the rule
# on `evilmod` refuses it. (The policy names modules only: no file rule makes every import
# in the folder one the screen must look at.)
RENAMED = """
import importlib.util
evil = os.path.join({mods!r}, "evilmod.py")
class Renaming:
    @staticmethod
    def find_spec(name, path=None, target=None):
        return importlib.util.spec_from_file_location(name, evil) if name == "innocent" else None
sys.meta_path.insert(0, Renaming)
import plain_a
try:
    import innocent
    print("IMPORTED")
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_module_imported_under_another_name_is_judged_by_its_file(root: Path, kind: str) -> None:
    (root / "policy.yaml").write_text(
        "version: 1\nmode: enforce\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
        "rules:\n  - {id: no-evilmod, category: import, action: deny, match: {module: evilmod}}\n"
    )
    code = RENAMED.format(mods=str(root / "mods"))
    words = _shielded(root, code, kind, ["IMPORTED", "CANARY"])
    assert words == ["BLOCKED", "no-evilmod", "NO", "CANARY"]
