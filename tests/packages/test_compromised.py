"""A dependency turns malicious; its grants stop it, judged from the outside world.

Real wheels in a real venv (`_world.py`): the app uses `goodhttp` (granted the app's server),
`framework` (calls the app's view) and `evil` (a slug helper). `evil 2.0` also, at import
time and from a thread, reads the canary `~/.aws/credentials`, runs `sh` to drop a marker,
connects to an exfiltration listener, and makes `goodhttp` carry a request for it (the
confused deputy). The ordinary rules allow all of it (defaults allow): only the grants stand
between the app and the attack. A control run without the shield shows every attack lands.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.packages._world import RunResult, World

ALLOW_ALL = "version: 1\ndefaults: {process: allow, file: allow, network: allow, import: allow}\n"


def grants_policy(world: World, default: str = "deny") -> str:
    return ALLOW_ALL + (
        f"packages:\n  default: {default}\n  grants:\n"
        f"    goodhttp:\n"
        f"      network: [{{host: 127.0.0.1, port: {world.server.port}, operation: connect}}]\n"
        f"      import: [{{module: socket}}]\n"
        f"    framework: {{}}\n"
        f"    evil:\n"
        f"      import: [{{}}]\n"
    )


def app_result(run: RunResult) -> dict[str, str]:
    lines = [line for line in run.stdout.splitlines() if line.startswith("APP-RESULT ")]
    assert lines, (run.returncode, run.stdout, run.stderr)
    result: dict[str, str] = json.loads(lines[0][len("APP-RESULT ") :])
    return result


LEGIT = {
    "own_read": "app-data",
    "own_get": "200",
    "view": "req:app-data:200",
    "slug": "hello-world",
}


def test_control_without_the_shield_every_attack_lands(world: World) -> None:
    run = world.run(None)
    assert run.returncode == 0, run.stderr
    assert app_result(run) == LEGIT
    assert run.markers == ["import", "thread"]  # sh ran, twice
    assert sorted(run.exfiltrated) == [
        b"import:[default]\naws_secret_access_key=CANARY-42\n",
        b"thread:[default]\naws_secret_access_key=CANARY-42\n",
    ]
    paths = sorted(line.split(b" ")[1] for line in run.served)
    assert paths == [b"/app", b"/deputy-import", b"/deputy-thread", b"/view"]


def test_grants_block_every_evil_operation_and_name_it(world: World) -> None:
    run = world.run(grants_policy(world))
    assert run.returncode == 0, run.stderr
    # every legitimate operation works: the app's own, goodhttp's for the app, the view the
    # framework calls, the helper of evil the app uses
    assert app_result(run) == LEGIT
    # nothing of the attack reached the outside world
    assert run.markers == []
    assert run.exfiltrated == []
    paths = sorted(line.split(b" ")[1] for line in run.served)
    assert paths == [b"/app", b"/view"]
    # each attempt was reported, naming evil and its version
    records = [json.loads(line) for line in run.log]
    evil = [r for r in records if r.get("package") == "evil"]
    assert {r["package_version"] for r in evil} == {"2.0"}
    assert all(r["blocked"] and r["rule"] == "package:evil" for r in evil)
    seen = {(r["category"], r["target"].split()[0]) for r in evil}
    credentials = str(world.home / ".aws" / "credentials")
    assert ("file", credentials) in seen
    assert any(category == "process" for category, _ in seen)
    assert ("network", f"127.0.0.1:{world.exfil.port}") in seen
    # the deputy: goodhttp may connect to the app's server, but evil is on the stack
    assert ("network", f"127.0.0.1:{world.server.port}") in seen
    # nothing else was denied: not the app, not goodhttp, not the framework
    assert [r for r in records if r.get("package") != "evil"] == []


def test_monitor_mode_reports_and_lets_through(world: World) -> None:
    run = world.run(grants_policy(world).replace("version: 1\n", "version: 1\nmode: monitor\n"))
    assert run.returncode == 0, run.stderr
    assert app_result(run) == LEGIT
    assert run.markers == ["import", "thread"]
    records = [json.loads(line) for line in run.log]
    assert records and all(r["package"] == "evil" and not r["blocked"] for r in records)


def test_default_allow_leaves_unlisted_distributions_to_the_rules(world: World) -> None:
    # evil without a grant under `default: allow`: the ordinary rules (allow all) decide
    policy = grants_policy(world, "allow").replace("    evil:\n      import: [{}]\n", "")
    run = world.run(policy)
    assert run.returncode == 0, run.stderr
    assert run.markers == ["import", "thread"]


def test_version_specifier_the_new_release_loses_its_grant(world: World) -> None:
    generous = ALLOW_ALL + (
        "packages:\n  grants:\n"
        "    goodhttp: {network: [{}], import: [{}]}\n"
        "    framework: {}\n"
        "    evil: {version: '<2', process: [{}], file: [{}], network: [{}], import: [{}]}\n"
    )
    run = world.run(generous)
    assert run.returncode == 0, run.stderr
    assert app_result(run) == LEGIT
    assert run.markers == [] and run.exfiltrated == []
    records = [json.loads(line) for line in run.log]
    assert records and {(r["rule"], r["package"], r["package_version"]) for r in records} == {
        ("packages:default", "evil", "2.0")
    }


def test_policy_without_packages_section_is_unchanged(world: World, tmp_path: Path) -> None:
    run = world.run(ALLOW_ALL)
    assert run.returncode == 0, run.stderr
    assert run.markers == ["import", "thread"] and run.log == []
