"""Real processes for the activation tests: `appshield run`, the bootstrap, auto, OpenTelemetry."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from appshield._activate import BOOTSTRAP_DIR

PY = sys.executable
# `appshield run` through the module that implements it (the `appshield` script delegates to it).
RUN = [PY, "-m", "appshield", "run"]
TIMEOUT = 60

# Shows, from inside a process, whether and how it is shielded.
PROBE = """
import json, sys
from appshield import runtime, _activate
shield = runtime.active_shield()
act = _activate.activation()
print("PROBE " + json.dumps({
    "active": shield is not None,
    "locked": bool(shield and shield.locked),
    "policy": shield.policy_name if shield else None,
    "source": act.source if act else None,
}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any APPSHIELD_/PYTHONPATH/OTEL_ leftovers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "PYTEST_")) and k != "PYTHONPATH"
    }
    env.update(extra)
    return env


def policy_file(folder: Path, body: str, name: str = "policy.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def allow_all_but(folder: Path, rules: str = "", name: str = "policy.yaml") -> Path:
    """A policy allowing everything except the given rules (YAML list items, dedented)."""
    text = (
        "version: 1\nname: activation-test\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    if rules.strip():
        text += "rules:\n" + textwrap.indent(textwrap.dedent(rules).strip(), "  ") + "\n"
    path = folder / name
    path.write_text(text)
    return path


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bootstrap_env(policy: Path | str, **extra: str) -> dict[str, str]:
    """Activation by environment alone: the bootstrap folder on PYTHONPATH + APPSHIELD_POLICY."""
    return clean_env(**{"PYTHONPATH": BOOTSTRAP_DIR, "APPSHIELD_POLICY": str(policy), **extra})


def probe(out: str) -> dict[str, object]:
    import json

    for line in out.splitlines():
        if line.startswith("PROBE "):
            return dict(json.loads(line[len("PROBE ") :]))
    raise AssertionError(f"no PROBE line in output:\n{out}")


def stderr_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]
