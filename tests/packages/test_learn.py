"""`appshield learn` writes grants: on the fake app with evil 1.0 the learned policy passes
`check`, enforces the same workload with zero violations, and then blocks evil 2.0."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.packages._world import World
from tests.packages.test_compromised import LEGIT, app_result


@pytest.fixture
def evil_1(world: World) -> Iterator[World]:
    world.install("evil-1")
    try:
        yield world
    finally:
        world.install("evil-2")


def appshield(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(world.python), "-m", "appshield", *args],
        cwd=world.app,
        env=world.env(EVIL_MARKER_DIR=str(world.root)),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_learned_grants_enforce_the_workload_and_block_the_new_release(
    evil_1: World, tmp_path: Path
) -> None:
    world = evil_1
    out = tmp_path / "learned.yaml"
    done = appshield(
        world, "learn", "--packages", "--out", str(out), "--", str(world.python), "main.py"
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    grants = yaml.safe_load(text)["packages"]["grants"]
    assert set(grants) == {"goodhttp"}, text  # framework and evil 1.0 did nothing themselves
    assert grants["goodhttp"]["network"] == [
        {"host": "127.0.0.1", "port": world.server.port, "operation": "connect", "transport": "tcp"}
    ] or "127.0.0.1" in json.dumps(grants["goodhttp"]["network"]), text
    assert "# seen " in text and "from goodhttp" in text
    assert "# learned with goodhttp 1.0" in text

    check = appshield(world, "check", str(out))
    assert check.returncode == 0 and "warning" not in check.stdout, check.stdout

    same = world.run(text)
    assert same.returncode == 0, same.stderr
    assert app_result(same) == LEGIT
    assert same.log == []  # zero violations

    world.install("evil-2")
    attacked = world.run(text)
    assert attacked.returncode == 0, attacked.stderr
    assert app_result(attacked) == LEGIT
    assert attacked.markers == [] and attacked.exfiltrated == []
    records = [json.loads(line) for line in attacked.log]
    assert records and all(
        (r.get("package"), r.get("package_version"), r["blocked"]) == ("evil", "2.0", True)
        for r in records
    ), records
