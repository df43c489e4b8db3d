"""Everything appshield takes from the environment, read once when appshield is first imported.

    STARTUP = Settings.from_environ(os.environ)   # at import; never read again

Changing `APPSHIELD_*` after start-up changes nothing: an attacker who can set
`APPSHIELD_DISABLE` or `APPSHIELD_MODE` once the app runs gains nothing, and every part of
appshield sees the same values. The runtime, activation, reload, the pytest plugin and the
hooks are handed these settings (or read `STARTUP`, the same frozen object); none of them reads
`os.environ` for a setting of its own. `appshield run` and `appshield learn`, which prepare an
environment for a command, read their own process's environment the same way
(`Settings.from_environ`).

Mode precedence lives here and only here (`effective_mode`):

    install(mode=) / --mode / a pytest marker's mode  >  APPSHIELD_MODE  >  the file's `mode:`
    >  enforce

A module of its own, in the core (it imports only `decision`'s types), so that the hooks
can read the start-up PATH without importing the runtime.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import MappingProxyType
    from typing import NamedTuple

    from appshield.decision import Mode
else:
    # `types.MappingProxyType` without importing `types`, and `Mode` (a string alias) without
    # importing `decision`: `appshield run`'s own process reads its settings and needs
    # neither module (docs/performance.md, "appshield run's own process, second round").
    MappingProxyType = type(type.__dict__)
    # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["LOG_FORMATS", "MODES", "STARTUP", "Settings", "effective_mode", "log_format", "seconds"]

MODES = ("enforce", "monitor")
# Each mode by its spelling: typed as a `Mode` without `typing.cast` at run time.
_MODE_OF: dict[str, Mode] = {"enforce": "enforce", "monitor": "monitor"}
# APPSHIELD_LOG_FORMAT: today's JSON lines, OCSF Detection Findings, Falco-style alerts.
LOG_FORMATS = ("json", "ocsf", "falco")

# The variable that carries a parent's policy identity to its children (appshield._inherit).
_INHERITED = "APPSHIELD_IDENTITY"


def effective_mode(argument: str | None, environment: str | None, file_mode: Mode | None) -> Mode:
    """The mode a shield runs in: the first of the argument (install's `mode=`, `--mode`, a
    marker), APPSHIELD_MODE and the policy file's own `mode:` that is set, else enforce. An
    argument or APPSHIELD_MODE that is not a mode is a ValueError (never ignored: a typo in
    `enforce` must not quietly leave the file's `monitor` in force)."""
    for candidate in (argument, environment or None):
        if candidate is not None:
            mode = _MODE_OF.get(candidate) if isinstance(candidate, str) else None
            if mode is None:
                raise ValueError(f"mode must be 'enforce' or 'monitor', not {candidate!r}")
            return mode
    return file_mode or "enforce"


def log_format(value: str | None) -> str:
    """The APPSHIELD_LOG_FORMAT value as a known format (case and surrounding blanks
    ignored; unset or empty: `json`). Anything else is a ValueError: a typo must stop the
    shield from starting, not quietly write lines a SIEM pipeline cannot read."""
    found = (value or "").strip().lower() or "json"
    if found not in LOG_FORMATS:
        raise ValueError(
            f"APPSHIELD_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}"
        )
    return found


def _switched_on(value: str | None) -> bool:
    return value not in (None, "", "0")


def seconds(value: str | None, default: float) -> float:
    """A setting in seconds: empty, not a number or negative gives the default."""
    try:
        found = float(value or default)
    except ValueError:
        return default
    return found if found >= 0 else default


def _count(value: str | None, default: int) -> int:
    """A whole number setting: empty, not a number or negative gives the default."""
    try:
        found = int(value or default)
    except ValueError:
        return default
    return found if found >= 0 else default


def _reload_interval(value: str | None) -> float:
    # At least a tenth of a second: a watcher must not spin.
    try:
        return max(0.1, float(value or "2"))
    except ValueError:
        return 2.0


_Environ = type(os.environ)


def environ_subset(
    environ: Mapping[str, str], prefixes: tuple[str, ...], names: tuple[str, ...]
) -> dict[str, str]:
    """The variables of `environ` whose name starts with one of `prefixes` or is one of
    `names` (exact str names and values), in its order.

    `os.environ` itself is read from the bytes it keeps (`_data`), decoding only the names and
    values kept: its `items()` decodes every variable of the process, through four Python
    calls each (about 9 k instructions a variable, 0.3 M of every start with 35 of them, three
    times that in a CI job's environment). The names asked for are ASCII, which the
    file-system encoding keeps as they are, so a bytes test is the str one. Any other mapping
    (a copy, a replacement of `os.environ`) is read through its own `items()`."""
    data = getattr(environ, "_data", None) if type(environ) is _Environ else None
    if type(data) is dict:
        decode_name = getattr(environ, "decodekey", None)
        decode_value = getattr(environ, "decodevalue", None)
        if decode_name is not None and decode_value is not None:
            byte_prefixes = tuple(p.encode("ascii") for p in prefixes)
            byte_names = frozenset(n.encode("ascii") for n in names)
            found = {}
            for name, value in list(data.items()):  # a copy, as `os.environ`'s own iteration
                if type(name) is bytes and (name.startswith(byte_prefixes) or name in byte_names):
                    text, content = decode_name(name), decode_value(value)
                    if type(text) is str and type(content) is str:
                        found[text] = content
            return found
    return {
        k: v
        for k, v in environ.items()
        if type(k) is str and type(v) is str and (k.startswith(prefixes) or k in names)
    }


def _ours(environ: Mapping[str, str]) -> dict[str, str]:
    """The APPSHIELD_*, OTEL_* and PATH variables of `environ`, in its order."""
    return environ_subset(environ, ("APPSHIELD_", "OTEL_"), ("PATH",))


class Settings(NamedTuple):
    """appshield's settings as the environment gave them (a named tuple: immutable, and cheap
    to import at start-up)."""

    policy_path: str | None = None  # APPSHIELD_POLICY
    mode: str | None = None  # APPSHIELD_MODE, unchecked until a mode is needed
    disabled: bool = False  # APPSHIELD_DISABLE: the kill switch
    log_path: str | None = None  # APPSHIELD_LOG: the JSON violation log
    learn_folder: str | None = None  # APPSHIELD_LEARN: `appshield learn` is recording
    reload: bool = False  # APPSHIELD_RELOAD
    reload_interval: float = 2.0  # APPSHIELD_RELOAD_INTERVAL, seconds (at least 0.1)
    flush_timeout: float = 2.0  # APPSHIELD_FLUSH_TIMEOUT, seconds
    record_path: str | None = None  # APPSHIELD_RECORD: every decision appended to this file
    record_limit: int = 10_000  # APPSHIELD_RECORD_LIMIT: distinct entries per process
    inherited: str | None = None  # a parent's policy identity (activation: children)
    path: str = os.defpath  # PATH at start-up: how hooks resolve a program name
    # The APPSHIELD_*, OTEL_* and PATH variables as they were (read-only): the telemetry
    # settings and policy discovery read theirs from here.
    environ: Mapping[str, str] = MappingProxyType({})
    # APPSHIELD_LOG_FORMAT as written (checked by `check_log_format`, at install)
    log_format: str | None = None
    shadow_policy_path: str | None = None  # APPSHIELD_SHADOW_POLICY: the candidate policy

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        snapshot = _ours(environ)
        get = snapshot.get
        return cls(
            policy_path=get("APPSHIELD_POLICY") or None,
            mode=get("APPSHIELD_MODE") or None,
            disabled=_switched_on(get("APPSHIELD_DISABLE")),
            log_path=get("APPSHIELD_LOG") or None,
            log_format=get("APPSHIELD_LOG_FORMAT") or None,
            shadow_policy_path=get("APPSHIELD_SHADOW_POLICY") or None,
            learn_folder=get("APPSHIELD_LEARN") or None,
            reload=_switched_on(get("APPSHIELD_RELOAD")),
            reload_interval=_reload_interval(get("APPSHIELD_RELOAD_INTERVAL")),
            flush_timeout=seconds(get("APPSHIELD_FLUSH_TIMEOUT"), 2.0),
            record_path=get("APPSHIELD_RECORD") or None,
            record_limit=_count(get("APPSHIELD_RECORD_LIMIT"), 10_000),
            inherited=get(_INHERITED) or None,
            path=get("PATH", os.defpath),
            environ=MappingProxyType(snapshot),
        )

    def mode_for(self, argument: str | None, file_mode: Mode | None) -> Mode:
        """`effective_mode` with this environment's APPSHIELD_MODE."""
        return effective_mode(argument, self.mode, file_mode)

    def check_mode(self, argument: str | None = None) -> None:
        """Raise ValueError now for a mode that would stop the shield later."""
        effective_mode(argument, self.mode, None)

    def check_log_format(self) -> str:
        """The log format in force; ValueError now for one that would stop the shield."""
        return log_format(self.log_format)


STARTUP: Settings = Settings.from_environ(os.environ)
