"""The remembered PATH search of the process describer: a hit must never describe a program
other than the one the child's own search would run now."""

from __future__ import annotations

import os
from pathlib import Path

from appshield._proc_describe import describe


def _program(path: Path, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def _found(name: str, search: list[str], cwd: Path) -> str | None:
    op = describe(name, [name], None, str(cwd), search=search, startup_path="/usr/bin:/bin")
    return None if op is None else op.executable


def test_a_program_appearing_earlier_on_path_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _program(second / "prog")
    search = [str(first), str(second)]
    assert _found("prog", search, tmp_path) == str(second / "prog")
    assert _found("prog", search, tmp_path) == str(second / "prog")  # remembered
    _program(first / "prog")
    assert _found("prog", search, tmp_path) == str(first / "prog")
    (first / "prog").unlink()
    assert _found("prog", search, tmp_path) == str(second / "prog")


def test_an_earlier_file_made_executable_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _program(first / "prog", 0o644)
    _program(second / "prog")
    search = [str(first), str(second)]
    assert _found("prog", search, tmp_path) == str(second / "prog")
    (first / "prog").chmod(0o755)
    assert _found("prog", search, tmp_path) == str(first / "prog")


def test_an_earlier_folder_of_that_name_is_skipped(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "prog").mkdir(parents=True)
    second.mkdir()
    _program(second / "prog")
    search = [str(first), str(second)]
    for _ in range(3):
        assert _found("prog", search, tmp_path) == str(second / "prog")


def test_a_repointed_link_or_a_lost_exec_bit_is_seen(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    one, two = _program(tmp_path / "one"), _program(tmp_path / "two")
    link = bin_dir / "prog"
    link.symlink_to(one)
    search = [str(bin_dir)]
    assert _found("prog", search, tmp_path) == str(one)
    link.unlink()
    link.symlink_to(two)
    assert _found("prog", search, tmp_path) == str(two)
    two.chmod(0o644)
    assert _found("prog", search, tmp_path) is None


def test_a_replaced_file_and_relative_entries(tmp_path: Path) -> None:
    here = tmp_path / "work"
    (here / "tools").mkdir(parents=True)
    prog = _program(here / "tools" / "prog")
    search = ["tools"]  # relative to the child's working folder
    assert _found("prog", search, here) == str(prog)
    other = tmp_path / "elsewhere"
    (other / "tools").mkdir(parents=True)
    assert _found("prog", search, other) is None  # another folder, another answer
    prog.unlink()
    _program(prog)  # a new file (new inode) at the same place
    assert _found("prog", search, here) == str(prog)
    assert os.access(prog, os.X_OK)
