"""`appshield explain` and the process hooks describe a start as the same `ProcessOp`.

Both sides are the real code paths: explain's `appshield._describe.process_op` (what the CLI
calls), and the installed shield's audit hook for the `subprocess.Popen` event, raised with
the arguments subprocess raises it with, the operation read back from the reported violation
(every start is an alert in monitor mode, so each one is reported and none is blocked).
Nothing is started. Generated: argv (plain names, absolute and relative paths, every known
shell with `-c` or an option bundle, busybox applets, programs that are not installed),
the environment (PATH variations, APPSHIELD_* variables, PYTHONPATH) and the working folder,
with this process switched on through the environment (so `unshielded` is decided too).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield import _describe, runtime
from appshield import activation as _activate
from appshield._proc_children import BOOTSTRAP_DIR
from appshield._proc_describe import SHELLS
from appshield.operations import ProcessOp
from appshield.policy import Policy
from appshield.report import Violation

POLICY = "/etc/appshield/policy.yaml"
IDENTITY = "1:d:00"
PARENT = _activate.Activation("bootstrap", POLICY, None, POLICY, None, IDENTITY)
ALERT_EVERY_START = {
    "version": 1,
    "mode": "monitor",
    "defaults": {"process": "alert", "file": "allow", "network": "allow", "import": "allow"},
    "rules": [],
}


class Place:
    """A tmp tree: `bin` with a tool, a fake busybox and a shell copy; `work/sub` to start in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.work = root / "work"
        (self.work / "sub").mkdir(parents=True)
        self.bin.mkdir()
        for name in ("tool", "busybox", "ash"):
            _script(self.bin / name)
        _script(self.work / "local-tool")
        (self.bin / "python3").symlink_to(sys.executable)


def _script(path: Path) -> None:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Place:
    return Place(Path(os.path.realpath(tmp_path_factory.mktemp("describe"))))


class Reports(list[Violation]):
    def __repr__(self) -> str:  # hypothesis prints the test's arguments with a failure
        return f"<{len(self)} reported starts>"


@pytest.fixture(scope="module")
def reported() -> Iterator[Reports]:
    seen = Reports()
    handle = runtime.install(Policy.from_mapping(ALERT_EVERY_START))
    handle._shield.add_listener(seen.append)
    try:
        yield seen
    finally:
        runtime.uninstall()


@pytest.fixture(scope="module")
def env_activated() -> Iterator[None]:
    # As `appshield run` would have left this process: the describer reads the activation.
    before = _activate._activation
    _activate._activation = PARENT
    try:
        yield
    finally:
        _activate._activation = before


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def folder(path: Path) -> Iterator[None]:
    here = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(here)


# -- what is generated --------------------------------------------------------------------

SHELL_OPTIONS = ["-c", "-xc", "-lc", "-ec", "-e", "-x", "+x", "-l", "--login", "-o", "pipefail"]
SHELL_OPTIONS += ["--", "-", "script.sh", "--rcfile", "rc", "-O", "extglob", "-i"]


@st.composite
def shell_argv(draw: st.DrawFn) -> list[str]:
    shell = draw(st.sampled_from(sorted(SHELLS)))
    prefix = draw(st.sampled_from(["", "/bin/", "/usr/bin/", "bin/", "./"]))
    options = draw(st.lists(st.sampled_from(SHELL_OPTIONS), max_size=4))
    return [prefix + shell, *options, draw(st.sampled_from(["true", "echo hi; id", "-c"]))]


@st.composite
def busybox_argv(draw: st.DrawFn) -> list[str]:
    launcher = draw(st.lists(st.sampled_from(["busybox", "/bin/busybox"]), min_size=1, max_size=2))
    applet = draw(st.sampled_from(["sh", "ash", "hush", "ls", "nc", "/bin/sh", "busybox"]))
    options = draw(st.lists(st.sampled_from(SHELL_OPTIONS), max_size=3))
    return [*launcher, applet, *options, "true"]


PROGRAMS = ["tool", "ls", "true", "env", "git", "python3", "no-such-tool-xyz", "local-tool"]
PROGRAMS += ["./local-tool", "sub/../local-tool", "/bin/ls", "/usr/bin/env", sys.executable]
PROGRAMS += ["/nonexistent/tool", "../work/local-tool", "ash", "busybox"]

argvs = st.one_of(
    st.builds(
        lambda program, rest: [program, *rest],
        st.sampled_from(PROGRAMS),
        st.lists(st.sampled_from(["-c", "pass", "-I", "-E", "x.py", "--", "a b"]), max_size=3),
    ),
    shell_argv(),
    busybox_argv(),
)


@st.composite
def environments(draw: st.DrawFn, place: Place) -> dict[str, str]:
    entries = draw(
        st.lists(
            st.sampled_from(
                [str(place.bin), "/usr/bin", "/bin", "", ".", "bin", "/nonexistent", "/usr/sbin"]
            ),
            max_size=4,
        )
    )
    env: dict[str, str] = {}
    if draw(st.booleans()) or entries:
        env["PATH"] = os.pathsep.join(entries)
    pythonpath = draw(st.sampled_from([None, BOOTSTRAP_DIR, "", f"/x:{BOOTSTRAP_DIR}", "/x"]))
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    chosen = {
        "APPSHIELD_POLICY": st.sampled_from([POLICY, "/tmp/other.yaml"]),
        "APPSHIELD_IDENTITY": st.sampled_from([IDENTITY, "1:a:00"]),
        "APPSHIELD_MODE": st.just("monitor"),
        "APPSHIELD_DISABLE": st.sampled_from(["0", "1"]),
    }
    for name, values in chosen.items():
        if draw(st.booleans()):
            env[name] = draw(values)
    return env


# -- the two sides --------------------------------------------------------------------------


def explained(argv: list[str], cwd: str | None) -> ProcessOp:
    return _describe.process_op(argv, cwd=cwd)


def hooked(reported: list[Violation], argv: list[str], cwd: str | None, env: object) -> ProcessOp:
    """The audit hook's description of `subprocess.run(argv, cwd=cwd, env=env)`."""
    before = len(reported)
    sys.audit("subprocess.Popen", argv[0], argv, cwd, env)
    assert len(reported) == before + 1, "the start was not reported"
    operation = reported[-1].operation
    assert isinstance(operation, ProcessOp)
    return operation


EXAMPLES = settings(
    max_examples=int(os.environ.get("APPSHIELD_DESCRIBE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.usefixtures("env_activated")
@EXAMPLES
@given(data=st.data())
def test_explain_and_the_hooks_describe_the_same_start(
    place: Place, reported: Reports, data: st.DataObject
) -> None:
    argv = data.draw(argvs, label="argv")
    env = data.draw(environments(place), label="env")
    cwd = data.draw(st.sampled_from([None, str(place.work), "sub", str(place.root), "/"]))
    passed_env = data.draw(st.booleans(), label="env passed to Popen")
    with folder(place.work), environment(env):
        explain_op = explained(argv, cwd)
        hook_op = hooked(reported, argv, cwd, dict(env) if passed_env else None)
    assert explain_op == hook_op
    assert explain_op._asdict() == hook_op._asdict()  # field by field, for the failure message


@pytest.mark.usefixtures("env_activated")
def test_the_generated_cases_reach_every_answer(place: Place, reported: Reports) -> None:
    """The control: the property above compares descriptions that do differ from case to case
    (shell or not, trusted or not, unshielded or not, found or missing)."""
    shielded = {"PATH": f"{place.bin}:/usr/bin:/bin", "PYTHONPATH": BOOTSTRAP_DIR}
    shielded |= {"APPSHIELD_POLICY": POLICY, "APPSHIELD_IDENTITY": IDENTITY}
    cases = {
        ("busybox", "sh", "-c", "id"): ("shell", True),
        ("busybox", "ls", "-c"): ("shell", False),
        ("bash", "-lc", "id"): ("shell", True),
        ("bash", "script.sh", "-c"): ("shell", False),
        ("ls",): ("trusted_location", True),  # /usr/bin is on this process's start-up PATH
        ("tool",): ("trusted_location", False),  # a writable folder that was not
        ("./local-tool",): ("trusted_location", False),
        ("python3", "-I", "-c", "pass"): ("unshielded", True),
        ("python3", "-c", "pass"): ("unshielded", False),
    }
    with folder(place.work), environment(shielded):
        for argv, (field, expected) in cases.items():
            explain_op = explained(list(argv), None)
            assert explain_op == hooked(reported, list(argv), None, None)
            assert getattr(explain_op, field) is expected, (argv, explain_op)
        missing = explained(["no-such-tool-xyz"], None)
        assert missing.executable == f"{place.bin}/no-such-tool-xyz"
        assert missing == hooked(reported, ["no-such-tool-xyz"], None, None)
