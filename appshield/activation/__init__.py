"""Start-up logic shared by every zero-code way in: the sitecustomize bootstrap,
`import appshield.auto`, the OpenTelemetry instrumentor (and, for its checks, `appshield run`).

    environment -> policy path -> install(locked=True) -> (optional) reload watcher

Failing closed: a shield that was asked for and cannot start ends the process with exit code 2
and one line on stderr. `os._exit` is used on purpose: `site` catches `Exception` around
sitecustomize, auto-instrumentation loaders catch and log, and an app can catch `SystemExit`;
none of them can catch `os._exit`.

Activation is idempotent within a process: the first way in wins and the others are no-ops,
so `appshield run` + `opentelemetry-instrument` + `import appshield.auto` install once.

The activation facts it keeps (`activation()`) are what the process describer compares a
Python child with (`appshield._proc_children`, `implicit:unshielded_children`).
"""

from __future__ import annotations

import gc as _gc
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NamedTuple, NoReturn

    from appshield._proc_children import BOOTSTRAP_DIR
    from appshield.runtime import ShieldHandle
    from appshield.settings import Settings
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

# `appshield._proc_children.ENV_SOURCES`, restated (tests/activation/test_startup_modules.py
# checks they agree): `import appshield.auto` needs neither that module nor `_inherit`, which
# only the ways in that travel through the environment use (about 1.6 M instructions of every
# such start). They are imported before install when needed: after it, an import is judged.
ENV_SOURCES = frozenset({"bootstrap", "opentelemetry"})


def __getattr__(name: str) -> Any:
    if name == "BOOTSTRAP_DIR":  # for `appshield learn` and the tests, not the start-up
        from appshield._proc_children import BOOTSTRAP_DIR

        return BOOTSTRAP_DIR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BOOTSTRAP_DIR",
    "Activation",
    "activate",
    "activation",
    "chain_sitecustomize",
    "fail_closed",
    "policy_replaced",
]


class Activation(NamedTuple):
    """How and with what the shield of this process was switched on.

    source: "bootstrap", "opentelemetry", "auto" or "disabled" (kill switch).
    policy_env / mode_env: APPSHIELD_POLICY / APPSHIELD_MODE as they were at start-up; a
        child must see the same values to carry the same shield.
    policy_path: the policy file that was loaded (None under the kill switch).
    identity: what this process passes to its children in APPSHIELD_IDENTITY (ways in that
        travel through the environment only); a child must see exactly this value.
    """

    source: str
    policy_env: str | None
    mode_env: str | None
    policy_path: str | None
    handle: ShieldHandle | None = None
    identity: str | None = None  # APPSHIELD_IDENTITY as this process passes it on


_activation: Activation | None = None


def activation() -> Activation | None:
    """The activation of this process, or None when no zero-code way in was used."""
    return _activation


def fail_closed(reason: str) -> NoReturn:
    """End the process now: exit code 2, one line on stderr. Never returns."""
    line = " ".join(reason.split("\n")[0].split())
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        sys.stderr.write(f"appshield: refusing to run unshielded: {line}\n")
        sys.stderr.flush()
    except Exception:
        os.write(2, f"appshield: refusing to run unshielded: {line}\n".encode(errors="replace"))
    os._exit(2)


def _describe(exc: BaseException) -> str:
    from appshield.errors import PolicyError

    if isinstance(exc, PolicyError) and exc.problems:
        more = len(exc.problems) - 1
        first = str(exc.problems[0])
        return first + (f" (and {more} more; see `appshield check`)" if more else "")
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if isinstance(exc, ImportError) else text


def activate(source: str, policy: str | os.PathLike[str] | None = None) -> ShieldHandle | None:
    """Switch the shield on, locked, or end the process (exit 2) if it cannot start.

    The first call in a process decides; later calls return the same handle. Under the kill
    switch nothing is loaded or patched and one line says so (once).
    """
    if _activation is not None:
        return _activation.handle
    # The collector waits while the shield starts: it would walk the same young objects
    # again and again as appshield's modules and the policy are built (about 1.4 M
    # instructions of a start). It is switched back on at the end, as the app left it, and
    # catches up at its next allocation; what it would have found, it finds then. (Switched
    # off inside the `try`: an exception raised before it, by a signal handler, leaves the
    # collector as it was.)
    collecting = _gc.isenabled()
    try:
        _gc.disable()
        return _activate(source, policy)
    finally:
        if collecting:
            _gc.enable()


def _activate(source: str, policy: str | os.PathLike[str] | None) -> ShieldHandle | None:
    global _activation
    try:
        _import_importlib()
        from appshield import runtime
        from appshield.settings import STARTUP as settings

        if settings.disabled:
            sys.stderr.write("appshield: disabled by APPSHIELD_DISABLE=1; nothing is checked\n")
            _activation = Activation("disabled", None, None, None)
            return None
        path = _policy_path(policy, settings.environ)
        before = frozenset(sys.modules)
        passed = None
        if source in ENV_SOURCES:
            from appshield import _inherit

            passed = settings.inherited
        parent = None if passed is None else _inherit.decode(passed)
        if parent is not None:
            from appshield.policy import variables

            variables.freeze(dict(parent.variables))
        loaded = _parents_policy(path, settings, parent)
        recorder = _learning_recorder(settings, loaded.mode)
        if recorder is None:
            handle = runtime.install(loaded, locked=True, modules_before=before, settings=settings)
        else:
            handle = runtime.install(
                loaded,
                locked=True,
                settings=settings,
                reporter=recorder,
                decider_for=recorder.decider_for,
                observers=recorder.observers(),
            )
        identity = None
        if source in ENV_SOURCES:
            identity = passed if passed is not None else _identity(handle.policy)
            os.environ[_inherit.VARIABLE] = identity  # children inherit it
            if parent is None:
                # The root's values are frozen too: a reload expands the same folders.
                from appshield.policy import variables

                variables.freeze(variables.expanded())
        _activation = Activation(
            source,
            settings.policy_path,
            settings.mode,
            path,
            handle,
            identity,
        )
        if settings.reload:
            from appshield.activation.reload import start_watcher

            start_watcher(path, settings.reload_interval, policy_replaced, settings)
        return handle
    except Exception as exc:  # any failure means no shield: stop here
        fail_closed(_describe(exc))


def _learning_recorder(settings: Settings, mode: str) -> Any:
    """`appshield learn`: with APPSHIELD_LEARN set and a policy in monitor mode, the learning
    recorder is the shield's reporter and makes its decider (it records and allows every
    operation; see appshield.learn.recorder)."""
    if settings.learn_folder is None or mode != "monitor":
        return None
    from appshield.learn.recorder import Recorder

    return Recorder(settings.learn_folder)


def _parents_policy(path: str, settings: Settings, parent: Any) -> Any:
    """The policy at `path` with its effective mode; for a child, exactly its parent's.

    A cache is only a speed-up: when the cached copy is not what the parent enforces, the
    YAML is read again (a forged or stale cache changes nothing); when that is not it either,
    this is another policy, and the process does not start."""
    from appshield.policy import Policy

    def effective(use_cache: bool) -> Any:
        policy = Policy.from_file(path, use_cache=use_cache)
        return policy.with_mode(settings.mode_for(None, policy.document.mode))

    policy = effective(True)
    if parent is None or policy.identity == parent.digest:
        return policy
    policy = effective(False)
    if policy.identity != parent.digest:
        raise ValueError(
            f"the policy {path} (with its variables) is not the one the parent process"
            " enforces; a child runs with exactly its parent's policy"
        )
    return policy


def policy_replaced(policy: Any) -> None:
    """A reload swapped the policy: children from now on must carry the new one (with the
    same frozen variables, Python and folders)."""
    global _activation
    current = _activation
    if current is None or current.identity is None:
        return
    from appshield import _inherit  # loaded by `activate`: a way in with an identity
    from appshield.policy import variables

    before = _inherit.decode(current.identity)
    merged = {**dict(before.variables), **variables.expanded()}
    identity = _inherit.encode(
        before._replace(
            digest=policy.identity,
            variables=tuple(sorted(merged.items())),
            unshielded_ok=not policy.document.protections.unshielded_children,
        )
    )
    os.environ[_inherit.VARIABLE] = identity
    _activation = current._replace(identity=identity)


def _identity(policy: Any) -> str:
    """What this root process hands down: see `appshield._inherit`."""
    from appshield import _inherit  # loaded by `activate` before install
    from appshield.policy import variables
    from appshield.runtime import _PACKAGE_DIR, _SITE_ROOTS

    site = tuple(dict.fromkeys((os.path.dirname(_PACKAGE_DIR), *_SITE_ROOTS)))
    return _inherit.encode(
        _inherit.Inherited(
            policy.identity,
            tuple(sorted(variables.expanded().items())),
            sys.implementation.cache_tag or "",
            site,
            not policy.document.protections.unshielded_children,
        )
    )


def _import_importlib() -> None:
    """Import the `importlib` package (and `importlib.machinery`, which `chain_sitecustomize`
    and the file hook use) before the shield is installed.

    `importlib/__init__.py` makes `importlib._bootstrap` and `importlib._bootstrap_external`
    the interpreter's own frozen, initialised import modules. If `importlib.machinery` or
    `importlib.util` is imported while that `__init__` is still being read, they bind fresh
    source copies instead, never initialised (`_bootstrap_external._bootstrap` is None), and
    `importlib.machinery.PathFinder.find_spec` and much of `importlib.util` then fail for the
    rest of the process. The shield's hooks can do just that: they run inside every import,
    the first one of `importlib` included, and the file hook imports `importlib.machinery`.
    Apps and the YAML policy loader usually import `importlib` early; a policy read from its
    cache imports nothing, so importlib's first import would come under the shield.
    `importlib.machinery` is frozen and light. `importlib.util` is not imported: it would
    bring `contextlib` and `functools` into every start, and once the package is initialised
    a later import of it binds the frozen modules like any other (`chain_sitecustomize`
    takes `module_from_spec` from `importlib._bootstrap`, the same function).
    """
    import importlib.machinery  # noqa: F401


# The variable that names the policy (`discover_policy` takes it first, as given).
POLICY_VARIABLE = "APPSHIELD_POLICY"


def _policy_path(policy: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> str:
    if policy is not None:
        return os.path.abspath(os.fspath(policy))
    # `appshield.policy` is loaded by every start (the cache lives there): no import cost.
    from appshield.policy import discover_policy

    return os.path.abspath(discover_policy(environ=environ))


# ---------------------------------------------------------------------------------------------
# sitecustomize chaining


def chain_sitecustomize(our_file: str) -> None:
    """Run the sitecustomize that Python would have imported without our folder: the next
    one on sys.path after the folder holding `our_file`. It runs once, under the name
    `sitecustomize` (it then is `sys.modules["sitecustomize"]`).

    Any failure, in that file or in finding and loading it, is reported the way `site`
    reports an error in a sitecustomize, and the app goes on: the shield is already up by
    then, and the app would have run, with the same report, without appshield. Nothing
    escapes to `site` either, which would blame it on our own sitecustomize.
    """
    try:
        _run_next_sitecustomize(our_file)
    except Exception as err:
        _report_like_site(err)


def _run_next_sitecustomize(our_file: str) -> None:
    """Searching only *after* our own folder is what stops recursion: another copy of this
    bootstrap further down the path would itself search only after its own folder."""
    import importlib.machinery
    from importlib._bootstrap import module_from_spec  # importlib.util's, without its imports

    here = os.path.realpath(os.path.dirname(os.path.abspath(our_file)))
    entries = list(sys.path)
    positions = [i for i, e in enumerate(entries) if os.path.realpath(e or os.curdir) == here]
    rest = entries[positions[-1] + 1 :] if positions else entries
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    if spec.origin and os.path.realpath(spec.origin) == os.path.realpath(our_file):
        return
    module = module_from_spec(spec)
    ours = sys.modules.get("sitecustomize")
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        # A half-run module must not stay registered as the sitecustomize.
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        else:
            sys.modules.pop("sitecustomize", None)
        raise


def _report_like_site(err: BaseException) -> None:
    """What `site.execsitecustomize` prints for an exception raised by a sitecustomize."""
    if sys.flags.verbose:
        sys.excepthook(type(err), err, err.__traceback__)
    else:
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
            f"{err.__class__.__name__}: {err}\n"
        )
