"""The audit hook's entry (issue 17): events appshield does not decide leave at the first
lookup; the events it decides reach their handlers as before; the hook runs with a namespace
of its own (hooks/_audit_hook.py) that binds every name its code reads."""

from __future__ import annotations

import dis
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appshield import runtime
from appshield.hooks import _audit_hook, _gate
from appshield.policy import Policy

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}


@pytest.fixture
def shield() -> Iterator[None]:
    runtime.install(Policy.from_mapping({"version": 1, "defaults": ALLOW_ALL}))
    try:
        yield
    finally:
        runtime.uninstall()


def _recording_hook(events: tuple[str, ...]) -> tuple[Any, list[tuple[str, tuple[Any, ...]]]]:
    """A hook made by make_audit_hook with handlers that record what reaches them."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def handler_for(event: str) -> Any:
        def handler(args: tuple[Any, ...]) -> None:
            seen.append((event, args))
            return None  # nothing to decide

        return handler

    handlers = {event: handler_for(event) for event in events}
    return _gate.make_audit_hook(handlers, dict.fromkeys(events, "file")), seen


def test_every_name_the_hook_reads_is_bound() -> None:
    hook, _ = _recording_hook(("open",))
    namespace = hook.__globals__
    read = {
        i.argval for i in dis.get_instructions(hook) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    }
    assert read <= set(namespace) | set(namespace["__builtins__"])
    assert set(namespace["__builtins__"]) == set(_audit_hook.BUILTINS)
    assert namespace["__name__"].startswith("appshield.")  # known as appshield's frame


def test_the_hook_reads_no_modules_globals() -> None:
    # A module's dict is cleared at shutdown while audit hooks still run.
    hook, _ = _recording_hook(("open",))
    assert not any(vars(m) is hook.__globals__ for m in list(sys.modules.values()) if m)
    assert hook.__closure__ is None  # and no cells copied into each call


@pytest.mark.usefixtures("shield")
def test_only_handled_events_reach_their_handlers() -> None:
    hook, seen = _recording_hook(("open", "socket.connect"))

    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise AssertionError("the hook compared an argument")

        def __hash__(self) -> int:
            raise AssertionError("the hook hashed an argument")

    for event in ("exec", "compile", "sys._getframe", "object.__getattr__", "builtins.id"):
        hook(event, (Hostile(), Hostile()))
    hook("opener", (Hostile(), "r", 0))  # a prefix of a handled name is another event
    assert seen == []

    connect_args = (Hostile(), ("127.0.0.1", 9))
    hook("socket.connect", connect_args)
    assert seen == [("socket.connect", connect_args)]


@pytest.mark.usefixtures("shield")
def test_open_events_off_the_fast_path_reach_the_open_handler(tmp_path: Path) -> None:
    hook, seen = _recording_hook(("open",))
    path = str(tmp_path / "never-opened")
    hook("open", (path, "r", 0))  # not remembered as allowed: decided in full
    hook("open", (path, "r"))  # not the shape CPython raises (sys.audit can): decided too
    assert seen == [("open", (path, "r", 0)), ("open", (path, "r"))]


@pytest.mark.usefixtures("shield")
def test_handled_events_keep_the_gates_markers() -> None:
    # appshield's own call (`own_call`) is let through once, by the identity of its token.
    hook, seen = _recording_hook(("socket.connect",))
    token = object()
    _gate.own_call("socket.connect", token, hook, "socket.connect", (token, ("127.0.0.1", 9)))
    assert seen == []
    hook("socket.connect", (token, ("127.0.0.1", 9)))  # the marker was used up
    assert len(seen) == 1


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="3.11's specializing interpreter")
def test_the_first_comparison_stays_specialized() -> None:
    # Measured in benchmarks/bench_unhandled_events.py: 3.11 specializes `event != "open"`
    # only if the jump after it is short (no EXTENDED_ARG); the generic comparison costs
    # every audit event of the process about 60 instructions more.
    hook, _ = _recording_hook(("open",))
    for _ in range(100):
        hook("builtins.id", (1,))
    first = next(i for i in dis.get_instructions(hook, adaptive=True) if "COMPARE" in i.opname)
    assert first.opname == "COMPARE_OP_STR_JUMP"


def test_unhandled_events_pass_while_modules_are_cleared(tmp_path: Path) -> None:
    # The interpreter clears module dicts at shutdown, raising events all the while: the
    # hook must neither fail (an exception in a hook aborts the event) nor lose its names.
    script = tmp_path / "late.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, appshield
            appshield.install({{"version": 1, "defaults": {ALLOW_ALL!r}}})

            class Late:
                # bound now: the builtins are gone too by the time this runs
                def __del__(self, compile=compile, getframe=sys._getframe, write=os.write):
                    getframe()
                    compile("1", "<late>", "eval")
                    write(1, b"late ok")  # no audit event

            keep = Late()  # collected while the interpreter clears this module
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert done.stdout == "late ok"
