"""The active shield: install, uninstall, and the one path every hook takes.

    hook -> Shield.enforce(operation, api) -> policy decision -> report (sinks) -> raise if blocked

Only one shield is active in a process. `install()` returns a `ShieldHandle`. The PEP 578
audit hook is added once per process (it cannot be removed); after `uninstall()` it finds no
active shield and returns at once.
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import time
from collections import deque
from types import FrameType

from appshield._threadstate import appshield_io, reporting_now, thread_state
from appshield.decision import Decision, Mode
from appshield.errors import PolicyViolation
from appshield.hooks import _deferred
from appshield.hooks import _gate as _gate_limits
from appshield.hooks.imports import scope_code as _scope_code
from appshield.operations import Operation
from appshield.patching import WRAPT_DIR, HookFamily, compiled_hook_module
from appshield.policy import Policy
from appshield.settings import STARTUP, Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NamedTuple

    from appshield.ports import Decider, Reporter
    from appshield.report import CallSite, Violation
    from appshield.telemetry import denied_exporters
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from _collections_abc import Mapping  # collections.abc's, without `collections`

    from appshield._records import NamedTuple

__all__ = [
    "Shield",
    "ShieldConfig",
    "ShieldHandle",
    "active_shield",
    "capture_callsite",
    "install",
    "uninstall",
]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_roots() -> tuple[list[str], list[str]]:
    """(standard library folders, site-packages folders), for telling the stdlib's frames from
    the code to blame. Taken from `os` and `site` when they can be: `sysconfig` parses the
    build configuration, several milliseconds of every shielded process's start-up."""
    site = sys.modules.get("site")
    getsitepackages = getattr(site, "getsitepackages", None)
    if getsitepackages is None:  # `python -S`, or an old virtualenv's site.py
        import sysconfig

        stdlib = [sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")]
        return stdlib, [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    return [os.path.dirname(os.__file__)], list(getsitepackages())


# The report's records (`CallSite`, `Violation`): a part (appshield/hooks/_deferred.py),
# loaded by the first violation (or the first call-site walk: learning, a scoped rule's
# report), not by every start. A violation it cannot be loaded for is decided as any other
# (blocked in enforce mode) and said on stderr (`Shield.act`, `report_undescribable`).
REPORT_PART = _deferred.Part("report", ("appshield.report",), ())
if not TYPE_CHECKING:
    _deferred.defer(globals(), REPORT_PART, {"appshield.report": ("CallSite", "Violation")})

_STDLIB_ROOTS, _SITE_ROOTS = _library_roots()
_STDLIB_DIRS = tuple(
    {p + os.sep for p in _STDLIB_ROOTS if p}
    | {os.path.realpath(p) + os.sep for p in _STDLIB_ROOTS if p}
)
_SITE_DIRS = tuple({p + os.sep for p in _SITE_ROOTS if p})


class ShieldConfig(NamedTuple):
    """Everything a shield runs with, frozen at install: the policy with its effective mode
    (arguments, the environment and the file merged: `appshield.settings.effective_mode`),
    and the start-up settings it was installed with."""

    policy: Policy
    locked: bool = False
    log_path: str | None = None
    settings: Settings = STARTUP
    # The candidate decided beside `policy`, monitor only (APPSHIELD_SHADOW_POLICY;
    # appshield.shadow), or None.
    shadow: Policy | None = None


def _is_own_frame(filename: str) -> bool:
    return filename.startswith((_PACKAGE_DIR, WRAPT_DIR)) or filename.startswith("<frozen")


# co_filename -> what a frame of that file is to the call-site walk: _OWN (appshield, wrapt,
# frozen bootstrap: skipped), _STDLIB (on the stack, blamed only when nothing else is) or
# _BLAMABLE. Filenames are the code objects' own strings, so a hit is one dict lookup.
_OWN, _STDLIB, _BLAMABLE = 0, 1, 2
_frame_kinds: dict[str, int] = {}


def _frame_kind(filename: str) -> int:
    # A str subclass (code can be compiled with one as its filename) could lie in its
    # methods: it is judged on its characters and never remembered (callers look up exact
    # str only).
    exact = type(filename) is str
    kind = _frame_kinds.get(filename) if exact else None
    if kind is None:
        text = filename if exact else str.__getitem__(filename, slice(None))
        if _is_own_frame(text):
            kind = _OWN
        elif text.startswith(_STDLIB_DIRS) and not text.startswith(_SITE_DIRS):
            kind = _STDLIB
        else:
            kind = _BLAMABLE
        if exact:
            if len(_frame_kinds) >= 4096:
                _frame_kinds.clear()
            _frame_kinds[filename] = kind
    return kind


def _blamed_code(frame: FrameType | None) -> tuple[FrameType, Any] | None:
    """The frame `capture_callsite` blames (the first blamable one, else the first that is not
    appshield's own) and its code. Stops there: the modules further out are not needed.

    Reading `f_code` raises the audit event `object.__getattr__` (3.11+), which costs more
    than the rest of a step, so it is read once per frame, and not at all for this module's
    own frames (the audit hook, `Shield.enforce`), known by their globals."""
    fallback: tuple[FrameType, Any] | None = None
    kinds = _frame_kinds
    own = globals()
    while frame is not None:
        if frame.f_globals is not own:
            code = frame.f_code
            filename = code.co_filename
            kind = kinds.get(filename) if type(filename) is str else None
            if kind is None:
                kind = _frame_kind(filename)
            if kind == _BLAMABLE:
                return frame, code
            if kind == _STDLIB and fallback is None:
                fallback = frame, code
        frame = frame.f_back
    return fallback


def capture_callsite(frame: FrameType | None = None) -> CallSite:
    """Walk the stack once: the modules on it and the first frame outside appshield and the
    standard library. Called only for violations and for scoped rules."""
    if frame is None:
        frame = sys._getframe(1)
    modules: list[str] = []
    blame: FrameType | None = None
    fallback: FrameType | None = None
    f: FrameType | None = frame
    kinds = _frame_kinds
    own = globals()  # this module's frames, known without reading f_code (see _blamed_code)
    while f is not None:
        if f.f_globals is own:
            f = f.f_back
            continue
        filename = f.f_code.co_filename
        kind = kinds.get(filename) if type(filename) is str else None
        if kind is None:
            kind = _frame_kind(filename)
        if kind != _OWN:
            name = f.f_globals.get("__name__")
            if isinstance(name, str) and (not modules or modules[-1] != name):
                modules.append(name)
            if fallback is None:
                fallback = f
            if blame is None and kind == _BLAMABLE:
                blame = f
        f = f.f_back
    chosen = blame or fallback
    if chosen is None:
        return CallSite(tuple(modules))
    return CallSite(
        tuple(modules), chosen.f_code.co_name, chosen.f_code.co_filename, chosen.f_lineno
    )


def _stack_of_caller() -> Sequence[str]:
    """The modules on the stack of the code that made the operation, by each frame's
    `__name__`: descriptive only (reports, learning), anyone can claim a name."""
    return capture_callsite(sys._getframe(1)).modules


def _scope_stack(frame: FrameType | None) -> list[str]:
    """The modules on the stack for `scope` rules: a frame counts as a module only when
    its code object is one the import system compiled from that module's own file (see
    `appshield.hooks.imports.scope_code`). appshield's own frames are never recorded, so they
    need no skipping; reading `f_code` is the cost, paid only for a scoped candidate."""
    modules: list[str] = []
    owner = _scope_code.module_of
    while frame is not None:
        name = owner(frame.f_code)
        if name is not None and (not modules or modules[-1] != name):
            modules.append(name)
        frame = frame.f_back
    return modules


def _scope_stack_of_caller() -> Sequence[str]:
    return _scope_stack(sys._getframe(1))


def _granting(compiled: Decider, policy: Policy) -> Decider:
    from appshield.attribution import DistributionIndex
    from appshield.granting import GrantingDecider
    from appshield.grants import GrantTable

    packages = policy.document.packages
    assert packages is not None
    # Every distribution's file list is read now, before any hook judges the reads (and
    # `importlib.metadata`'s own imports).
    with appshield_io():
        index = DistributionIndex.build(packages.first_party)
        table = GrantTable(packages, policy.mode)
        table.prepare(index.versions)
    return GrantingDecider(compiled, table, index, _is_own_frame)


def _attributor(policy: Policy) -> Any:
    from appshield.attribution import DistributionIndex
    from appshield.document import Packages
    from appshield.granting import GrantingDecider
    from appshield.grants import GrantTable

    with appshield_io():
        index = DistributionIndex.build()
    return GrantingDecider(
        policy.compiled, GrantTable(Packages("allow"), policy.mode), index, _is_own_frame
    )


def _plain(value: Any) -> str:
    # The exact str, bytes or int a network wrapper converted (see `thread_state.attempting`).
    if type(value) is bytes:
        return value.decode("ascii", "backslashreplace")
    return str(value) if type(value) in (str, int) else "?"


def _attempting_text(attempting: tuple[str, Any, Any]) -> str:
    """`socket.getaddrinfo '127.0.0.1:9999'`: the network call in progress on this thread."""
    api, host, port = attempting
    where = "" if host is None else _plain(host)
    if port is not None:
        where = f"[{where}]:{_plain(port)}" if ":" in where else f"{where}:{_plain(port)}"
    return f"{api} {where!r}"


_OTEL_BOOTSTRAP = "opentelemetry.instrumentation.auto_instrumentation"

# Only a blocked connection needs it, so it is a part (appshield/hooks/_deferred.py), loaded
# by the first one as appshield's own import (a plain import there, inside the gate, would be
# judged under the app's policy), not at every start. Its imports are all loaded by then
# (`_weakrefset` by `threading`, which the telemetry façade imports at start-up).
EXPORTERS_PART = _deferred.Part(
    "denied exporters", ("appshield.telemetry.denied_exporters",), ("_weakrefset",)
)
if not TYPE_CHECKING:
    denied_exporters = _deferred.defer_module(
        globals(), "denied_exporters", EXPORTERS_PART, "appshield.telemetry.denied_exporters"
    )


def _exporter_denied(frame: FrameType) -> None:
    """A blocked connection: if an OpenTelemetry exporter of the app made it, stop that
    exporter at exit instead of letting the SDK retry it for its whole timeout (see
    `appshield.telemetry.denied_exporters`)."""
    try:
        noted = denied_exporters.note_denied_connection(frame)
    except Exception:
        # The part could not load (a `sys.modules` entry someone else put there, the
        # recursion limit): the connection is refused and reported all the same; only the
        # exit-time courtesy of stopping the exporter that made it is lost.
        return
    if not noted:
        return
    global _exporters_stop_armed
    if denied_exporters.exiting():
        # The SDK's own exit flush is what is retrying: cut it short now.
        _stop_denied_exporters()
    elif not _exporters_stop_armed:
        _exporters_stop_armed = True
        # After the SDK registered its providers' shutdown, so this runs first.
        atexit.register(_stop_denied_exporters)


_exporters_stop_armed = False


def _stop_denied_exporters() -> None:
    # The exporters' shutdown is appshield's doing, not the app's: nothing in it is judged.
    with appshield_io():
        denied_exporters.stop_denied()


class Shield:
    """An installed policy: decides, reports and enforces. Hooks call `enforce`."""

    # `compiled` is a slot: the compiled audit hook reads it at its offset on every repeat
    # it answers (appshield/_c_audit_hook.c, `active_policy`). The rest stays in the
    # instance's dict.
    __slots__ = ("__dict__", "__weakref__", "compiled")

    def __init__(
        self,
        config: ShieldConfig,
        reporter: Reporter,
        modules_before_install: frozenset[str] | None = None,
        decider_for: Callable[[Decider], Decider] | None = None,
    ) -> None:
        """`reporter`: where violations go. `decider_for`: what decides, made from each
        compiled policy (at install and at every reload); None: the compiled policy itself."""
        self.config = config
        self.policy = config.policy
        self._decider_for = decider_for
        self.shadow_name = config.shadow.name if config.shadow is not None else None
        self.compiled: Decider = self._decider(config.policy.compiled)
        self.reporter = reporter
        self.locked = config.locked
        self.policy_name = config.policy.name
        # The modules already loaded when `install` began: the ones loaded after that were
        # loaded by appshield itself (its policy loader, `{tmp}`'s tempfile, its hooks and
        # sinks), not by the app, so install does not report them as the app's imports.
        # None: report every loaded module.
        self.modules_before_install = modules_before_install
        # Extra per-violation callbacks (the pytest plugin's per-test collector), after sinks.
        self._listeners: tuple[Callable[[Violation], None], ...] = ()
        self._drain_registered = False

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
        compiled = self._decider(policy.compiled)
        self.config = self.config._replace(policy=policy)
        self.policy, self.compiled, self.policy_name = policy, compiled, policy.name
        # The new policy's scopes name other modules, maybe: their code is found from now
        # (for modules already loaded, in their namespaces as they are at this moment).
        from appshield.hooks import imports

        imports.configure_scopes(compiled)

    def _decider(self, compiled: Decider) -> Decider:
        packages = self.policy.document.packages
        if packages is not None:
            # Per-distribution grants (docs/packages.md): the ordinary rules, then the grants
            # of whoever is answerable. Only a policy with a `packages` section pays for it.
            compiled = _granting(compiled, self.policy)
        decider = compiled if self._decider_for is None else self._decider_for(compiled)
        if getattr(decider, "wants_attribution", False):
            # Learning: which distributions were answerable for each operation (for the
            # grants it writes); the walk is the granting decider's, with no grants.
            decider.attach_attribution(_attributor(self.policy))  # type: ignore[attr-defined]
        shadow = self.config.shadow
        if shadow is not None:
            from appshield.shadow import ShadowDecider

            decider = ShadowDecider(decider, shadow.compiled, self._shadow_violation)
        # Scopes are decided from code the import system compiled (`_scope_stack`); a decider
        # that describes its callers gets the names their frames claim instead.
        self._stack_source = (
            _stack_of_caller if decider.describes_callers else _scope_stack_of_caller
        )
        return decider

    def decide(self, operation: Operation, api: str = "") -> Decision:
        """The pure decision for `operation` made through `api` (the stack is walked only
        when a scoped rule needs it). Raises whatever the engine raises: the gate treats that
        as a denial."""
        return self.compiled.decide(operation, self._stack_source, api)

    def act(self, operation: Operation, decision: Decision, api: str) -> None:
        """A violation: report it (folded when it repeats), then raise `PolicyViolation` when
        it is blocked. The report is made before raising, so it never depends on the exception
        reaching the app (libraries fold or retry a PermissionError)."""
        try:
            during = self._record(operation, decision, api, sys._getframe(1), False)
        except ImportError as exc:
            # No report could be made (the report part could not be loaded): never lost in
            # silence, said on stderr; the decision stands, as when a sink fails (blocked in
            # enforce mode, let through in monitor mode, which never blocks). Anything else
            # (what a signal handler raises meanwhile) reaches the app, as it always has.
            _say_unreported(1, exc)
            during = None
        if decision.blocked:
            if operation.category == "network":
                _exporter_denied(sys._getframe(1))
            raise PolicyViolation(
                decision.rule_id,
                operation.category,
                api,
                operation.target,
                decision.action,
                self.policy_name,
                during or "",
                decision.package or "",
                decision.package_version or "",
            )

    def _shadow_violation(self, operation: Operation, decision: Decision, api: str) -> None:
        """The shadow candidate would deny or alert on `operation` (appshield.shadow): report
        it, folded like any violation, and never raise."""
        self._record(operation, decision, api, sys._getframe(1), True)

    def _record(
        self, operation: Operation, decision: Decision, api: str, frame: FrameType, shadow: bool
    ) -> str | None:
        """Report a violation (or fold it as a repeat); returns the `during` text."""
        site: list[CallSite] = []
        state = thread_state
        attempting = state.attempting
        during = (
            _attempting_text(attempting)
            if attempting is not None and operation.category == "import"
            else None
        )
        if reporting_now(state):
            # A violation committed while this thread is inside the sinks (a signal handler,
            # an app logging handler): reported once the outer report is done.
            self._defer(operation, decision, api, capture_callsite(frame), None, shadow)
        else:
            limit = None
            try:
                # Set inside the `try`: an exception a signal handler raises between the two
                # (3.10 checks for signals before most instructions) must not leave it set.
                state.reporting = sys._getframe()
                # The sinks swallow their own errors: met at the recursion limit, a report
                # would be lost without a trace, so reporting runs with headroom (a violation
                # is not the hot path). Inside the `try`: an exception a signal handler
                # raises on the way in must not leave `reporting` set.
                limit = _gate_limits.raise_limit()
                if not self._folded(operation, decision, api, site, frame, shadow):
                    self._report(
                        operation,
                        decision,
                        api,
                        capture_callsite(frame),
                        during=during,
                        shadow=shadow,
                    )
                self._drain_deferred()
            finally:
                state.reporting = None
                if limit is not None:
                    _gate_limits.lower_limit(limit)
        return during

    def enforce(self, operation: Operation, api: str, callsite: CallSite | None = None) -> Decision:
        """Decide; report a violation; raise `PolicyViolation` if the operation is blocked.
        For callers that already run inside the gate (whose errors it handles). A given
        `callsite` describes the caller to the learning recorder only: scopes are decided
        from this thread's own frames (see `_scope_stack`)."""
        compiled = self.compiled
        if not compiled.describes_callers:
            decision = compiled.decide(operation, _scope_stack_of_caller, api)
        else:  # the names the frames claim, to describe the caller (learn)
            site: list[CallSite] = [callsite] if callsite is not None else []

            def stack() -> Sequence[str]:
                if not site:
                    site.append(capture_callsite(sys._getframe(1)))
                return site[0].modules

            decision = compiled.decide(operation, stack, api)
        if decision.action != "allow":
            self.act(operation, decision, api)
        return decision

    def report_undescribable(self, operation: Any, decision: Decision, api: str) -> None:
        """The gate could not describe or decide an operation: report it with its reason.
        Never folded: each one is worth seeing."""
        limit = _gate_limits.raise_limit()  # as in `act`: a report needs headroom
        try:
            self._report_undescribable(operation, decision, api)
        except ImportError as exc:
            # Nothing could make the report (the report part could not be loaded: a
            # `sys.modules` entry someone else put there): never lost in silence. The gate
            # refuses the operation all the same.
            _say_unreported(1, exc)
        finally:
            _gate_limits.lower_limit(limit)

    def _report_undescribable(self, operation: Any, decision: Decision, api: str) -> None:
        site = capture_callsite(sys._getframe(2))
        state = thread_state
        if reporting_now(state):
            self._defer(operation, decision, api, site, "undescribable")
            return
        try:
            state.reporting = sys._getframe()  # inside the `try`, as in `act`
            self._report(operation, decision, api, site, "undescribable")
            self._drain_deferred()
        finally:
            state.reporting = None

    # Reports waiting on one thread while its sinks are busy: far more than a signal storm
    # makes in one report; beyond it they are counted as dropped, never silently lost.
    _DEFERRED_LIMIT = 100_000
    deferred_dropped = 0

    def _defer(
        self,
        operation: Any,
        decision: Decision,
        api: str,
        site: CallSite,
        reason: str | None,
        shadow: bool = False,
    ) -> None:
        state = thread_state
        waiting = state.deferred
        if waiting is None:
            waiting = state.deferred = []
            self._drain_at_exit_once()
        if len(waiting) < self._DEFERRED_LIMIT:
            waiting.append((operation, decision, api, site, reason, shadow))
        else:
            Shield.deferred_dropped += 1

    def _drain_deferred(self, budget: int | None = 16) -> None:
        """Report up to `budget` waiting violations of this thread (all of them for None).
        Bounded, so that a signal handler committing violations faster than they can be
        reported does not keep the interrupted code from ever going on: the rest waits for
        this thread's next report, or the exit."""
        state = thread_state
        done = 0
        while state.deferred and (budget is None or done < budget):
            waiting = state.deferred
            take = len(waiting) if budget is None else min(len(waiting), budget - done)
            batch, state.deferred = waiting[:take], waiting[take:] or None
            for index, (operation, decision, api, site, reason, shadow) in enumerate(batch):
                try:
                    self._report(operation, decision, api, site, reason, shadow=shadow)
                except BaseException:
                    # Interrupted (a signal handler's exception): the rest waits again.
                    state.deferred = batch[index + 1 :] + (state.deferred or [])
                    raise
            done += take

    def report_existing(self, operation: Operation, api: str) -> Decision:
        """Report, never block, an operation that already took effect before the shield
        started (a denied module imported before install). Reported with blocked=False."""
        decision = self.compiled.decide(operation, self._existing_stack(), api)
        if decision.action != "allow":
            if decision.blocked:
                decision = decision._replace(blocked=False)
            self._report(operation, decision, api, CallSite(()))
        return decision

    def _existing_stack(self) -> tuple[str, ...] | None:
        """Who imported the modules loaded before install: unknown (None), except when
        OpenTelemetry's auto-instrumentation was already running. Its sitecustomize is then
        what started the shield (the `appshield` instrumentor, `opentelemetry-instrument`
        with APPSHIELD_POLICY), before any of the app's code ran: what it loaded is judged
        as imported by it (so `implicit:telemetry_exporter` applies)."""
        before = self.modules_before_install
        if before is not None and _OTEL_BOOTSTRAP in before:
            return (_OTEL_BOOTSTRAP,)
        return None

    def _folded(
        self,
        operation: Operation,
        decision: Decision,
        api: str,
        site: list[CallSite],
        frame: FrameType | None,
        shadow: bool = False,
    ) -> bool:
        """Was this violation a repeat that the reporter counted and folded (nothing more to
        report)? Asked before a report is built: an aggregated repeat needs only its key, so
        it costs a short stack walk (to the blamed frame, not the whole stack) and a counter,
        with no Violation, no timestamps and no telemetry. Listeners receive every violation
        in full, so with one registered nothing is folded here."""
        if self._listeners:
            return False
        fold = self.reporter.fold
        if site:
            function, file, line = site[0].function, site[0].file, site[0].line
        else:
            chosen = _blamed_code(frame)
            if chosen is None:
                function = file = line = None
            else:
                code = chosen[1]
                function, file, line = code.co_name, code.co_filename, chosen[0].f_lineno
        try:
            if shadow:  # a key of its own: the candidate's rule ids may be the enforced ones
                return fold(operation, decision, api, function, file, line, shadow=True) is True
            return fold(operation, decision, api, function, file, line) is True
        except Exception:  # a failing sink never reaches the app: report in full instead
            return False

    def _report(
        self,
        operation: Any,
        decision: Decision,
        api: str,
        site: CallSite,
        reason: str | None = None,
        during: str | None = None,
        shadow: bool = False,
    ) -> None:
        # Not an exemption: what the sinks (or a signal handler meanwhile) do on this thread
        # is checked like any other code; `thread_state.reporting` only defers the reports
        # of violations committed meanwhile (see Shield.act).
        violation = Violation(
            operation,
            decision,
            api,
            self.shadow_name if shadow and self.shadow_name is not None else self.policy_name,
            site,
            time.time_ns(),
            os.getpid(),
            reason,
            during,
            shadow,
        )
        # Queued before anything that can be interrupted: an exception a signal handler
        # raises inside the sinks must not cost the report. It stays queued until the
        # reporter has taken it, and goes out with the next report, or at exit.
        pending = thread_state.pending  # per thread: two threads never report one entry
        if pending is None:
            pending = thread_state.pending = deque()
        pending.append(violation)
        try:
            while pending:
                self.reporter.report(pending[0])
                pending.popleft()
        except Exception:  # a failing sink never reaches the app
            self._drain_at_exit_once()
        if self._listeners:
            self._notify(violation)

    def _drain_at_exit_once(self) -> None:
        if not self._drain_registered:
            self._drain_registered = True
            atexit.register(self._drain_pending)

    def _drain_pending(self) -> None:
        pending = thread_state.pending or deque()
        try:
            if thread_state.deferred and not reporting_now(thread_state):
                try:
                    thread_state.reporting = sys._getframe()
                    self._drain_deferred(None)
                finally:
                    thread_state.reporting = None
            while pending:
                self.reporter.report(pending[0])
                pending.popleft()
            self.reporter.flush_now()
        except Exception as exc:  # at exit: a failing sink must not change the exit status
            if pending:
                _say_unreported(len(pending), exc)

    def _notify(self, violation: Violation) -> None:
        for listener in self._listeners:
            try:
                listener(violation)
            except Exception:  # a failing listener never reaches the app
                pass


def _say_unreported(count: int, why: BaseException) -> None:
    """The last word on violations no sink could take (the telemetry could not be built):
    one line on the process's stderr, written with nothing that could import or lock, so
    that they are never lost in silence."""
    try:
        os.write(2, f"appshield: {count} violation(s) could not be reported: {why}\n".encode())
    except Exception:  # stderr closed: nothing is left to tell
        pass


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
# The hook table's rows in the order they were installed (observers first).
_families: tuple[HookFamily, ...] = ()
_recording: Any = None  # APPSHIELD_RECORD's recording of the active shield, flushed at uninstall
_install_lock = _thread.RLock()
_audit_hook_added = False
_audit_hook_kind: str | None = None  # "compiled" or "python", once added
# Set once an install has seen the audit hook answer (`_prove_audit_hook`).
_audit_hook_proven = False
# Raised once, at the first install, to prove the audit hook was added: CPython drops an
# audit hook silently when an earlier hook raises on `sys.addaudithook`.
PROBE_EVENT = "appshield.audit_hook_probe"


def active_shield() -> Shield | None:
    return _current


def _load(
    policy: Policy | str | os.PathLike[str] | Mapping[str, Any] | None, settings: Settings
) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if policy is None:
        from appshield.policy import discover_policy

        return Policy.from_file(discover_policy(environ=settings.environ))
    if isinstance(policy, Mapping):
        return Policy.from_mapping(policy)
    return Policy.from_file(policy)


def load_shadow(settings: Settings) -> Policy | None:
    """The shadow candidate named by APPSHIELD_SHADOW_POLICY, loaded and compiled (outside
    every hook), or None. Raises `PolicyError` (or OSError) as the enforced policy's loading
    does: a shadow that was asked for and cannot run stops the start-up, exit 2, rather than
    leave its owner believing a candidate is being watched."""
    path = settings.shadow_policy_path
    if path is None:
        return None
    candidate = Policy.from_file(path)
    # Decided as it would be if it were enforced: the file's own mode, else enforce (never
    # APPSHIELD_MODE, which belongs to the enforced policy). Reported in monitor mode.
    candidate = candidate.with_mode(candidate.document.mode or "enforce")
    candidate.compiled  # noqa: B018 - compile now, not inside the first hook
    return candidate


def install(
    policy: Policy | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    mode: Mode | None = None,
    locked: bool = False,
    modules_before: frozenset[str] | None = None,
    settings: Settings = STARTUP,
    reporter: Reporter | None = None,
    decider_for: Callable[[Decider], Decider] | None = None,
    observers: Sequence[HookFamily] = (),
) -> ShieldHandle:
    """Load the policy and start checking. Installing the same policy again returns the
    active handle; installing another while one is active raises RuntimeError.

    modules_before: the modules the app had imported, when the caller loaded `policy` itself
    (what loading imported is appshield's, not the app's). settings: what the environment
    said at start-up (`appshield.settings.STARTUP`; tests and embedders may pass others).
    reporter, decider_for: the shield's ports (appshield.ports); by default the telemetry
    sinks and the compiled policy (`appshield learn` hands in its recorder for both), the
    policy wrapped by a recording when `settings.record_path` (APPSHIELD_RECORD) is set.

    `settings.shadow_policy_path` (APPSHIELD_SHADOW_POLICY) is loaded here too, and decided
    beside the policy, monitor only (appshield.shadow); a candidate that cannot be loaded
    raises as an invalid policy does. An unknown APPSHIELD_LOG_FORMAT raises ValueError.
    observers: extra rows of the hook table, installed first and uninstalled last, with the
    hook families (`appshield learn` hands in its observer: appshield.learn.observer)."""
    global _current, _handle, _patcher, _families, _recording
    modules_before_install = frozenset(sys.modules) if modules_before is None else modules_before
    loaded = _load(policy, settings)
    effective = loaded.with_mode(settings.mode_for(mode, loaded.document.mode))
    shadow = None
    if not settings.disabled:
        settings.check_log_format()
        # Learning records and allows everything: a candidate beside it would judge nothing.
        if decider_for is None:
            shadow = load_shadow(settings)
    with _install_lock:
        if _current is not None:
            if _current.policy == effective and _handle is not None:
                return _handle
            raise RuntimeError(
                f"appshield: a shield with policy {_current.policy_name!r} is already active;"
                " uninstall it first"
            )
        if settings.disabled:
            sys.stderr.write("appshield: disabled by APPSHIELD_DISABLE=1; nothing is checked\n")
            config = ShieldConfig(effective, locked, None, settings)
            return ShieldHandle(Shield(config, _null_reporter()))
        from appshield import hooks
        from appshield.hooks import _gate
        from appshield.patching import Patcher
        from appshield.telemetry import make_reporter

        config = ShieldConfig(effective, locked, settings.log_path, settings, shadow)
        recording = None
        if reporter is None:
            if settings.record_path is not None and decider_for is None:
                recording = _recording_for(settings, effective)
                if recording is not None:
                    decider_for = recording.decider_for
            shield = Shield(
                config,
                make_reporter(config, settings.environ),
                modules_before_install,
                decider_for,
            )
        else:
            # A reporter of the caller's (learn's recorder) keeps every loaded module: what
            # appshield loaded (json, the YAML loader, ...) the app may load itself later.
            shield = Shield(config, reporter, None, decider_for)
        families = (*observers, *hooks.FAMILIES)
        patcher = Patcher(point for family in families for point in family.patches)
        _add_audit_hook(settings)
        _current = shield
        _gate.bind(shield)
        try:
            _prove_audit_hook()
            patcher.install()
            for family in families:
                family.on_install(shield)
        except BaseException:
            _current = None
            _gate.unbind()
            patcher.uninstall()
            raise
        _patcher = patcher
        _families = families
        _recording = recording
        _handle = ShieldHandle(shield)
        return _handle


def _recording_for(settings: Settings, policy: Policy) -> Any:
    """APPSHIELD_RECORD: every decision of this process appended to that file (see
    appshield.record); the call site comes from the same walk a report makes."""
    from appshield.record.writer import Recording

    try:
        return Recording(
            settings.record_path or "",
            capture_callsite,
            limit=settings.record_limit,
            policy=policy,
        )
    except Exception as exc:  # a recording that cannot start never stops the shield
        sys.stderr.write(f"appshield: not recording to {settings.record_path}: {exc}\n")
        return None


def uninstall() -> None:
    """Stop checking and restore every patched attribute. Refused for a locked shield."""
    global _current, _handle, _patcher, _families, _recording
    with _install_lock:
        shield = _current
        if shield is None:
            return
        if shield.locked:
            raise RuntimeError("appshield: this shield is locked and cannot be uninstalled")
        from appshield.hooks import _gate

        _current = None
        _gate.unbind()
        for family in reversed(_families):
            family.on_uninstall()
        if _patcher is not None:
            _patcher.uninstall()
        _patcher = None
        _families = ()
        _handle = None
        recording, _recording = _recording, None
        if recording is not None:
            recording.flush()  # never raises: a failing recording only stops itself
        try:
            shield.reporter.shutdown()
        except Exception:
            pass


class _NullReporter:
    """The kill switch's reporter: nothing is checked, so nothing is reported."""

    def report(self, violation: Violation) -> None:
        pass

    def fold(self, *args: Any) -> bool:
        return False

    def flush_now(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _null_reporter() -> Reporter:
    return _NullReporter()


def _add_audit_hook(settings: Settings) -> None:
    """Add appshield's audit hook, once per process: the compiled one
    (appshield/_c_audit_hook.c), which answers the events appshield does not decide, and
    the repeats the Python hook's checks before the gate would let through, without a
    Python call, and hands every other event to the Python hook; or, where it was not built
    or `APPSHIELD_PURE_PYTHON=1`, the Python hook itself. Both decide alike; the compiled
    one only answers sooner."""
    global _audit_hook_added, _audit_hook_kind
    if _audit_hook_added:
        return
    from appshield import hooks
    from appshield.hooks import _gate

    _audit_hook_added = True
    handlers = {**hooks.all_audit_handlers(), PROBE_EVENT: _probe_describes_nothing}
    fast_paths = {**hooks.all_fast_paths(), PROBE_EVENT: _probe_answered}
    hook = _gate.make_audit_hook(handlers, hooks.event_categories(), fast_paths)
    pure = settings.environ.get("APPSHIELD_PURE_PYTHON") == "1"
    compiled = None if pure else compiled_hook_module()
    if compiled is None:
        sys.addaudithook(hook)
        _audit_hook_kind = "python"
    else:
        compiled.install(hook, tuple(handlers), _compiled_hook_parts())
        _audit_hook_kind = "compiled"


def audit_hook_kind() -> str | None:
    """Which audit hook this process added: "compiled", "python", or None (none yet)."""
    return _audit_hook_kind


def _compiled_hook_parts() -> dict[str, Any]:
    """What the compiled hook reads to answer a repeat itself: the active shield's module
    (`_gate._shield`) and what the file, import and network families say of their memories
    and marks."""
    from appshield.hooks import _gate, file, imports, network, process

    return {
        "shield_type": Shield,
        "gate_globals": vars(_gate),
        "utf8_file_names": (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
        == ("utf-8", "surrogateescape"),
        **file.compiled_hook_parts(),
        **imports.compiled_hook_parts(),
        **network.compiled_hook_parts(),
        **process.compiled_hook_parts(),
    }


def _probe_describes_nothing(args: tuple[Any, ...]) -> None:
    return None


def _probe_answered(args: tuple[Any, ...]) -> bool:
    """The probe's check before the gate: note that the hook saw it. Anyone may raise the
    event; all it can do is append to a list of its own."""
    if len(args) == 1 and type(args[0]) is list:
        args[0].append(True)
    return True


def _prove_audit_hook() -> None:
    """Raise the probe event and see appshield's audit hook answer it; RuntimeError if it
    does not. CPython adds no hook, and says nothing, when an earlier one raises on
    `sys.addaudithook`: without this, the shield would start with its patches alone and no
    backstop, half on."""
    global _audit_hook_proven
    if _audit_hook_proven:
        return
    answered: list[bool] = []
    try:
        sys.audit(PROBE_EVENT, answered)
    except Exception:
        pass  # a later hook of the app's may refuse the event: ours has answered by then
    if not answered:
        raise RuntimeError(
            "appshield: the audit hook could not be added (an earlier audit hook refused it)"
        )
    _audit_hook_proven = True


def _after_fork_in_child() -> None:
    global _install_lock
    _install_lock = _thread.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)
