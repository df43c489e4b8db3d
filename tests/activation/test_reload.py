"""Opt-in policy reload: a Kubernetes-style symlink swap replaces the policy; an invalid one
is reported and the old one stays."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.activation._helpers import PY, RUN, clean_env

POLICY = """version: 1
name: {name}
defaults: {{process: allow, file: allow, network: allow, import: allow}}
"""

# Prints the active policy name whenever it changes, until told to stop.
WATCH = """
import sys, time
from appshield import runtime
last = None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    name = runtime.active_shield().policy_name
    if name != last:
        print("NAME", name, flush=True)
        last = name
    if name == "third":
        break
    time.sleep(0.05)
"""


def _configmap(mount: Path, version: str, text: str) -> None:
    """What the kubelet does: a new timestamped folder, then an atomic `..data` swap."""
    folder = mount / f"..{version}"
    folder.mkdir()
    (folder / "policy.yaml").write_text(text)
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(folder.name)
    os.replace(tmp_link, mount / "..data")
    if not (mount / "policy.yaml").is_symlink():
        (mount / "policy.yaml").symlink_to("..data/policy.yaml")


def _next_line(proc: subprocess.Popen[str], prefix: str, seen: list[str]) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("app ended early: " + "".join(seen))
        seen.append(line)
        if line.startswith(prefix):
            return line.strip()


def test_symlink_swap_reloads_and_invalid_policy_is_rejected(tmp_path: Path) -> None:
    mount = tmp_path / "config"
    mount.mkdir()
    _configmap(mount, "v1", POLICY.format(name="first"))
    env = clean_env(APPSHIELD_RELOAD="1", APPSHIELD_RELOAD_INTERVAL="0.1")
    proc = subprocess.Popen(
        [*RUN, "--policy", str(mount / "policy.yaml"), "--", PY, "-c", WATCH],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert _next_line(proc, "NAME", seen) == "NAME first"
        _configmap(mount, "v2", "version: 1\nname: broken\nnot_a_key: 1\n")
        time.sleep(0.6)  # several polls: the broken policy must not replace the old one
        _configmap(mount, "v3", POLICY.format(name="third"))
        assert _next_line(proc, "NAME", seen) == "NAME third"
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "policy reload rejected" in err
    assert "policy reloaded" in err
    assert "broken" not in "".join(seen)


def test_reload_is_off_by_default(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(name="only"))
    code = "import threading; print(sorted(t.name for t in threading.enumerate()))"
    result = subprocess.run(
        [*RUN, "--policy", str(policy), "--", PY, "-c", code],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "appshield-reload" not in result.stdout
