"""A repeated `subprocess.run` answered in C (appshield/_c_audit_hook.c `popen_allowed` and the
fork_exec front `spawn_repeat`), and the same runs with the Python hook.

The compiled hook answers the `subprocess.Popen` event of a start the describer remembers,
proved again with the same system calls, with the decision asked of the policy every time,
and marks it; the C front of `_posixsubprocess.fork_exec` then hands the child the judged
file alone, as `_judged_fork_exec` does. Each test runs one child per hook kind
(`APPSHIELD_PURE_PYTHON=1` picks the Python one) and a control run without the shield; the
outside world decides what happened: a canary file made or not, an exit code. The attacks
change what fork_exec is handed, or the policy, between the event and the call, or raise out
of the decision.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.hooks._children import run_python, shielded_words
from tests.hooks.test_c_audit_hook import COMPILED_BUILT, _kinds

TOUCH = os.path.realpath(shutil.which("touch") or "/usr/bin/touch")
TRUE = os.path.realpath(shutil.which("true") or "/usr/bin/true")

ALLOW_ALL = """\
version: 1
mode: enforce
defaults: {process: allow, file: allow, network: allow, import: allow}
rules: []
"""

# `prog` is found in the second PATH folder (`late`, a link to true); the first (`early`) is
# empty. `touch` is denied by `no-touch`.
NO_TOUCH = """\
version: 1
mode: enforce
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - {{id: no-touch, category: process, action: deny, match: {{executable: "{touch}"}}}}
"""

PRELUDE = """\
import os, subprocess, sys
SHIELDED = {shielded}
if SHIELDED:
    import appshield
    from appshield import runtime
    appshield.install({policy!r})
from appshield.errors import PolicyViolation
CANARY = {canary!r}
def start():
    return subprocess.run(["prog", CANARY], check=False).returncode
"""


def _run(root: Path, code: str, kind: str | None) -> subprocess.CompletedProcess[str]:
    """`code` after PRELUDE in a child, shielded with the hook `kind` (None: bare), `prog` on
    PATH in `late`, the working folder `root`."""
    prelude = PRELUDE.format(
        shielded=kind is not None, policy=str(root / "policy.yaml"), canary=str(root / "canary")
    )
    path = f"{root}/early:{root}/late:{os.environ.get('PATH', os.defpath)}"
    return run_python(prelude + textwrap.dedent(code), kind, root, PATH=path)


def _shielded(root: Path, code: str, kind: str, control: list[str]) -> list[str]:
    return shielded_words(lambda how: _run(root, code, how), kind, control, root / "canary")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = Path(os.path.realpath(tmp_path))
    (root / "early").mkdir()
    (root / "late").mkdir()
    (root / "late" / "prog").symlink_to(TRUE)
    (root / "policy.yaml").write_text(NO_TOUCH.format(touch=TOUCH))
    return root


# The child's search list rewritten between the event and fork_exec: subprocess asks
# `os.get_exec_path` after its `subprocess.Popen` event, and hands fork_exec every candidate
# in that order; the child runs the first execve accepts. The first folder is swapped for one
# whose `prog` is touch, the judged candidate left where the event found it: touch would run
# instead of the judged true.
SEARCH_REWRITTEN = """
start(); start()  # the second start is remembered (and, compiled, answered in C)
evil = os.path.join(os.path.dirname(CANARY), "evil")
if not os.path.isdir(evil):  # made by the control run already
    os.mkdir(evil)
    os.symlink({touch!r}, os.path.join(evil, "prog"))
real = os.get_exec_path
os.get_exec_path = lambda env=None: [evil, *real(env)[1:]]
try:
    print("EXIT", start())
except PolicyViolation:
    print("BLOCKED")
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_search_list_rewritten_after_the_event_runs_only_the_judged_file(
    root: Path, kind: str
) -> None:
    code = SEARCH_REWRITTEN.format(touch=TOUCH)
    words = _shielded(root, code, kind, ["EXIT", "0", "CANARY"])
    # The judged file is the child's only candidate: true runs, touch never does.
    assert words == ["EXIT", "0", "NO", "CANARY"]


# The policy replaced between the event and fork_exec (from the same `os.get_exec_path` call):
# the start was judged under the first policy; fork_exec decides again under the second,
# which denies the program.
POLICY_SWAPPED = """
start(); start()
if SHIELDED:
    real = os.get_exec_path
    def swap(env=None):
        runtime.uninstall()
        appshield.install({stricter!r})
        return real(env)
    os.get_exec_path = swap
try:
    print("EXIT", start())
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_policy_swapped_after_the_event_decides_the_fork_exec_again(
    root: Path, kind: str
) -> None:
    stricter = root / "stricter.yaml"
    stricter.write_text(
        ALLOW_ALL.replace(
            "rules: []",
            "rules:\n  - {id: no-prog, category: process, action: deny,"
            f' match: {{executable: "{TRUE}"}}}}',
        )
    )
    code = POLICY_SWAPPED.format(stricter=str(stricter))
    assert _shielded(root, code, kind, ["EXIT", "0"]) == ["BLOCKED", "no-prog"]


# A KeyboardInterrupt (what a signal handler raises) out of the decision of a remembered
# start: the start does not happen, and the app gets that very exception, with either hook.
INTERRUPTED = """
start(); start()
decide = runtime.Shield.decide
def interrupted(self, operation, api=""):
    if operation.category == "process":
        raise KeyboardInterrupt("from the decision")
    return decide(self, operation, api)
runtime.Shield.decide = interrupted
try:
    start()
    print("STARTED")
except KeyboardInterrupt as exc:
    print("INTERRUPTED", exc)
runtime.Shield.decide = decide
print("EXIT", start())
"""


@pytest.mark.parametrize("kind", _kinds())
def test_an_interrupt_in_the_decision_reaches_the_app(root: Path, kind: str) -> None:
    shielded = _run(root, INTERRUPTED, kind)
    assert shielded.stdout.split() == ["INTERRUPTED", "from", "the", "decision", "EXIT", "0"], (
        shielded.stderr
    )


# Which hook answered: the compiled one marks the start in C, so the Python mark stays empty;
# the Python hook's check before the gate sets it. A start that asks for another environment
# is never the C part's: the Python hook decides and marks it.
WHO_ANSWERED = """
from appshield.hooks import process
start(); start()
argv = ["prog", CANARY]
sys.audit("subprocess.Popen", "prog", argv, None, None)
print("PYTHON-MARK" if process._started.mark is not None else "NO-PYTHON-MARK")
process._started.mark = None
sys.audit("subprocess.Popen", "prog", argv, None, dict(os.environ))
print("PYTHON-MARK" if process._started.mark is not None else "NO-PYTHON-MARK")
print("EXIT", start())
"""


@pytest.mark.parametrize("kind", _kinds())
def test_the_compiled_hook_answers_a_remembered_start_itself(root: Path, kind: str) -> None:
    shielded = _run(root, WHO_ANSWERED, kind)
    first = "NO-PYTHON-MARK" if kind == "compiled" else "PYTHON-MARK"
    assert shielded.stdout.split() == [first, "PYTHON-MARK", "EXIT", "0"], shielded.stderr


# A program dropped into the earlier PATH folder after the start was remembered: the C part's
# re-proof of the search fails, and the start is decided in full (touch: refused).
DROPPED = """
early = os.path.join(os.path.dirname(CANARY), "early", "prog")
if os.path.lexists(early):  # dropped there by the control run
    os.remove(early)
start(); start(); start()
os.symlink({touch!r}, early)
try:
    print("EXIT", start())
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_program_dropped_earlier_on_path_is_judged_with_either_hook(
    root: Path, kind: str
) -> None:
    code = DROPPED.format(touch=TOUCH)
    words = _shielded(root, code, kind, ["EXIT", "0", "CANARY"])
    assert words == ["BLOCKED", "no-touch", "NO", "CANARY"]


def test_the_fork_exec_front_is_the_wrapper_patched_in() -> None:
    # Both fork_exec patch points get the one wrapper object, and `_fork_exec_in_place` (which
    # lets a start of other argument types through only when fork_exec will convert them
    # again) knows it; where the C hook was built, it is the C front around `_wrap_fork_exec`.
    from appshield.hooks import process

    wrappers = {p.wrapper for p in process.PATCHES if p.attribute.endswith("fork_exec")}
    assert wrappers == {process._FORK_EXEC_WRAPPER}
    if COMPILED_BUILT:
        assert process._FORK_EXEC_WRAPPER.__self__ is process._wrap_fork_exec
    else:
        assert process._FORK_EXEC_WRAPPER is process._wrap_fork_exec


# A shield that came in through the environment (the activation set as the bootstrap sets
# it): a Python child is unshielded when the environment it inherits drops the bootstrap.
# The repeated start of one is answered by the compiled hook too (it asks the describer's
# `unshielded` again); the environment is then changed between the event and fork_exec, and
# fork_exec's own check refuses the child.
ACTIVATED = """
from appshield import activation as _activate
from appshield.hooks import process
if SHIELDED:
    _activate._activation = _activate.Activation("bootstrap", "/p.yaml", None, "/p.yaml")
for name in ("APPSHIELD_MODE", "APPSHIELD_DISABLE", "APPSHIELD_IDENTITY"):
    os.environ.pop(name, None)
os.environ["APPSHIELD_POLICY"] = "/p.yaml"
os.environ["PYTHONPATH"] = _activate.BOOTSTRAP_DIR
python = [sys.executable, "-c", "pass"]
# (A new session: subprocess then calls fork_exec on every version; 3.13 would hand a
# program named with a path to posix_spawn otherwise.)
quiet = dict(
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, start_new_session=True
)
for _ in range(2):  # allowed (the child then stops itself: /p.yaml does not exist)
    subprocess.run(python, **quiet)
sys.audit("subprocess.Popen", sys.executable, python, None, None)
print("PYTHON-MARK" if process._started.mark is not None else "NO-PYTHON-MARK")
# subprocess makes its error pipe after the event and before fork_exec (the other streams
# go to /dev/null: no pipe before the event).
real = os.pipe
def drop():
    os.environ["PYTHONPATH"] = ""
    return real()
os.pipe = drop
try:
    subprocess.run(python, **quiet)
    print("STARTED")
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_child_environment_changed_after_the_event_is_asked_again(root: Path, kind: str) -> None:
    control = _run(root, ACTIVATED, None)
    assert control.stdout.split()[-1] == "STARTED", control.stderr
    shielded = _run(root, ACTIVATED, kind)
    first = "NO-PYTHON-MARK" if kind == "compiled" else "PYTHON-MARK"
    assert shielded.stdout.split() == [first, "BLOCKED", "implicit:unshielded_children"], (
        shielded.stderr
    )


# subprocess hands a program named with a path to posix_spawn when it need not close
# descriptors (`close_fds=False`; 3.13 does with close_fds too): the compiled hook's mark is
# then taken over by the posix_spawn wrapper (`_compiled_mark`). The repeated start runs; the
# same path re-pointed at touch is refused on the next start.
POSIX_SPAWN = """
from appshield.hooks import process
prog = os.path.join(os.path.dirname(CANARY), "late", "prog")
if os.path.realpath(prog) != {true!r}:  # re-pointed by the control run
    os.remove(prog)
    os.symlink({true!r}, prog)
def spawn():
    return subprocess.run([prog, CANARY], close_fds=False, check=False).returncode
print("EXIT", spawn(), spawn(), spawn())
if SHIELDED:
    sys.audit("subprocess.Popen", prog, [prog, CANARY], None, None)
    taken = process._compiled_mark()
    print("C-MARK" if taken is not None and taken.popen.program == prog else "NO-C-MARK")
    print("TAKEN" if process._compiled_mark() is None else "LEFT")
os.remove(prog)
os.symlink({touch!r}, prog)
try:
    print("EXIT", spawn())
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_start_handed_to_posix_spawn_takes_the_compiled_mark(root: Path, kind: str) -> None:
    code = POSIX_SPAWN.format(true=TRUE, touch=TOUCH)
    words = _shielded(root, code, kind, ["EXIT", "0", "0", "0", "EXIT", "0", "CANARY"])
    mark = "C-MARK" if kind == "compiled" else "NO-C-MARK"
    assert words == ["EXIT", "0", "0", "0", mark, "TAKEN", "BLOCKED", "no-touch", "NO", "CANARY"]


# `os.environ` replaced by a plain dict whose PATH puts a folder holding a `prog` that is
# touch first: subprocess searches that PATH for a bare name (`os.get_exec_path()` reads the
# module's `environ`), so the start is judged by what it finds there, never taken for the
# remembered one.
ENVIRON_REPLACED = """
start(); start()
evil = os.path.join(os.path.dirname(CANARY), "evil")
if not os.path.isdir(evil):  # made by the control run already
    os.mkdir(evil)
    os.symlink({touch!r}, os.path.join(evil, "prog"))
os.environ = {{**os.environ, "PATH": evil + ":" + os.environ["PATH"]}}
try:
    print("EXIT", start())
except PolicyViolation as exc:
    print("BLOCKED", exc.rule_id)
print("CANARY" if os.path.exists(CANARY) else "NO CANARY")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_replaced_environ_mapping_is_searched_as_the_child_will(root: Path, kind: str) -> None:
    code = ENVIRON_REPLACED.format(touch=TOUCH)
    words = _shielded(root, code, kind, ["EXIT", "0", "CANARY"])
    assert words == ["BLOCKED", "no-touch", "NO", "CANARY"]
