"""Python children that are "shielded", but not with the parent's policy (issue 12, item 2).

These need a parent switched on through the environment (as `appshield run` does), because
only such a shield travels to children. So each attempt starts an inner parent: under the
shield (enforce and monitor runs) with the bootstrap on PYTHONPATH and APPSHIELD_POLICY /
APPSHIELD_MODE set, in the control run as a plain interpreter. The inner parent then starts
the child that tries the forbidden thing, and the outside world judges (canary, stdout).
"""

from __future__ import annotations

import textwrap

from tests.bypass._harness import Attempt

# Runs in the attempt process (the outer one): `inner(code, **env)` runs `code` in the inner
# parent, shielded through the environment when the attempt process is shielded.
_OUTER = """\
import subprocess
SHIELDED = "appshield.runtime" in sys.modules
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_IDENTITY")}
if SHIELDED:
    from appshield.activation import BOOTSTRAP_DIR
    BASE_ENV.update(
        PYTHONPATH=BOOTSTRAP_DIR,
        APPSHIELD_POLICY=os.environ["BYPASS_POLICY"],
        APPSHIELD_MODE=os.environ["BYPASS_MODE"],
    )

def inner(code, cwd=None, **env):
    script = os.path.join(WORK, "inner_%d.py" % len(os.listdir(WORK)))
    with open(script, "w") as handle:
        handle.write("import os, subprocess, sys\\nWORK = %r\\nCANARY = %r\\n" % (WORK, CANARY))
        handle.write(code)
    subprocess.run([sys.executable, script], env={**BASE_ENV, **env}, cwd=cwd or WORK)
"""


def _c(
    id: str,
    inner_code: str,
    *,
    before: str = "",
    after: str = "",
    inner_env: str = "",
    evidence: str = "canary",
    rules: str = "",
) -> Attempt:
    code = (
        _OUTER
        + textwrap.dedent(before)
        + f"inner({textwrap.dedent(inner_code)!r}{', ' + inner_env if inner_env else ''})\n"
        + textwrap.dedent(after)
    )
    return Attempt(f"child-{id}", code, "process", evidence=evidence, rules=rules)


# A fake `appshield` whose activation does nothing: before issue 12, the bootstrap imported
# whatever `appshield` came first on sys.path.
_FAKE = """\
fake = os.path.join(WORK, "fake", "appshield")
os.makedirs(fake, exist_ok=True)
open(os.path.join(fake, "__init__.py"), "w").close()
os.makedirs(os.path.join(fake, "activation"), exist_ok=True)
with open(os.path.join(fake, "activation", "__init__.py"), "w") as handle:
    handle.write("def activate(*a, **k): pass\\ndef chain_sitecustomize(*a, **k): pass\\n")
"""

# A permissive policy, cached as if it were the policy file's: the real policy's bytes in the
# file list, a `monitor` document with no rules.
_FORGE = """\
import marshal
from appshield.policy import Policy
from appshield.policy import cache as _cache
def forge(policy, path):
    with open(policy, "rb") as handle:
        raw = handle.read()
    weak = Policy.from_yaml(
        "version: 1\\nmode: monitor\\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\\n"
        "protections: {policy_files: false, unshielded_children: false}\\n"
    )
    # Written by the cache's own writer, aimed at `path`: the entry has exactly the format
    # a start reads (a hand-built tuple went stale when the format grew, and the attempt then
    # failed for the wrong reason).
    aimed = _cache.cache_path
    _cache.cache_path = lambda _policy_path: path
    try:
        _cache._store(policy, weak.document, ((policy, os.path.realpath(policy), raw),), {})
    finally:
        _cache.cache_path = aimed
    with open(path, "rb") as handle:
        assert marshal.loads(handle.read())[4] == _cache.plain(weak.document)
policy = os.environ.get("APPSHIELD_POLICY") or os.path.join(os.path.dirname(WORK), "policy.yaml")
NAME = os.path.basename(policy) + _cache._SUFFIX
"""

_TOUCH = "subprocess.run([sys.executable, '-c', 'open(%r, \\'w\\').close()' % CANARY], env=env)\n"


def _variable(name: str, env: str) -> Attempt:
    """A rule written with {name} denies a secret; the child runs with another cwd / TMPDIR
    / HOME, so (before issue 12) its own {name} named another folder."""
    inner_code = f"""\
        elsewhere = os.path.join(WORK, "elsewhere")
        os.makedirs(elsewhere, exist_ok=True)
        env = dict(os.environ)
        if {env!r} != "cwd":
            env[{env!r}] = elsewhere
        secret = os.path.join(WORK, "vsecret.txt")
        subprocess.run([sys.executable, "-c", "print(open(%r).read())" % secret],
                       cwd=elsewhere, env=env)
        """
    rules = f"""\
        - id: no-{name}-secret
          category: file
          action: deny
          match: {{path: "{{{name}}}/vsecret.txt", access: read}}
        """
    return _c(
        f"variable-{name}",
        inner_code,
        before=(
            "with open(os.path.join(WORK, 'vsecret.txt'), 'w') as handle:\n"
            "    handle.write('SECRET-7f3a9\\n')\n"
        ),
        inner_env="" if env == "cwd" else f"{env}=WORK",
        evidence="stdout",
        rules=rules,
    )


ATTEMPTS: list[Attempt] = [
    _c(
        "fake-appshield-on-pythonpath",
        _FAKE
        + "path = os.environ.get('PYTHONPATH', '')\n"
        + "env = dict(os.environ, PYTHONPATH=path + os.pathsep + os.path.dirname(fake))\n"
        + _TOUCH,
    ),
    _c(
        "pycacheprefix-forged-cache",
        _FORGE
        + "prefix = os.path.join(WORK, 'prefix')\n"
        + "forge(policy, os.path.join(prefix, os.path.dirname(policy).lstrip(os.sep), NAME))\n"
        + "env = dict(os.environ, PYTHONPYCACHEPREFIX=prefix)\n"
        + _TOUCH,
    ),
    _c(
        # The shielded app plants a weaker policy for its own next start: it renames the
        # policy's __pycache__ away (when there is one) and a forged one into its place.
        "renamed-pycache-forged-cache-next-start",
        _FORGE
        + """\
folder = os.path.join(os.path.dirname(policy), "__pycache__")
forged = os.path.join(WORK, "forged_pycache")
forge(policy, os.path.join(forged, NAME))
try:
    if os.path.exists(folder):
        os.rename(folder, os.path.join(WORK, "old_pycache"))
    os.rename(forged, folder)
except PermissionError as exc:
    print("planting refused:", exc)
""",
        # The next start: a fresh shielded process (no parent to compare its policy with).
        after="env = BASE_ENV\n" + _TOUCH,
    ),
    _variable("cwd", "cwd"),
    _variable("tmp", "TMPDIR"),
    _variable("home", "HOME"),
    _c(
        # PYTHONPATH given twice: the child reads the first (empty: no bootstrap), a check that
        # read the last would see the bootstrap and let an unshielded child start.
        "repeated-pythonpath",
        "env = {'PYTHONPATH': '', **{k.encode(): v.encode() for k, v in os.environ.items()}}\n"
        + _TOUCH,
    ),
]
