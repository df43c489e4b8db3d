"""The compiled audit hook (appshield/_c_audit_hook.c) and the Python one decide alike.

The compiled hook answers the events appshield does not decide and the repeated opens the
active policy allowed before, and hands every other event to the Python hook. Every test here
runs the same child twice, once with each hook (`APPSHIELD_PURE_PYTHON=1` picks the Python
one), and the outside world says what happened: a canary file's content read or not, an
exit code. Each attack has a control run without the shield first.

The compiled hook keeps a module global it read, and the last key it found in a network
memory, only while the dict holding it keeps its version: the tests that change the policy
under remembered repeats (a swap, a reinstall while the first shield is still referenced)
fail against a hook that keeps them longer.

Also here: CPython drops an audit hook without a word when an earlier hook raises on
`sys.addaudithook`; appshield proves its hook answers before it starts and refuses to run
otherwise, with either hook.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HOOK_KINDS = ("compiled", "python")

try:
    from appshield import _c_audit_hook  # noqa: F401
except ImportError:  # built without a C compiler: only the Python hook exists
    COMPILED_BUILT = False
else:
    COMPILED_BUILT = True


def _kinds() -> list[object]:
    return [
        pytest.param(
            kind,
            marks=pytest.mark.skipif(
                kind == "compiled" and not COMPILED_BUILT, reason="the C hook was not built"
            ),
        )
        for kind in HOOK_KINDS
    ]


def _policy(root: Path) -> Path:
    policy = root / "policy.yaml"
    policy.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            mode: enforce
            defaults: {{process: allow, file: allow, network: allow, import: allow}}
            rules:
              - id: no-vault
                category: file
                action: deny
                match: {{path: ["{root}/vault", "{root}/vault/**"], access: read}}
              - id: notes-read-only
                category: file
                action: deny
                match: {{path: "{root}/work/notes.txt", access: write}}
              - id: no-localhost
                category: network
                action: deny
                match: {{host: localhost, operation: connect}}
            """
        )
    )
    return policy


VIOLATION = "from appshield.errors import PolicyViolation\n"


def _run(
    root: Path,
    code: str,
    kind: str | None,
    prelude: str = "",
    policy: Path | None = None,
    auto: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child: shielded with the hook `kind`, or bare when None. With `auto`
    false, `code` installs the shield itself (`SHIELDED` says whether it should)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
    env["APPSHIELD_POLICY"] = str(policy if policy is not None else _policy(root))
    if kind == "python":
        env["APPSHIELD_PURE_PYTHON"] = "1"
    if not auto:
        shield = f"SHIELDED = {kind is not None}\n"
    elif kind is not None:
        shield = "import appshield.auto\nfrom appshield import runtime as _r\n"
    else:
        shield = ""
    # Importing the exception shields nothing: the control run names it too.
    script = prelude + shield + VIOLATION + code
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=root / "work",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = Path(os.path.realpath(tmp_path))
    (root / "work").mkdir()
    (root / "vault").mkdir()
    (root / "vault" / "secret.txt").write_text("CANARY-SECRET\n")
    (root / "work" / "public.txt").write_text("public\n")
    (root / "work" / "notes.txt").write_text("notes\n")
    (root / "work" / "current").symlink_to(root / "work" / "public.txt")
    return root


# Opens `current` (a symlink to public.txt) until it is remembered, has another program swap
# the link to the secret (creating that link here is itself denied), opens it again: prints
# what the last open read, or BLOCKED.
SWAP = """
import subprocess
name = {name!r}
for _ in range(3):
    with open(name, "rb") as f:
        f.read()
subprocess.run(["ln", "-sfn", {secret!r}, "current"], check=True)
try:
    with open(name, "rb") as f:
        print(f.read().decode().strip())
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("spelling", ["str", "bytes", "relative"])
@pytest.mark.parametrize("kind", _kinds())
def test_a_symlink_swapped_under_a_remembered_path_is_decided_again(
    root: Path, kind: str, spelling: str
) -> None:
    name: str | bytes = str(root / "work" / "current")
    if spelling == "bytes":
        name = os.fsencode(name)
    elif spelling == "relative":
        name = "current"  # the child runs in root/work
    code = SWAP.format(name=name, secret=str(root / "vault" / "secret.txt"))
    control = _run(root, code, None)
    assert control.stdout.strip() == "CANARY-SECRET", control.stderr
    (root / "work" / "current").unlink()
    (root / "work" / "current").symlink_to(root / "work" / "public.txt")
    shielded = _run(root, code, kind)
    assert shielded.returncode == 0, shielded.stderr
    assert shielded.stdout.strip() == "BLOCKED"
    assert "CANARY" not in shielded.stdout


# A relative name remembered in one folder, then opened from another folder where the same
# name leads to the secret (a link made before the run: making it here is itself denied).
CHDIR = """
import os
for _ in range(3):
    with open("current", "rb") as f:
        f.read()
os.chdir("../other")
try:
    with open("current", "rb") as f:
        print(f.read().decode().strip())
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_relative_name_remembered_in_one_folder_is_decided_again_in_another(
    root: Path, kind: str
) -> None:
    (root / "other").mkdir()
    (root / "other" / "current").symlink_to(root / "vault" / "secret.txt")
    control = _run(root, CHDIR, None)
    assert control.stdout.strip() == "CANARY-SECRET", control.stderr
    shielded = _run(root, CHDIR, kind)
    assert shielded.stdout.strip() == "BLOCKED", shielded.stderr


# The current folder listed until remembered, then the same call in the denied folder.
LISTING = """
import os
for _ in range(3):
    os.listdir()
os.chdir({vault!r})
try:
    print(*os.listdir())
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_remembered_listing_of_the_current_folder_is_decided_again_elsewhere(
    root: Path, kind: str
) -> None:
    code = LISTING.format(vault=str(root / "vault"))
    control = _run(root, code, None)
    assert control.stdout.split() == ["secret.txt"], control.stderr
    shielded = _run(root, code, kind)
    assert shielded.stdout.split() == ["BLOCKED"], shielded.stderr


# `os.utime` of a link's name until remembered, then another program points the link at the
# read-only notes: the same call must be decided again (a write there is denied).
TOUCH = """
import os, subprocess
name = {name!r}
for _ in range(3):
    os.utime(name, (1, 1))
subprocess.run(["ln", "-sfn", {notes!r}, "current"], check=True)
try:
    os.utime(name, (2, 2))
    print("TOUCHED")
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_remembered_change_by_path_follows_the_link_again(root: Path, kind: str) -> None:
    notes = root / "work" / "notes.txt"
    code = TOUCH.format(name=str(root / "work" / "current"), notes=str(notes))
    control = _run(root, code, None)
    assert control.stdout.strip() == "TOUCHED", control.stderr
    assert notes.stat().st_mtime == 2
    os.utime(notes, (100, 100))
    (root / "work" / "current").unlink()
    (root / "work" / "current").symlink_to(root / "work" / "public.txt")
    shielded = _run(root, code, kind)
    assert shielded.stdout.strip() == "BLOCKED", shielded.stderr
    assert notes.stat().st_mtime == 100


@pytest.mark.parametrize("kind", _kinds())
def test_a_remembered_read_never_lets_a_denied_write_through(root: Path, kind: str) -> None:
    code = textwrap.dedent(
        """
        for _ in range(3):
            open("notes.txt").close()
        try:
            with open("notes.txt", "w") as f:
                f.write("overwritten")
            print("WROTE")
        except Exception as exc:
            print(type(exc).__name__)
        """
    )
    notes = root / "work" / "notes.txt"
    control = _run(root, code, None)
    assert control.stdout.strip() == "WROTE"
    notes.write_text("notes\n")
    shielded = _run(root, code, kind)
    assert shielded.stdout.strip() == "PolicyViolation", shielded.stderr
    assert notes.read_text() == "notes\n"


# A tracer and a profiler that raise on every event they see, and record the files of the
# frames they were shown: appshield's hook frames must be none of them, with either hook.
TRACED = """
import sys, threading
seen = []
def spy(frame, event, arg):
    name = frame.f_code.co_filename
    if "appshield" in name:  # a frame of appshield's: its audit hook's, say
        seen.append(name)
        raise RuntimeError("tracer")
    return spy
def attempt():
    try:
        with open({secret!r}) as f:
            return f.read().strip()
    except Exception as exc:
        return type(exc).__name__
sys.setprofile(spy)
sys.settrace(spy)
try:
    result = attempt()
except RuntimeError:
    result = "tracer-raised"
sys.settrace(None)
sys.setprofile(None)
print(result)
print(any("appshield" in name for name in seen))
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_raising_tracer_never_runs_inside_the_hook(root: Path, kind: str) -> None:
    code = TRACED.format(secret=str(root / "vault" / "secret.txt"))
    control = _run(root, code, None)
    assert control.stdout.split() == ["CANARY-SECRET", "False"], control.stderr
    shielded = _run(root, code, kind)
    # Denied by the policy, and no frame of appshield's was shown to the tracer.
    assert shielded.stdout.split() == ["PolicyViolation", "False"], shielded.stderr


# The end of the network scripts below: how many connections their listener got.
COUNT_ACCEPTED = """
listener.settimeout(0.5)
accepted = 0
try:
    while True:
        listener.accept()[0].close()
        accepted += 1
except OSError:
    pass
print(accepted)
"""


# Connects to a listener of its own on 127.0.0.1 until the connect is remembered (no name
# leads there yet), then resolves "localhost" (which the policy names in a deny), and connects
# again: that connect must be decided again, as a connect to localhost. Prints the outcome and
# how many connections the listener got.
RECONNECT = (
    """
import socket
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
for _ in range(3):
    with socket.socket() as s:
        s.connect(("127.0.0.1", port))
socket.gethostbyname("localhost")
try:
    with socket.socket() as s:
        s.connect(("127.0.0.1", port))
    print("CONNECTED")
except PolicyViolation:
    print("BLOCKED")
"""
    + COUNT_ACCEPTED
)


@pytest.mark.parametrize("kind", _kinds())
def test_a_remembered_connect_is_decided_again_once_a_denied_name_leads_there(
    root: Path, kind: str
) -> None:
    control = _run(root, RECONNECT, None)
    assert control.stdout.split() == ["CONNECTED", "4"], control.stderr
    shielded = _run(root, RECONNECT, kind)
    assert shielded.stdout.split() == ["BLOCKED", "3"], shielded.stderr


# Installs a lenient policy, opens, connects and resolves until each is remembered, then the
# policy changes: the same shield is given a stricter policy (`swap`, as a reload does), or
# the shield is removed and a new one installed with it (`reinstall`). Each attempt after
# that must be decided by the new policy, never answered from what the old one allowed.
# Prints the outcomes (an absolute and a relative open, a connect, a lookup) and how many
# connections the listener got.
CHANGED = (
    """
import os
import socket
import appshield
from appshield import runtime
from appshield.policy import load_policy
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
def attempts():
    outcomes = []
    for name in (os.path.abspath("public.txt"), "public.txt"):
        try:
            with open(name, "rb") as f:
                outcomes.append(f.read().decode().strip())
        except PolicyViolation:
            outcomes.append("BLOCKED")
    try:
        with socket.socket() as s:
            s.connect(("127.0.0.1", port))
        outcomes.append("CONNECTED")
    except PolicyViolation:
        outcomes.append("BLOCKED")
    try:
        socket.getaddrinfo("localhost", port)
        outcomes.append("RESOLVED")
    except PolicyViolation:
        outcomes.append("BLOCKED")
    return outcomes
if SHIELDED:
    appshield.install({lenient!r})
for _ in range(3):
    assert attempts() == ["public", "public", "CONNECTED", "RESOLVED"]
if SHIELDED:
    if {how!r} == "swap":
        runtime.active_shield().swap_policy(load_policy({stricter!r}))
    else:
        appshield.uninstall()
        appshield.install({stricter!r})
print(*attempts())
"""
    + COUNT_ACCEPTED
)


def _write_policy(path: Path, *rules: str) -> Path:
    """A policy allowing everything but `rules` (YAML list items, each one line)."""
    lines = [
        "version: 1",
        "mode: enforce",
        "defaults: {process: allow, file: allow, network: allow, import: allow}",
        "rules:" if rules else "rules: []",
        *(f"  - {rule}" for rule in rules),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("how", ["swap", "reinstall"])
@pytest.mark.parametrize("kind", _kinds())
def test_a_changed_policy_decides_every_remembered_repeat_again(
    root: Path, kind: str, how: str
) -> None:
    lenient = _write_policy(root / "lenient.yaml")
    stricter = _write_policy(
        root / "stricter.yaml",
        "{id: public-now-closed, category: file, action: deny,"
        f' match: {{path: "{root}/work/public.txt", access: read}}}}',
        "{id: loopback-now-closed, category: network, action: deny,"
        ' match: {host: "127.0.0.1", operation: connect}}',
        "{id: lookups-now-closed, category: network, action: deny,"
        " match: {host: localhost, operation: resolve}}",
    )
    code = CHANGED.format(how=how, lenient=str(lenient), stricter=str(stricter))
    control = _run(root, code, None, auto=False)
    assert control.stdout.split() == ["public", "public", "CONNECTED", "RESOLVED", "4"], (
        control.stderr
    )
    shielded = _run(root, code, kind, auto=False)
    assert shielded.stdout.split() == ["BLOCKED"] * 4 + ["3"], shielded.stderr


# The shield installed first thing, an absolute path opened until it is remembered, then the
# shield removed and one with a stricter policy installed: the open is decided by it. (The
# compiled hook keeps the module globals it read only while their dict's version stands; a
# mutant keeping them for good lets this open through.)
REINSTALLED = """
import appshield
if SHIELDED:
    first = appshield.install({lenient!r})  # the handle keeps the first shield alive
for _ in range(3):
    open({public!r}, "rb").close()
if SHIELDED:
    first.uninstall()
    appshield.install({stricter!r})
try:
    with open({public!r}, "rb") as f:
        print(f.read().decode().strip())
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_reinstalled_shield_decides_a_remembered_open_again(root: Path, kind: str) -> None:
    public = root / "work" / "public.txt"
    lenient = _write_policy(root / "lenient.yaml")
    stricter = _write_policy(
        root / "stricter.yaml",
        f'{{id: public-now-closed, category: file, action: deny, match: {{path: "{public}"}}}}',
    )
    code = REINSTALLED.format(lenient=str(lenient), stricter=str(stricter), public=str(public))
    control = _run(root, code, None, auto=False)
    assert control.stdout.split() == ["public"], control.stderr
    shielded = _run(root, code, kind, auto=False)
    assert shielded.stdout.split() == ["BLOCKED"], shielded.stderr


# Connects to an allowed listener until the connect is remembered, then to a listener on
# another port of the same address, which the policy denies (the test's own listener: the
# outside world counts).
OTHER_PORT = """
import socket
allowed = socket.create_server(("127.0.0.1", 0))
for _ in range(3):
    with socket.socket() as s:
        s.connect(("127.0.0.1", allowed.getsockname()[1]))
try:
    with socket.socket() as s:
        s.connect(("127.0.0.1", {denied}))
    print("CONNECTED")
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_remembered_connect_lets_no_other_port_through(root: Path, kind: str) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as denied:
        port = denied.getsockname()[1]
        policy = _write_policy(
            root / "one-port.yaml",
            "{id: one-port-closed, category: network, action: deny,"
            f' match: {{host: "127.0.0.1", port: {port}, operation: connect}}}}',
        )
        code = OTHER_PORT.format(denied=port)
        denied.settimeout(5)
        control = _run(root, code, None, policy=policy)
        assert control.stdout.split() == ["CONNECTED"], control.stderr
        denied.accept()[0].close()
        shielded = _run(root, code, kind, policy=policy)
        assert shielded.stdout.split() == ["BLOCKED"], shielded.stderr
        denied.settimeout(0.5)
        with pytest.raises(OSError):
            denied.accept()


REFUSER = """
import sys
def refuse(event, args):
    if event == "sys.addaudithook":
        raise {error}("no more audit hooks")
sys.addaudithook(refuse)
"""


@pytest.mark.parametrize("error", ["RuntimeError", "ValueError"])
@pytest.mark.parametrize("kind", _kinds())
def test_a_hook_an_earlier_hook_refused_stops_the_start(root: Path, kind: str, error: str) -> None:
    code = f"print(open({str(root / 'vault' / 'secret.txt')!r}).read().strip())"
    # Control: the same refusing hook before an unshielded start does not stop the app.
    control = _run(root, code, None, prelude=REFUSER.format(error=error))
    assert control.stdout.strip() == "CANARY-SECRET"
    refused = _run(root, code, kind, prelude=REFUSER.format(error=error))
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "CANARY" not in refused.stdout
    assert "refusing to run unshielded" in refused.stderr
    assert "audit hook" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("kind", _kinds())
def test_the_apps_own_hooks_still_see_every_event(root: Path, kind: str) -> None:
    # A hook the app adds after the shield sees the events appshield lets through (an
    # allowed open, a repeat the compiled hook answered alone, an event appshield does not
    # decide) and can still refuse one.
    code = textwrap.dedent(
        """
        import sys
        seen = []
        def app_hook(event, args):
            if event in ("open", "compile", "myapp.event"):
                seen.append(event)
            if event == "myapp.refused":
                raise PermissionError("the app's own rule")
        sys.addaudithook(app_hook)
        for _ in range(3):
            open("public.txt").close()
        compile("x = 1", "<x>", "exec")
        sys.audit("myapp.event")
        try:
            sys.audit("myapp.refused")
        except PermissionError:
            seen.append("refused")
        print(seen.count("open") >= 3, "compile" in seen, "myapp.event" in seen, "refused" in seen)
        """
    )
    shielded = _run(root, code, kind)
    assert shielded.stdout.split() == ["True", "True", "True", "True"], shielded.stderr


@pytest.mark.parametrize("kind", _kinds())
def test_the_hook_in_use_is_the_one_asked_for(root: Path, kind: str) -> None:
    shielded = _run(root, "print(_r.audit_hook_kind())", kind)
    assert shielded.stdout.split()[-1] == kind, shielded.stderr


def test_the_compiled_hook_installs_once() -> None:
    if not COMPILED_BUILT:
        pytest.skip("the C hook was not built")
    code = textwrap.dedent(
        """
        from appshield import _c_audit_hook as c
        from appshield import runtime
        parts = runtime._compiled_hook_parts()
        class NoSlots:
            owner = plain = checked = None
        for wrong in (
            (print, ("x",), parts, 1),
            (print, (1,), parts),
            (print, ("x",), {**parts, "memory_type": NoSlots}),
            (print, ("x",), {k: v for k, v in parts.items() if k != "socket_type"}),
            (print, ("x",), {**parts, "socket_type": parts["memory_type"]}),
        ):
            try:
                c.install(*wrong)
            except TypeError:
                print("TypeError")
        c.install(lambda event, args: None, ("x",), parts)
        try:
            c.install(lambda event, args: None, ("x",), parts)
        except RuntimeError:
            print("RuntimeError")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["TypeError"] * 5 + ["RuntimeError"], result.stderr


# The import statement's `import` event is answered before the gate only while appshield's
# import layer is intact (the layer judges the import with its spec in hand). Some modules are
# imported first, so that any answer the hook could keep is there; then every patched
# function of the import system is put back to its original, and the next import statement's
# event is all that is left to judge a module whose import a rule denies: its body writes the
# canary.
LAYER_RESTORED = """
import importlib._bootstrap as b, importlib._bootstrap_external as bx
import sys
sys.path.insert(0, {mods!r})
for i in range(3):
    __import__(f"plain_{{i}}")
for owner in (b, bx, *[v for v in vars(bx).values() if isinstance(v, type)]):
    for key, value in list(vars(owner).items()):
        if type(value).__name__.endswith("FunctionWrapper"):
            setattr(owner, key, value.__wrapped__)
try:
    import evilmod
    print("IMPORTED")
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_the_import_statement_is_judged_by_its_event_once_the_layer_is_restored(
    root: Path, kind: str
) -> None:
    mods = root / "mods"
    mods.mkdir()
    for i in range(3):
        (mods / f"plain_{i}.py").write_text("VALUE = 1\n")
    canary = root / "canary"
    (mods / "evilmod.py").write_text(f"open({str(canary)!r}, 'w').write('RAN')\n")
    policy = _write_policy(
        root / "imports.yaml",
        '{id: no-evilmod, category: import, action: deny, match: {module: "evilmod"}}',
    )
    code = LAYER_RESTORED.format(mods=str(mods))
    control = _run(root, code, None, policy=policy)
    assert control.stdout.strip() == "IMPORTED", control.stderr
    assert canary.read_text() == "RAN"
    canary.unlink()
    shielded = _run(root, code, kind, policy=policy)
    assert shielded.stdout.strip() == "BLOCKED", shielded.stderr
    assert not canary.exists()


# While a loader reads a module's code (`importing` above 0 on the thread), only importlib's
# own opens of the module file being read (or its bytecode cache) are the import system's
# work. A loader whose `get_data` is the app's own opens a denied module file from its own
# frame, has importlib's `get_data` read a denied file that is no module file, has it read a
# denied module file that is not the one being read, and opens the module file being read
# from its own frame: each open is checked. So is importlib's own `get_data` called by the
# app outside any loader's reading.
OWN_GET_DATA = """
import importlib.machinery as m, importlib.util as u
class Loader(m.SourceFileLoader):
    def get_data(self, path):
        for read in (
            lambda: open({secret!r}, "rb").read(),  # from the app's own frame
            lambda: m.SourceFileLoader.get_data(self, {text!r}),  # importlib's, no module file
            # importlib's, a module file, but not the one being read (nor its cache)
            lambda: m.SourceFileLoader.get_data(self, {secret!r}),
            # the module file being read, but opened by the app's own frame
            lambda: open(self.path, "rb").read(),
        ):
            try:
                print("READ" if b"CANARY" in read() else "MISSED")
            except PolicyViolation:
                print("BLOCKED")
        return b"VALUE = 1\\n"
path = {plain!r}
for name in ("first", "second"):  # the first read could leave something remembered
    spec = u.spec_from_file_location(name, path, loader=Loader(name, path))
    module = u.module_from_spec(spec)
    spec.loader.exec_module(module)
# importlib's own `get_data` (FileLoader's), called by the app when no loader is reading a
# module: checked.
try:
    m.SourceFileLoader.get_data(m.SourceFileLoader("x", path), {secret!r})
    print("READ")
except PolicyViolation:
    print("BLOCKED")
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_loaders_own_read_of_a_denied_module_file_is_checked(root: Path, kind: str) -> None:
    (root / "vault" / "settings_prod.py").write_text("CANARY-SECRET\n")
    # The module read is itself in the vault: importing it is allowed (the import rules),
    # reading its file as a file is not.
    (root / "vault" / "plain.py").write_text("VALUE = 1  # CANARY\n")
    code = OWN_GET_DATA.format(
        secret=str(root / "vault" / "settings_prod.py"),
        text=str(root / "vault" / "secret.txt"),
        plain=str(root / "vault" / "plain.py"),
    )
    # get_data is asked for the bytecode cache first, then the source: two calls of four
    # reads for each of two modules, then the direct call.
    control = _run(root, code, None)
    assert control.stdout.split() == ["READ"] * 17, control.stderr
    shielded = _run(root, code, kind)
    assert shielded.stdout.split() == ["BLOCKED"] * 17, shielded.stderr


# The getaddrinfo wrapper's hot path (a remembered address, exact positional values, no
# keywords) runs in C where the compiled hook is built. Each call below first has its address
# remembered, then is made with the same address and other arguments: every outcome (the
# answers, or the exception's type) must be the one the bare call gives.
RESOLVE_ARGUMENTS = """
import _socket, socket
port = {port}
for _ in range(3):
    _socket.getaddrinfo("127.0.0.1", port)  # remembered from here on
outcomes = []
for call in (
    lambda: _socket.getaddrinfo("127.0.0.1", port),
    lambda: _socket.getaddrinfo("127.0.0.1", port, socket.AF_INET6),
    lambda: _socket.getaddrinfo("127.0.0.1", port, family=socket.AF_INET6),
    lambda: _socket.getaddrinfo("127.0.0.1", port, 0, socket.SOCK_DGRAM),
    lambda: _socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_DGRAM),
    lambda: _socket.getaddrinfo("127.0.0.1", port, 0, 0, 0, 0, 0),
    lambda: _socket.getaddrinfo("127.0.0.1", port, flags=-1),
    lambda: socket.getaddrinfo("127.0.0.1", port, proto=socket.IPPROTO_UDP),
):
    try:
        outcomes.append(sorted(call()))
    except Exception as exc:
        outcomes.append(type(exc).__name__)
print(repr(outcomes))
"""


@pytest.mark.parametrize("kind", _kinds())
def test_a_remembered_address_lookup_answers_as_the_bare_call(root: Path, kind: str) -> None:
    code = RESOLVE_ARGUMENTS.format(port=8080)
    control = _run(root, code, None)
    assert control.returncode == 0, control.stderr
    assert "gaierror" in control.stdout and "TypeError" in control.stdout  # the calls differ
    shielded = _run(root, code, kind)
    assert shielded.returncode == 0, shielded.stderr
    assert shielded.stdout == control.stdout


def test_a_remembered_name_lookup_still_refreshes_the_resolver_memory(root: Path) -> None:
    """A name's lookup is never the C front's to answer: its answer is remembered again each
    time (`remember_results`), so a connect to the address is known by the name for as long
    as the app keeps resolving it."""
    if not COMPILED_BUILT:
        pytest.skip("the C hook was not built")
    code = textwrap.dedent(
        """
        import socket, time
        import appshield
        from appshield import runtime
        from appshield.hooks.network.memory import memory
        appshield.install(POLICY)
        assert runtime.audit_hook_kind() == "compiled"
        memory.ttl = 0.04  # an answer is remembered again once half its life is over
        socket.getaddrinfo("localhost", 8080)
        socket.getaddrinfo("localhost", 8080)  # remembered from here on
        before = memory._by_address["127.0.0.1"].expiries["localhost"]
        time.sleep(0.05)
        socket.getaddrinfo("localhost", 8080)
        middle = memory._by_address["127.0.0.1"].expiries["localhost"]
        time.sleep(0.05)
        socket.getaddrinfo("127.0.0.1", 8080)  # another key found last in between
        socket.getaddrinfo("localhost", 8080)
        after = memory._by_address["127.0.0.1"].expiries["localhost"]
        print("REFRESHED" if before < middle < after else "STALE")
        """
    ).replace("POLICY", repr(str(_write_policy(root / "allow.yaml"))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.stdout.strip() == "REFRESHED", result.stderr


def test_the_compiled_checks_are_the_ones_the_python_hook_makes() -> None:
    """The C part answers an event with the check the Python hook makes for it before the
    gate: the events it is told of, and the socket operations its table names, are those
    of the families' FAST_PATHS."""
    from appshield import _threadstate, hooks
    from appshield.hooks import file, imports, network
    from appshield.hooks.file import describe

    parts = {
        **file.compiled_hook_parts(),
        **imports.compiled_hook_parts(),
        **network.compiled_hook_parts(),
    }
    fast = hooks.all_fast_paths()
    # The import system's own work: the checks the C part repeats, on what they read.
    assert fast["import"] is imports._import_statement_fast
    assert "_intact" in parts["imports_globals"]
    assert parts["imports_globals"] is vars(imports)
    assert fast["open"] is file._import_work_open
    assert parts["thread_state"] is _threadstate.thread_state
    assert parts["import_machinery_globals"] is vars(sys.modules["_frozen_importlib_external"])
    for event in parts["listing_events"]:
        assert fast[event] is describe.listing_repeat
    for event in parts["path_change_events"]:
        assert fast[event].__qualname__ == "change_repeat.<locals>.repeat"
    assert fast[parts["sqlite_event"]] is describe.sqlite_repeat
    assert fast["socket.getaddrinfo"] is network._repeat_resolve
    # Program starts: `popen_allowed` is `_popen_allowed`'s commonest case, on the names it
    # reads (the describer's memory and the PATH split last through the deferred part's
    # functions, whose module globals they are).
    from appshield import _proc_describe
    from appshield.hooks import process
    from appshield.hooks.process import convert

    assert fast["subprocess.Popen"] is process._popen_allowed
    started = process.compiled_hook_parts()
    assert started["process_globals"] is vars(process)
    assert started["modules"] is sys.modules and started["os_globals"] is vars(os)
    for name in ("_compiled_of", "STARTUP_PATH", "remembered_start", "inherited_exec_path"):
        assert name in vars(process)
    assert type(vars(_proc_describe)["_described"]) is dict
    assert type(vars(convert)["_environ_path"]) is tuple
    assert _proc_describe.remembered_start.__globals__ is vars(_proc_describe)
    assert convert.inherited_exec_path.__globals__ is vars(convert)
    # appshield/_c_audit_hook.c `event_kind`: the operation each socket event is keyed by.
    in_c = {
        "socket.connect": "connect",
        "socket.bind": "bind",
        "socket.sendto": "send",
        "socket.sendmsg": "send",
    }
    for event, operation in in_c.items():
        check = fast[event]
        cells = dict(
            zip(
                check.__code__.co_freevars,
                (c.cell_contents for c in check.__closure__ or ()),
                strict=True,
            )
        )
        assert check.__qualname__ == "_repeat_allowed.<locals>.repeat_allowed"
        assert cells["operation"] == operation
