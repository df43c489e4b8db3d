"""The learned rules for standard-library modules a run did not import, decided against
described imports: what they allow, and what no spelling gets through them."""

from __future__ import annotations

import os
import posixpath
import sys
import sysconfig

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appshield.learn import learn_policy
from appshield.learn.generalise import (
    NATIVE_NEVER_BROAD,
    NEVER_BROAD,
    never_broad,
    stdlib_frozen_names,
    stdlib_native_names,
    stdlib_python_names,
)
from appshield.learn.records import Observation, Roots
from appshield.operations import ImportOp
from appshield.policy import Policy

ROOTS = Roots.current()
STDLIB = sysconfig.get_paths()["stdlib"]
SITE = ROOTS.site_packages[0]
# In a venv, {stdlib} also names the venv's own lib folder; the broad rule must not.
PLATSTDLIB = sysconfig.get_paths()["platstdlib"]
SEEN = Observation(ImportOp("json", f"{STDLIB}/json/__init__.py"), "import", roots=ROOTS)
EXTENSION = (
    sys.modules["_frozen_importlib_external"].EXTENSION_SUFFIXES[0]  # type: ignore[attr-defined]
)
DYNLOAD = f"{STDLIB}/lib-dynload"
NATIVE = stdlib_native_names([STDLIB])
# The excluded extension modules of every version 3.10-3.13, and the shapes of the test ones.
EXCLUDED_NATIVE = sorted(
    NATIVE_NEVER_BROAD
    | {"_testcapi", "_testinternalcapi", "_testmultiphase", "_testexternalinspection"}
    | {"xxlimited", "xxlimited_35", "_xxtestfuzz", "_xxsubinterpreters", "_interpreters"}
)


def _policy(*, strict: bool = False) -> Policy:
    return Policy.from_yaml(learn_policy([SEEN], strict_imports=strict).text)


POLICY = _policy()
STRICT = _policy(strict=True)


def _rule(op: ImportOp, policy: Policy = POLICY) -> str | None:
    decision = policy.decide(op)
    return decision.rule_id if decision.action == "allow" else None


@pytest.mark.parametrize(
    ("module", "origin"),
    [
        ("colorsys", f"{STDLIB}/colorsys.py"),
        ("stringprep", f"{STDLIB}/stringprep.py"),
        ("encodings.idna", f"{STDLIB}/encodings/idna.py"),
        ("xml.etree.ElementTree", f"{STDLIB}/xml/etree/ElementTree.py"),
        ("colorsys", f"{STDLIB}/colorsys.pyc"),  # a sourceless image
        ("runpy", None),  # frozen into the interpreter (3.11+)
    ],
)
def test_allowed(module: str, origin: str | None) -> None:
    if origin is None and sys.version_info < (3, 11):
        pytest.skip("no frozen standard-library modules before 3.11")
    assert _rule(ImportOp(module, origin)) in ("import-stdlib-python", "import-stdlib-frozen")
    assert _rule(ImportOp(module, origin), STRICT) is None


@pytest.mark.parametrize(
    ("module", "origin", "home"),
    [
        ("ctypes", f"{STDLIB}/ctypes/__init__.py", None),
        ("ctypes.util", f"{STDLIB}/ctypes/util.py", None),
        ("json", f"{STDLIB}/ctypes/__init__.py", "ctypes"),  # ctypes' code under another name
        ("_ctypes", f"{DYNLOAD}/_ctypes{EXTENSION}", None),
        ("mmap", f"{DYNLOAD}/mmap{EXTENSION}", None),
        ("_posixsubprocess", f"{DYNLOAD}/_posixsubprocess{EXTENSION}", None),
        ("_posixshmem", f"{DYNLOAD}/_posixshmem{EXTENSION}", None),
        ("_multiprocessing", f"{DYNLOAD}/_multiprocessing{EXTENSION}", None),
        ("_xxsubinterpreters", f"{DYNLOAD}/_xxsubinterpreters{EXTENSION}", None),
        ("_interpreters", f"{DYNLOAD}/_interpreters{EXTENSION}", None),
        ("_testcapi", f"{DYNLOAD}/_testcapi{EXTENSION}", None),
        ("xxlimited", f"{DYNLOAD}/xxlimited{EXTENSION}", None),
        ("unicodedata", f"{DYNLOAD}/_ctypes{EXTENSION}", "_ctypes"),  # another file, renamed
        ("unicodedata", f"/srv/app/unicodedata{EXTENSION}", None),  # a copy elsewhere
        ("unicodedata", f"{STDLIB}/unicodedata{EXTENSION}", None),  # not lib-dynload itself
        ("unicodedata", f"{DYNLOAD}/sub/unicodedata{EXTENSION}", None),
        ("unicodedata", f"{PLATSTDLIB}/lib-dynload/unicodedata{EXTENSION}", None),
        ("unicodedata", f"{SITE}/unicodedata{EXTENSION}", None),
        ("unicodedata", f"{DYNLOAD}/unicodedata.py", None),
        ("mmap", None, None),  # as a built-in module: no file
        ("_posixsubprocess", None, None),
        ("_xxsubinterpreters", None, None),
        ("xxsubtype", None, None),  # built in on 3.10
        ("_testcapi", None, None),
        ("stringprep", "/srv/app/stringprep.py", None),  # planted in the app folder
        ("stringprep", f"{PLATSTDLIB}/stringprep.py", None),  # the venv's lib folder
        ("colorsys", f"{STDLIB}/../colorsys.py", None),
        ("json", f"{SITE}/json/__init__.py", None),  # a package named like the stdlib's
        ("json", f"{STDLIB}/site-packages/json/__init__.py", None),
        ("pip", f"{STDLIB}/ensurepip/_bundled/pip-23.2.1-py3-none-any.whl/pip/__init__.py", None),
        ("test.support", f"{STDLIB}/test/support/__init__.py", None),
        ("cffi", f"{SITE}/cffi/__init__.py", None),
        ("runpy", "/tmp/runpy.py", None),  # a file under a frozen module's name
    ],
)
def test_not_allowed(module: str, origin: str | None, home: str | None) -> None:
    if origin is not None:
        origin = os.path.normpath(origin)  # as the import hook spells it
    assert _rule(ImportOp(module, origin, home=home)) is None


@pytest.mark.parametrize("module", ["unicodedata", "_csv", "_decimal", "_json", "_zoneinfo"])
def test_stdlib_extension_modules_in_lib_dynload_are_allowed(module: str) -> None:
    if module not in NATIVE:
        pytest.skip(f"{module} is not in lib-dynload on this build")
    op = ImportOp(module, f"{DYNLOAD}/{module}{EXTENSION}")
    assert _rule(op) == "import-stdlib-native"
    assert _rule(op, STRICT) is None


def test_built_in_modules_are_allowed_by_name_without_a_file() -> None:
    # On builds that compile `unicodedata` or `_csv` into the interpreter, they have no file.
    allowed = [name for name in sys.builtin_module_names if not never_broad(name)]
    assert "posix" in allowed and "xxsubtype" not in allowed
    for name in allowed:
        assert _rule(ImportOp(name, None)) == "import-stdlib-frozen", name
        assert _rule(ImportOp(name, f"/srv/app/{name}{EXTENSION}")) is None, name


def test_the_native_name_list_comes_from_lib_dynload_less_the_exclusions() -> None:
    assert {"unicodedata", "_csv", "_decimal", "_zoneinfo"} <= set(NATIVE)
    files = {entry.partition(".")[0] for entry in os.listdir(DYNLOAD)}
    assert set(NATIVE) <= files
    assert not set(NATIVE) & set(EXCLUDED_NATIVE)
    assert not any(n.startswith(("_test", "xxlimited")) for n in NATIVE)
    left_out = {"_ctypes", "mmap", "_posixsubprocess", "_sqlite3", "_tkinter", "readline", "syslog"}
    assert files - set(NATIVE) >= left_out | {"_testcapi", "xxlimited"}
    assert not set(stdlib_frozen_names()) & set(EXCLUDED_NATIVE)
    assert stdlib_native_names(["/nonexistent"]) == []


def test_the_name_list_is_pure_python_only() -> None:
    names = stdlib_python_names([STDLIB])
    assert "stringprep" in names and "encodings" in names and "colorsys" in names
    assert not NEVER_BROAD & set(names)
    assert not {"unicodedata", "_csv", "posix", "sys", "test", "pip", "site-packages"} & set(names)


_module = st.one_of(
    st.sampled_from(sorted(NEVER_BROAD)),
    st.sampled_from(sorted(NEVER_BROAD)).map(lambda m: m + ".sub"),
    st.sampled_from(EXCLUDED_NATIVE),
    st.sampled_from(stdlib_python_names([STDLIB])),
    st.sampled_from(NATIVE),
    st.sampled_from(NATIVE).map(lambda m: m + ".sub"),
    st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,6}){0,2}", fullmatch=True),
)
_folder = st.sampled_from(
    [
        STDLIB,
        DYNLOAD,
        f"{DYNLOAD}/sub",
        f"{STDLIB}/ctypes",
        SITE,
        PLATSTDLIB,
        f"{PLATSTDLIB}/lib-dynload",
        "/tmp",
        "/srv/app",
    ]
)
_suffix = st.sampled_from([".py", ".pyc", EXTENSION, ".so", ".abi3.so", "/__init__.py"])
_home = st.sampled_from([None, "ctypes", "_ctypes", "mmap", "_testcapi"])


@settings(max_examples=600)
@given(_module, st.one_of(st.none(), st.tuples(_folder, _suffix)), _home)
def test_no_native_third_party_or_planted_import_gets_through(
    module: str, where: tuple[str, str] | None, home: str | None
) -> None:
    """Whatever the name: an excluded module (by its name or its file's own name), an
    extension file outside lib-dynload or not named on the list, a native file loaded under
    another file's name, and a file outside the standard library's own folder (or in a
    site-packages folder below it) are never allowed by the standard-library rules (here,
    nothing else allows them)."""
    origin = None
    if where is not None:
        folder, suffix = where
        origin = posixpath.join(folder, module.replace(".", "/")) + suffix
    if origin is None:
        home = None  # no file, no file name
    rule = _rule(ImportOp(module, origin, home=home))
    top = module.split(".")[0]
    if never_broad(top) or (home is not None and never_broad(home)):
        assert rule is None, (module, origin, home)
    if origin is None:
        return
    in_stdlib = origin.startswith(STDLIB + "/") and not origin.startswith(
        (f"{STDLIB}/ctypes/", SITE + "/")
    )
    if in_stdlib and origin.endswith((".py", ".pyc")):
        return
    in_dynload = posixpath.dirname(origin) == DYNLOAD and origin.endswith(".so")
    if in_dynload and top in NATIVE and home is None:
        assert rule == "import-stdlib-native", (module, origin)
    else:
        assert rule is None, (module, origin, home)
