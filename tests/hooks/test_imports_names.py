"""In-process tests of the names a module really has (`_imp_names`), of the code objects that
make a frame a scoped module's (`_scope_code`), and of `zipimporter.load_module`."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks.imports import names as _imp_names
from appshield.hooks.imports import scope_code as _scope_code
from appshield.normalize import is_normal_path, realpath
from appshield.policy import Policy

SO = importlib.machinery.PathFinder.find_spec("_ctypes").origin  # type: ignore[union-attr]
CTYPES_INIT = importlib.machinery.PathFinder.find_spec("ctypes").origin  # type: ignore[union-attr]


@pytest.fixture
def roots() -> Iterator[None]:
    _imp_names.set_roots(list(sys.path))
    yield
    _imp_names.set_roots(None)


@pytest.mark.usefixtures("roots")
def test_names_agree_for_ordinary_imports() -> None:
    import json.decoder

    assert _imp_names.names_of("json.decoder", json.decoder.__file__) == (None, None)
    assert _imp_names.names_of("json", json.__file__) == (None, None)
    assert _imp_names.names_of("_ctypes", SO) == (None, None)


@pytest.mark.usefixtures("roots")
def test_renamed_extension_and_source_have_their_file_names() -> None:
    assert _imp_names.names_of("zz._ctypes", SO) == ("_ctypes", None)
    assert _imp_names.names_of("zz.ctypes", CTYPES_INIT) == ("ctypes", None)


@pytest.mark.usefixtures("roots")
def test_a_copy_or_link_of_an_extension(tmp_path: Path) -> None:
    link = tmp_path / "zz" / os.path.basename(SO)
    link.parent.mkdir()
    link.symlink_to(SO)
    assert _imp_names.names_of("zz._ctypes", str(link)) == ("_ctypes", None)
    # the link sits in an import folder under the very name it is imported as
    _imp_names.set_roots([*sys.path, str(tmp_path)])
    assert _imp_names.names_of("zz._ctypes", str(link)) == ("_ctypes", None)
    copy = tmp_path / "copy.so"
    copy.write_bytes(b"")
    assert _imp_names.names_of("a.b._ctypes", str(copy)) == ("copy", "_ctypes")


def test_without_roots_only_the_init_name() -> None:
    assert _imp_names.names_of("zz._ctypes", SO) == (None, "_ctypes")


SCOPED = """\
version: 1
name: scope-tests
defaults: {process: allow, file: allow, network: allow, import: allow}
rules:
  - id: posix-only-from-subprocess
    category: import
    action: deny
    match: {module: [_posixsubprocess, xxlimited]}
    unless: {scope: [subprocess, "multiprocessing.*"]}
"""


@pytest.fixture
def scoped() -> Iterator[None]:
    runtime.install(Policy.from_yaml(SCOPED))
    try:
        yield
    finally:
        runtime.uninstall()


@pytest.mark.usefixtures("scoped")
def test_code_of_a_loaded_module_is_its_own() -> None:
    assert _scope_code.module_of(subprocess.Popen.__init__.__code__) == "subprocess"
    assert _scope_code.module_of(subprocess.run.__code__) == "subprocess"
    fake = compile("x = 1", subprocess.__file__, "exec")
    assert _scope_code.module_of(fake) is None
    assert _scope_code.module_of(subprocess.run.__code__.replace()) in (None, "subprocess")


@pytest.mark.usefixtures("scoped")
def test_forged_names_do_not_make_a_scope() -> None:
    saved = sys.modules.pop("xxlimited", None)
    try:
        for namespace in ({"__name__": "subprocess"}, subprocess.__dict__):
            code = compile("import xxlimited", subprocess.__file__, "exec")
            with pytest.raises(PolicyViolation):
                exec(code, namespace)
            sys.modules.pop("xxlimited", None)
    finally:
        if saved is not None:
            sys.modules["xxlimited"] = saved


def test_module_imported_after_install_is_recorded(tmp_path: Path) -> None:
    runtime.install(Policy.from_yaml(SCOPED))
    try:
        import multiprocessing.popen_spawn_posix as m

        code = m.Popen._launch.__code__
        assert _scope_code.module_of(code) == "multiprocessing.popen_spawn_posix"
    finally:
        runtime.uninstall()
    assert _scope_code.module_of(code) is None  # uninstall forgets


def test_zipimporter_load_module_is_judged(tmp_path: Path) -> None:
    import zipimport

    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("shield_zip_evil.py", "import builtins\nbuiltins.ZIP_RAN = 1\n")
    policy = Policy.from_yaml(
        SCOPED.replace("[_posixsubprocess, xxlimited]", "[_posixsubprocess, shield_zip_*]")
    )
    runtime.install(policy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(PolicyViolation):
                zipimport.zipimporter(str(archive)).load_module("shield_zip_evil")
            with pytest.raises(zipimport.ZipImportError):
                zipimport.zipimporter(str(archive)).load_module("not_there")
    finally:
        runtime.uninstall()
        sys.modules.pop("shield_zip_evil", None)
    import builtins

    assert not hasattr(builtins, "ZIP_RAN")


_PART = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    folder=st.lists(_PART, max_size=3),
    dotted=st.lists(_PART, min_size=1, max_size=4),
    package=st.booleans(),
)
def test_the_import_hooks_fast_path_agrees_with_names_of(
    folder: list[str], dotted: list[str], package: bool
) -> None:
    # hooks/imports `_judge` skips `names_of` when the file's tail spells the dotted name:
    # names_of must find nothing to add for every such file, wherever it lies.
    name = ".".join(dotted)
    tail = "/".join(dotted) + ("/__init__.py" if package else ".py")
    absolute = "/" + "/".join([*folder, tail])
    _imp_names.set_roots(["/", "/" + "/".join(folder)])
    try:
        assert _imp_names.names_of(name, absolute) == (None, None)
    finally:
        _imp_names.set_roots(None)


_SPELLING = st.lists(st.sampled_from(["a", "b", ".", "..", "", ".x", "x.", "..y"]), max_size=6)


@settings(max_examples=300, deadline=None)
@given(_SPELLING)
def test_is_normal_means_abspath_keeps_it(parts: list[str]) -> None:
    # The import hooks and the install walk skip `os.path.abspath` for such a path.
    path = "/" + "/".join(parts)
    if is_normal_path(path):
        assert os.path.abspath(path) == path
    assert is_normal_path("/root/.pyenv/lib/python3.11")  # a hidden folder is fine


def test_realpath_is_os_path_realpath(tmp_path: Path) -> None:
    """`appshield.normalize.realpath` (install's resolution of `sys.path`, of extension
    modules and of the policy's files) gives what `os.path.realpath` gives: through a
    symlinked folder, a link to a file, a dangling link, a loop, missing parts, a file
    taken for a folder, `..` after a link."""
    real = tmp_path / "real"
    (real / "pkg").mkdir(parents=True)
    (real / "pkg" / "m.so").write_text("")
    (tmp_path / "linked").symlink_to(real)
    (real / "file.so").symlink_to(real / "pkg" / "m.so")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    base = str(tmp_path)
    for path in [
        f"{base}/real/pkg/m.so",
        f"{base}/linked/pkg/m.so",
        f"{base}/real/file.so",
        f"{base}/dangling",
        f"{base}/dangling/more",
        f"{base}/loop",
        f"{base}/loop/x",
        f"{base}/missing/a/b",
        f"{base}/real/pkg/m.so/below",
        f"{base}/linked/../real/pkg",
        f"{base}/real/./pkg",
        f"{base}//real/pkg/",
        "/",
        "relative/path",
    ]:
        assert realpath(path) == os.path.realpath(path), path


def test_set_roots_resolves_each_folder_as_realpath_does(tmp_path: Path) -> None:
    """The `sys.path` folders are resolved sharing what their parts were found to be: a
    symlinked folder among plain ones is still resolved."""
    real = tmp_path / "real"
    (real / "lib").mkdir(parents=True)
    (tmp_path / "linked").symlink_to(real)
    entries = [
        str(real),
        str(real / "lib"),
        str(tmp_path / "linked" / "lib"),
        str(tmp_path / "gone"),
    ]
    _imp_names.set_roots(list(entries))
    try:
        expected = {os.path.realpath(e) for e in entries} | set(entries)
        assert set(_imp_names._roots) == expected
    finally:
        _imp_names.set_roots(None)
