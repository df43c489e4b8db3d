"""Start a command under the learning shield and collect what it did.

The command runs as a child of `appshield learn` (not `exec`: the observations are read and
the policy written after it ends) in an environment where

    PYTHONPATH        = <the activation bootstrap folder> + the existing PYTHONPATH
    APPSHIELD_POLICY  = <folder>/learning-policy.yaml (`recorder.LEARNING_POLICY`)
    APPSHIELD_MODE    = monitor
    APPSHIELD_LEARN   = <folder>

so every Python process in the tree starts the shield through the sitecustomize bootstrap,
and the shield records to `<folder>/ops-<pid>.jsonl` instead of reporting.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from appshield.learn.recorder import LEARNING_POLICY
from appshield.learn.records import Observation, read_records

__all__ = ["LEARN_POLICY_NAME", "Recording", "learning_environment", "record"]

LEARN_POLICY_NAME = "learning-policy.yaml"


@dataclass
class Recording:
    returncode: int
    observations: list[Observation]


def _bootstrap_dir() -> str:
    from appshield._activate import BOOTSTRAP_DIR

    return BOOTSTRAP_DIR


def learning_environment(folder: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that makes every Python process record into `folder`."""
    env = dict(os.environ if base is None else base)
    for name in ("APPSHIELD_DISABLE", "APPSHIELD_LOG", "APPSHIELD_RELOAD"):
        env.pop(name, None)
    policy = os.path.join(folder, LEARN_POLICY_NAME)
    if not os.path.exists(policy):
        with open(policy, "w", encoding="utf-8") as handle:
            handle.write(LEARNING_POLICY)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = _bootstrap_dir() + (os.pathsep + existing if existing else "")
    env["APPSHIELD_POLICY"] = policy
    env["APPSHIELD_MODE"] = "monitor"
    env["APPSHIELD_LEARN"] = os.path.abspath(folder)
    return env


def record(command: Sequence[str], folder: str, *, cwd: str | None = None) -> Recording:
    """Run `command` to completion with recording on; its exit code and what it did.

    Ctrl-C goes to the command (same process group); `appshield learn` waits for it to end
    and still writes what was seen so far."""
    env = learning_environment(folder)
    child = subprocess.Popen(list(command), env=env, cwd=cwd)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        returncode = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return Recording(returncode, read_records(folder))
