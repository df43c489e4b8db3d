"""Policy reload, opt-in: `APPSHIELD_RELOAD=1` (read at start-up, like every APPSHIELD_ variable).

Kubernetes updates a mounted ConfigMap by writing a new folder and swapping the `..data`
symlink, so the policy path stays the same while what it resolves to changes. When reload is
on, a daemon thread looks every `APPSHIELD_RELOAD_INTERVAL` seconds (default 2) at the policy
files: their resolved path, inode, size and modification time. Looking is a few `stat` calls;
the file is read only when one of these changed.

A new valid policy replaces the old one for every thread at once (`Shield.swap_policy`) and the
change is reported (a warning on the `appshield` logger and one line on stderr). An invalid new
policy is reported the same way and the old one stays. The mode keeps its precedence
(APPSHIELD_MODE over the file's `mode`).

After `fork()` the thread does not exist in the child; it is started again there, so pre-fork
workers keep following the policy. A stated limit: the folder holding the policy must not be
writable by the app (a ConfigMap mount is read-only), or the app could swap the symlink itself.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from appshield._threadstate import appshield_io
from appshield.settings import STARTUP, Settings

__all__ = ["PolicyWatcher", "start_watcher"]

logger = logging.getLogger("appshield")

Fingerprint = tuple[tuple[str, int, int, int], ...]


def _fingerprint(paths: tuple[str, ...]) -> Fingerprint:
    marks = []
    for path in paths:
        try:
            st = os.stat(path)
            marks.append((os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            marks.append((path, -1, -1, -1))
    return tuple(marks)


def _say(message: str) -> None:
    logger.warning("%s", message)
    try:
        sys.stderr.write(message + "\n")
    except Exception:
        pass


class PolicyWatcher:
    """Watches one policy path (and the files it extends) and swaps the active policy."""

    def __init__(
        self,
        path: str,
        interval: float = 2.0,
        on_swap: Callable[[Any], None] | None = None,
        settings: Settings = STARTUP,
    ) -> None:
        self.path = path
        self.interval = interval
        self.settings = settings  # for the mode of each new policy
        # Told of each new policy once it is active (activation: the identity children carry).
        # Handed in, so that this module never imports the activation code that starts it.
        self.on_swap = on_swap
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mark = _fingerprint(self._watched())

    def _watched(self) -> tuple[str, ...]:
        from appshield.runtime import active_shield

        shield = active_shield()
        files = shield.policy.files if shield is not None else ()
        return (self.path, *(f for f in files if f != self.path))

    def check(self) -> bool:
        """Look once; reload if anything changed. True when a new policy was swapped in."""
        mark = _fingerprint(self._watched())
        if mark == self._mark:
            return False
        self._mark = mark
        return self._reload()

    def _reload(self) -> bool:
        from appshield.policy import load_policy
        from appshield.runtime import active_shield

        shield = active_shield()
        if shield is None:
            return False
        try:
            with appshield_io():  # our own reads are not the app's file accesses
                new = load_policy(self.path)
                new = new.with_mode(self.settings.mode_for(None, new.document.mode))
                new.compiled  # noqa: B018 - compile here, outside every hook
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            _say(f"appshield: policy reload rejected, the previous policy stays: {first}")
            return False
        if new == shield.policy:
            return False
        # Said before the swap: a daemon thread may not outlive an app that exits as soon as
        # it sees the new policy, and the report must not be lost.
        _say(
            f"appshield: policy reloaded from {self.path}: {new.name!r}, mode {new.mode},"
            f" {len(new.document.rules)} rules"
        )
        shield.swap_policy(new)
        if self.on_swap is not None:
            self.on_swap(new)
        self._mark = _fingerprint(self._watched())
        return True

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="appshield-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watcher must never die on a surprise; the old policy stays
                pass


_watcher: PolicyWatcher | None = None


def start_watcher(
    path: str,
    interval: float = 2.0,
    on_swap: Callable[[Any], None] | None = None,
    settings: Settings = STARTUP,
) -> PolicyWatcher:
    """Start the one watcher of this process (again after fork, in the child). `on_swap` is
    called with each policy swapped in."""
    global _watcher
    if _watcher is not None:
        _watcher.stop()
    _watcher = PolicyWatcher(path, interval, on_swap, settings)
    _watcher.start()
    return _watcher


def _restart_in_child() -> None:
    if _watcher is not None:
        start_watcher(_watcher.path, _watcher.interval, _watcher.on_swap, _watcher.settings)


os.register_at_fork(after_in_child=_restart_in_child)
