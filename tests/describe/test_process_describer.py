"""The process describer on its own (`appshield._proc_describe`): where a program is found,
whether its place is trusted, which starts run a command string through a shell, and the
plain values it takes."""

from __future__ import annotations

import os
import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appshield import _describe
from appshield._proc_describe import describe, describe_start, is_shell, shell_command

START_PATH = "/usr/bin:/bin"


def _script(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _found(name: str, search: list[str] | None, cwd: str, startup_path: str) -> tuple[str, bool]:
    op = describe(name, [name], None, cwd, search=search, startup_path=startup_path)
    assert op is not None
    return op.executable, op.trusted_location


# -- programs ------------------------------------------------------------------------------


def test_a_program_found_in_a_folder_of_the_startup_path_is_trusted(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = _script(bin_dir, "tool")
    (tmp_path / "notexec").write_text("")
    search = [f"{tmp_path}/missing", str(bin_dir)]
    assert _found("tool", search, "/", str(bin_dir)) == (os.path.realpath(tool), True)
    # The control: the same folder, not on PATH when the shield started, is writable
    assert _found("tool", search, "/", START_PATH) == (os.path.realpath(tool), False)
    assert describe("nope", ["nope"], None, "/", search=search, startup_path=START_PATH) is None
    unrunnable = describe("notexec", None, None, "/", search=[str(tmp_path)], startup_path="")
    assert unrunnable is None


def test_a_relative_path_entry_trusts_nothing(tmp_path: Path) -> None:
    tool = _script(tmp_path, "tool")
    assert _found("tool", ["", "/nonexistent"], str(tmp_path), ":/nonexistent") == (
        os.path.realpath(tool),
        False,
    )


def test_a_program_named_by_path_is_trusted_only_in_a_trusted_folder(tmp_path: Path) -> None:
    tool = _script(tmp_path, "tool")
    assert _found("./tool", None, str(tmp_path), START_PATH) == (os.path.realpath(tool), False)
    assert _found("./tool", None, str(tmp_path), str(tmp_path)) == (os.path.realpath(tool), True)
    resolved, trusted = _found("/bin/sh", None, "/", "")
    assert resolved == os.path.realpath("/bin/sh")
    assert trusted is (not os.access(os.path.dirname(resolved), os.W_OK))


def test_a_program_symlink_is_resolved(tmp_path: Path) -> None:
    tool = _script(tmp_path, "real-tool")
    (tmp_path / "alias").symlink_to(tool)
    assert _found("alias", [str(tmp_path)], "/", START_PATH)[0] == os.path.realpath(tool)


def test_a_missing_program_is_judged_where_the_kernel_looks_first(tmp_path: Path) -> None:
    start = describe_start(
        "no-such-tool-xyz",
        None,
        None,
        "/",
        search=[str(tmp_path), "/usr/bin"],
        missing=True,
        startup_path=START_PATH,
    )
    assert start is not None and start.identity is None
    assert start.op.executable == f"{tmp_path}/no-such-tool-xyz"
    assert not start.op.trusted_location  # one folder searched is writable and not on PATH


@settings(max_examples=80, deadline=None)
@given(st.text(string.printable, max_size=20))
def test_describing_a_name_never_raises(name: str) -> None:
    start = describe_start(
        name, None, None, "/", search=["/usr/bin", "/bin"], missing=True, startup_path=START_PATH
    )
    assert start is None or start.op.executable.startswith("/")


# -- shells ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolved", "argv", "shell"),
    [
        ("/usr/bin/bash", ["bash", "-lc", "x"], True),
        ("/usr/bin/bash", ["bash", "-xc", "x"], True),
        ("/usr/bin/dash", ["sh", "-e", "-c", "x"], True),
        ("/usr/bin/bash", ["bash", "-o", "pipefail", "-c", "x"], True),
        ("/usr/bin/bash", ["bash", "--rcfile", "-c", "-c", "x"], True),  # -c after a value
        ("/usr/bin/bash", ["bash", "--rcfile", "-c", "script"], False),  # -c is the value
        ("/usr/bin/zsh", ["zsh", "+x", "-c", "x"], True),
        ("/usr/bin/bash", ["bash", "script.sh", "-c"], False),  # a script's own option
        ("/usr/bin/bash", ["bash", "--", "-c"], False),
        ("/usr/bin/python3", ["python3", "-c", "x"], False),
        ("/tmp/copy", ["sh", "-c", "x"], True),  # argv[0] names a shell
        ("/usr/bin/tcsh", ["anything", "-c", "x"], True),  # the file is a shell
        # busybox runs the applet argv[0] names, or the next argument's after `busybox`
        ("/bin/busybox", ["busybox", "sh", "-c", "x"], True),
        ("/bin/busybox", ["busybox", "ash", "-xc", "x"], True),
        ("/bin/busybox", ["busybox", "hush", "-c", "x"], True),
        ("/bin/busybox", ["busybox", "busybox", "sh", "-c", "x"], True),
        ("/bin/busybox", ["/bin/busybox", "/bin/sh", "-c", "x"], True),
        ("/bin/busybox", ["sh", "-c", "x"], True),  # the applet link /bin/sh -> busybox
        ("/bin/busybox", ["busybox", "ls", "-c"], False),
        ("/bin/busybox", ["ls", "-c"], False),
        ("/bin/busybox", ["busybox", "sh", "script", "-c"], False),
        ("/bin/busybox", ["busybox"], False),
        ("/tmp/bb", ["busybox", "sh", "-c", "x"], True),  # a renamed copy, called busybox
    ],
)
def test_shell_detection(resolved: str, argv: list[str], shell: bool) -> None:
    assert is_shell(resolved, argv) is shell


def test_os_system_is_a_shell_start() -> None:
    op = shell_command(b"echo hi", startup_path=START_PATH)
    assert op is not None
    assert op.argv == ("/bin/sh", "-c", "echo hi") and op.shell


# -- plain values ------------------------------------------------------------------------------


class Sly(str):
    def __str__(self) -> str:  # pragma: no cover - must never run
        raise AssertionError("the describer ran code of an argument")


@pytest.mark.parametrize(
    ("program", "argv", "cwd"),
    [
        (Sly("ls"), ["ls"], None),
        ("ls", [Sly("ls")], None),
        ("ls", ["ls"], Sly("/")),
        (Path("/bin/ls"), ["ls"], None),
        ("ls", ("ls", 1), None),
    ],
)
def test_only_plain_values_are_described(program: object, argv: object, cwd: object) -> None:
    # Reading such objects is the hooks' job (hooks/process/convert.py), before they ask here
    with pytest.raises(TypeError):
        describe_start(program, argv, None, cwd, search=["/usr/bin"], startup_path=START_PATH)  # type: ignore[arg-type]


def test_bytes_are_described_as_their_text() -> None:
    as_text = describe("ls", ["ls", "-l"], None, "/", search=["/usr/bin", "/bin"], startup_path="")
    as_bytes = describe(
        b"ls", [b"ls", b"-l"], None, b"/", search=["/usr/bin", "/bin"], startup_path=""
    )
    assert as_text is not None and as_text == as_bytes


# -- explain ---------------------------------------------------------------------------------


def test_explain_flags_only_add_to_the_description() -> None:
    plain = _describe.process_op(["sh", "-c", "true"])
    assert plain.shell and not plain.unshielded
    flagged = _describe.process_op(["sh", "-c", "true"], shell=True, unshielded=True)
    assert flagged == plain._replace(unshielded=True)
    assert _describe.process_op(["true"], shell=True).shell
    with pytest.raises(ValueError):
        _describe.process_op([])


def test_describing_loads_no_hooks_and_patches_nothing() -> None:
    code = (
        "import sys, subprocess, os\n"
        "before = (subprocess.Popen, os.posix_spawn, os.execv)\n"
        "from appshield import _describe\n"
        "print(_describe.process_op(['sh', '-c', 'true']).shell)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('appshield.hooks', 'wrapt'))))\n"
        "print(before == (subprocess.Popen, os.posix_spawn, os.execv))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split("\n")[:3] == ["True", "[]", "True"], result.stderr


def test_the_describer_modules_import_no_layer_above_them() -> None:
    import ast

    import appshield

    package = Path(appshield.__file__).resolve().parent
    above = ("appshield.hooks", "appshield.runtime", "appshield.activation", "appshield.telemetry")
    offenders = []
    for name in ("_proc_describe.py", "_proc_children.py", "_describe.py"):
        tree = ast.parse((package / name).read_text(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            offenders += [f"{name}: {m}" for m in modules if m.startswith(above)]
    assert offenders == []
