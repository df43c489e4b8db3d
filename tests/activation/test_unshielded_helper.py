"""`child_would_be_unshielded`: the spawn-time decision the process describer makes for every
start, given how this process was switched on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from appshield import _proc_children
from appshield import activation as _activate
from appshield._proc_children import (
    BOOTSTRAP_DIR,
    child_would_be_unshielded,
    is_python_program,
    isolation_flags,
)
from appshield.activation import Activation


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["python", "-c", "pass"], set()),
        (["python", "-I", "x.py"], {"I"}),
        (["python", "-Es", "x.py"], {"E"}),
        (["python", "-bS", "-c", "-I"], {"S"}),  # -I after -c is the code's argument
        (["python", "-c", "-E"], set()),
        (["python", "-W", "-I", "x.py"], set()),  # -I is -W's value
        (["python", "-WI", "-S"], {"S"}),
        (["python", "-X", "dev", "-I"], {"I"}),
        (["python", "--check-hash-based-pycs", "always", "-E", "x"], {"E"}),
        (["python", "x.py", "-I"], set()),  # a script's own options
        (["python", "-", "-I"], set()),
        (["python", "-mpip", "-I"], set()),
    ],
)
def test_isolation_flags(argv: list[str], flags: set[str]) -> None:
    assert isolation_flags(argv) == flags


@pytest.mark.parametrize(
    "program",
    ["python", "python3", "python3.13", "/usr/bin/python3.11", "pythonw", "pypy3", sys.executable],
)
def test_python_programs(program: str) -> None:
    assert is_python_program(program)


@pytest.mark.parametrize("program", ["/bin/ls", "git", "pythonista-tool", "ipython"])
def test_other_programs(program: str) -> None:
    assert not is_python_program(program)


POLICY = "/etc/appshield/policy.yaml"
IDENTITY = "1:d:00"
THIS_PYTHON = os.path.dirname(sys.executable)
SHIELDED = {
    "PYTHONPATH": BOOTSTRAP_DIR,
    "APPSHIELD_POLICY": POLICY,
    "APPSHIELD_IDENTITY": IDENTITY,
    "PATH": THIS_PYTHON,
}


def _without(key: str) -> dict[str, str]:
    return {k: v for k, v in SHIELDED.items() if k != key}


OTHER = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"


# The decision compares a child with how *this* process was switched on.
PARENT = Activation("bootstrap", POLICY, None, POLICY, None, IDENTITY)


@pytest.mark.parametrize(
    ("argv", "env", "unshielded"),
    [
        (["python3", "-c", "pass"], SHIELDED, False),
        (["python3", "-I", "-c", "pass"], SHIELDED, True),
        (["python3", "-c", "pass"], {**SHIELDED, "PYTHONPATH": ""}, True),
        (["python3", "-c", "pass"], {**SHIELDED, "PYTHONPATH": "/x:" + BOOTSTRAP_DIR}, False),
        (["python3", "-c", "pass"], {**SHIELDED, "APPSHIELD_DISABLE": "1"}, True),
        (["python3", "-c", "pass"], {**SHIELDED, "APPSHIELD_DISABLE": "0"}, False),
        (["python3", "-c", "pass"], {**SHIELDED, "APPSHIELD_POLICY": "/tmp/p.yaml"}, True),
        (["python3", "-c", "pass"], {**SHIELDED, "APPSHIELD_MODE": "monitor"}, True),
        (["python3", "-c", "pass"], {**SHIELDED, "APPSHIELD_IDENTITY": "1:a:00"}, True),
        (["python3", "-c", "pass"], _without("APPSHIELD_IDENTITY"), True),
        ([sys.executable, "-c", "pass"], SHIELDED, False),
        ([getattr(sys, "_base_executable", sys.executable), "-c", "pass"], SHIELDED, False),
        ([f"/nonexistent/python{OTHER}", "-c", "pass"], SHIELDED, True),  # another Python
        (["ls", "-I"], {}, False),  # not Python: the written rules decide
        (
            [b"python3", b"-c", b"pass"],
            {k.encode(): v.encode() for k, v in SHIELDED.items()},
            False,
        ),
    ],
)
def test_child_decision(argv: list[str], env: dict[str, str], unshielded: bool) -> None:
    argv = [os.fsdecode(a) for a in argv]
    assert child_would_be_unshielded(argv, env, parent=PARENT) is unshielded


def test_fork_exec_environment_items_are_read_as_the_child_gets_them() -> None:
    items = [f"{k}={v}".encode() for k, v in SHIELDED.items()]
    assert not child_would_be_unshielded(["python3", "-c", "pass"], items, parent=PARENT)
    dropped = [item for item in items if not item.startswith(b"APPSHIELD_IDENTITY=")]
    assert child_would_be_unshielded(["python3", "-c", "pass"], dropped, parent=PARENT)


def test_a_sitecustomize_in_front_of_the_bootstrap_shadows_it(tmp_path: os.PathLike[str]) -> None:
    front = os.path.join(str(tmp_path), "front")
    os.mkdir(front)
    with open(os.path.join(front, "sitecustomize.py"), "w") as f:
        f.write("")
    env = {**SHIELDED, "PYTHONPATH": front + os.pathsep + BOOTSTRAP_DIR}
    assert child_would_be_unshielded(["python3", "-c", "pass"], env, parent=PARENT)


def test_nothing_is_unshielded_without_environment_activation() -> None:
    assert _activate.activation() is None
    isolated = ["python3", "-I", "-c", "pass"]
    assert not child_would_be_unshielded(isolated, {}, parent=None)
    from_code = Activation("auto", POLICY, None, POLICY)
    assert not child_would_be_unshielded(isolated, {}, parent=from_code)
    assert child_would_be_unshielded(isolated, {}, parent=PARENT)  # the control


def test_the_describer_asks_with_this_process_activation(monkeypatch: pytest.MonkeyPatch) -> None:
    from appshield._proc_describe import unshielded

    isolated = (sys.executable, "-I", "-c", "pass")
    assert not unshielded(isolated, SHIELDED, sys.executable, "/")
    monkeypatch.setattr(_activate, "_activation", PARENT)
    assert unshielded(isolated, SHIELDED, sys.executable, "/")


def test_opentelemetry_bootstrap_carries_the_shield_unless_it_skips_us() -> None:
    otel = _proc_children._otel_bootstrap_dir()
    if otel is None:
        pytest.skip("opentelemetry-instrumentation missing")
    env = {**SHIELDED, "PYTHONPATH": otel + os.pathsep + BOOTSTRAP_DIR}
    assert not child_would_be_unshielded(["python3", "app.py"], env, parent=PARENT)
    skipped = {**env, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "flask, appshield"}
    assert child_would_be_unshielded(["python3", "app.py"], skipped, parent=PARENT)


CHILD_VIEW = (
    "import os, sys\n"
    "print(os.environ.get('PYTHONPATH'), [p for p in sys.path if p.startswith('/view-')])\n"
)


def test_a_repeated_variable_is_read_as_the_child_reads_it_first() -> None:
    # The child's C start-up (getenv) and its os.environ both take the first of a repeated
    # name; the control shows it on a real interpreter before the check is held to it.
    child = subprocess.run(
        [sys.executable, "-c", CHILD_VIEW],
        env={"PYTHONPATH": "/view-first", b"PYTHONPATH": b"/view-last"},  # type: ignore[dict-item]
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert child.stdout.split() == ["/view-first", "['/view-first']"]
    dropped_first = {
        "PYTHONPATH": "/elsewhere",
        **{k.encode(): v.encode() for k, v in SHIELDED.items()},
    }
    assert child_would_be_unshielded(["python3", "-c", "pass"], dropped_first, parent=PARENT)
    kept_first = {**SHIELDED, b"PYTHONPATH": b"/elsewhere"}
    assert not child_would_be_unshielded(["python3", "-c", "pass"], kept_first, parent=PARENT)
    items = [f"{k}={v}".encode() for k, v in SHIELDED.items()]
    shadowed = [b"PYTHONPATH=/elsewhere", *items]
    assert child_would_be_unshielded(["python3", "-c", "pass"], shadowed, parent=PARENT)
    assert not child_would_be_unshielded(
        ["python3", "-c", "pass"], [*items, b"PYTHONPATH=/x"], parent=PARENT
    )
