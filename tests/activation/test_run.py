"""`appshield run`: validation before start, the environment it sets, exit codes and signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appshield.activation import BOOTSTRAP_DIR
from tests.activation._helpers import (
    PROBE,
    PY,
    RUN,
    allow_all_but,
    clean_env,
    policy_file,
    probe,
    run,
    stderr_lines,
)


def test_shield_is_on_and_locked_in_the_command(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    code = PROBE + "\ntry:\n    runtime.uninstall()\nexcept RuntimeError:\n    print('LOCKED')\n"
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code])
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout) == {
        "active": True,
        "locked": True,
        "policy": "activation-test",
        "source": "bootstrap",
    }
    assert "LOCKED" in result.stdout


def test_environment_of_the_command(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    code = (
        "import os; print(os.environ['PYTHONPATH']); print(os.environ['APPSHIELD_POLICY']);"
        "print(os.environ.get('APPSHIELD_MODE'))"
    )
    env = clean_env(PYTHONPATH="/somewhere/else")
    result = run(
        [*RUN, "--policy", "policy.yaml", "--mode", "monitor", "--", PY, "-c", code],
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    pythonpath, policy_env, mode = result.stdout.splitlines()
    assert pythonpath == os.pathsep.join([BOOTSTRAP_DIR, "/somewhere/else"])
    assert policy_env == str(policy)  # made absolute
    assert mode == "monitor"


def test_exit_code_passes_through(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", "import sys; sys.exit(7)"])
    assert result.returncode == 7, result.stderr


def test_signal_passes_through(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code])
    assert result.returncode == -signal.SIGTERM, result.stderr


def test_signal_from_outside_reaches_the_app(tmp_path: Path) -> None:
    # exec, not a child: a supervisor's SIGTERM to the pid it started reaches the app itself.
    policy = allow_all_but(tmp_path)
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [*RUN, "--policy", str(policy), "--", PY, "-c", code],
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert int(proc.stdout.readline()) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.communicate()


def test_invalid_policy_stops_before_the_command(tmp_path: Path) -> None:
    policy = policy_file(
        tmp_path,
        """
        version: 1
        defaults: {process: allow, file: allow, network: allow, import: allow}
        rules:
          - id: bad
            category: network
            action: allow
            match: {port: 99999999}
    """,
    )
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w').close()"
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code])
    assert result.returncode == 2
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    lines = stderr_lines(result.stderr)
    assert lines and all(re.match(rf"{re.escape(str(policy))}:\d+:\d+: ", x) for x in lines)


def test_missing_policy_stops_before_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w').close()"
    result = run([*RUN, "--policy", str(tmp_path / "nope.yaml"), "--", PY, "-c", code])
    assert result.returncode == 2
    assert not marker.exists()
    assert len(stderr_lines(result.stderr)) == 1 and "Traceback" not in result.stderr


def test_command_not_found(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    result = run([*RUN, "--policy", str(policy), "--", "no-such-program-appshield"])
    assert result.returncode == 127
    assert "command not found" in result.stderr


def test_discovered_policy(tmp_path: Path) -> None:
    allow_all_but(tmp_path, name="appshield.yaml")
    (tmp_path / "sub").mkdir()
    result = run([*RUN, "--", PY, "-c", PROBE], cwd=tmp_path / "sub")
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["active"] is True


def test_policy_deleted_between_run_and_start_fails_closed(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    marker = tmp_path / "started"
    script = f"rm {policy} && exec {PY} -c \"open('{marker}', 'w').close()\""
    result = run([*RUN, "--policy", str(policy), "--", "/bin/sh", "-c", script])
    assert result.returncode == 2
    assert not marker.exists()
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("appshield: refusing to run unshielded:")
    assert str(policy) in lines[0]


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh")
def test_appshield_script_run(tmp_path: Path) -> None:
    """The installed `appshield` command registers `run` and `bootstrap-path`."""
    policy = allow_all_but(tmp_path)
    script = os.path.join(os.path.dirname(sys.executable), "appshield")
    result = run([script, "bootstrap-path"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == BOOTSTRAP_DIR
    result = run([script, "run", "--policy", str(policy), "--", PY, "-c", PROBE])
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["locked"] is True


def test_bootstrap_folder_holds_only_sitecustomize() -> None:
    names = {n for n in os.listdir(BOOTSTRAP_DIR) if n != "__pycache__"}
    assert names == {"sitecustomize.py"}


@pytest.mark.parametrize(
    ("file_mode", "env_mode", "flag", "expected"),
    [
        ("enforce", None, "monitor", "monitor"),  # --mode beats the file
        ("enforce", "monitor", None, "monitor"),  # APPSHIELD_MODE beats the file
        ("monitor", "monitor", "enforce", "enforce"),  # --mode beats APPSHIELD_MODE
    ],
)
def test_mode_precedence(
    tmp_path: Path, file_mode: str, env_mode: str | None, flag: str | None, expected: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nmode: {file_mode}\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    env = clean_env(**({"APPSHIELD_MODE": env_mode} if env_mode else {}))
    options = ["--mode", flag] if flag else []
    code = "from appshield import runtime; print('MODE', runtime.active_shield().policy.mode)"
    result = run([*RUN, "--policy", str(policy), *options, "--", PY, "-c", code], env=env)
    assert result.returncode == 0, result.stderr
    assert f"MODE {expected}" in result.stdout
