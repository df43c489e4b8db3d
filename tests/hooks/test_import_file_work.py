"""The import system's own file work, and a loader's `get_code` called by hand.

- The import system's reads and bytecode-cache writes during an import are the import
  category's business (the contract): the file hooks let them through, now in the audit
  hook's check before the gate (`_import_work_open`, `_import_work_rename`), about 55,000
  instructions less per first import with bytecode writing on. The same opens and renames
  made by any other code are checked as before, even while an import is in progress on the
  thread.
- `SourceFileLoader(name, path).get_code(name)` hands back a module's code, and with it
  every constant in the file, without importing it. It used to be marked as the import
  system's own work without any import being judged, so it read a file that both a file rule
  and an import rule deny. It is now judged as an import of that file first, unless it is
  the inner step of the import just judged.

Each attack runs first without the shield (control: the secret is read), then with it.
Real files in tmp dirs, bytecode writing on where the test says so.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from importlib.machinery import SourceFileLoader, SourcelessFileLoader
from pathlib import Path
from typing import Any

import pytest

from appshield import runtime
from appshield._threadstate import thread_state
from appshield.errors import PolicyViolation
from appshield.policy import Policy

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
SECRET = "hunter2"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = Path(os.path.realpath(tmp_path))
    for folder in ("vault", "mods"):
        (root / folder).mkdir()
    (root / "vault" / "settings_prod.py").write_text(f"PASSWORD = {SECRET!r}\n")
    return root


def _install(root: Path, *rules: dict[str, Any]) -> None:
    policy = {"version": 1, "defaults": ALLOW_ALL, "rules": list(rules)}
    runtime.install(Policy.from_mapping(policy))


VAULT_FILES = {
    "id": "no-vault-files",
    "category": "file",
    "action": "deny",
    "match": {"path": "{root}/vault/**"},
}
VAULT_MODULES = {
    "id": "no-vault-modules",
    "category": "import",
    "action": "deny",
    "match": {"origin": "{root}/vault/**"},
}


def _rule(rule: dict[str, Any], root: Path) -> dict[str, Any]:
    match = {key: value.format(root=root) for key, value in rule["match"].items()}
    return {**rule, "match": match}


@pytest.fixture
def shielded(root: Path) -> Iterator[Path]:
    _install(root, _rule(VAULT_FILES, root), _rule(VAULT_MODULES, root))
    try:
        yield root
    finally:
        runtime.uninstall()


def _by_source_loader(root: Path) -> Any:
    return SourceFileLoader("x", str(root / "vault" / "settings_prod.py")).get_code("x")


def _by_spec_from_file(root: Path) -> Any:
    spec = importlib.util.spec_from_file_location("y", root / "vault" / "settings_prod.py")
    assert spec is not None and spec.loader is not None
    return spec.loader.get_code("y")  # type: ignore[attr-defined]


def _by_sourceless_loader(root: Path) -> Any:
    return SourcelessFileLoader("z", str(root / "vault" / "compiled.pyc")).get_code("z")


GET_CODE: dict[str, Callable[[Path], Any]] = {
    "SourceFileLoader": _by_source_loader,
    "spec_from_file_location's loader": _by_spec_from_file,
    "SourcelessFileLoader": _by_sourceless_loader,
}


@pytest.mark.parametrize("route", sorted(GET_CODE))
def test_get_code_by_hand_never_reads_a_denied_module(root: Path, route: str) -> None:
    import py_compile

    py_compile.compile(
        str(root / "vault" / "settings_prod.py"), cfile=str(root / "vault" / "compiled.pyc")
    )
    # Control: no shield, the module's constants come back without running it.
    assert SECRET in GET_CODE[route](root).co_consts
    for rules in ((VAULT_FILES, VAULT_MODULES), (VAULT_MODULES,)):
        _install(root, *(_rule(rule, root) for rule in rules))
        try:
            with pytest.raises(PolicyViolation) as caught:
                GET_CODE[route](root)
            assert caught.value.rule_id == "no-vault-modules"
        finally:
            runtime.uninstall()


def test_get_code_of_an_allowed_module_by_hand_still_works(shielded: Path) -> None:
    (shielded / "mods" / "plain.py").write_text("VALUE = 42\n")
    code = SourceFileLoader("plain", str(shielded / "mods" / "plain.py")).get_code("plain")
    assert 42 in code.co_consts


@pytest.fixture
def bytecode_on(monkeypatch: pytest.MonkeyPatch, root: Path) -> Iterator[Path]:
    # These machines set PYTHONDONTWRITEBYTECODE=1; most deployments do not.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.syspath_prepend(str(root / "mods"))
    yield root / "mods"
    for name in [n for n in sys.modules if n.startswith("firstimport_")]:
        del sys.modules[name]


@pytest.mark.parametrize("write_bytecode", [True, False])
def test_first_imports_write_their_cache_in_a_write_denied_folder(
    root: Path, bytecode_on: Path, monkeypatch: pytest.MonkeyPatch, write_bytecode: bool
) -> None:
    # The module folder denies writes: the import system's own cache write is the import
    # category's business, and the import works, cache and all.
    monkeypatch.setattr(sys, "dont_write_bytecode", not write_bytecode)
    no_writes = {
        "id": "mods-read-only",
        "category": "file",
        "action": "deny",
        "match": {"path": f"{bytecode_on}/**", "access": "write"},
    }
    names = [f"firstimport_{write_bytecode}_{i}" for i in range(3)]
    for i, name in enumerate(names):
        (bytecode_on / f"{name}.py").write_text(f"VALUE = {i}\n")
    importlib.invalidate_caches()
    _install(root, no_writes)
    try:
        assert [importlib.import_module(name).VALUE for name in names] == [0, 1, 2]
        cached = sorted(p.name.split(".")[0] for p in (bytecode_on / "__pycache__").glob("*.pyc"))
        assert cached == (names if write_bytecode else [])
        # The same kind of write by the app's own code is refused, even while the thread
        # is inside an import (the mark alone proves nothing: the caller must be importlib).
        target = (
            bytecode_on
            / "__pycache__"
            / f"planted.cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc"
        )
        previous = thread_state.importing
        thread_state.importing = True
        try:
            with pytest.raises(PolicyViolation):
                open(target, "wb").close()
            if write_bytecode:
                with pytest.raises(PolicyViolation):
                    os.rename(
                        bytecode_on / "__pycache__" / os.listdir(bytecode_on / "__pycache__")[0],
                        target,
                    )
        finally:
            thread_state.importing = previous
        assert not target.exists()
    finally:
        runtime.uninstall()


def test_first_imports_write_their_cache_under_a_pycache_prefix(
    root: Path, bytecode_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PYTHONPYCACHEPREFIX: the cache lives in a tree of its own. Its reads and writes are
    # still the import system's own work for the module being read (asked of importlib's
    # `cache_from_source`), under a policy that denies writes to both trees.
    prefix = root / "pycache-tree"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    no_writes = [
        {
            "id": f"read-only-{i}",
            "category": "file",
            "action": "deny",
            "match": {"path": f"{folder}/**", "access": "write"},
        }
        for i, folder in enumerate((bytecode_on, prefix))
    ]
    names = [f"firstimport_prefixed_{i}" for i in range(3)]
    for i, name in enumerate(names):
        (bytecode_on / f"{name}.py").write_text(f"VALUE = {i}\n")
    importlib.invalidate_caches()
    _install(root, *no_writes)
    try:
        assert [importlib.import_module(name).VALUE for name in names] == [0, 1, 2]
        cached = sorted(p.name.split(".")[0] for p in prefix.rglob("*.pyc"))
        assert cached == names
        assert not (bytecode_on / "__pycache__").exists()
        # The app's own write into that tree is refused.
        planted = next(prefix.rglob("*.pyc")).with_name("planted.pyc")
        with pytest.raises(PolicyViolation):
            open(planted, "wb").close()
        assert not planted.exists()
    finally:
        runtime.uninstall()


def test_an_open_of_a_descriptor_is_let_through_as_before(shielded: Path) -> None:
    # `open(fd)`: the descriptor's own open was decided; the audit hook now lets the event
    # through itself (hooks/_audit_hook.py), as the handler always did.
    fd = os.open(shielded / "mods", os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    read_end, write_end = os.pipe()
    with open(write_end, "wb") as writer, open(read_end, "rb") as reader:
        writer.write(b"x")
        writer.flush()
        assert reader.read(1) == b"x"
    with pytest.raises(PolicyViolation):
        open(shielded / "vault" / "settings_prod.py")
