"""Attribution where the caller is hard to see (docs/packages.md, "Attribution"): code made by
`exec`, code compiled under the app's file name, threads a distribution starts (with its own
target or a builtin one), `atexit`; and the app's own threads stay the app's."""

from __future__ import annotations

import json

from tests.packages._world import World
from tests.packages.test_compromised import ALLOW_ALL, app_result


def policy(world: World) -> str:
    return ALLOW_ALL + "packages:\n  grants:\n    sneaky:\n      import: [{}]\n"


def test_control_without_the_shield(world: World) -> None:
    run = world.run(None, ["edges.py"])
    assert run.returncode == 0, run.stderr
    result = app_result(run)
    assert result["exec"] == result["disguised"] == result["app_thread"] == "done"
    assert result["after_app"] == result["connect_after_app"] == "done"
    assert "CANARY-42" in result["thread_own_result"]
    assert run.markers == ["app_builtin", "at_exit", "thread_builtin"]


def test_every_hiding_place_is_still_sneakys(world: World) -> None:
    run = world.run(policy(world), ["edges.py"])
    assert run.returncode == 0, run.stderr
    result = app_result(run)
    assert result["exec"] == "sneaky"  # exec'd code: its caller answers
    assert result["disguised"] == "sneaky"  # a borrowed file name proves nothing
    assert result["thread_own_result"] == "PolicyViolation"  # its thread, its function
    assert result["app_thread"] == "done"  # the app's thread, the app's function
    # the app's repeats of an allowed open are let through early; sneaky's is not
    assert result["after_app"] == "sneaky"
    assert result["connect_after_app"] == "sneaky"
    # a builtin target in sneaky's thread: sneaky started it; in the app's: the app did
    assert run.markers == ["app_builtin"]
    records = [json.loads(line) for line in run.log]
    assert records and {(r["package"], r["package_version"]) for r in records} == {
        ("sneaky", "1.0")
    }
    # the atexit callback is sneaky's own function: blocked at exit as well
    assert any(r["category"] == "file" and r["code"]["function"] == "leave" for r in records)
