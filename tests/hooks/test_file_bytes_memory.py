"""Remembered allowed opens of bytes paths (hooks/_file_cache.py).

`open(b"/srv/app/data.txt")` used to be decided in full on every call: the allowed-open
memory took only str paths. A clean absolute bytes path is now its own key, in the same
memories as str paths (`plain`, or `checked` with the identity re-proved by one `stat` when
the policy's deny rules make symlinks matter). A relative bytes path is never remembered.
A symlink swapped under a remembered bytes name must reach a full decision: first without
the shield (control: the secret is read), then with it (refused). Real files in tmp dirs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import _file_cache
from appshield.policy import Policy

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
SECRET = b"secret\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(os.path.realpath(tmp_path))
    for folder in ("work", "vault"):
        (root / folder).mkdir()
    (root / "work" / "data.txt").write_bytes(b"work\n")
    (root / "vault" / "data.txt").write_bytes(SECRET)
    monkeypatch.chdir(root / "work")
    return root


def _install(root: Path) -> None:
    deny = {"path": f"{root}/vault/**", "access": "read"}
    rules = [{"id": "no-vault", "category": "file", "action": "deny", "match": deny}]
    policy = {"version": 1, "mode": "enforce", "defaults": ALLOW_ALL, "rules": rules}
    runtime.install(Policy.from_mapping(policy))


def _read(name: bytes) -> bytes:
    with open(name, "rb") as f:
        return f.read()


def _remembered(name: str | bytes) -> bool:
    memory = _file_cache._memory
    return name in memory.plain or name in memory.checked or name in memory.relative


def _swap(root: Path) -> bytes:
    work = root / "work"
    os.rename(work / "data.txt", work / "old.txt")
    (work / "data.txt").symlink_to(root / "vault" / "data.txt")
    return _read(os.fsencode(work / "data.txt"))


def _unswap(root: Path) -> None:
    work = root / "work"
    (work / "data.txt").unlink()
    os.rename(work / "old.txt", work / "data.txt")


def test_a_bytes_path_is_remembered_and_a_symlink_swapped_under_it_is_decided(
    root: Path,
) -> None:
    name = os.fsencode(root / "work" / "data.txt")
    assert _swap(root) == SECRET  # control: no shield, the swap reads the secret
    _unswap(root)
    _install(root)
    try:
        assert _read(name) == b"work\n" and _read(name) == b"work\n"
        assert _remembered(name)
        assert not _remembered(os.fsdecode(name))  # its own key, not the str's
        with pytest.raises(PolicyViolation):
            _swap(root)
    finally:
        runtime.uninstall()


def test_a_relative_bytes_path_is_not_remembered(root: Path) -> None:
    _install(root)
    try:
        assert _read(b"data.txt") == b"work\n" and _read(b"data.txt") == b"work\n"
        assert not _remembered(b"data.txt")
        os.chdir(root / "vault")
        with pytest.raises(PolicyViolation):
            _read(b"data.txt")
    finally:
        os.chdir(root / "work")
        runtime.uninstall()
