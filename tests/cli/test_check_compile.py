"""`appshield check --compile`: a build step that writes the policy cache for images that set
PYTHONDONTWRITEBYTECODE=1 (where no start writes it), without weakening what the cache may be.

Real processes. Whether a start used the cache is read from the start itself: a policy read
from its cache never imports PyYAML (appshield/policy/cache.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appshield.policy import cache
from tests.activation._helpers import PY, RUN, allow_all_but, clean_env, run

CHECK = [PY, "-m", "appshield", "check"]
# Prints whether the start read YAML, then tries the import the test policies deny.
PROBE = (
    "import appshield.auto, sys\n"
    "print('yaml-loaded', 'yaml' in sys.modules)\n"
    "try:\n    import wave\nexcept PermissionError as exc:\n    print('denied', exc.rule_id)\n"
)
DENY_WAVE = "- {id: no-wave, category: import, action: deny, match: {module: wave}}"


def _env(bytecode: bool, **extra: str) -> dict[str, str]:
    env = clean_env(**extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _start(policy: Path, bytecode: bool, cwd: Path) -> list[str]:
    done = run([PY, "-c", PROBE], env=_env(bytecode, APPSHIELD_POLICY=str(policy)), cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")[:-1]


@pytest.mark.parametrize("bytecode", [False, True], ids=["dontwritebytecode", "bytecode"])
def test_compiled_cache_is_what_a_start_reads(tmp_path: Path, bytecode: bool) -> None:
    policy = allow_all_but(tmp_path, DENY_WAVE)
    where = Path(cache.cache_path(str(policy)))
    if not bytecode:
        # The control: such an image never gets a cache from starting, and reads YAML each time.
        assert _start(policy, bytecode, tmp_path) == ["yaml-loaded True", "denied no-wave"]
        assert _start(policy, bytecode, tmp_path) == ["yaml-loaded True", "denied no-wave"]
        assert not where.exists()
    done = run([*CHECK, "--compile", policy.name], env=_env(bytecode), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"{policy.name}: valid (1 rule; cache {where})"
    assert where.is_file() and not where.stat().st_mode & 0o022
    assert _start(policy, bytecode, tmp_path) == ["yaml-loaded False", "denied no-wave"]


def test_appshield_run_uses_the_compiled_cache(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path, DENY_WAVE)
    assert run([*CHECK, "--compile", str(policy)], env=_env(False)).returncode == 0
    code = PROBE.replace("import appshield.auto, sys\n", "import sys\n")
    done = run([*RUN, "--policy", str(policy), "--", PY, "-c", code], env=_env(False))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:-1] == ["yaml-loaded False", "denied no-wave"]


def test_a_policy_changed_after_compiling_is_read_from_yaml(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    assert run([*CHECK, "--compile", str(policy)], env=_env(False)).returncode == 0
    assert _start(policy, False, tmp_path) == ["yaml-loaded False"]
    allow_all_but(tmp_path, DENY_WAVE)  # the same file, now with a deny
    assert _start(policy, False, tmp_path) == ["yaml-loaded True", "denied no-wave"]


def test_invalid_policy_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefaults: {process: maybe}\n")
    done = run([*CHECK, "--compile", str(policy)], env=_env(False))
    assert done.returncode == 1
    assert done.stdout.startswith(f"{policy}:")
    assert not Path(cache.cache_path(str(policy))).exists()


def test_an_untrusted_cache_folder_is_an_error_not_a_cache(tmp_path: Path) -> None:
    """A `__pycache__` others may write could hold a forged cache: the build step fails
    instead of writing a file that no start would (or should) read."""
    policy = allow_all_but(tmp_path, DENY_WAVE)
    folder = tmp_path / "__pycache__"
    folder.mkdir()
    folder.chmod(0o777)
    done = run([*CHECK, "--compile", str(policy)], env=_env(False))
    assert done.returncode == 1
    assert "no policy cache written" in done.stdout and "writable by group or others" in done.stdout
    assert not Path(cache.cache_path(str(policy))).exists()
    assert _start(policy, False, tmp_path) == ["yaml-loaded True", "denied no-wave"]


def test_pycache_prefix_does_not_move_the_compiled_cache(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path, DENY_WAVE)
    prefix = tmp_path / "prefix"
    env = _env(False, PYTHONPYCACHEPREFIX=str(prefix))
    assert run([*CHECK, "--compile", str(policy)], env=env).returncode == 0
    assert Path(cache.cache_path(str(policy))).is_file()
    assert not prefix.exists() or not any(prefix.rglob("*.cache"))


def test_packs_are_checked_and_not_compiled(tmp_path: Path) -> None:
    done = run([*CHECK, "--compile", "appshield:baseline"], env=_env(False), cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "cache" not in done.stdout
