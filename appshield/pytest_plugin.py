"""pytest plugin (entry point `pytest11: appshield`): enforce a policy while tests run.

Session-wide, from the command line or the ini file (a relative ini path is taken from the
ini file's folder):

    pytest --appshield-policy tests/appshield.yaml [--appshield-mode monitor]
    [pytest]
    appshield_policy = tests/appshield.yaml

For one test, a marker replaces the session policy (or sets one when there is none):

    @pytest.mark.appshield(policy="policies/offline.yaml")   # relative to the test file
    @pytest.mark.appshield(yaml="version: 1\\ndefaults: {...}\\nrules: [...]")
    @pytest.mark.appshield(defaults={"network": "deny", "process": "deny"}, rules=[
        {"id": "loopback", "category": "network", "action": "allow",
         "match": {"cidr": "127.0.0.0/8"}},
        {"id": "git", "category": "process", "action": "allow", "match": {"executable": "git"}},
    ])

With `rules=`, categories missing from `defaults=` allow everything.

A denied operation fails the phase (setup, call or teardown) it happened in, with a message
naming the rule, the operation and the calling line, even when the code under test caught the
`PermissionError` (or ran it in another thread): violations are collected through a listener
on the shield, not through the exception. Alerts do not fail; they become warnings. Without a
policy (no option, no ini value, no marker) the plugin does nothing at all.

Under a locked shield (`appshield run -- pytest`), the plugin does not install or replace
anything; a marker is then an error, since a locked policy cannot be swapped.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["AppshieldAlertWarning"]

_CATEGORIES = ("process", "file", "network", "import")


class AppshieldAlertWarning(UserWarning):
    """An operation matched an `alert` rule during a test: allowed, but worth a look."""


class _Collector:
    """Violations reported while a test phase runs (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def __call__(self, violation: Any) -> None:
        if getattr(violation, "shadow", False):
            return  # a shadow candidate's opinion (appshield.shadow): reported, never a failure
        with self._lock:
            self._items.append(violation)

    def take(self) -> list[Any]:
        with self._lock:
            items, self._items = self._items, []
        return items


class _State:
    def __init__(self) -> None:
        self.collector = _Collector()
        self.session_policy: Any = None  # Policy, when the plugin installed one
        self.installed = False  # the plugin owns the active shield
        self.saved: Any = None  # the session policy while a marker's policy is active
        self.marker_installed = False
        self.remove_listener: Any = None


_state = _State()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("appshield", "appshield: enforce a security policy in tests")
    group.addoption(
        "--appshield-policy",
        metavar="PATH",
        default=None,
        help="enforce this appshield policy for the whole session",
    )
    group.addoption(
        "--appshield-mode",
        choices=("enforce", "monitor"),
        default=None,
        help="override the policy's mode (monitor: report, never block)",
    )
    parser.addini("appshield_policy", "appshield policy enforced for the session", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "appshield(policy=PATH | yaml=TEXT | rules=[...], defaults={...}, mode=...): "
        "enforce this appshield policy during this test",
    )


def _session_policy_path(config: pytest.Config) -> str | None:
    option = config.getoption("--appshield-policy")
    if option:
        return os.path.abspath(str(option))
    ini = config.getini("appshield_policy")
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return os.path.join(str(base), str(ini))
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    path = _session_policy_path(session.config)
    if path is None:
        return
    from appshield.errors import PolicyError
    from appshield.policy import load_policy

    try:
        policy = load_policy(path)
    except (PolicyError, OSError) as exc:
        raise pytest.UsageError(f"appshield: invalid policy\n{exc}") from None
    _install(policy, session.config.getoption("--appshield-mode"))
    _state.session_policy = policy


def _install(policy: Any, mode: str | None) -> None:
    from appshield import runtime

    active = runtime.active_shield()
    if active is not None and active.locked:
        if active.policy.document != policy.document:
            raise pytest.UsageError(
                "appshield: a locked shield is already active (appshield run?);"
                " the plugin cannot replace its policy"
            )
        _attach(active)
        return
    try:
        runtime.install(policy, mode=mode)  # type: ignore[arg-type]
    except RuntimeError as exc:
        raise pytest.UsageError(str(exc)) from None
    _state.installed = True
    shield = runtime.active_shield()
    if shield is not None:
        _attach(shield)


def _attach(shield: Any) -> None:
    if _state.remove_listener is None:
        _state.remove_listener = shield.add_listener(_state.collector)


def _detach() -> None:
    if _state.remove_listener is not None:
        _state.remove_listener()
        _state.remove_listener = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    _detach()
    if _state.installed:
        from appshield import runtime

        runtime.uninstall()
        _state.installed = False


# ---------------------------------------------------------------------------------------------
# markers


def _marker_policy(item: pytest.Item, marker: pytest.Mark) -> Any:
    from appshield.policy import Policy, load_policy

    kwargs = dict(marker.kwargs)
    if marker.args:
        kwargs.setdefault("policy", marker.args[0])
    base = str(item.path.parent)
    if "policy" in kwargs:
        policy = load_policy(os.path.join(base, os.fspath(kwargs["policy"])))
    elif "yaml" in kwargs:
        policy = Policy.from_yaml(kwargs["yaml"])
    elif "rules" in kwargs or "defaults" in kwargs:
        defaults: dict[str, str] = dict.fromkeys(_CATEGORIES, "allow")
        defaults.update(kwargs.get("defaults") or {})
        data = {"version": 1, "name": f"marker:{item.name}", "defaults": defaults}
        data["rules"] = list(kwargs.get("rules") or [])
        policy = Policy.from_mapping(data, base_dir=base)
    else:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.appshield needs policy=, yaml= or rules="
        )
    from appshield.settings import STARTUP

    explicit = kwargs.get("mode") or item.config.getoption("--appshield-mode")
    return policy.with_mode(STARTUP.mode_for(explicit, policy.document.mode))


def _enter_marker(item: pytest.Item) -> None:
    marker = item.get_closest_marker("appshield")
    if marker is None:
        return
    from appshield import runtime
    from appshield.errors import PolicyError

    try:
        policy = _marker_policy(item, marker)
    except (PolicyError, OSError) as exc:
        pytest.fail(f"appshield marker: invalid policy\n{exc}", pytrace=False)
    active = runtime.active_shield()
    if active is not None and active.locked:
        pytest.fail(
            "appshield marker: a locked shield is active (appshield run?); its policy cannot"
            " be replaced for one test",
            pytrace=False,
        )
    if active is not None and _state.installed:
        _state.saved = active.policy
        active.swap_policy(policy)
        return
    if active is not None:
        pytest.fail("appshield marker: a shield installed by the tests is already active")
    runtime.install(policy, mode=policy.mode)
    _state.marker_installed = True
    shield = runtime.active_shield()
    if shield is not None:
        _attach(shield)


def _leave_marker() -> None:
    from appshield import runtime

    if _state.saved is not None:
        shield = runtime.active_shield()
        if shield is not None:
            shield.swap_policy(_state.saved)
        _state.saved = None
    if _state.marker_installed:
        _detach()
        runtime.uninstall()
        _state.marker_installed = False


# ---------------------------------------------------------------------------------------------
# turning violations into failures


def _describe(violation: Any) -> str:
    decision = violation.decision
    verdict = "blocked" if decision.blocked else f"{decision.action}, not blocked"
    op = violation.operation
    access = getattr(op, "access", None) or getattr(op, "operation", None)
    kind = f"{violation.category} {access}" if access else violation.category
    where = ""
    site = violation.callsite
    if site.file:
        where = f"\n      at {site.file}:{site.line} in {site.function}"
    during = getattr(violation, "during", None)
    attempted = f", while attempting {during}" if during else ""
    return (
        f"  - {kind}: {violation.api} {violation.target!r}{attempted}"
        f" -> rule {decision.rule_id!r} ({verdict}){where}"
    )


def _check(item: pytest.Item, when: str, failed: bool) -> None:
    violations = _state.collector.take()
    if not violations:
        return
    denies = [v for v in violations if v.decision.action == "deny"]
    alerts = [v for v in violations if v.decision.action != "deny"]
    for violation in alerts:
        warnings.warn(AppshieldAlertWarning(_describe(violation).strip()), stacklevel=1)
    if not denies:
        return
    count = f"{len(denies)} denied operation" + ("s" if len(denies) > 1 else "")
    phase = "in this test" if when == "call" else f"during {when}"
    header = f"appshield: {count} {phase} (policy {denies[0].policy_name!r}):"
    message = header + "\n" + "\n".join(_describe(v) for v in denies)
    if failed:  # the phase's own error is shown; the violations are the likely cause
        item.add_report_section(when, "appshield", message)
    else:
        pytest.fail(message, pytrace=False)


def _phase(item: pytest.Item, when: str) -> Iterator[None]:
    _state.collector.take()  # what happened between tests is not this test's
    try:
        yield
    except BaseException:
        _check(item, when, failed=True)
        raise
    _check(item, when, failed=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _enter_marker(item)
    return (yield from _phase(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _phase(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield from _phase(item, "teardown"))
    finally:
        _leave_marker()
