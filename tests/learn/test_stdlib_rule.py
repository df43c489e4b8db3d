"""The learned rules for standard-library modules a run did not import, decided against
described imports: what they allow, and what no spelling gets through them."""

from __future__ import annotations

import os
import posixpath
import sys
import sysconfig

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appshield.learn import learn_policy
from appshield.learn.generalise import NEVER_BROAD, stdlib_python_names
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
        ("_ctypes", f"{STDLIB}/lib-dynload/_ctypes{EXTENSION}", None),
        ("mmap", f"{STDLIB}/lib-dynload/mmap{EXTENSION}", None),
        ("_posixsubprocess", f"{STDLIB}/lib-dynload/_posixsubprocess{EXTENSION}", None),
        ("unicodedata", f"{STDLIB}/lib-dynload/unicodedata{EXTENSION}", None),
        ("mmap", None, None),  # a built-in module: no file
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


def test_the_name_list_is_pure_python_only() -> None:
    names = stdlib_python_names([STDLIB])
    assert "stringprep" in names and "encodings" in names and "colorsys" in names
    assert not NEVER_BROAD & set(names)
    assert not {"unicodedata", "_csv", "posix", "sys", "test", "pip", "site-packages"} & set(names)


_module = st.one_of(
    st.sampled_from(sorted(NEVER_BROAD)),
    st.sampled_from(sorted(NEVER_BROAD)).map(lambda m: m + ".sub"),
    st.sampled_from(stdlib_python_names([STDLIB])),
    st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,6}){0,2}", fullmatch=True),
)
_folder = st.sampled_from(
    [STDLIB, f"{STDLIB}/lib-dynload", f"{STDLIB}/ctypes", SITE, PLATSTDLIB, "/tmp", "/srv/app"]
)
_suffix = st.sampled_from([".py", ".pyc", EXTENSION, ".so", "/__init__.py"])


@given(_module, st.one_of(st.none(), st.tuples(_folder, _suffix)), st.booleans())
def test_no_native_third_party_or_planted_import_gets_through(
    module: str, where: tuple[str, str] | None, with_home: bool
) -> None:
    """Whatever the name: a NEVER_BROAD module, an extension or native file, and a file
    outside the standard library's own folder (or in a site-packages folder below it) are
    never allowed by the standard-library rules (here, nothing else allows them)."""
    origin = None
    if where is not None:
        folder, suffix = where
        origin = posixpath.join(folder, module.replace(".", "/")) + suffix
    home = "ctypes" if with_home and origin is not None else None
    rule = _rule(ImportOp(module, origin, home=home))
    if module.split(".")[0] in NEVER_BROAD or home == "ctypes":
        assert rule is None
    if origin is None:
        return
    in_stdlib = origin.startswith(STDLIB + "/") and not origin.startswith(
        (f"{STDLIB}/ctypes/", SITE + "/")
    )
    if not (in_stdlib and origin.endswith((".py", ".pyc"))):
        assert rule is None, (module, origin)
