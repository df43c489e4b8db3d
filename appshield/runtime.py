"""The active shield: install, uninstall, and the one path every hook takes.

    hook -> Shield.enforce(operation, api) -> policy decision -> report (sinks) -> raise if blocked

Only one shield is active in a process. `install()` returns a `ShieldHandle`. The PEP 578
audit hook is added once per process (it cannot be removed); after `uninstall()` it finds no
active shield and returns at once.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from appshield.decision import Decision, Mode
from appshield.errors import PolicyViolation
from appshield.hooks._state import thread_state
from appshield.operations import Operation
from appshield.policy import Policy
from appshield.report import CallSite, Violation

__all__ = [
    "STARTUP_ENVIRON",
    "Shield",
    "ShieldConfig",
    "ShieldHandle",
    "active_shield",
    "capture_callsite",
    "install",
    "uninstall",
]

# Read once, when appshield is first imported: changing these later changes nothing.
STARTUP_ENVIRON: Mapping[str, str] = {
    k: v for k, v in os.environ.items() if k.startswith(("APPSHIELD_", "OTEL_")) or k == "PATH"
}
KILL_SWITCH = STARTUP_ENVIRON.get("APPSHIELD_DISABLE", "") not in ("", "0")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_WRAPT_DIR = os.path.dirname(os.path.abspath(__import__("wrapt").__file__))
_STDLIB_ROOTS = [p for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")) if p]
_STDLIB_DIRS = tuple(
    {p + os.sep for p in _STDLIB_ROOTS} | {os.path.realpath(p) + os.sep for p in _STDLIB_ROOTS}
)
_SITE_DIRS = tuple(
    p + os.sep for p in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")} if p
)


@dataclass(frozen=True)
class ShieldConfig:
    """Everything a shield runs with, frozen at install: CLI flags, the file and the
    environment have already been merged (see `resolve_mode`)."""

    policy: Policy
    locked: bool = False
    log_path: str | None = None


def resolve_mode(argument: str | None, environ: Mapping[str, str], policy: Policy) -> Mode:
    """install(mode=) / --mode > APPSHIELD_MODE > the file's mode > enforce."""
    for candidate in (argument, environ.get("APPSHIELD_MODE") or None):
        if candidate is not None:
            if candidate not in ("enforce", "monitor"):
                raise ValueError(f"mode must be 'enforce' or 'monitor', not {candidate!r}")
            return candidate  # type: ignore[return-value]
    return policy.document.mode or "enforce"


def _is_own_frame(filename: str) -> bool:
    return filename.startswith((_PACKAGE_DIR, _WRAPT_DIR)) or filename.startswith("<frozen")


def capture_callsite(frame: FrameType | None = None) -> CallSite:
    """Walk the stack once: the modules on it and the first frame outside appshield and the
    standard library. Called only for violations and for scoped rules."""
    if frame is None:
        frame = sys._getframe(1)
    modules: list[str] = []
    blame: FrameType | None = None
    fallback: FrameType | None = None
    f: FrameType | None = frame
    while f is not None:
        filename = f.f_code.co_filename
        if not _is_own_frame(filename):
            name = f.f_globals.get("__name__")
            if isinstance(name, str) and (not modules or modules[-1] != name):
                modules.append(name)
            if fallback is None:
                fallback = f
            if blame is None and (
                not filename.startswith(_STDLIB_DIRS) or filename.startswith(_SITE_DIRS)
            ):
                blame = f
        f = f.f_back
    chosen = blame or fallback
    if chosen is None:
        return CallSite(tuple(modules))
    return CallSite(
        tuple(modules), chosen.f_code.co_name, chosen.f_code.co_filename, chosen.f_lineno
    )


class Shield:
    """An installed policy: decides, reports and enforces. Hooks call `enforce`."""

    def __init__(self, config: ShieldConfig, reporter: Any) -> None:
        self.config = config
        self.policy = config.policy
        self.compiled = config.policy.compiled
        self.reporter = reporter
        self.locked = config.locked
        self.policy_name = config.policy.name
        # Extra per-violation callbacks (the pytest plugin's per-test collector), after sinks.
        self._listeners: tuple[Callable[[Violation], None], ...] = ()

    def add_listener(self, listener: Callable[[Violation], None]) -> Callable[[], None]:
        """Call `listener(violation)` for every violation, after the sinks; a failing
        listener never reaches the app. Returns a function that removes it."""
        self._listeners = (*self._listeners, listener)

        def remove() -> None:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

        return remove

    def swap_policy(self, policy: Policy) -> None:
        """Replace the policy for every thread at once (policy reload). The new policy is
        compiled before the switch, so no hook ever sees a half-made one; the config keeps
        its lock and log settings."""
        compiled = policy.compiled
        self.config = ShieldConfig(policy, self.config.locked, self.config.log_path)
        self.policy, self.compiled, self.policy_name = policy, compiled, policy.name

    def enforce(self, operation: Operation, api: str, callsite: CallSite | None = None) -> Decision:
        """Decide; report a violation; raise `PolicyViolation` if the operation is blocked.

        The report is made before raising, so it never depends on the exception reaching the
        app (libraries fold or retry a PermissionError)."""
        site: list[CallSite] = [callsite] if callsite is not None else []

        def stack() -> Sequence[str]:
            if not site:
                site.append(capture_callsite(sys._getframe(1)))
            return site[0].modules

        decision = self.compiled.decide(operation, stack)
        if decision.action != "allow":
            if not site:
                site.append(capture_callsite(sys._getframe(1)))
            self._report(operation, decision, api, site[0])
            if decision.blocked:
                raise PolicyViolation(
                    decision.rule_id,
                    operation.category,
                    api,
                    operation.target,
                    decision.action,
                    self.policy_name,
                )
        return decision

    def report_existing(self, operation: Operation, api: str) -> Decision:
        """Report, never block, an operation that already took effect before the shield
        started (a denied module imported before install). Reported with blocked=False."""
        decision = self.compiled.decide(operation, None)
        if decision.action != "allow":
            if decision.blocked:
                decision = Decision(decision.action, decision.rule_id, False, decision.mode)
            self._report(operation, decision, api, CallSite(()))
        return decision

    def _report(self, operation: Operation, decision: Decision, api: str, site: CallSite) -> None:
        violation = Violation(
            operation, decision, api, self.policy_name, site, time.time_ns(), os.getpid()
        )
        state = thread_state
        previous = state.busy
        state.busy = True
        try:
            self.reporter.report(violation)
        except Exception:  # a failing sink never reaches the app
            pass
        finally:
            state.busy = previous
        if self._listeners:
            self._notify(violation)

    def _notify(self, violation: Violation) -> None:
        state = thread_state
        previous = state.busy
        state.busy = True
        try:
            for listener in self._listeners:
                try:
                    listener(violation)
                except Exception:  # a failing listener never reaches the app
                    pass
        finally:
            state.busy = previous


class ShieldHandle:
    """What `install()` returns: the active policy, and a way out (unless locked)."""

    def __init__(self, shield: Shield) -> None:
        self._shield = shield

    @property
    def policy(self) -> Policy:
        return self._shield.policy

    @property
    def mode(self) -> Mode:
        return self._shield.policy.mode

    @property
    def locked(self) -> bool:
        return self._shield.locked

    @property
    def active(self) -> bool:
        return _current is self._shield

    def uninstall(self) -> None:
        if self.active:
            uninstall()

    def __enter__(self) -> ShieldHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<ShieldHandle {self._shield.policy_name!r} mode={self.mode} {state}>"


_current: Shield | None = None
_handle: ShieldHandle | None = None
_patcher: Any = None
_install_lock = threading.RLock()
_audit_hook_added = False


def active_shield() -> Shield | None:
    return _current


def _load(policy: Policy | str | os.PathLike[str] | Mapping[str, Any] | None) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if policy is None:
        from appshield.discovery import discover_policy

        return Policy.from_file(discover_policy(environ=STARTUP_ENVIRON))
    if isinstance(policy, Mapping):
        return Policy.from_mapping(policy)
    return Policy.from_file(policy)


def install(
    policy: Policy | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    mode: Mode | None = None,
    locked: bool = False,
) -> ShieldHandle:
    """Load the policy and start checking. Installing the same policy again returns the
    active handle; installing another while one is active raises RuntimeError."""
    global _current, _handle, _patcher
    loaded = _load(policy)
    effective = loaded.with_mode(resolve_mode(mode, STARTUP_ENVIRON, loaded))
    with _install_lock:
        if _current is not None:
            if _current.policy == effective and _handle is not None:
                return _handle
            raise RuntimeError(
                f"appshield: a shield with policy {_current.policy_name!r} is already active;"
                " uninstall it first"
            )
        if KILL_SWITCH:
            sys.stderr.write("appshield: disabled by APPSHIELD_DISABLE=1; nothing is checked\n")
            return ShieldHandle(Shield(ShieldConfig(effective, locked), _null_reporter()))
        from appshield import hooks
        from appshield.hooks._patching import Patcher
        from appshield.telemetry import make_reporter

        config = ShieldConfig(effective, locked, STARTUP_ENVIRON.get("APPSHIELD_LOG"))
        recorder = _learning_recorder(config)
        shield = Shield(config, recorder or make_reporter(config, STARTUP_ENVIRON))
        if recorder is not None:
            recorder.watch(shield)  # every decision, not only the reported ones
        patcher = Patcher(hooks.all_patch_points())
        _add_audit_hook(hooks.all_audit_handlers())
        _current = shield
        try:
            patcher.install()
            for module in hooks.CATEGORY_MODULES:
                on_install = getattr(module, "on_install", None)
                if on_install is not None:
                    on_install(shield)
        except BaseException:
            _current = None
            patcher.uninstall()
            raise
        _patcher = patcher
        _handle = ShieldHandle(shield)
        return _handle


def uninstall() -> None:
    """Stop checking and restore every patched attribute. Refused for a locked shield."""
    global _current, _handle, _patcher
    with _install_lock:
        shield = _current
        if shield is None:
            return
        if shield.locked:
            raise RuntimeError("appshield: this shield is locked and cannot be uninstalled")
        from appshield import hooks

        _current = None
        for module in hooks.CATEGORY_MODULES:
            on_uninstall = getattr(module, "on_uninstall", None)
            if on_uninstall is not None:
                on_uninstall()
        if _patcher is not None:
            _patcher.uninstall()
        _patcher = None
        _handle = None
        try:
            shield.reporter.shutdown()
        except Exception:
            pass


def _learning_recorder(config: ShieldConfig) -> Any:
    """`appshield learn`: with APPSHIELD_LEARN set and a policy in monitor mode, the learning
    recorder replaces the telemetry sinks and takes over the decisions (it records and allows
    every operation; see appshield.learn.recorder). Read once here, at install; a shield
    without it pays nothing."""
    folder = STARTUP_ENVIRON.get("APPSHIELD_LEARN")
    if not folder or config.policy.mode != "monitor":
        return None
    from appshield.learn.recorder import Recorder

    return Recorder(folder)


def _null_reporter() -> Any:
    class _Null:
        def report(self, violation: Violation) -> None:
            pass

        def shutdown(self) -> None:
            pass

    return _Null()


def _add_audit_hook(handlers: Mapping[str, Callable[[tuple[Any, ...]], Any]]) -> None:
    global _audit_hook_added
    if _audit_hook_added:
        return
    _audit_hook_added = True
    sys.addaudithook(_make_audit_hook(dict(handlers)))


def _make_audit_hook(handlers: dict[str, Callable[[tuple[Any, ...]], Any]]) -> Callable[..., None]:
    # Everything the hook uses is bound here, so it keeps working while the interpreter
    # tears modules down at shutdown, and it can never recurse into itself (busy flag).
    get_handler = handlers.get
    state = thread_state
    this_module = sys.modules[__name__]

    def appshield_audit_hook(event: str, args: tuple[Any, ...]) -> None:
        handler = get_handler(event)
        if handler is None:
            return
        shield = this_module._current
        if shield is None or state.busy:
            return
        expected = state.expect
        if expected is not None and expected[0] == event and args and expected[1] == args[0]:
            state.expect = None  # the wrapt layer already decided this very call
            return
        state.busy = True
        try:
            described = handler(args)
        except Exception:
            described = None
        finally:
            state.busy = False
        if described is not None:
            operation, api = described
            shield.enforce(operation, api)

    return appshield_audit_hook


def _after_fork_in_child() -> None:
    global _install_lock
    _install_lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)
