"""The policy cache answers `{stdlib}` without sysconfig only under the same proof.

sysconfig's standard-library paths are kept in the cache entry with everything they were
computed from (`appshield.policy.variables.sysconfig_proof`). A later start takes them
without importing sysconfig only while that proof is the same; a change of any input makes
it ask sysconfig again, so a forged or stale answer is never taken under another proof.
Every check runs in a fresh interpreter (real files, real child processes)."""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from appshield.policy import cache

POLICY = """\
version: 1
name: stdlib-cached
defaults: {process: deny, file: allow, network: deny, import: allow}
rules:
  - id: stdlib-reads
    category: file
    action: allow
    match: {path: "{stdlib}/**", access: read}
"""

# Prints whether the cache proves the policy valid, and whether sysconfig had to be asked.
CHECK = """\
import sys
from appshield.policy import cache
ok = cache.is_valid(sys.argv[1])
print(ok, "sysconfig" in sys.modules)
"""


def _environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # production starts write (and read) the cache
    return {**env, **extra}


def _run(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def written(tmp_path: Path) -> Path:
    """A policy using {stdlib}, its cache written by a fresh interpreter's load."""
    policy = tmp_path / "appshield.yaml"
    policy.write_text(POLICY)
    _run(
        "import sys; from appshield.policy import Policy; Policy.from_file(sys.argv[1])",
        str(policy),
        env=_environ(),
    )
    assert Path(cache.cache_path(str(policy))).is_file()
    return policy


def test_the_same_proof_answers_without_sysconfig(written: Path) -> None:
    assert _run(CHECK, str(written), env=_environ()) == "True False"


@pytest.mark.parametrize(
    "variable", ["_PYTHON_HOST_PLATFORM", "PYTHONUSERBASE", "DEB_PYTHON_INSTALL_LAYOUT"]
)
def test_another_environment_asks_sysconfig(written: Path, tmp_path: Path, variable: str) -> None:
    # sysconfig's answer is the same here, so the policy stays valid: but it was asked.
    env = _environ(**{variable: str(tmp_path / "elsewhere")})
    if variable == "_PYTHON_HOST_PLATFORM":
        env[variable] = sysconfig.get_platform()
    assert _run(CHECK, str(written), env=env) == "True True"


def test_another_sysconfig_file_asks_sysconfig(written: Path, tmp_path: Path) -> None:
    """A sysconfig module found elsewhere (first on PYTHONPATH) is another proof, even with
    the same bytes."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    shutil.copy(sysconfig.__file__, shadow / "sysconfig.py")
    env = _environ(PYTHONPATH=os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")]))
    code = CHECK + "print(sys.modules['sysconfig'].__file__)\n"
    assert _run(code, str(written), env=env).splitlines() == [
        "True True",
        str(shadow / "sysconfig.py"),
    ]


def _forge(policy: Path, fake: str) -> None:
    """Rewrite the entry so that sysconfig's stored answer, and the `{stdlib}` value checked
    against it, name `fake` (what a stale cache, or one from another interpreter, holds)."""
    where = Path(cache.cache_path(str(policy)))
    entry = list(marshal.loads(where.read_bytes()))
    proof, (_stdlib, platstdlib, libdir, multiarch) = entry[6]
    entry[6] = (proof, (fake, platstdlib, libdir, multiarch))
    entry[3] = tuple(
        (key, (fake, platstdlib) if key[1] == "stdlib" else values) for key, values in entry[3]
    )
    where.write_bytes(marshal.dumps(tuple(entry)))


def test_a_stored_answer_is_taken_only_under_its_proof(written: Path, tmp_path: Path) -> None:
    fake = str(tmp_path / "not-the-stdlib")
    _forge(written, fake)
    # Under the same proof the stored answer stands (the entry is trusted as far as the
    # policy file itself: same owner and permission checks)...
    assert _run(CHECK, str(written), env=_environ()) == "True False"
    # ...and under any other proof sysconfig is asked, which gives the real folder: a miss.
    env = _environ(PYTHONUSERBASE=str(tmp_path / "user"))
    assert _run(CHECK, str(written), env=env) == "False True"
    # A load then rebuilds the policy from its YAML with the real folder.
    _run(
        "import sys; from appshield.policy import Policy; Policy.from_file(sys.argv[1])",
        str(written),
        env=env,
    )
    entry = marshal.loads(Path(cache.cache_path(str(written))).read_bytes())
    assert fake not in repr(entry[3]) and sysconfig.get_paths()["stdlib"] in repr(entry[3])


def test_a_proof_of_another_shape_asks_sysconfig(written: Path) -> None:
    where = Path(cache.cache_path(str(written)))
    entry = list(marshal.loads(where.read_bytes()))
    entry[6] = (entry[6][0], ("only-one",))
    where.write_bytes(marshal.dumps(tuple(entry)))
    assert _run(CHECK, str(written), env=_environ()) == "True True"


CHILD_CHECK = """\
import sys
from appshield.policy import cache, variables
variables.freeze({"cwd": ("/",)})  # as a child of a shielded parent starts
ok = cache.is_valid(sys.argv[1])
print(ok, "sysconfig" in sys.modules)
"""


def test_a_child_of_a_shielded_parent_does_not_take_the_answer(written: Path) -> None:
    """A child's parent identity covers the variables it hands down, not this answer."""
    assert _run(CHILD_CHECK, str(written), env=_environ()).endswith("True")


LOADER = """\
import sys
from appshield.policy import cache
cache.is_valid(sys.argv[1])
from appshield.hooks.imports import library
dirs = library._loader_dirs()
libc = library.resolve_library("libc.so.6")
asked = "sysconfig" in sys.modules
import sysconfig
multiarch = sysconfig.get_config_var("MULTIARCH") or ""
libdir = sysconfig.get_config_var("LIBDIR") or ""
same = dirs[-1] == libdir and (not multiarch or dirs[0] == "/lib/" + multiarch)
print(same, libc.startswith("/"), asked)
"""


@pytest.mark.parametrize("proved", [True, False])
def test_the_loader_folders_are_sysconfigs(written: Path, tmp_path: Path, proved: bool) -> None:
    """Where a bare library name is looked for: sysconfig's LIBDIR and MULTIARCH, taken
    from the cache under the same proof, else asked of sysconfig."""
    env = _environ() if proved else _environ(PYTHONUSERBASE=str(tmp_path / "user"))
    assert _run(LOADER, str(written), env=env) == f"True True {not proved}"


def test_the_environment_in_the_proof_is_every_variable_sysconfig_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from appshield.policy import variables

    monkeypatch.setenv("_PYTHON_HOST_PLATFORM", "linux-x")
    monkeypatch.setenv("VIRTUAL_ENV", "/venv")
    monkeypatch.setenv("PYTHONUSERBASE_NOT", "x")  # not a name sysconfig reads
    expected = tuple(
        sorted(
            (k, v)
            for k, v in os.environ.items()
            if k.startswith("_PYTHON") or k in variables._SYSCONFIG_ENVIRON
        )
    )
    assert variables._sysconfig_environ() == expected
    assert ("_PYTHON_HOST_PLATFORM", "linux-x") in expected
    assert ("VIRTUAL_ENV", "/venv") in expected
    assert all(k != "PYTHONUSERBASE_NOT" for k, _ in expected)
