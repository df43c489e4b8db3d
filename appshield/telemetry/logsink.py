"""The `appshield` logger as a sink that never hangs the app.

A violation is reported on the thread that committed it, from inside a hook, wherever that
thread happens to be. Two places made a plain `logger.warning` there wait for ever:

- The thread is inside logging itself: a handler's `emit` that opens its file, connects or
  imports (holding that handler's lock), or `basicConfig`/`dictConfig` creating a handler
  (holding `logging._lock`). The warning goes to every handler and waits for the locks that
  other threads hold; a thread inside another handler's `emit` that commits a violation
  there waits for this one's: two handlers whose `emit` commit violations on two threads
  deadlocked. (Logging's own order is `logging._lock`, then a handler's lock; a warning from
  inside an `emit` takes them the other way round.)
- The thread holds a module's import lock, and a handler's `emit` on another thread waits for
  that module.

So `warn` first asks whether this thread holds any of those locks. If not (the usual case),
it logs at once, exactly as a direct `logger.warning`. If it does, the record is built here
(this thread's name, the caller, the app's context variables) without taking any lock. Each
handler that is free this instant (its lock taken without waiting), or whose lock this
thread already holds (its `emit` committed the violation: logging's lock is reentrant, as
before), gets it at once; a handler busy on another thread, or with a lock of another kind,
gets it from a thread of appshield's own, which retries until the lock is free. Nothing is
dropped silently: the exit flush (`drain`) waits for those deliveries, within its deadline,
as long as they make progress; past `_Handoff.LIMIT` waiting ones, the oldest are counted.

Residual: a lock of the app's own (not logging's) held around a guarded call, which the app's
own handler also takes, is invisible here; logging from there would hang the app the same way.
"""

from __future__ import annotations

import _thread
import contextvars
import logging
import os
import sys
import time
from collections import deque
from typing import Any

from appshield.telemetry import _in_an_import, library_logger

__all__ = ["drain", "heard", "warn"]

_logger: Any = None


def _library_logger() -> Any:
    # Created on first use, on a reporting thread or appshield's log thread: never while the
    # telemetry is being built, whose thread the first reporter waits for (it would wait for
    # `logging._lock`, which that reporter may hold: `basicConfig(filename=...)`).
    global _logger
    log = _logger
    if log is None:
        log = _logger = library_logger()
    return log


def warn(msg: str, *args: object, extra: dict[str, Any] | None = None) -> None:
    """`logger.warning(msg, *args, extra=extra)` on the `appshield` logger, never waiting for
    a lock that another thread's logging may be waiting for this thread to release."""
    # Looked up without `getLogger`, which takes `logging._lock`; asked first, so that an app
    # with no logging configured pays for nothing more.
    existing: Any = logging.Logger.manager.loggerDict.get("appshield")
    plain = existing.__class__ is logging.Logger
    if plain and not heard(existing, may_lock=False):
        return  # no handler but a NullHandler: nothing to deliver
    if not _holds_a_logging_lock() and not _in_an_import():
        log = _library_logger()
        if heard(log):
            # stacklevel 2: the record names the caller, as a direct `logger.warning` did
            log.warning(msg, *args, extra=extra, stacklevel=2)
        return
    record = _record_here(msg, args, extra)
    context = contextvars.copy_context()
    if not plain:  # not made yet, or a Logger of the app's own kind: its own `handle`
        _handoff.put(record, context, None)
        return
    if existing.disabled or not existing.filter(record):
        return
    for handler in _handlers_of(existing):
        _offer(record, context, handler, _handoff.later, here=True)
    _handoff.wake()


def drain(deadline: float) -> None:
    """Deliver what is still queued, until `deadline` (time.monotonic()): the exit flush."""
    _handoff.drain(deadline)


def heard(log: Any, may_lock: bool = True) -> bool:
    """Would a warning on `log` reach anything but a NullHandler? When the app configured no
    logging, the record would be built (a stack walk, a thread lookup: about a sixth of a
    distinct violation's cost) only to be dropped. Looked up at every report, so handlers,
    levels and filters set later count. Anything unusual (a Logger subclass, a filter on the
    logger, no handler at all, which means Python's last-resort handler) counts as heard.
    `may_lock=False`: the level is worked out as `isEnabledFor` does, without its cache,
    whose miss takes `logging._lock`."""
    if log.__class__ is not logging.Logger or log.filters:
        return True
    if may_lock:
        enabled = log.isEnabledFor(logging.WARNING)
    else:
        enabled = (
            not log.disabled
            and log.manager.disable < logging.WARNING
            and logging.WARNING >= log.getEffectiveLevel()
        )
    if not enabled:
        return False  # logger.warning would drop it too
    found = False
    current: Any = log
    while current is not None:
        for handler in current.handlers:
            if handler.__class__ is not logging.NullHandler:
                return True
            found = True
        if not current.propagate:
            break
        current = current.parent
    return not found


def _holds_a_logging_lock() -> bool:
    """Does this thread hold `logging._lock` or any handler's lock (it is inside logging:
    an `emit`, a configuration, a flush)? Every handler counts, not only the `appshield`
    logger's: a MemoryHandler or QueueListener passes records on to others."""
    if _owned(getattr(logging, "_lock", None)):
        return True
    for reference in list(getattr(logging, "_handlerList", ())):
        handler = reference()
        if handler is not None and _owned(getattr(handler, "lock", None)):
            return True
    return False


def _owned(lock: Any) -> bool:
    if lock is None:
        return False
    is_owned = getattr(lock, "_is_owned", None)  # RLock: logging's own kind
    if is_owned is not None:
        return bool(is_owned())
    # A handler's own kind of lock has no owner to ask: taken (by anyone) counts as held,
    # which at worst delivers a warning on the log thread that could have gone out here.
    locked = getattr(lock, "locked", None)
    return bool(locked()) if locked is not None else True


def _record_here(msg: str, args: tuple[object, ...], extra: Any) -> Any:
    """The record `logger.warning` would make on this thread, made without any lock (a
    cache miss of `isEnabledFor`, and `getLogger`, take `logging._lock`)."""
    caller = sys._getframe(2)
    record = logging.getLogRecordFactory()(
        "appshield",
        logging.WARNING,
        caller.f_code.co_filename,
        caller.f_lineno,
        msg,
        args,
        None,
        caller.f_code.co_name,
        None,
    )
    for key, value in (extra or {}).items():
        record.__dict__[key] = value
    return record


def _handlers_of(log: Any) -> list[Any]:
    """The handlers `log.callHandlers` would call (Python's last-resort handler when the
    chain has none at all)."""
    found: list[Any] = []
    current: Any = log
    while current is not None:
        found.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    if not found and logging.lastResort is not None:
        found.append(logging.lastResort)
    return found


def _offer(record: Any, context: Any, handler: Any, later: Any, here: bool = False) -> bool:
    """Hand `record` to `handler` if its lock is free this instant (or it has none); else
    queue it on `later` for the log thread. True when it was handled (or failed there).
    `here`: on the thread that made the record, in its own context; else in `context`."""
    if record.levelno < handler.level:
        return True
    lock: Any = getattr(handler, "lock", None)
    taken = False
    if lock is not None:
        if getattr(lock, "_is_owned", None) is not None:  # logging's RLock
            # Held by this thread (its emit committed the violation): `handle` takes it
            # again, as logging allows, and as a direct `logger.warning` did.
            if not lock._is_owned():
                if not lock.acquire(False):  # busy on another thread
                    _handoff.keep(later, (record, context, handler))
                    return False
                taken = True  # `handle` takes it again: reentrant
        elif here:
            # A lock of another kind cannot be taken twice nor asked who holds it: only
            # appshield's log thread may wait for it.
            _handoff.keep(later, (record, context, handler))
            return False
    try:
        if here:
            handler.handle(record)
        else:
            context.run(handler.handle, record)
    except Exception:  # a failing handler never reaches the app, nor stops the others
        pass
    finally:
        if taken:
            lock.release()
    return True


class _Handoff:
    """Deliveries waiting for a handler's lock: appshield's log thread retries them."""

    RETRY_S = 0.02  # the first retry; doubled after each pass that delivers nothing
    MAX_RETRY_S = 1.0

    def __init__(self) -> None:
        self.later: deque[tuple[Any, Any, Any]] = deque()
        self._wake = _thread.allocate_lock()
        self._wake.acquire()  # released to wake the thread
        self._thread: int | None = None
        self.delivered = 0  # deliveries made by the thread: the exit flush's progress
        self._pause = self.RETRY_S

    # Deliveries kept waiting at most: a handler whose lock is never given back (a signal
    # handler's exception in its `release`) must not grow them for ever. Past it the oldest
    # is dropped, and counted in `dropped` (the violation itself is still counted and in
    # the other sinks).
    LIMIT = 1024
    dropped = 0

    def keep(self, where: Any, item: tuple[Any, Any, Any]) -> None:
        where.append(item)
        if where is self.later and len(where) > self.LIMIT:
            try:
                where.popleft()
                _Handoff.dropped += 1
            except IndexError:
                pass

    def put(self, record: Any, context: Any, handler: Any) -> None:
        self.keep(self.later, (record, context, handler))
        self.wake()

    def wake(self) -> None:
        if not self.later:
            return
        if self._thread is None:
            try:
                # A bare `_thread` thread, as the telemetry builder: no `threading.settrace`
                # function runs in it. It is not marked busy: the handlers are the app's
                # code, and what they do there is checked like anywhere else.
                self._thread = _thread.start_new_thread(self._serve, ())
            except RuntimeError:
                return  # no new threads at interpreter shutdown: the exit flush delivers
        try:
            self._wake.release()
        except RuntimeError:  # already released: the thread is about to look
            pass

    def _serve(self) -> None:
        while True:
            # Woken by a new delivery; while some wait for a busy handler, retried, less
            # and less often while none goes through (a lock never given back).
            woken = self._wake.acquire(True, self._pause if self.later else -1)
            before = self.delivered
            self._attempt()
            if woken or self.delivered != before:
                self._pause = self.RETRY_S
            else:
                self._pause = min(self._pause * 2, self.MAX_RETRY_S)

    def _attempt(self) -> None:
        """One pass over the waiting deliveries; those still blocked wait again."""
        # popleft, never a swap: reporting threads append to this very deque meanwhile
        waiting = self.later
        again: deque[tuple[Any, Any, Any]] = deque()
        busy: set[int] = set()  # handlers found busy in this pass: not asked again
        for _ in range(len(waiting)):
            try:
                record, context, handler = waiting.popleft()
            except IndexError:  # the exit flush took it
                break
            if id(handler) in busy:
                again.append((record, context, handler))
                continue
            try:
                if handler is None:
                    context.run(_deliver, record)
                elif not _offer(record, context, handler, again):
                    busy.add(id(handler))
                    continue
            except BaseException:  # nothing ends the thread
                pass
            self.delivered += 1
        self.later.extend(again)

    def drain(self, deadline: float) -> None:
        if self._thread is None:
            if self.later:  # never had its thread (the exit): deliver here what is free
                self._attempt()
            return
        # Wait while deliveries make progress: a handler whose lock is never given back
        # (an exception a signal handler raised in its `release`) does not hold the exit.
        if all(h is not None and _owned(h.lock) for *_, h in list(self.later)):
            return  # they wait for handlers this very thread holds
        progress, last = self.delivered, time.monotonic()
        while self.later and time.monotonic() < deadline:
            if self.delivered != progress:
                progress, last = self.delivered, time.monotonic()
            elif time.monotonic() - last > 10 * self.RETRY_S:
                return
            time.sleep(self.RETRY_S / 4)

    def reset_after_fork(self) -> None:
        # The child has no log thread; what the parent queued is the parent's to deliver.
        self.later = deque()
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        self._thread = None
        self.delivered = 0
        self._pause = self.RETRY_S


def _deliver(record: Any) -> None:
    """A record for a logger that did not exist yet, or of the app's own class: its own
    `handle`, on the log thread, which may wait."""
    log = _library_logger()
    if heard(log):
        log.handle(record)


_handoff = _Handoff()
os.register_at_fork(after_in_child=_handoff.reset_after_fork)
