"""Activation by environment alone, sitecustomize chaining, failing closed, the kill switch."""

from __future__ import annotations

import os
import re
from pathlib import Path

from appshield.activation import BOOTSTRAP_DIR
from tests.activation._helpers import (
    PROBE,
    PY,
    RUN,
    allow_all_but,
    bootstrap_env,
    clean_env,
    policy_file,
    probe,
    run,
    stderr_lines,
)


def test_environment_alone_switches_the_shield_on(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    result = run([PY, "-c", PROBE], env=bootstrap_env(policy))
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout) == {
        "active": True,
        "locked": True,
        "policy": "activation-test",
        "source": "bootstrap",
    }
    assert result.stderr == ""


def _user_sitecustomize(folder: Path, log: Path) -> None:
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "from appshield import runtime\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write('user shielded=%s\\n' % (runtime.active_shield() is not None))\n"
    )


def test_existing_sitecustomize_runs_once_after_the_shield(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    log = tmp_path / "log.txt"
    _user_sitecustomize(tmp_path / "user", log)
    env = clean_env(PYTHONPATH=str(tmp_path / "user"))
    code = PROBE + "\nimport sitecustomize; print('NAME', sitecustomize.__file__)"
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code], env=env)
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["active"] is True
    # Both ran; the user's exactly once in the app, already shielded; it is *the* sitecustomize
    # module. (The `appshield run` launcher is a Python too: it ran it once, unshielded, before
    # exec'ing the app.)
    assert log.read_text().splitlines() == ["user shielded=False", "user shielded=True"]
    assert f"NAME {tmp_path / 'user' / 'sitecustomize.py'}" in result.stdout


def test_bootstrap_twice_on_the_path_does_not_recurse(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    log = tmp_path / "log.txt"
    _user_sitecustomize(tmp_path / "user", log)
    pythonpath = os.pathsep.join([BOOTSTRAP_DIR, BOOTSTRAP_DIR, str(tmp_path / "user")])
    env = bootstrap_env(policy, PYTHONPATH=pythonpath)
    result = run([PY, "-c", PROBE], env=env)
    assert result.returncode == 0, result.stderr
    assert log.read_text() == "user shielded=True\n"


def test_failing_user_sitecustomize_is_reported_like_site_does(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "sitecustomize.py").write_text("raise ValueError('boom')\n")
    env = bootstrap_env(policy, PYTHONPATH=f"{BOOTSTRAP_DIR}:{tmp_path / 'user'}")
    result = run([PY, "-c", PROBE], env=env)
    assert result.returncode == 0
    assert "Error in sitecustomize" in result.stderr and "ValueError: boom" in result.stderr
    assert probe(result.stdout)["active"] is True  # the app still runs shielded


def test_missing_policy_fails_closed_with_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = bootstrap_env(tmp_path / "deleted.yaml")
    result = run([PY, "-c", f"open({str(marker)!r}, 'w').close()"], env=env)
    assert result.returncode == 2
    assert not marker.exists()
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("appshield: refusing to run unshielded:")
    assert "deleted.yaml" in lines[0]


def test_invalid_policy_fails_closed_with_its_place(tmp_path: Path) -> None:
    policy = policy_file(
        tmp_path,
        """
        version: 1
        defaults: {process: allow, file: allow, network: allow, import: allow}
        surprise: true
    """,
    )
    result = run([PY, "-c", "print('ran')"], env=bootstrap_env(policy))
    assert result.returncode == 2
    assert "ran" not in result.stdout
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert re.search(rf"{re.escape(str(policy))}:\d+:\d+: ", lines[0])


def test_missing_dependency_fails_closed(tmp_path: Path) -> None:
    # Another interpreter state: appshield importable, but yaml is not (shadowed by a broken one).
    policy = allow_all_but(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "yaml.py").write_text("raise ImportError('yaml is broken here')\n")
    env = bootstrap_env(policy, PYTHONPATH=f"{BOOTSTRAP_DIR}:{broken}")
    result = run([PY, "-c", "print('ran')"], env=env)
    assert result.returncode == 2
    assert "ran" not in result.stdout
    assert len(stderr_lines(result.stderr)) == 1, result.stderr


def test_interpreter_without_appshield_fails_closed(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    # -s and a PYTHONHOME-free env are not enough to hide an editable install; instead ask for
    # a module name that cannot be imported by pointing the bootstrap at a copy of itself.
    copy = tmp_path / "boot"
    copy.mkdir()
    (copy / "sitecustomize.py").write_text(
        (Path(BOOTSTRAP_DIR) / "sitecustomize.py")
        .read_text()
        .replace("from appshield.activation", "from appshield_missing._activate")
    )
    env = clean_env(PYTHONPATH=str(copy), APPSHIELD_POLICY=str(policy))
    result = run([PY, "-c", "print('ran')"], env=env)
    assert result.returncode == 2
    assert "ran" not in result.stdout
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and "cannot import appshield" in lines[0]


def test_kill_switch(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    policy = allow_all_but(
        tmp_path,
        f"""
        - id: no-secret
          category: file
          action: deny
          match: {{path: "{secret}"}}
    """,
    )
    code = PROBE + f"\nimport appshield.auto\nprint(open({str(secret)!r}).read())"
    result = run([PY, "-c", code], env=bootstrap_env(policy, APPSHIELD_DISABLE="1"))
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["active"] is False
    assert "s3cret" in result.stdout
    assert stderr_lines(result.stderr) == [
        "appshield: disabled by APPSHIELD_DISABLE=1; nothing is checked"
    ]


def test_kill_switch_wins_over_a_broken_policy(tmp_path: Path) -> None:
    env = clean_env(APPSHIELD_DISABLE="1")
    result = run([*RUN, "--policy", str(tmp_path / "missing.yaml"), "--", PY, "-c", PROBE], env=env)
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["active"] is False


def test_kill_switch_is_read_only_at_start_up(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    code = (
        "import os; os.environ['APPSHIELD_DISABLE'] = '1'\n"
        "import importlib, appshield.auto\n" + PROBE
    )
    result = run([PY, "-c", code], env=bootstrap_env(policy))
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["active"] is True
