"""The engine's own standard-library helpers are appshield's imports, never the app's.

The engine keeps `re` (a glob's regex) and `ipaddress` (an address's key) off start-up and
imports them on the first decision that needs them. That import used to be an ordinary
`import re` inside the decision, judged by the app's policy: a policy that does not allow
`re` (an import allow-list learned from an app that never imports it) refused the app's
allowed `open()` with "import 're' blocked", but only once the policy cache had spared the
start its own `import re`. Now the engine asks `appshield._modules.stdlib`, which the
patching layer points at its part loader: the module is loaded as appshield's own import,
and only from the standard library's folder. A module of the same name planted earlier on
`sys.path` is judged like the app's.

Real children, non-site interpreters (`-S`: an editable install's finder imports `re`
itself) from a warm policy cache with bytecode writing on, as production starts.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import wrapt

import appshield
from tests.activation._helpers import PY, clean_env, policy_file, run

REPO = Path(appshield.__file__).resolve().parent.parent

CHILD = r"""
import sys
import appshield.auto
import _socket
from appshield import PolicyViolation

folder = sys.argv[1]
out = {"re at start": "re" in sys.modules, "ipaddress at start": "ipaddress" in sys.modules}

def attempt(label, action):
    try:
        action()
        out[label] = "ok"
    except PolicyViolation as exc:
        out[label] = "blocked: " + str(exc)
    except Exception as exc:  # the gate's fail-closed refusal of what it could not decide
        out[label] = "refused: " + type(exc).__name__

def write(name):
    with open(folder + "/" + name, "w") as f:
        f.write("x")

def connect():
    server = _socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = _socket.socket()
    try:
        client.connect(server.getsockname())
    finally:
        client.close()
        server.close()

attempt("allowed open", lambda: write("notes.txt"))
attempt("denied open", lambda: write("b1.secret"))
attempt("allowed connect", connect)
attempt("app imports colorsys", lambda: __import__("colorsys"))
print(repr(out))  # not json: it imports `re`
"""


def _policy(folder: Path, *, mode: str, import_rule: str) -> Path:
    return policy_file(
        folder,
        f"""
version: 1
mode: {mode}
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - id: no-helpers
    category: import
    action: deny
    match: {import_rule}
  - id: classed-secrets
    category: file
    action: deny
    match: {{path: "{folder}/[a-c]*.secret"}}
  - id: metadata
    category: network
    action: deny
    match: {{cidr: [169.254.169.254/32]}}
""",
    )


def _run_warm(folder: Path, policy: Path, cwd: Path) -> dict[str, str]:
    script = folder / "child.py"
    script.write_text(CHILD)
    path = os.pathsep.join([str(REPO), str(Path(wrapt.__file__).resolve().parent.parent)])
    env = clean_env(APPSHIELD_POLICY=str(policy), PYTHONPATH=path)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the policy cache is written, then read
    # The first start parses the YAML (importing `re` before install) and writes the cache.
    warm = run([PY, "-S", "-c", "import appshield.auto"], env=env, cwd=folder)
    assert warm.returncode == 0, warm.stderr
    done = run(
        [PY, "-S", "-c", f"exec(open({str(script)!r}).read())", str(folder)], env=env, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, str] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_first_decisions_needing_re_and_ipaddress_are_not_the_apps_imports(
    tmp_path: Path, mode: str
) -> None:
    policy = _policy(tmp_path, mode=mode, import_rule="{module: [re, ipaddress, enum, colorsys]}")
    found = _run_warm(tmp_path, policy, cwd=tmp_path)
    # What makes this test mean anything: neither is loaded before the first decisions.
    assert found["re at start"] is False and found["ipaddress at start"] is False
    assert found["allowed open"] == "ok"
    assert found["allowed connect"] == "ok"
    assert (tmp_path / "notes.txt").exists()
    if mode == "enforce":
        assert "classed-secrets" in found["denied open"]
        assert not (tmp_path / "b1.secret").exists()
        # The app's own import of a module the policy refuses is still refused.
        assert "no-helpers" in found["app imports colorsys"]


def test_a_module_planted_under_a_helpers_name_is_judged(tmp_path: Path) -> None:
    """`ipaddress.py` in the app's folder, first on `sys.path`: appshield's load of
    `ipaddress` for the first network decision finds it, and since it is not the standard
    library's file the import hooks judge it as the app's (here refused by its origin), so
    the connection that needed it is refused, and the planted file never runs. (`re` is not
    used here: the telemetry built for the first violation imports `re`, on a thread whose
    imports are not judged; docs/limits.md.)"""
    plant = tmp_path / "plant"
    plant.mkdir()
    canary = tmp_path / "CANARY"
    (plant / "ipaddress.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
    policy = _policy(
        tmp_path, mode="enforce", import_rule=f'{{module: ipaddress, origin: "{plant}/**"}}'
    )
    found = _run_warm(tmp_path, policy, cwd=plant)
    assert found["ipaddress at start"] is False
    assert found["allowed open"] == "ok"
    assert "no-helpers" in found["allowed connect"]
    assert not canary.exists()  # the planted file never ran


def test_the_planted_module_runs_when_nothing_refuses_it(tmp_path: Path) -> None:
    """The control: the same planted file with a policy that allows it is loaded (and runs)
    on the first network decision, so the test above shows a refusal, not a file that was
    never found."""
    plant = tmp_path / "plant"
    plant.mkdir()
    canary = tmp_path / "CANARY"
    (plant / "ipaddress.py").write_text(
        f"open({str(canary)!r}, 'w').close()\nfrom importlib import import_module\n"
    )
    policy = _policy(tmp_path, mode="enforce", import_rule="{module: nothing_of_the_sort}")
    found = _run_warm(tmp_path, policy, cwd=plant)
    assert found["ipaddress at start"] is False
    assert canary.exists()
    # Not the standard library's file: appshield does not take it as its own helper, so the
    # decision that needed it fails closed.
    assert found["allowed connect"] != "ok"
